#pragma once
// Helpers for the cluster integration tests (header-only; needs ROOMCAST_BIN and
// ROOMCAST_SOURCE_DIR from CMake):
//   - the shared RabbitMQ broker: ROOMCAST_TEST_AMQP_URI from scripts/run-tests.sh, or one started
//     by cluster_environment when the variable is unset (ctest run by hand);
//   - redis-server and nginx per test through scripts/redis.sh and scripts/nginx.sh (RAII);
//   - cluster nodes (node_process with the rabbitmq/redis flags and a per-test prefix);
//   - /metrics and /api/stats readers and frame collectors.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <vector>

#include "support/itest.hpp"

#ifndef ROOMCAST_SOURCE_DIR
#error "ROOMCAST_SOURCE_DIR must point at the source tree"
#endif

namespace roomcast::itest::cluster {

namespace json = boost::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- shell helpers

struct command_result {
  int status = -1;     // exit code
  std::string output;  // stdout + stderr
};

// Runs `command` through /bin/sh, capturing stdout and stderr.
inline command_result run_command(const std::string& command) {
  command_result r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("popen failed for: " + command);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = (st >= 0 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  return r;
}

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  auto nl = s.rfind('\n');  // the scripts print their answer on the last line
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v && *v) ? std::string(v) : fallback;
}

inline std::string scripts_dir() { return env_or("ROOMCAST_TEST_SCRIPTS", ROOMCAST_SOURCE_DIR "/scripts"); }

inline std::string random_token(std::size_t len = 10) {
  static std::mt19937_64 rng{std::random_device{}() ^ (static_cast<std::uint64_t>(::getpid()) << 20)};
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s;
  for (std::size_t i = 0; i < len; ++i) s += alphabet[rng() % (sizeof alphabet - 1)];
  return s;
}

// Unique per test: exchange and queue names are <prefix>.rooms, <prefix>.node.<id>...
inline std::string unique_prefix() { return "rctest" + random_token(); }

// A fresh directory under ROOMCAST_TEST_TMP (or /tmp).
inline std::string make_temp_dir(const std::string& what) {
  std::string base = env_or("ROOMCAST_TEST_TMP", "/tmp");
  std::string tmpl = base + "/cluster-" + what + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed under " + base);
  return buf.data();
}

// A TCP port on 127.0.0.1 nothing listens on (scripts/free-port.sh).
inline std::uint16_t script_free_port(bool pair = false) {
  auto r = run_command(shell_quote(scripts_dir() + "/free-port.sh") + (pair ? " --pair" : ""));
  if (r.status != 0) throw std::runtime_error("free-port.sh failed: " + r.output);
  return static_cast<std::uint16_t>(std::stoi(trim(r.output)));
}

// ---------------------------------------------------------------- shared broker

// The broker URI of this run: ROOMCAST_TEST_AMQP_URI, or the one cluster_environment started.
inline std::string& amqp_uri_storage() {
  static std::string uri;
  return uri;
}
inline std::string amqp_uri() {
  if (const char* v = std::getenv("ROOMCAST_TEST_AMQP_URI"); v && *v) return v;
  return amqp_uri_storage();
}

// Starts a private rabbitmq-server for the whole executable when the run did not provide one.
class cluster_environment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* v = std::getenv("ROOMCAST_TEST_AMQP_URI"); v && *v) return;
    dir_ = make_temp_dir("rabbitmq");
    auto port = script_free_port(true);
    auto r = run_command(shell_quote(scripts_dir() + "/rabbitmq.sh") + " start " + shell_quote(dir_) + " " +
                         std::to_string(port));
    if (r.status != 0) {
      started_ = true;  // stop whatever half-started
      FAIL() << "rabbitmq.sh start failed (exit " << r.status << "):\n" << r.output;
    }
    started_ = true;
    amqp_uri_storage() = trim(r.output);
  }
  void TearDown() override {
    if (!started_) return;
    run_command(shell_quote(scripts_dir() + "/rabbitmq.sh") + " stop " + shell_quote(dir_));
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  std::string dir_;
  bool started_ = false;
};

// ---------------------------------------------------------------- redis / nginx

class redis_server {
 public:
  redis_server() : dir_(make_temp_dir("redis")) {
    std::string why;
    for (int attempt = 0; attempt < 3; ++attempt) {  // the port can be taken between pick and bind
      port_ = script_free_port();
      auto r = run_command(shell_quote(scripts_dir() + "/redis.sh") + " start " + shell_quote(dir_) + " " +
                           std::to_string(port_));
      if (r.status == 0) return;
      why = r.output;
      stop();
    }
    throw std::runtime_error("redis.sh start failed: " + why);
  }
  ~redis_server() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void stop() { run_command(shell_quote(scripts_dir() + "/redis.sh") + " stop " + shell_quote(dir_)); }
  std::string dir_;
  std::uint16_t port_ = 0;
};

class nginx_server {
 public:
  explicit nginx_server(const std::vector<std::uint16_t>& node_ports) : dir_(make_temp_dir("nginx")) {
    std::string ports;
    for (auto p : node_ports) ports += " " + std::to_string(p);
    std::string why;
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = script_free_port();
      auto r = run_command(shell_quote(scripts_dir() + "/nginx.sh") + " start " + shell_quote(dir_) + " " +
                           std::to_string(port_) + ports);
      if (r.status == 0) return;
      why = r.output;
      stop();
    }
    throw std::runtime_error("nginx.sh start failed: " + why);
  }
  ~nginx_server() {
    stop();
    if (::testing::Test::HasFailure()) {
      auto log = run_command("tail -n 40 " + shell_quote(dir_ + "/error.log"));
      std::cerr << "--- nginx error.log ---\n" << log.output << "--- end of nginx error.log ---\n";
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  nginx_server(const nginx_server&) = delete;
  nginx_server& operator=(const nginx_server&) = delete;

  std::uint16_t port() const { return port_; }

 private:
  void stop() { run_command(shell_quote(scripts_dir() + "/nginx.sh") + " stop " + shell_quote(dir_)); }
  std::string dir_;
  std::uint16_t port_ = 0;
};

// ---------------------------------------------------------------- nodes

struct cluster_options {
  std::string prefix;              // --rabbitmq-prefix
  std::string amqp;                // --rabbitmq-uris
  std::string redis;               // --redis-address; empty = --registry local
  std::vector<std::string> extra;  // more flags
};

// Flags of one cluster node (node_process adds --listen-address and --port).
inline std::vector<std::string> cluster_args(const std::string& node_id, const cluster_options& o) {
  std::vector<std::string> a{"--node-id", node_id, "--threads", "2", "--bus", "rabbitmq", "--rabbitmq-uris", o.amqp,
                             "--rabbitmq-prefix", o.prefix, "--unbind-grace", "200ms",
                             // the shared broker keeps no queue of a killed test node for long
                             "--rabbitmq-queue-expires", "60s"};
  if (o.redis.empty()) {
    a.insert(a.end(), {"--registry", "local"});
  } else {
    a.insert(a.end(), {"--registry", "redis", "--redis-address", o.redis, "--registry-heartbeat", "500ms",
                       "--registry-node-ttl", "2s"});
  }
  a.insert(a.end(), o.extra.begin(), o.extra.end());
  return a;
}

struct cluster_node {
  std::string id;
  std::unique_ptr<node_process> proc;
  std::uint16_t port() const { return proc->port(); }
};

inline cluster_node start_cluster_node(const std::string& node_id, const cluster_options& o) {
  return {node_id, start_node(cluster_args(node_id, o))};
}

// ---------------------------------------------------------------- observations

inline http_response readyz(std::uint16_t port) { return http_get(port, "/readyz"); }

// Polls /readyz until it answers 200; returns the last answer on timeout (status 0 if none).
inline http_response wait_ready(std::uint16_t port, std::chrono::milliseconds timeout = 20s) {
  http_response last;
  poll_until(
      [&] {
        try {
          last = readyz(port);
        } catch (const std::exception&) {
          return false;
        }
        return last.status == 200;
      },
      timeout, 50ms);
  return last;
}

// Value of an un-labelled sample in /metrics; -1 when absent.
inline double metric_value(std::uint16_t port, const std::string& name) {
  auto res = http_get(port, "/metrics");
  if (res.status != 200) throw std::runtime_error("GET /metrics answered " + std::to_string(res.status));
  std::istringstream in(res.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, name.size(), name) == 0 && line.size() > name.size() && line[name.size()] == ' ')
      return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

inline std::int64_t stat_int(std::uint16_t port, const std::string& key) { return json_int(get_stats(port), key); }

// Waits until the node's queue has at least `n` room bindings (binds are counted after bind-ok).
inline bool wait_room_binds(std::uint16_t port, double n, std::chrono::milliseconds timeout = 10s) {
  return poll_until([&] { return metric_value(port, "roomcast_bus_room_binds_total") >= n; }, timeout, 20ms);
}

// All frames that arrive on `m` within `window` (returns early when the stream ends).
inline std::vector<json::value> collect(member& m, std::chrono::milliseconds window) {
  std::vector<json::value> out;
  auto deadline = std::chrono::steady_clock::now() + window;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto f = m->read_json(left);
    if (!f) break;
    out.push_back(std::move(*f));
  }
  return out;
}

// Reads frames until a `message` with `id` arrives (other frames are returned in `skipped`).
inline std::optional<json::value> read_message_id(member& m, const std::string& id,
                                                  std::vector<json::value>* skipped = nullptr,
                                                  std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto f = m->read_json(left);
    if (!f) return std::nullopt;
    if (json_string(*f, "type") == "message" && json_string(*f, "id") == id) return f;
    if (skipped) skipped->push_back(std::move(*f));
  }
}

inline std::string dump(const std::vector<json::value>& frames) {
  std::string s = "[";
  for (std::size_t i = 0; i < frames.size(); ++i) s += (i ? "," : "") + json::serialize(frames[i]);
  return s + "]";
}

inline std::set<std::string> string_set(const json::value& v, const std::string& array_path,
                                        const std::string& member_key = {}) {
  std::set<std::string> out;
  const auto* arr = json_find(v, array_path);
  if (!arr || !arr->is_array()) return out;
  for (const auto& e : arr->get_array()) {
    if (member_key.empty()) {
      if (e.is_string()) out.insert(std::string(e.get_string()));
    } else {
      out.insert(json_string(e, member_key));
    }
  }
  return out;
}

// Polls GET target until `pred` holds on its JSON; returns the last JSON seen (null if none).
inline json::value poll_json(std::uint16_t port, const std::string& target,
                             const std::function<bool(const json::value&)>& pred,
                             std::chrono::milliseconds timeout = 5s) {
  json::value last;
  poll_until(
      [&] {
        try {
          auto res = http_get(port, target);
          if (res.status != 200) return false;
          last = res.json();
        } catch (const std::exception&) {
          return false;
        }
        return pred(last);
      },
      timeout, 50ms);
  return last;
}

}  // namespace roomcast::itest::cluster
