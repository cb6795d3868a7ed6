#pragma once
// WebSocket clients for the tests.
//
// ws_client: Beast client driven by its own io_context. A read is always kept
// pending (so pings get answered and frames queue up in order); read_text()
// runs the context only until a frame is queued or the deadline passes, so a
// timed-out read leaves the stream intact.
//
// raw_ws_client: performs the HTTP upgrade by hand, then never reads or writes:
// a peer that neither drains its socket nor answers pings.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace roomcast::itest {

using namespace std::chrono_literals;

struct ws_options {
  int rcvbuf = 0;  // SO_RCVBUF set before connecting; 0 keeps the kernel default
  std::chrono::milliseconds handshake_timeout = 5s;
};

class ws_client {
 public:
  using response_type = boost::beast::websocket::response_type;

  explicit ws_client(ws_options options = {});
  ~ws_client();
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  // TCP connect + upgrade to ws://127.0.0.1:<port><path>.
  // Returns 101 on success, the HTTP status when the upgrade was refused
  // (see handshake_response() for headers such as Retry-After), 0 on transport failure.
  unsigned connect(std::uint16_t port, const std::string& path);
  const response_type& handshake_response() const { return response_; }
  const std::string& last_error() const { return last_error_; }

  bool send_text(std::string_view text, std::chrono::milliseconds timeout = 5s);
  bool send_binary(std::string_view data, std::chrono::milliseconds timeout = 5s);

  // Next frame (text or binary payload), or nullopt on timeout / once the stream ended.
  std::optional<std::string> read_text(std::chrono::milliseconds timeout = 5s);
  // Next frame parsed as JSON; nullopt on timeout/close; throws if the frame is not JSON.
  std::optional<boost::json::value> read_json(std::chrono::milliseconds timeout = 5s);
  // Skips frames until one with "type" == type arrives (skipped frames are lost).
  std::optional<boost::json::value> read_type(std::string_view type, std::chrono::milliseconds timeout = 5s);

  // Runs until the server ended the stream (frames received meanwhile stay readable).
  bool wait_closed(std::chrono::milliseconds timeout = 5s);
  bool is_open() const { return connected_ && !read_error_; }
  // Code of the server's close frame; nullopt while open or when TCP ended without one.
  // (A close frame with no status reads as nullopt too: code 1005 is never sent.)
  std::optional<std::uint16_t> close_code() const;
  std::string close_reason() const;
  std::string read_error() const;  // why the stream ended ("" while open)

  // Answers pings and queues frames for up to `duration` without consuming anything.
  void pump(std::chrono::milliseconds duration);

  // Close handshake with `code`; waits (bounded) for the server's close frame.
  bool close(std::uint16_t code = 1000, std::chrono::milliseconds timeout = 5s);
  void drop();   // close TCP without a close frame (FIN)
  void reset();  // SO_LINGER 0 then close: the server sees a RST

 private:
  using clock_type = std::chrono::steady_clock;
  bool run_until(const std::function<bool()>& done, clock_type::time_point deadline);
  bool write(std::string_view data, bool text, std::chrono::milliseconds timeout);
  void start_read();

  ws_options options_;
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
  boost::beast::flat_buffer buffer_;
  response_type response_;
  std::deque<std::string> inbox_;
  std::optional<boost::beast::error_code> read_error_;
  std::string last_error_;
  bool connected_ = false;
  bool read_pending_ = false;
};

class raw_ws_client {
 public:
  explicit raw_ws_client(int rcvbuf = 0);
  ~raw_ws_client();
  raw_ws_client(const raw_ws_client&) = delete;
  raw_ws_client& operator=(const raw_ws_client&) = delete;

  // TCP connect only.
  bool connect_tcp(std::uint16_t port);
  bool send_raw(std::string_view bytes);
  // Sends the upgrade request and reads exactly the response head (not a byte more).
  // Returns the HTTP status (101 on success) or 0 on failure/timeout.
  unsigned connect(std::uint16_t port, const std::string& path, std::chrono::milliseconds timeout = 5s);
  // Drains whatever is readable without blocking; true once the peer closed or reset.
  // (Reading defeats "never reads", so call it only when checking the end state.)
  bool peer_closed();
  // Reads until the peer closes (or `timeout`): every byte the server sent.
  std::string read_to_end(std::chrono::milliseconds timeout = 10s);
  void close();
  int fd() const { return fd_; }

 private:
  int rcvbuf_ = 0;
  int fd_ = -1;
};

}  // namespace roomcast::itest
