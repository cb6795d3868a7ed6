#include "support/itest.hpp"

#include <stdexcept>
#include <thread>

#ifndef ROOMCAST_BIN
#error "ROOMCAST_BIN must point at the roomcast executable"
#endif

namespace roomcast::itest {

std::string roomcast_bin() { return ROOMCAST_BIN; }

std::unique_ptr<node_process> start_node(std::vector<std::string> args) {
  return std::make_unique<node_process>(roomcast_bin(), std::move(args));
}

std::string ws_path(const std::string& room, const std::string& role, const std::string& user, const std::string& token,
                    const std::string& platform) {
  return "/demo/websocket/" + room + "/" + role + "/" + user + "/" + token + "/" + platform;
}

unsigned upgrade_status(std::uint16_t port, const std::string& path) {
  ws_client c;
  return c.connect(port, path);
}

member join_path(std::uint16_t port, const std::string& path, ws_options options) {
  member m{std::make_unique<ws_client>(options), {}};
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

member join(std::uint16_t port, const std::string& room, const std::string& role, const std::string& user,
            const std::string& platform, const std::string& token, ws_options options) {
  return join_path(port, ws_path(room, role, user, token, platform), options);
}

bool poll_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
  return true;
}

boost::json::value get_json(std::uint16_t port, const std::string& target, const std::string& api_key) {
  header_list headers;
  if (!api_key.empty()) headers.emplace_back("X-API-Key", api_key);
  auto res = http_get(port, target, headers);
  if (res.status != 200) {
    throw std::runtime_error("GET " + target + " answered " + std::to_string(res.status) + ": " + res.body);
  }
  return res.json();
}

boost::json::value get_stats(std::uint16_t port, const std::string& api_key) {
  return get_json(port, "/api/stats", api_key);
}

std::string api_publish(std::uint16_t port, const std::string& body, const std::string& api_key) {
  auto res = http_post_json(port, "/api/publish", body, api_key);
  if (res.status != 200) {
    throw std::runtime_error("POST /api/publish answered " + std::to_string(res.status) + ": " + res.body);
  }
  auto v = res.json();
  if (!json_bool(v, "ok")) throw std::runtime_error("POST /api/publish not ok: " + res.body);
  return json_string(v, "id");
}

}  // namespace roomcast::itest
