#include "config/config.hpp"

#include "history/history.hpp"
#include "presence/rules.hpp"
#include "protocol/route_template.hpp"

#include <CLI/CLI.hpp>
#include <toml++/toml.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

namespace roomcast::config {

namespace {

// One config key: how it is named in every source, documented, and parsed.
struct key_def {
  const char* name;        // TOML key; flag is --name-with-dashes; env is ROOMCAST_NAME
  const char* value_hint;  // shown in the example file as the default
  const char* help;
  std::function<bool(config&, std::string_view, std::string&)> set;
};

std::string flag_of(std::string_view name) {
  std::string f = "--";
  for (char c : name) f.push_back(c == '_' ? '-' : c);
  return f;
}

std::string env_of(std::string_view name) {
  std::string e = "ROOMCAST_";
  for (char c : name) e.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return e;
}

template <class T>
bool parse_uint(std::string_view s, T& out, T lo, T hi) {
  unsigned long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v < lo || v > hi) return false;
  out = static_cast<T>(v);
  return true;
}

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const auto c = s.find(',');
    std::string_view item = s.substr(0, c);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

auto string_key(std::string config::*m, bool allow_empty = true) {
  return [m, allow_empty](config& c, std::string_view v, std::string& err) {
    if (!allow_empty && v.empty()) {
      err = "must not be empty";
      return false;
    }
    c.*m = std::string(v);
    return true;
  };
}

auto size_key(std::size_t config::*m, std::size_t lo, std::size_t hi) {
  return [m, lo, hi](config& c, std::string_view v, std::string& err) {
    auto s = parse_size(v);
    if (!s || *s < lo || *s > hi) {
      err = "expected a size from " + std::to_string(lo) + " to " + std::to_string(hi) +
            " bytes (like 65536, 64KiB, 1MiB), got '" + std::string(v) + "'";
      return false;
    }
    c.*m = *s;
    return true;
  };
}

auto count_key(std::size_t config::*m, std::size_t lo, std::size_t hi) {
  return [m, lo, hi](config& c, std::string_view v, std::string& err) {
    if (!parse_uint<std::size_t>(v, c.*m, lo, hi)) {
      err = "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got '" +
            std::string(v) + "'";
      return false;
    }
    return true;
  };
}

auto duration_key(millis config::*m, millis lo, millis hi) {
  return [m, lo, hi](config& c, std::string_view v, std::string& err) {
    auto d = parse_duration(v);
    if (!d || *d < lo || *d > hi) {
      err = "expected a duration from " + std::to_string(lo.count()) + "ms to " + std::to_string(hi.count()) +
            "ms (like 500ms, 10s, 2m), got '" + std::string(v) + "'";
      return false;
    }
    c.*m = *d;
    return true;
  };
}

auto rate_key(double config::*m, double lo, double hi) {
  return [m, lo, hi](config& c, std::string_view v, std::string& err) {
    double d = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
    if (ec != std::errc{} || p != v.data() + v.size() || d < lo || d > hi) {
      err = "expected a number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got '" + std::string(v) +
            "'";
      return false;
    }
    c.*m = d;
    return true;
  };
}

auto bool_key(bool config::*m) {
  return [m](config& c, std::string_view v, std::string& err) {
    if (v == "true")
      c.*m = true;
    else if (v == "false")
      c.*m = false;
    else {
      err = "expected true or false, got '" + std::string(v) + "'";
      return false;
    }
    return true;
  };
}

const std::vector<key_def>& keys() {
  using namespace std::chrono_literals;
  static const std::vector<key_def> k = {
      {"listen_address", "\"0.0.0.0\"", "address to listen on (IPv4 or IPv6 literal)",
       string_key(&config::listen_address, false)},
      {"port", "8091", "TCP port for WebSocket, HTTP API and web pages",
       [](config& c, std::string_view v, std::string& err) {
         if (!parse_uint<std::uint16_t>(v, c.port, 1, 65535)) {
           err = "expected an integer from 1 to 65535, got '" + std::string(v) + "'";
           return false;
         }
         return true;
       }},
      {"node_id", "\"\"", "this node's id; empty = <hostname>:<port> (the seed's SERVER.HOST:port)",
       string_key(&config::node_id)},
      {"threads", "0", "shards (one thread, io_context and acceptor each); 0 = one per core",
       [](config& c, std::string_view v, std::string& err) {
         if (!parse_uint<unsigned>(v, c.threads, 0, 64)) {
           err = "expected an integer from 0 to 64, got '" + std::string(v) + "'";
           return false;
         }
         return true;
       }},
      {"route", "\"/demo/websocket/{room}/{role}/{user}/{token}/{platform}\"",
       "WebSocket URL template; placeholders {room} {user} (required) {role} {token} {platform}",
       string_key(&config::route, false)},
      {"web_root", "\"web\"", "folder served at / (demo pages); empty = no static files",
       string_key(&config::web_root)},
      {"auth", "\"none\"", "client token check: \"none\" (demo) or \"jwt\" (HS256, exp required, sub = user)",
       [](config& c, std::string_view v, std::string& err) {
         if (v == "none")
           c.auth = auth_mode::none;
         else if (v == "jwt")
           c.auth = auth_mode::jwt;
         else {
           err = "expected \"none\" or \"jwt\", got '" + std::string(v) + "'";
           return false;
         }
         return true;
       }},
      {"jwt_secret", "\"\"", "HS256 secret for auth = \"jwt\" (prefer ROOMCAST_JWT_SECRET in the environment)",
       string_key(&config::jwt_secret)},
      {"jwt_leeway", "\"30s\"", "clock skew tolerated on a token's exp and nbf",
       [](config& c, std::string_view v, std::string& err) {
         auto d = parse_duration(v);
         if (!d || *d > 1h) {
           err = "expected a duration up to 1h, got '" + std::string(v) + "'";
           return false;
         }
         c.jwt_leeway = std::chrono::duration_cast<std::chrono::seconds>(*d);
         return true;
       }},
      {"api_key", "\"\"", "key backends send as X-API-Key to /api/*; empty = no key (demo only)",
       string_key(&config::api_key)},
      {"allowed_origins", "[]", "Origin values allowed to open a WebSocket; empty = any",
       [](config& c, std::string_view v, std::string&) {
         c.allowed_origins = split_list(v);
         return true;
       }},
      {"publish_roles", "[\"THE\"]", "roles whose clients may publish to their rooms (THE = teacher)",
       [](config& c, std::string_view v, std::string&) {
         c.publish_roles = split_list(v);
         return true;
       }},
      {"client_join", "true", "clients may join and leave rooms besides the one in their URL",
       bool_key(&config::client_join)},
      {"max_rooms_per_session", "16", "rooms one session may be in at once",
       count_key(&config::max_rooms_per_session, 1, 1024)},
      {"max_connections", "100000", "WebSocket sessions per node; beyond it the upgrade gets 503 + Retry-After",
       count_key(&config::max_connections, 1, 10'000'000)},
      {"max_frame_bytes", "\"64KiB\"", "largest client message; bigger closes with 1009",
       size_key(&config::max_frame_bytes, 126, 16u << 20)},
      {"max_queue_bytes", "\"1MiB\"",
       "per-session outbound queue; a session over it is closed as a slow consumer (4008)",
       size_key(&config::max_queue_bytes, 1024, std::size_t{1} << 30)},
      {"send_buffer_bytes", "0",
       "SO_SNDBUF of each WebSocket socket; 0 = kernel autotuning (up to net.ipv4.tcp_wmem max, 4 MiB here). "
       "A smaller buffer bounds kernel memory per slow client and lets max_queue_bytes catch it sooner",
       [](config& c, std::string_view v, std::string& err) {
         if (v == "0") {
           c.send_buffer_bytes = 0;
           return true;
         }
         return size_key(&config::send_buffer_bytes, 4096, 64u << 20)(c, v, err);
       }},
      {"tls_cert", "\"\"",
       "PEM certificate chain: with tls_key, the port speaks TLS only (wss://, https://; TLS 1.2+, ALPN http/1.1); "
       "SIGHUP reloads both files without dropping a connection",
       string_key(&config::tls_cert)},
      {"tls_key", "\"\"", "PEM private key of tls_cert (prefer a file only the node's user can read)",
       string_key(&config::tls_key)},
      {"compression", "false",
       "permessage-deflate (RFC 7692) when the client offers it: each message over compression_min_bytes is "
       "compressed once per node and the same bytes go to every session that negotiated it; compressed client "
       "messages are inflated up to max_frame_bytes",
       bool_key(&config::compression)},
      {"compression_min_bytes", "512", "messages smaller than this are sent uncompressed (compression on)",
       size_key(&config::compression_min_bytes, 0, 16u << 20)},
      {"compression_level", "1", "zlib level 1-9 for compressed messages: 1 is fastest, 9 smallest",
       count_key(&config::compression_level, 1, 9)},
      {"max_body_bytes", "\"1MiB\"", "largest HTTP request body; bigger gets 413",
       size_key(&config::max_body_bytes, 256, 64u << 20)},
      {"handshake_timeout", "\"10s\"", "time for a client to send its whole HTTP request or upgrade",
       duration_key(&config::handshake_timeout, 100ms, 5min)},
      {"ping_interval", "\"25s\"", "idle time after which the server sends a WebSocket ping",
       duration_key(&config::ping_interval, 100ms, 1h)},
      {"pong_timeout", "\"10s\"", "time to wait for the pong (or the close reply) before dropping the connection",
       duration_key(&config::pong_timeout, 100ms, 10min)},
      {"publish_rate", "10", "client publishes per second per session (token bucket)",
       rate_key(&config::publish_rate, 0.01, 1e6)},
      {"publish_burst", "20", "bucket size for publish_rate", rate_key(&config::publish_burst, 1, 1e6)},
      {"api_publish_rate", "0", "POST /api/publish per second per shard; over it: 429; 0 = unlimited",
       rate_key(&config::api_publish_rate, 0, 1e9)},
      {"api_publish_batch_max", "1000",
       "most messages in one POST /api/publish whose body is a JSON array (each counts against api_publish_rate)",
       count_key(&config::api_publish_batch_max, 1, 100'000)},
      {"filter_max_users", "1000",
       "most user ids in the \"users\" filter of one room message (API or client publish); more gets 400 / bad_request",
       count_key(&config::filter_max_users, 1, 100'000)},
      {"drain_window", "\"10s\"", "on SIGTERM/SIGINT, sessions are closed with 1012 spread over this window",
       duration_key(&config::drain_window, 0ms, 10min)},
      {"retry_after", "\"5s\"", "base Retry-After of a 503 (a random 0-100% is added so clients spread out)",
       duration_key(&config::retry_after, 1000ms, 1h)},
      {"source_rate", "1000",
       "new TCP connections per second from one source address, per shard (a node with N shards lets one address "
       "open up to N times as many); over it the connection gets 429 + Retry-After and is closed before its request "
       "is read; 0 = unlimited. Generous on purpose: a school behind one NAT address joins hundreds at once",
       rate_key(&config::source_rate, 0, 1e9)},
      {"source_burst", "2000", "bucket size for source_rate: connections one address may open at once",
       rate_key(&config::source_burst, 1, 1e9)},
      {"source_table_size", "65536",
       "source addresses whose rate each shard tracks; an address is forgotten once its bucket is full again, and "
       "when the table is full the least recently seen one is",
       count_key(&config::source_table_size, 16, 10'000'000)},
      {"source_exempt", "[\"127.0.0.1\", \"::1\"]",
       "addresses source_rate does not limit (IP literals; IPv6: its /64): a load balancer or proxy in front, whose "
       "connections carry every client's (limit per client there). Loopback by default: a proxy or benchmark on the "
       "same host",
       [](config& c, std::string_view v, std::string& err) {
         c.source_exempt = split_list(v);
         for (const auto& a : c.source_exempt) {
           unsigned char buf[16];
           if (::inet_pton(AF_INET, a.c_str(), buf) != 1 && ::inet_pton(AF_INET6, a.c_str(), buf) != 1) {
             err = "expected IPv4 or IPv6 addresses, got '" + a + "'";
             return false;
           }
         }
         return true;
       }},
      {"max_pending_handshakes", "4096",
       "connections per shard still in HTTP (reading a request, keep-alive, answering; a WebSocket leaves at its "
       "upgrade); beyond it a new connection gets 503 + Retry-After and is closed before its request is read "
       "(slowloris)",
       count_key(&config::max_pending_handshakes, 1, 10'000'000)},
      {"json_max_depth", "32",
       "deepest nesting of JSON in client frames and API bodies (objects and arrays, data included); deeper: error "
       "frame / 400 bad_json. At most 32: the bus carries messages between nodes at that depth",
       count_key(&config::json_max_depth, 2, 32)},
      {"json_max_members", "10000",
       "most members of one JSON object or elements of one array in client frames and API bodies; more: error frame / "
       "400 bad_json. At least filter_max_users and api_publish_batch_max",
       count_key(&config::json_max_members, 16, 10'000'000)},
      {"join_rate", "10", "client join frames per second per session (token bucket); over it: error rate_limited",
       rate_key(&config::join_rate, 0.01, 1e6)},
      {"join_burst", "32",
       "bucket size for join_rate (a reconnecting client joins its rooms at once: keep it >= max_rooms_per_session)",
       rate_key(&config::join_burst, 1, 1e6)},
      {"bus", "\"local\"",
       "cluster bus: \"local\" (one node, in-process), \"rabbitmq\" (durable, acked) or \"redis\" (Pub/Sub on "
       "redis_address; holes are filled from history)",
       [](config& c, std::string_view v, std::string& err) {
         if (v == "local")
           c.bus = bus_kind::local;
         else if (v == "rabbitmq")
           c.bus = bus_kind::rabbitmq;
         else if (v == "redis")
           c.bus = bus_kind::redis;
         else {
           err = "expected \"local\", \"rabbitmq\" or \"redis\", got '" + std::string(v) + "'";
           return false;
         }
         return true;
       }},
      {"rabbitmq_uris", "[\"amqp://guest:guest@127.0.0.1:5672/\"]",
       "broker URIs (a RabbitMQ cluster), tried in turn on reconnect",
       [](config& c, std::string_view v, std::string& err) {
         c.rabbitmq_uris = split_list(v);
         for (const auto& u : c.rabbitmq_uris)
           if (!u.starts_with("amqp://")) {
             err = "expected amqp://user:pass@host:port/vhost URIs, got '" + u + "'";
             return false;
           }
         if (c.rabbitmq_uris.empty()) {
           err = "at least one URI";
           return false;
         }
         return true;
       }},
      {"rabbitmq_prefix", "\"roomcast\"",
       "prefix of the RabbitMQ bus's names: exchanges and queues (<prefix>.rooms, <prefix>.node.<id>)",
       string_key(&config::rabbitmq_prefix, false)},
      {"rabbitmq_queue_expires", "\"10m\"", "x-expires of this node's queue: a node gone for good leaves no queue",
       duration_key(&config::rabbitmq_queue_expires, 10s, 24h)},
      {"rabbitmq_prefetch", "256", "deliveries in flight to this node before it acks",
       count_key(&config::rabbitmq_prefetch, 1, 65535)},
      {"rabbitmq_persistent", "true", "publish persistent messages (they survive a broker restart)",
       bool_key(&config::rabbitmq_persistent)},
      {"publish_timeout", "\"5s\"",
       "wait this long for the broker's confirm; then POST /api/publish answers 202 queued",
       duration_key(&config::publish_timeout, 100ms, 5min)},
      {"outage_buffer_messages", "10000", "publishes kept in order while the broker is away; beyond it 503",
       count_key(&config::outage_buffer_messages, 0, 10'000'000)},
      {"outage_buffer_bytes", "\"64MiB\"", "bytes of the outage buffer",
       size_key(&config::outage_buffer_bytes, 0, std::size_t{16} << 30)},
      {"unbind_grace", "\"5s\"", "a room stays bound this long after its last local member leaves",
       duration_key(&config::unbind_grace, 0ms, 1h)},
      {"dedupe_window", "100000", "message ids remembered to drop redelivered messages",
       count_key(&config::dedupe_window, 1, 100'000'000)},
      {"history_store", "\"auto\"",
       "where room history and publish ids live: \"local\" (this node), \"redis\" (redis_address; cluster-wide) or "
       "\"auto\" (local with bus = local, redis with a cluster bus)",
       [](config& c, std::string_view v, std::string& err) {
         if (v == "auto")
           c.history_store = history_kind::automatic;
         else if (v == "local")
           c.history_store = history_kind::local;
         else if (v == "redis")
           c.history_store = history_kind::redis;
         else {
           err = "expected \"auto\", \"local\" or \"redis\", got '" + std::string(v) + "'";
           return false;
         }
         return true;
       }},
      {"history", "[\"* 300 10m\"]",
       "which rooms keep history: \"<room pattern> <messages> <ttl>\" rules, first match wins ('*' matches anything); "
       "0 messages = no history, no seq; ttl = kept this long after the room's last message",
       [](config& c, std::string_view v, std::string& err) {
         c.history = split_list(v);
         history::rules r;
         return r.parse(c.history, err);
       }},
      {"history_unavailable", "\"deliver\"",
       "when the history store is unreachable: \"deliver\" (room messages go out without seq, counted in "
       "roomcast_history_bypassed_total; reconnecting clients can't recover them) or \"reject\" (503, the backend "
       "retries)",
       [](config& c, std::string_view v, std::string& err) {
         if (v == "deliver")
           c.history_reject_when_down = false;
         else if (v == "reject")
           c.history_reject_when_down = true;
         else {
           err = "expected \"deliver\" or \"reject\", got '" + std::string(v) + "'";
           return false;
         }
         return true;
       }},
      {"redis_script_publish", "true",
       "with bus = \"redis\" and the redis history store: the history script PUBLISHes each room message itself, "
       "with its seq (one Redis round trip per publish; a room's channel carries its messages in seq order); "
       "false = the bus PUBLISHes after the script's reply",
       bool_key(&config::redis_script_publish)},
      {"redis_prefix", "\"roomcast\"",
       "prefix of the redis bus's channels (<prefix>:room:<room>, <prefix>:node:<id>, <prefix>:all); clusters sharing "
       "one Redis need different prefixes",
       string_key(&config::redis_prefix, false)},
      {"idempotency_window", "\"5m\"", "a publish whose id was accepted within this window is not delivered again",
       duration_key(&config::idempotency_window, 1s, 24h)},
      {"dev_kill", "false",
       "DEV ONLY, never in production: a client may send {\"type\":\"kill\"} and the node dies at once with SIGKILL "
       "(as kill -9: no drain); welcome says \"dev_kill\":true so the demo page shows its 'kill this node' button",
       bool_key(&config::dev_kill)},
      {"registry", "\"local\"", "who is online where: \"local\" (this node) or \"redis\" (cluster-wide)",
       [](config& c, std::string_view v, std::string& err) {
         if (v == "local")
           c.registry = registry_kind::local;
         else if (v == "redis")
           c.registry = registry_kind::redis;
         else {
           err = "expected \"local\" or \"redis\", got '" + std::string(v) + "'";
           return false;
         }
         return true;
       }},
      {"redis_address", "\"127.0.0.1:6379\"", "Redis host:port for the registry",
       [](config& c, std::string_view v, std::string& err) {
         const auto colon = v.rfind(':');
         std::uint16_t port = 0;
         if (colon == std::string_view::npos || colon == 0 ||
             !parse_uint<std::uint16_t>(v.substr(colon + 1), port, 1, 65535)) {
           err = "expected host:port, got '" + std::string(v) + "'";
           return false;
         }
         c.redis_address = std::string(v);
         c.redis_host = std::string(v.substr(0, colon));
         c.redis_port = port;
         return true;
       }},
      {"registry_heartbeat", "\"2s\"", "how often this node refreshes its liveness key and reaps dead nodes",
       duration_key(&config::registry_heartbeat, 100ms, 1min)},
      {"registry_node_ttl", "\"6s\"", "a node whose liveness key is this old is dead: the others remove its entries",
       duration_key(&config::registry_node_ttl, 300ms, 10min)},
      {"receipt_ttl", "\"10m\"",
       "how long a message published with receipts is tracked: users who have not confirmed it get it again when "
       "they reconnect until then",
       duration_key(&config::receipt_ttl, 1000ms, 24h)},
      {"receipt_max_messages", "10000",
       "messages with receipts tracked at once (their expected users, who confirmed, their frame); beyond it a publish "
       "with receipts gets 503",
       count_key(&config::receipt_max_messages, 1, 10'000'000)},
      {"receipt_max_users", "10000",
       "most expected users of one message with receipts; a publish to a bigger audience gets 400",
       count_key(&config::receipt_max_users, 1, 1'000'000)},
      {"presence_events", "[]",
       "rooms whose members get presence frames (who is online, cluster-wide): \"<room pattern> [interval]\" rules, "
       "first match wins; interval 100ms..10m (default 1s) or off; at most one frame per room per interval. [] = none",
       [](config& c, std::string_view v, std::string& err) {
         c.presence_events = split_list(v);
         presence::rules r;
         return r.parse(c.presence_events, err);
       }},
      {"presence_names", "[]",
       "roles whose members' names presence frames carry (e.g. [\"THE\"]: the teachers, with who joined and left); "
       "at most 100 names per role",
       [](config& c, std::string_view v, std::string&) {
         c.presence_names = split_list(v);
         return true;
       }},
      {"redis_timeout", "\"2s\"", "connect and command timeout for Redis",
       duration_key(&config::redis_timeout, 50ms, 1min)},
      {"log_level", "\"info\"", "trace, debug, info, warn, error or off",
       [](config& c, std::string_view v, std::string& err) {
         static const char* levels[] = {"trace", "debug", "info", "warn", "error", "off"};
         for (auto* l : levels)
           if (v == l) {
             c.log_level = std::string(v);
             return true;
           }
         err = "expected trace, debug, info, warn, error or off, got '" + std::string(v) + "'";
         return false;
       }},
  };
  return k;
}

const key_def* find_key(std::string_view name) {
  for (const auto& k : keys())
    if (name == k.name) return &k;
  return nullptr;
}

// TOML value -> the same text a flag or env var would carry.
std::optional<std::string> toml_to_text(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return std::to_string(i->get());
  if (auto f = n.as_floating_point()) {
    std::ostringstream o;
    o << f->get();
    return o.str();
  }
  if (auto b = n.as_boolean()) return b->get() ? "true" : "false";
  if (auto a = n.as_array()) {
    std::string out;
    for (const auto& e : *a) {
      auto s = e.as_string();
      if (!s) return std::nullopt;
      if (!out.empty()) out.push_back(',');
      out += s->get();
    }
    return out;
  }
  return std::nullopt;
}

struct source_value {
  std::string text;
  std::string origin;  // "file", "env ROOMCAST_X", "flag --x"
};

bool apply_toml(const toml::table& t, std::map<std::string, source_value>& values, std::string& msg) {
  for (const auto& [k, v] : t) {
    const std::string key(k.str());
    if (!find_key(key)) {
      msg = "config: unknown key '" + key + "'";
      return false;
    }
    auto text = toml_to_text(v);
    if (!text) {
      msg = "config: key '" + key + "': unsupported value type";
      return false;
    }
    values[key] = {*text, "config file"};
  }
  return true;
}

std::string default_node_id(const config& c) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == 0) std::snprintf(host, sizeof host, "localhost");
  return std::string(host) + ":" + std::to_string(c.port);
}

parse_result finish(std::map<std::string, source_value>& values) {
  parse_result r;
  config c;
  for (auto& [name, v] : values) {
    std::string err;
    if (!find_key(name)->set(c, v.text, err)) {
      r.exit_code = 2;
      r.message = "config: key '";
      r.message += name;
      r.message += "' (" + v.origin + "): ";
      r.message += err;
      return r;
    }
  }
  // Cross-key rules.
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    r.exit_code = 2;
    r.message = std::string("config: key '") + (c.tls_cert.empty() ? "tls_cert" : "tls_key") +
                "': tls_cert and tls_key go together";
    return r;
  }
  if (c.auth == auth_mode::jwt && c.jwt_secret.empty()) {
    r.exit_code = 2;
    r.message = "config: key 'jwt_secret': required when auth = \"jwt\"";
    return r;
  }
  if (std::string err; !protocol::route_template::parse(c.route, err)) {
    r.exit_code = 2;
    r.message = "config: key 'route': " + err;
    return r;
  }
  if (c.registry_node_ttl <= c.registry_heartbeat) {
    r.exit_code = 2;
    r.message = "config: key 'registry_node_ttl': must be longer than registry_heartbeat";
    return r;
  }
  if (c.json_max_members < c.filter_max_users || c.json_max_members < c.api_publish_batch_max) {
    // A users filter and a batch are one array each: the member limit must not refuse them first.
    r.exit_code = 2;
    r.message = "config: key 'json_max_members': must be at least filter_max_users and api_publish_batch_max";
    return r;
  }
  if (c.history_store == history_kind::automatic)
    c.history_store = c.bus == bus_kind::local ? history_kind::local : history_kind::redis;
  if (c.history_store == history_kind::local && c.bus != bus_kind::local) {
    // Each node would number the same room on its own: clients would see epochs flip.
    history::rules rules;
    std::string ignored;
    rules.parse(c.history, ignored);
    if (rules.any_keeps()) {
      r.exit_code = 2;
      r.message =
          "config: key 'history_store': \"local\" can't number rooms across nodes; use \"redis\" (or \"auto\") "
          "with a cluster bus, or turn history off (history = [\"* 0 0s\"])";
      return r;
    }
  }
  if (c.node_id.empty()) c.node_id = default_node_id(c);
  if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
  r.cfg = std::move(c);
  return r;
}

}  // namespace

std::optional<std::size_t> parse_size(std::string_view s) {
  std::size_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p == s.data()) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(s.data() + s.size() - p));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  std::size_t mul = 1;
  if (unit.empty() || unit == "B")
    mul = 1;
  else if (unit == "KiB" || unit == "K" || unit == "k")
    mul = 1024;
  else if (unit == "MiB" || unit == "M")
    mul = std::size_t{1} << 20;
  else if (unit == "GiB" || unit == "G")
    mul = std::size_t{1} << 30;
  else
    return std::nullopt;
  if (v > (std::size_t{1} << 62) / mul) return std::nullopt;
  return v * mul;
}

std::optional<millis> parse_duration(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p == s.data()) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(s.data() + s.size() - p));
  std::uint64_t mul;
  if (unit == "ms")
    mul = 1;
  else if (unit == "s")
    mul = 1000;
  else if (unit == "m" || unit == "min")
    mul = 60'000;
  else if (unit == "h")
    mul = 3'600'000;
  else
    return std::nullopt;  // a unit is required: "10" is ambiguous
  if (v > (std::uint64_t{1} << 40)) return std::nullopt;
  return millis(v * mul);
}

parse_result parse_toml_text(std::string_view text) {
  parse_result r;
  std::map<std::string, source_value> values;
  try {
    auto t = toml::parse(text);
    if (!apply_toml(t, values, r.message)) {
      r.exit_code = 2;
      return r;
    }
  } catch (const toml::parse_error& e) {
    r.exit_code = 2;
    r.message = std::string("config: ") + std::string(e.description());
    return r;
  }
  return finish(values);
}

parse_result parse(int argc, const char* const* argv) {
  parse_result r;
  CLI::App app{
      "roomcast: a distributed WebSocket push gateway node.\n"
      "Every option is also a TOML key (--max-frame-bytes = max_frame_bytes) and an\n"
      "environment variable (ROOMCAST_MAX_FRAME_BYTES). Flags win over env, env over the file."};
  app.set_help_flag("-h,--help", "print this help and exit");
  std::string config_path;
  bool print_example = false;
  app.add_option("-c,--config", config_path, "TOML config file (see deploy/roomcast.example.toml)");
  app.add_flag("--print-example-config", print_example, "print the documented example config and exit");
  std::map<std::string, std::string> flag_values;
  for (const auto& k : keys()) {
    std::string help = std::string(k.help) + " (default " + k.value_hint + ")";
    app.add_option(flag_of(k.name), flag_values[k.name], help);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    r.message = app.help();
    return r;
  } catch (const CLI::ParseError& e) {
    r.exit_code = 2;
    r.message = std::string("config: ") + e.what();
    return r;
  }
  if (print_example) {
    r.message = example_toml();
    return r;
  }

  std::map<std::string, source_value> values;
  if (!config_path.empty()) {
    try {
      auto t = toml::parse_file(config_path);
      if (!apply_toml(t, values, r.message)) {
        r.exit_code = 2;
        return r;
      }
    } catch (const toml::parse_error& e) {
      r.exit_code = 2;
      r.message = "config: " + config_path + ": " + std::string(e.description());
      return r;
    }
  }
  for (const auto& k : keys()) {
    const auto env = env_of(k.name);
    if (const char* v = std::getenv(env.c_str())) values[k.name] = {v, "env " + env};
  }
  for (const auto& k : keys()) {
    if (app.count(flag_of(k.name)) > 0) values[k.name] = {flag_values[k.name], "flag " + flag_of(k.name)};
  }
  return finish(values);
}

std::string example_toml() {
  std::string s =
      "# roomcast node configuration: every key with its default.\n"
      "# Each key is also a flag (--max-frame-bytes) and an env var (ROOMCAST_MAX_FRAME_BYTES);\n"
      "# flags win over env, env over this file. Sizes: 4096, 64KiB, 1MiB. Durations: 500ms, 10s, 2m.\n"
      "# Generated by `roomcast --print-example-config`.\n\n";
  for (const auto& k : keys()) {
    s += "# ";
    s += k.help;
    s += "\n";
    s += k.name;
    s += " = ";
    s += k.value_hint;
    s += "\n\n";
  }
  return s;
}

}  // namespace roomcast::config
