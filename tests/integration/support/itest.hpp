#pragma once
// Helpers shared by the integration test executables (header-only: it needs the
// ROOMCAST_BIN definition that each test target gets from CMake).

#include <boost/json/value.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/json_util.hpp"
#include "support/node_process.hpp"
#include "support/ws_client.hpp"

#ifndef ROOMCAST_BIN
#error "ROOMCAST_BIN must point at the roomcast executable"
#endif

namespace roomcast::itest {

inline std::string roomcast_bin() { return ROOMCAST_BIN; }

inline std::unique_ptr<node_process> start_node(std::vector<std::string> args = {}) {
  return std::make_unique<node_process>(roomcast_bin(), std::move(args));
}

// Path for the default route /demo/websocket/{room}/{role}/{user}/{token}/{platform}.
inline std::string ws_path(const std::string& room, const std::string& role, const std::string& user,
                           const std::string& token = "tok", const std::string& platform = "pc") {
  return "/demo/websocket/" + room + "/" + role + "/" + user + "/" + token + "/" + platform;
}

// HTTP status of an upgrade attempt (101 on success, 0 on transport failure).
inline unsigned upgrade_status(std::uint16_t port, const std::string& path) {
  ws_client c;
  return c.connect(port, path);
}

// A connected client whose welcome frame has been read.
struct member {
  std::unique_ptr<ws_client> ws;
  boost::json::value welcome;
  std::string session() const { return json_string(welcome, "session"); }
  ws_client* operator->() const { return ws.get(); }
};

// Connects and reads the welcome; throws (failing the test) when either step fails.
inline member join(std::uint16_t port, const std::string& room, const std::string& role, const std::string& user,
                   const std::string& platform = "pc", const std::string& token = "tok", ws_options options = {}) {
  member m{std::make_unique<ws_client>(options), {}};
  auto path = ws_path(room, role, user, token, platform);
  auto status = m.ws->connect(port, path);
  if (status != 101) {
    throw std::runtime_error("upgrade of " + path + " answered " + std::to_string(status) + " (" + m.ws->last_error() +
                             ")");
  }
  auto welcome = m.ws->read_json();
  if (!welcome || json_string(*welcome, "type") != "welcome") {
    throw std::runtime_error("no welcome frame on " + path + " (stream: " + m.ws->read_error() + ")");
  }
  m.welcome = std::move(*welcome);
  return m;
}

// Polls `done` every `interval` until it holds or `timeout` passes; returns the final verdict.
inline bool poll_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds interval = std::chrono::milliseconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
  return true;
}

inline boost::json::value get_json(std::uint16_t port, const std::string& target, const std::string& api_key = {}) {
  header_list headers;
  if (!api_key.empty()) headers.emplace_back("X-API-Key", api_key);
  auto res = http_get(port, target, headers);
  if (res.status != 200) {
    throw std::runtime_error("GET " + target + " answered " + std::to_string(res.status) + ": " + res.body);
  }
  return res.json();
}

inline boost::json::value get_stats(std::uint16_t port, const std::string& api_key = {}) {
  return get_json(port, "/api/stats", api_key);
}

// POST /api/publish; returns the message id, throws unless 200 {"ok":true}.
inline std::string api_publish(std::uint16_t port, const std::string& body, const std::string& api_key = {}) {
  auto res = http_post_json(port, "/api/publish", body, api_key);
  if (res.status != 200) {
    throw std::runtime_error("POST /api/publish answered " + std::to_string(res.status) + ": " + res.body);
  }
  auto v = res.json();
  if (!json_bool(v, "ok")) throw std::runtime_error("POST /api/publish not ok: " + res.body);
  return json_string(v, "id");
}

}  // namespace roomcast::itest
