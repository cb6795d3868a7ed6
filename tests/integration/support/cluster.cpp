#include "support/cluster.hpp"

#include <functional>

#include <boost/json/serialize.hpp>

#include <cctype>
#include <sstream>
#include <stdexcept>

namespace roomcast::itest {

namespace json = boost::json;
using namespace std::chrono_literals;

std::vector<std::string> cluster_args(const std::string& node_id, const cluster_options& o) {
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

cluster_node start_cluster_node(const std::string& node_id, const cluster_options& o) {
  return {node_id, start_node(cluster_args(node_id, o))};
}

http_response readyz(std::uint16_t port) { return http_get(port, "/readyz"); }

http_response wait_ready(std::uint16_t port, std::chrono::milliseconds timeout) {
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

double metric_value(std::uint16_t port, const std::string& name) {
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

std::int64_t stat_int(std::uint16_t port, const std::string& key) { return json_int(get_stats(port), key); }

bool wait_room_binds(std::uint16_t port, double n, std::chrono::milliseconds timeout) {
  return poll_until([&] { return metric_value(port, "roomcast_bus_room_binds_total") >= n; }, timeout, 20ms);
}

std::vector<json::value> collect(member& m, std::chrono::milliseconds window) {
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

namespace {
// Reads frames until `wanted` holds for one (returned); the others go to `skipped` when given.
std::optional<json::value> read_until(member& m, const std::function<bool(const json::value&)>& wanted,
                                      std::vector<json::value>* skipped, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto f = m->read_json(left);
    if (!f) return std::nullopt;
    if (wanted(*f)) return f;
    if (skipped) skipped->push_back(std::move(*f));
  }
}
}  // namespace

std::optional<json::value> read_message_id(member& m, const std::string& id, std::vector<json::value>* skipped,
                                           std::chrono::milliseconds timeout) {
  return read_until(
      m, [&](const json::value& f) { return json_string(f, "type") == "message" && json_string(f, "id") == id; },
      skipped, timeout);
}

std::optional<json::value> read_type_keeping(member& m, const std::string& type, std::vector<json::value>* skipped,
                                             std::chrono::milliseconds timeout) {
  return read_until(
      m, [&](const json::value& f) { return json_string(f, "type") == type; }, skipped, timeout);
}

std::string dump(const std::vector<json::value>& frames) {
  std::string s = "[";
  for (std::size_t i = 0; i < frames.size(); ++i) s += (i ? "," : "") + json::serialize(frames[i]);
  return s + "]";
}

std::set<std::string> string_set(const json::value& v, const std::string& array_path, const std::string& member_key) {
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

json::value poll_json(std::uint16_t port, const std::string& target,
                      const std::function<bool(const json::value&)>& pred, std::chrono::milliseconds timeout) {
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

std::string wait_for_output(const node_process& p, const std::function<bool(const std::string&)>& pred,
                            std::chrono::milliseconds timeout) {
  std::string found;
  poll_until(
      [&] {
        std::istringstream in(p.output());
        std::string line;
        while (std::getline(in, line))
          if (pred(line)) {
            found = line;
            return true;
          }
        return false;
      },
      timeout, 100ms);
  return found;
}

bool contains_ci(std::string haystack, std::string needle) {
  for (auto& c : haystack) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& c : needle) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return haystack.find(needle) != std::string::npos;
}

}  // namespace roomcast::itest
