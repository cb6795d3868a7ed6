#pragma once
// HTTP/1.1 client for the tests: one-shot requests (a new connection each, Connection: close) and
// http_connection, one kept-alive connection for a caller that sends requests one after another.
// Beast stays in http_client.cpp.

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace roomcast::itest {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_response {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  // Empty string when the header is absent (name is case-insensitive).
  std::string header(std::string name) const;
  bool has_header(std::string name) const;
  boost::json::value json() const;  // throws when the body is not JSON
};

struct http_request {
  std::string method = "GET";
  std::string target = "/";
  std::string body;
  header_list headers;  // e.g. {"X-API-Key", "k"}, {"Content-Type", "application/json"}
};

// Throws std::runtime_error on transport errors or when `timeout` elapses.
http_response http_send(std::uint16_t port, const http_request& req,
                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

http_response http_get(std::uint16_t port, const std::string& target, header_list headers = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(5));

// POST with Content-Type: application/json and, if non-empty, X-API-Key.
http_response http_post_json(std::uint16_t port, const std::string& target, const std::string& body,
                             const std::string& api_key = {},
                             std::chrono::milliseconds timeout = std::chrono::seconds(5));

// One kept-alive HTTP/1.1 connection to 127.0.0.1:<port> (a node or nginx). Reconnects when the
// server closed it. Not thread-safe: one caller at a time.
class http_connection {
 public:
  explicit http_connection(std::uint16_t port);
  ~http_connection();
  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  void set_port(std::uint16_t port);  // closes the connection when the port changes
  std::uint16_t port() const;

  // Throws std::runtime_error on a transport error or timeout (the connection is closed then). A
  // request on a reused connection that the server had closed in the meantime (EOF/reset before
  // any answer) is sent once more on a fresh one.
  http_response send(const http_request& req, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  http_response post_json(const std::string& target, const std::string& body,
                          std::chrono::milliseconds timeout = std::chrono::seconds(5));
  void close();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace roomcast::itest
