#pragma once
// What most integration tests use: starting nodes, joining rooms, polling, the HTTP API. The
// clients and launchers are in the headers included below (and in servers.hpp, cluster.hpp,
// amqp_client.hpp); all of it is compiled once into roomcast_itest_support.

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/http_client.hpp"
#include "support/json_util.hpp"
#include "support/node_process.hpp"
#include "support/shell.hpp"
#include "support/ws_client.hpp"

namespace roomcast::itest {

namespace json = boost::json;

std::string roomcast_bin();  // the roomcast executable this build made

std::unique_ptr<node_process> start_node(std::vector<std::string> args = {});

// Path for the default route /demo/websocket/{room}/{role}/{user}/{token}/{platform}.
std::string ws_path(const std::string& room, const std::string& role, const std::string& user,
                    const std::string& token = "tok", const std::string& platform = "pc");

// HTTP status of an upgrade attempt (101 on success, 0 on transport failure).
unsigned upgrade_status(std::uint16_t port, const std::string& path);

// A connected client whose welcome frame has been read.
struct member {
  std::unique_ptr<ws_client> ws;
  boost::json::value welcome;
  std::string session() const { return json_string(welcome, "session"); }
  ws_client* operator->() const { return ws.get(); }
};

// Connects to `path` and reads the welcome; throws (failing the test) when either step fails.
member join_path(std::uint16_t port, const std::string& path, ws_options options = {});

// join_path() on ws_path(room, role, user, token, platform).
member join(std::uint16_t port, const std::string& room, const std::string& role, const std::string& user,
            const std::string& platform = "pc", const std::string& token = "tok", ws_options options = {});

// Polls `done` every `interval` until it holds or `timeout` passes; returns the final verdict.
bool poll_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(20));

// GET target; throws unless 200.
boost::json::value get_json(std::uint16_t port, const std::string& target, const std::string& api_key = {});

boost::json::value get_stats(std::uint16_t port, const std::string& api_key = {});

// POST /api/publish; returns the message id, throws unless 200 {"ok":true}.
std::string api_publish(std::uint16_t port, const std::string& body, const std::string& api_key = {});

}  // namespace roomcast::itest
