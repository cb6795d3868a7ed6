#pragma once
// WebSocket clients for the tests (Beast stays in ws_client.cpp).
//
// ws_client: the tests' WebSocket client. A read is always kept pending (so pings get answered and
// frames queue up in order). Two ways to drive it:
//   - on its own io_context (ws_client(options)): every call runs it only until its result is in
//     or its deadline passes (read_text() until a frame is queued), so a timed-out read leaves the
//     stream intact;
//   - on a ws_loop shared with many others (ws_client(loop, options)): connect_async() returns at
//     once, the loop's one thread runs every client's handshake and reads, and the frames queue up
//     for take_frames(). Only the thread that runs the loop may touch such a client.
//
// raw_ws_client: performs the HTTP upgrade by hand, then never reads or writes: a peer that
// neither drains its socket nor answers pings (not a WebSocket client: a misbehaving peer).

#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::itest {

using namespace std::chrono_literals;

struct ws_options {
  int rcvbuf = 0;  // SO_RCVBUF set before connecting; 0 keeps the kernel default
  std::chrono::milliseconds handshake_timeout = 5s;
  std::vector<std::pair<std::string, std::string>> headers;  // extra upgrade request headers
  bool deflate = false;  // offer permessage-deflate (Beast's own RFC 7692 client) and use it if agreed
};

// One io_context for many ws_clients, run by one thread.
class ws_loop {
 public:
  ws_loop();
  ~ws_loop();
  ws_loop(const ws_loop&) = delete;
  ws_loop& operator=(const ws_loop&) = delete;

  // Waits up to `timeout` for a handler to be ready, then runs every ready one; returns how many ran.
  std::size_t run_for(std::chrono::milliseconds timeout);

  struct impl;

 private:
  friend class ws_client;
  std::unique_ptr<impl> impl_;
};

class ws_client {
 public:
  enum class phase { idle, connecting, open, closed };

  explicit ws_client(ws_options options = {});
  explicit ws_client(ws_loop& loop, ws_options options = {});
  ~ws_client();
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  // TCP connect + upgrade to ws://127.0.0.1:<port><path> (own io_context only).
  // Returns 101 on success, the HTTP status when the upgrade was refused
  // (see handshake_header() for headers such as Retry-After), 0 on transport failure.
  unsigned connect(std::uint16_t port, const std::string& path);
  // Loop mode: starts the connect + upgrade and returns; state() follows it. False when the socket
  // could not even be set up (why() says why).
  bool connect_async(std::uint16_t port, const std::string& path);

  // A header of the upgrade answer ("" when absent; the name is case-insensitive).
  std::string handshake_header(std::string_view name) const;
  const std::string& last_error() const;

  bool send_text(std::string_view text, std::chrono::milliseconds timeout = 5s);
  bool send_binary(std::string_view data, std::chrono::milliseconds timeout = 5s);

  // Next frame (text or binary payload), or nullopt on timeout / once the stream ended.
  std::optional<std::string> read_text(std::chrono::milliseconds timeout = 5s);
  // Next frame parsed as JSON; nullopt on timeout/close; throws if the frame is not JSON.
  std::optional<boost::json::value> read_json(std::chrono::milliseconds timeout = 5s);
  // Skips frames until one with "type" == type arrives (skipped frames are lost).
  std::optional<boost::json::value> read_type(std::string_view type, std::chrono::milliseconds timeout = 5s);
  // Waits up to `wait` for a frame, then returns it and every other frame already received.
  std::vector<std::string> read_available(std::chrono::milliseconds wait);
  // Moves the queued frames to `out` without running anything (loop mode); returns how many.
  std::size_t take_frames(std::vector<std::string>& out);

  // Runs until the server ended the stream (frames received meanwhile stay readable).
  bool wait_closed(std::chrono::milliseconds timeout = 5s);
  bool is_open() const;
  phase state() const;
  bool closed() const { return state() == phase::closed; }
  // Code of the server's close frame; nullopt while open or when TCP ended without one.
  // (A close frame with no status reads as nullopt too: code 1005 is never sent.)
  std::optional<std::uint16_t> close_code() const;
  std::string close_reason() const;
  std::string read_error() const;  // why the stream ended ("" while open)
  // Why the connection (or the attempt) ended: the failed step, the close frame or the read error.
  std::string why() const;

  // Loop mode: `fn` runs on the loop's thread after each handler that changed something (the
  // upgrade done or failed, a frame queued, the stream ended). Not after drop()/reset() calls.
  void on_activity(std::function<void()> fn);

  // Answers pings and queues frames for up to `duration` without consuming anything.
  void pump(std::chrono::milliseconds duration);

  // Close handshake with `code`; waits (bounded) for the server's close frame.
  bool close(std::uint16_t code = 1000, std::chrono::milliseconds timeout = 5s);
  void drop();   // close TCP without a close frame (FIN)
  void reset();  // SO_LINGER 0 then close: the server sees a RST

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
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
  // extra_headers: more request header lines, each ending in "\r\n".
  unsigned connect(std::uint16_t port, const std::string& path, std::chrono::milliseconds timeout = 5s,
                   const std::string& extra_headers = {});
  const std::string& response_head() const { return head_; }  // of the last connect()
  // Reads one whole server frame (server frames are not masked): its first byte (FIN, RSV, opcode)
  // and payload. False on timeout or when the peer closed first.
  bool read_frame(std::uint8_t& first_byte, std::string& payload, std::chrono::milliseconds timeout = 5s);
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
  std::string head_;
  std::string pending_;  // bytes read past the last whole frame
};

}  // namespace roomcast::itest
