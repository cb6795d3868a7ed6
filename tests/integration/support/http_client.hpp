#pragma once
// One-shot HTTP/1.1 requests against a local node (new connection per request).

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <map>
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

}  // namespace roomcast::itest
