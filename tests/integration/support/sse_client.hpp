#pragma once
// The tests' Server-Sent Events client: GET of a path with Accept: text/event-stream (and a
// Last-Event-ID, as an EventSource sends when it reconnects), then events one at a time, each read
// with a deadline. Plain POSIX sockets: it reads only when asked, so a test can also leave it
// unread (a slow consumer, with a small receive buffer).

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace roomcast::itest {

struct sse_event {
  std::string id;                   // empty: the event had no id field
  std::string event;                // empty: "message"
  std::string data;                 // the data lines, joined with "\n"
  boost::json::value json() const;  // data as JSON; throws when it is not
};

class sse_client {
 public:
  struct options {
    int rcvbuf = 0;                                            // SO_RCVBUF before connecting; 0: the kernel's
    std::vector<std::pair<std::string, std::string>> headers;  // extra request headers
  };
  explicit sse_client(options o);
  sse_client() : sse_client(options{}) {}
  ~sse_client();
  sse_client(const sse_client&) = delete;
  sse_client& operator=(const sse_client&) = delete;

  // Connects to 127.0.0.1:port and sends the request; reads the response head. Returns the status
  // (0 on a transport failure or timeout). A refusal's body is in body().
  unsigned connect(std::uint16_t port, const std::string& path, const std::string& last_event_id = {},
                   std::chrono::milliseconds timeout = std::chrono::seconds(5));
  std::string header(std::string name) const;  // of the response ("" when absent; case-insensitive)
  const std::string& body() const { return buf_; }

  // The next event (comments are counted, not returned); nullopt at the deadline or when the
  // stream ended (ended() then says so).
  std::optional<sse_event> next(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // The next event whose JSON type is `type`, skipping others (kept in skipped()).
  std::optional<sse_event> next_of_type(const std::string& type,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Waits for the server to end the stream, keeping the events that come before (in skipped()).
  bool wait_end(std::chrono::milliseconds timeout);

  std::size_t comments() const { return comments_; }
  bool ended() const { return ended_; }
  const std::string& last_event_id() const { return last_id_; }
  const std::vector<sse_event>& skipped() const { return skipped_; }
  void close();

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);  // reads more into buf_; false at EOF/deadline

  options options_;
  int fd_ = -1;
  std::string buf_;
  std::vector<std::pair<std::string, std::string>> response_headers_;
  std::size_t comments_ = 0;
  bool ended_ = false;
  std::string last_id_;
  std::vector<sse_event> skipped_;
};

}  // namespace roomcast::itest
