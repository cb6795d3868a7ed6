#pragma once
// The HTTP API for backends (docs/api.md), free of sockets: a parsed request in, a response out
// through a callback (which may run on another shard's thread; the transport posts it back).
#include "config/config.hpp"
#include "hub/router.hpp"
#include "hub/token_bucket.hpp"
#include "metrics/counters.hpp"
#include "protocol/json_limits.hpp"
#include "receipts/store.hpp"
#include "registry/registry.hpp"

#include <boost/json/value.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace roomcast::api {

struct request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query
  std::string content_type;
  std::string api_key;  // X-API-Key
  std::string body;
  unsigned shard = 0;  // the shard the request arrived on
};

struct response {
  unsigned status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

using respond_fn = std::function<void(response)>;

// Node-wide state the API reads; owned by app/.
struct node_state {
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> ws_sessions{0};  // admitted sessions, WebSocket and SSE (max_connections)
};

class handler {
 public:
  handler(const config::config& cfg, hub::router& router, registry::registry& registry, node_state& state);
  // Wiring, before traffic: one counters block per shard, indexed by shard.
  void set_counters(std::vector<metrics::shard_counters*> counters);
  // Where receipts are kept (null: publishes with receipts get 503). Set before traffic.
  void set_receipts(receipts::store* r) noexcept { receipts_ = r; }
  // More /metrics lines from a part the handler doesn't know (presence). Set before traffic.
  void add_metrics(std::function<void(std::string&)> fn) { extra_metrics_.push_back(std::move(fn)); }

  // True for paths this handler owns (/api/*, /metrics, /healthz, /readyz).
  static bool owns(std::string_view path) noexcept;

  // Shard thread of req.shard only (rate-limit buckets are per shard).
  void handle(const request& req, respond_fn done);

  std::string metrics_text() const;

  // This node's state as one JSON object: connections, ready, bus/registry state and the totals a
  // dashboard turns into rates (messages in/out, publishes, closes and refusals by reason), with
  // `at` (Unix ms). Any thread; the registry stores it with each heartbeat (GET /api/nodes).
  std::string node_summary() const;

  static response error(unsigned status, std::string_view code, std::string_view message);

 private:
  // The messages of one POST /api/publish and their outcomes, filled in as they complete.
  struct publish_batch {
    bool single = true;  // the body was one object: answer with one object
    std::vector<bus::envelope> envelopes;
    struct outcome {
      std::string id;
      hub::router::publish_outcome result;
    };
    std::vector<outcome> outcomes;
    std::atomic<std::size_t> lookups_left{0};
    std::atomic<std::size_t> left{0};
    respond_fn done;
  };

  // Fills e from one publish object (raw: its text, for `data`); returns why it is refused.
  std::optional<std::string> parse_publish(const boost::json::object& o, std::string_view raw, unsigned shard,
                                           bus::envelope& e);
  // The body as JSON within json_max_depth / json_max_members, or nullopt and the 400 to answer
  // (`invalid`: the message for JSON that doesn't parse). A limit's refusal is counted.
  std::optional<boost::json::value> parse_body(const request& req, std::string_view invalid, response& refusal) const;
  void publish(const request& req, respond_fn done);
  void publish_in_order(const std::shared_ptr<publish_batch>& st);
  void publish_with_receipts(bus::envelope e, respond_fn done);
  void receipts_of(const request& req, const std::string& id, respond_fn done);
  static void finish(publish_batch& st);
  void disconnect(const request& req, respond_fn done);
  void kick(const request& req, const std::string& room, respond_fn done);
  void mute(const request& req, const std::string& room, respond_fn done);
  void history(const request& req, const std::string& room, respond_fn done);
  void rooms(const request& req, respond_fn done);
  response stats() const;

  const config::config& cfg_;
  hub::router& router_;
  registry::registry& registry_;
  node_state& state_;
  std::vector<std::function<void(std::string&)>> extra_metrics_;
  receipts::store* receipts_ = nullptr;
  std::vector<metrics::shard_counters*> counters_;
  std::vector<hub::token_bucket> publish_buckets_;  // one per shard
  protocol::json_limits json_limits_;
};

}  // namespace roomcast::api
