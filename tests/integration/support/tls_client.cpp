#include "support/tls_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "support/shell.hpp"

namespace roomcast::itest {

namespace {
std::string ssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}
}  // namespace

tls_client::tls_client(tls_client_options o) : o_(std::move(o)) {}

tls_client::~tls_client() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
}

bool tls_client::connect(std::uint16_t port) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (o_.max_version) {
    SSL_CTX_set_min_proto_version(ctx_, 0);
    SSL_CTX_set_max_proto_version(ctx_, o_.max_version);
    SSL_CTX_set_security_level(ctx_, 0);  // let an old protocol be offered at all
  }
  if (!o_.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, o_.ca_file.c_str(), nullptr) != 1) {
      error_ = "CA file: " + ssl_errors();
      return false;
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(o_.timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((o_.timeout.count() % 1000) * 1000);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    error_ = std::string("connect: ") + std::strerror(errno);
    return false;
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  SSL_set_tlsext_host_name(ssl_, "localhost");
  if (!o_.ca_file.empty()) SSL_set1_host(ssl_, "127.0.0.1");
  if (!o_.alpn.empty()) {
    std::string wire(1, static_cast<char>(o_.alpn.size()));
    wire += o_.alpn;
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  }
  if (SSL_connect(ssl_) != 1) {
    error_ = "handshake: " + ssl_errors();
    return false;
  }
  return true;
}

std::string tls_client::alpn() const {
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string tls_client::version() const { return SSL_get_version(ssl_); }

std::string tls_client::peer_subject() const {
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (!cert) return {};
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  X509_free(cert);
  return buf;
}

bool tls_client::write(std::string_view bytes) {
  while (!bytes.empty()) {
    const int n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
    if (n <= 0) {
      error_ = "write: " + ssl_errors();
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool tls_client::read_text_until(std::string_view needle) {
  while (in_.find(needle) == std::string::npos)
    if (!fill()) return false;
  return true;
}

bool tls_client::fill() {
  char buf[16384];
  const int n = SSL_read(ssl_, buf, sizeof buf);
  if (n <= 0) return false;
  in_.append(buf, static_cast<std::size_t>(n));
  return true;
}

unsigned tls_client::request(const std::string& method, const std::string& target, const std::string& body,
                             std::string* response_body) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  if (!write(req)) return 0;
  std::size_t he;
  while ((he = in_.find("\r\n\r\n")) == std::string::npos)
    if (!fill()) return 0;
  head_ = in_.substr(0, he + 4);
  std::size_t length = 0;
  if (const auto p = head_.find("Content-Length: "); p != std::string::npos)
    length = std::strtoul(head_.c_str() + p + 16, nullptr, 10);
  while (in_.size() < he + 4 + length)
    if (!fill()) return 0;
  if (response_body) *response_body = in_.substr(he + 4, length);
  in_.erase(0, he + 4 + length);
  return static_cast<unsigned>(std::strtoul(head_.c_str() + 9, nullptr, 10));
}

unsigned tls_client::upgrade(const std::string& path, const std::string& extra_headers) {
  const std::string req = "GET " + path +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
                          extra_headers + "\r\n";
  if (!write(req)) return 0;
  std::size_t he;
  while ((he = in_.find("\r\n\r\n")) == std::string::npos)
    if (!fill()) return 0;
  head_ = in_.substr(0, he + 4);
  in_.erase(0, he + 4);  // what follows is WebSocket frames
  return static_cast<unsigned>(std::strtoul(head_.c_str() + 9, nullptr, 10));
}

bool tls_client::read_frame(std::uint8_t& first_byte, std::string& payload) {
  for (;;) {
    if (in_.size() >= 2) {
      std::uint64_t len = static_cast<std::uint8_t>(in_[1]) & 0x7f;
      std::size_t pos = 2;
      bool whole = true;
      if (len >= 126) {
        const std::size_t n = len == 126 ? 2 : 8;
        if (in_.size() < 2 + n) {
          whole = false;
        } else {
          len = 0;
          for (std::size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<std::uint8_t>(in_[2 + i]);
          pos += n;
        }
      }
      if (whole && in_.size() >= pos + len) {
        first_byte = static_cast<std::uint8_t>(in_[0]);
        payload = in_.substr(pos, static_cast<std::size_t>(len));
        in_.erase(0, pos + static_cast<std::size_t>(len));
        return true;
      }
    }
    if (!fill()) return false;
  }
}

bool tls_client::read_until(std::uint8_t opcode, std::string& payload) {
  std::uint8_t b0 = 0;
  for (int i = 0; i < 50; ++i) {
    if (!read_frame(b0, payload)) return false;
    if ((b0 & 0x0f) == opcode) return true;
  }
  return false;
}

bool tls_client::send_frame(std::uint8_t first_byte, std::string_view payload) {
  std::string f(1, static_cast<char>(first_byte));
  const std::size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  }
  const char mask[4] = {0x0a, 0x1b, 0x2c, 0x3d};
  f.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return write(f);
}

bool tls_client::wait_closed() {
  char buf[16384];
  for (;;) {
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) continue;
    // On a blocking socket a receive timeout (SO_RCVTIMEO) reads as WANT_READ; anything else is
    // the stream ending (close_notify, FIN, reset).
    return SSL_get_error(ssl_, n) != SSL_ERROR_WANT_READ;
  }
}

void make_test_certificate(const std::string& dir, const std::string& cn) {
  const auto r =
      run_command("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj " +
                  shell_quote("/CN=" + cn) + " -addext " + shell_quote("subjectAltName=IP:127.0.0.1,DNS:localhost") +
                  " -keyout " + shell_quote(dir + "/key.pem") + " -out " + shell_quote(dir + "/cert.pem") + " 2>&1");
  if (!r) throw std::runtime_error("openssl req failed: " + r.output);
}

}  // namespace roomcast::itest
