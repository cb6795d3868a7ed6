#pragma once
// A blocking TLS client for the TLS tests (OpenSSL directly): HTTPS requests, and a WebSocket over
// TLS driven by hand (upgrade, masked frames out, raw frames in), like raw_ws_client over TCP.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

struct ssl_st;
struct ssl_ctx_st;

namespace roomcast::itest {

using namespace std::chrono_literals;

struct tls_client_options {
  std::string ca_file;                     // verify the server's certificate against this PEM (empty: no check)
  int max_version = 0;                     // e.g. TLS1_1_VERSION to try an old client (0: library default)
  std::string alpn = "http/1.1";           // offered protocol (empty: no ALPN)
  std::chrono::milliseconds timeout = 5s;  // every read and write
};

class tls_client {
 public:
  explicit tls_client(tls_client_options o = {});
  ~tls_client();
  tls_client(const tls_client&) = delete;
  tls_client& operator=(const tls_client&) = delete;

  // TCP connect to 127.0.0.1:port and the TLS handshake; false with error() set when either fails.
  bool connect(std::uint16_t port);
  const std::string& error() const { return error_; }
  std::string alpn() const;          // what the server selected ("" if none)
  std::string version() const;       // "TLSv1.3", ...
  std::string peer_subject() const;  // the server certificate's subject

  bool write(std::string_view bytes);
  // One HTTP/1.1 request on this connection; returns the status (0 on failure) and fills body.
  unsigned request(const std::string& method, const std::string& target, const std::string& body,
                   std::string* response_body = nullptr);
  // The WebSocket upgrade of `path`; the 101's head is kept (head()).
  unsigned upgrade(const std::string& path, const std::string& extra_headers = {});
  const std::string& head() const { return head_; }
  // One whole server frame; false on timeout or end of stream.
  bool read_frame(std::uint8_t& first_byte, std::string& payload);
  // Reads frames until one with this opcode (low 4 bits); false if none within 50 frames.
  bool read_until(std::uint8_t opcode, std::string& payload);
  bool send_frame(std::uint8_t first_byte, std::string_view payload);  // masked, as a client must
  // The server ended the stream (close_notify, FIN or reset) within the timeout.
  bool wait_closed();
  // Reads until what was received holds `needle` (an SSE stream: no frames, no length); false on
  // timeout or end of stream. received(): everything read and not taken by another call.
  bool read_text_until(std::string_view needle);
  const std::string& received() const { return in_; }

 private:
  bool fill();  // reads more into in_; false at the end of the stream or on timeout
  tls_client_options o_;
  ssl_ctx_st* ctx_ = nullptr;
  ssl_st* ssl_ = nullptr;
  int fd_ = -1;
  std::string in_, head_, error_;
};

// A self-signed certificate for 127.0.0.1 (and "localhost"), made with the openssl CLI in `dir`:
// dir/cert.pem and dir/key.pem. `cn` names it, so a reload can be told apart. Throws on failure.
void make_test_certificate(const std::string& dir, const std::string& cn);

}  // namespace roomcast::itest
