#include "support/ws_client.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/json/parse.hpp>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "support/json_util.hpp"

namespace roomcast::itest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

}  // namespace

ws_client::ws_client(ws_options options) : options_(options), ws_(ioc_) {}

ws_client::~ws_client() {
  beast::error_code ignored;
  ws_.next_layer().close(ignored);
}

bool ws_client::run_until(const std::function<bool()>& done, clock_type::time_point deadline) {
  while (!done()) {
    auto now = clock_type::now();
    if (now >= deadline) return false;
    if (ioc_.stopped()) ioc_.restart();
    if (ioc_.run_one_for(deadline - now) == 0 && ioc_.stopped()) return done();  // no work left
  }
  return true;
}

unsigned ws_client::connect(std::uint16_t port, const std::string& path) {
  auto& sock = ws_.next_layer();
  beast::error_code ec;
  sock.open(tcp::v4(), ec);
  if (!ec && options_.rcvbuf > 0) sock.set_option(asio::socket_base::receive_buffer_size(options_.rcvbuf), ec);
  if (ec) {
    last_error_ = "socket setup: " + ec.message();
    return 0;
  }

  std::optional<beast::error_code> result;
  std::string stage = "connect";
  sock.async_connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), [&](beast::error_code cec) {
    if (cec) return void(result = cec);
    // Like browsers: no Nagle delay on small frames (close replies, pongs).
    beast::error_code ignored;
    ws_.next_layer().set_option(tcp::no_delay(true), ignored);
    stage = "handshake";
    ws_.async_handshake(response_, "127.0.0.1:" + std::to_string(port), path,
                        [&](beast::error_code hec) { result = hec; });
  });
  if (!run_until([&] { return result.has_value(); }, clock_type::now() + options_.handshake_timeout)) {
    sock.close(ec);
    run_until([&] { return result.has_value(); }, clock_type::now() + 1s);
    last_error_ = stage + ": timed out";
    return 0;
  }
  if (*result) {
    last_error_ = stage + ": " + result->message();
    // A refused upgrade still carries the server's HTTP response.
    return response_.result_int() != 0 && response_.result_int() != 101 ? response_.result_int() : 0;
  }
  connected_ = true;
  start_read();
  return response_.result_int();
}

void ws_client::start_read() {
  if (read_pending_ || read_error_ || !connected_) return;
  read_pending_ = true;
  ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
    read_pending_ = false;
    if (ec) {
      read_error_ = ec;
      return;
    }
    inbox_.push_back(beast::buffers_to_string(buffer_.data()));
    buffer_.consume(buffer_.size());
    start_read();
  });
}

bool ws_client::write(std::string_view data, bool text, std::chrono::milliseconds timeout) {
  if (!connected_ || read_error_) return false;
  ws_.text(text);
  std::optional<beast::error_code> result;
  ws_.async_write(asio::buffer(data.data(), data.size()), [&](beast::error_code ec, std::size_t) { result = ec; });
  if (!run_until([&] { return result.has_value(); }, clock_type::now() + timeout)) {
    last_error_ = "write: timed out";
    // The handler references locals: tear the socket down so it runs before we return.
    beast::error_code ignored;
    ws_.next_layer().close(ignored);
    run_until([&] { return result.has_value(); }, clock_type::now() + 1s);
    return false;
  }
  if (*result) last_error_ = "write: " + result->message();
  return !*result;
}

bool ws_client::send_text(std::string_view text, std::chrono::milliseconds timeout) {
  return write(text, true, timeout);
}

bool ws_client::send_binary(std::string_view data, std::chrono::milliseconds timeout) {
  return write(data, false, timeout);
}

std::optional<std::string> ws_client::read_text(std::chrono::milliseconds timeout) {
  start_read();
  run_until([&] { return !inbox_.empty() || read_error_.has_value(); }, clock_type::now() + timeout);
  if (inbox_.empty()) return std::nullopt;
  std::string frame = std::move(inbox_.front());
  inbox_.pop_front();
  return frame;
}

std::optional<boost::json::value> ws_client::read_json(std::chrono::milliseconds timeout) {
  auto text = read_text(timeout);
  if (!text) return std::nullopt;
  return parse_json(*text);
}

std::optional<boost::json::value> ws_client::read_type(std::string_view type, std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    if (left.count() <= 0) return std::nullopt;
    auto frame = read_json(left);
    if (!frame) return std::nullopt;
    if (json_string(*frame, "type") == type) return frame;
  }
}

bool ws_client::wait_closed(std::chrono::milliseconds timeout) {
  if (!connected_) return true;
  start_read();
  return run_until([&] { return read_error_.has_value(); }, clock_type::now() + timeout);
}

void ws_client::pump(std::chrono::milliseconds duration) {
  start_read();
  run_until([] { return false; }, clock_type::now() + duration);
}

std::optional<std::uint16_t> ws_client::close_code() const {
  // Beast records the peer's close frame in reason(). The read may still end with a socket
  // error instead of error::closed when the server drops TCP right after its close frame
  // ("fail the connection", RFC 6455 7.1.7), so the frame is what counts.
  if (!read_error_ || ws_.reason().code == websocket::close_code::none) return std::nullopt;
  return static_cast<std::uint16_t>(ws_.reason().code);
}

std::string ws_client::close_reason() const { return std::string(ws_.reason().reason.c_str()); }

std::string ws_client::read_error() const { return read_error_ ? read_error_->message() : std::string(); }

bool ws_client::close(std::uint16_t code, std::chrono::milliseconds timeout) {
  if (!is_open()) return false;
  std::optional<beast::error_code> result;
  ws_.async_close(websocket::close_reason(code), [&](beast::error_code ec) { result = ec; });
  auto deadline = clock_type::now() + timeout;
  // The pending read sees the server's close frame; the close op completes after that.
  bool ok = run_until([&] { return result.has_value() && !read_pending_; }, deadline);
  if (!ok) {
    beast::error_code ignored;
    ws_.next_layer().close(ignored);
    run_until([&] { return result.has_value(); }, clock_type::now() + 1s);
  }
  return ok;  // the op itself reports operation_aborted once the read saw the close
}

void ws_client::drop() {
  beast::error_code ignored;
  ws_.next_layer().close(ignored);
  run_until([&] { return !read_pending_; }, clock_type::now() + 1s);
}

void ws_client::reset() {
  beast::error_code ignored;
  ws_.next_layer().set_option(asio::socket_base::linger(true, 0), ignored);
  ws_.next_layer().close(ignored);
  run_until([&] { return !read_pending_; }, clock_type::now() + 1s);
}

raw_ws_client::raw_ws_client(int rcvbuf) : rcvbuf_(rcvbuf) {}

raw_ws_client::~raw_ws_client() { close(); }

bool raw_ws_client::connect_tcp(std::uint16_t port) {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  if (rcvbuf_ > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, sizeof rcvbuf_);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close();
    return false;
  }
  return true;
}

bool raw_ws_client::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

unsigned raw_ws_client::connect(std::uint16_t port, const std::string& path, std::chrono::milliseconds timeout) {
  if (!connect_tcp(port)) return 0;
  std::string req = "GET " + path + " HTTP/1.1\r\n" + "Host: 127.0.0.1:" + std::to_string(port) +
                    "\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
  if (!send_raw(req)) return 0;

  // One byte at a time so that no WebSocket frame after the head is consumed.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string head;
  while (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || head.size() > 16384) return 0;
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char c = 0;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    head.push_back(c);
  }
  // "HTTP/1.1 101 Switching Protocols"
  auto sp = head.find(' ');
  if (sp == std::string::npos) return 0;
  return static_cast<unsigned>(std::strtoul(head.c_str() + sp + 1, nullptr, 10));
}

bool raw_ws_client::peer_closed() {
  if (fd_ < 0) return true;
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n == 0) return true;
    if (errno == EINTR) continue;
    return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

std::string raw_ws_client::read_to_end(std::chrono::milliseconds timeout) {
  std::string out;
  if (fd_ < 0) return out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EOF or reset
  }
  return out;
}

void raw_ws_client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace roomcast::itest
