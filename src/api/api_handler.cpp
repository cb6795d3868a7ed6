#include "api/api_handler.hpp"
#include "api/views.hpp"
#include "metrics/prometheus.hpp"

#include "auth/jwt.hpp"
#include "common/rule_text.hpp"
#include "protocol/codec.hpp"
#include "protocol/route_template.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <charconv>
#include <chrono>
#include <map>
#include <set>

namespace roomcast::api {

namespace json = boost::json;
using protocol::append_json_string;

namespace {

response ok_json(std::string body) {
  response r;
  r.body = std::move(body);
  return r;
}

bool is_json_content_type(std::string_view ct) {
  const auto semi = ct.find(';');
  auto base = ct.substr(0, semi);
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  return base == "application/json";
}

// ?limit=N (1..1000) of a paged answer; `limit` keeps its default when absent.
bool parse_limit(std::string_view target, std::size_t& limit) {
  const auto q = protocol::query_param(target, "limit");
  if (!q) return true;
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(q->data(), q->data() + q->size(), n);
  if (ec != std::errc{} || p != q->data() + q->size() || n == 0 || n > 1000) return false;
  limit = n;
  return true;
}

// Every 503 says when to try again: the registry reconnects with a backoff of at most 2 s.
response registry_unavailable() {
  auto r = handler::error(503, "unavailable", "registry (redis) unreachable");
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

// Room and user names are path segments in URLs and keys in Redis later: keep them bounded.
bool valid_name(const json::value* v, std::size_t max = 256) {
  return v && v->is_string() && !v->get_string().empty() && v->get_string().size() <= max;
}

}  // namespace

handler::handler(const config::config& cfg, hub::router& router, registry::registry& registry, node_state& state)
    : cfg_(cfg),
      router_(router),
      registry_(registry),
      state_(state),
      json_limits_{.max_depth = cfg.json_max_depth, .max_members = cfg.json_max_members} {}

std::optional<json::value> handler::parse_body(const request& req, std::string_view invalid, response& refusal) const {
  json::value v;
  std::string why;
  const auto r = protocol::parse_json(req.body, json_limits_, v, why);
  if (r == protocol::json_refusal::none) return v;
  if (r == protocol::json_refusal::invalid) {
    refusal = error(400, "bad_json", invalid);
    return std::nullopt;
  }
  if (req.shard < counters_.size())
    counters_[req.shard]->json_refused_api[r == protocol::json_refusal::depth ? 0 : 1].add();
  refusal = error(400, "bad_json", why);
  return std::nullopt;
}

void handler::set_counters(std::vector<metrics::shard_counters*> counters) {
  counters_ = std::move(counters);
  publish_buckets_.assign(counters_.size(), hub::token_bucket{});
}

bool handler::owns(std::string_view path) noexcept {
  return path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/api" || path.starts_with("/api/");
}

response handler::error(unsigned status, std::string_view code, std::string_view message) {
  response r;
  r.status = status;
  r.body = "{\"error\":{\"code\":";
  append_json_string(r.body, code);
  r.body += ",\"message\":";
  append_json_string(r.body, message);
  r.body += "}}";
  return r;
}

void handler::handle(const request& req, respond_fn done) {
  const std::string_view target = req.target;
  const std::string_view path = target.substr(0, target.find('?'));
  const bool get = req.method == "GET" || req.method == "HEAD";
  auto method_not_allowed = [&](std::string_view allow) {
    auto r = error(405, "method_not_allowed", "use " + std::string(allow));
    r.headers.emplace_back("Allow", std::string(allow));
    done(std::move(r));
  };

  if (path == "/healthz") {
    if (!get) return method_not_allowed("GET");
    std::string b = "{\"status\":\"ok\",\"node\":";
    append_json_string(b, router_.node_id());
    b += "}";
    return done(ok_json(std::move(b)));
  }
  if (path == "/readyz") {
    if (!get) return method_not_allowed("GET");
    const bool draining = state_.draining.load(std::memory_order_relaxed);
    const bool bus_ok = router_.bus().healthy();
    std::string b = "{\"ready\":";
    b += (!draining && bus_ok) ? "true" : "false";
    b += ",\"draining\":";
    b += draining ? "true" : "false";
    b += ",\"bus\":";
    b += bus_ok ? "\"up\"" : "\"down\"";
    // The registry is reported but does not make the node unready: rooms are delivered without it.
    b += ",\"registry\":";
    b += registry_.healthy() ? "\"up\"" : "\"down\"";
    b += "}";
    response r = ok_json(std::move(b));
    if (draining || !bus_ok) r.status = 503;
    return done(std::move(r));
  }
  if (path == "/metrics") {
    if (!get) return method_not_allowed("GET");
    response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_text();
    return done(std::move(r));
  }

  // Everything under /api/ needs the key when one is configured.
  if (!cfg_.api_key.empty() && !auth::secure_equals(req.api_key, cfg_.api_key))
    return done(error(401, "unauthorized", "missing or wrong X-API-Key"));

  if (path == "/api/publish" || path == "/api/disconnect") {
    if (req.method != "POST") return method_not_allowed("POST");
    if (!is_json_content_type(req.content_type))
      return done(error(415, "unsupported_media_type", "Content-Type must be application/json"));
    if (path == "/api/publish") return publish(req, std::move(done));
    return disconnect(req, std::move(done));
  }
  if (path == "/api/stats") {
    if (!get) return method_not_allowed("GET");
    return done(stats());
  }
  const auto segs = protocol::split_path(target);
  if (segs && segs->size() == 4 && (*segs)[0] == "api" && (*segs)[1] == "messages" && (*segs)[3] == "receipts") {
    if (!get) return method_not_allowed("GET");
    if ((*segs)[2].empty() || (*segs)[2].size() > 128) return done(error(400, "bad_request", "bad message id"));
    return receipts_of(req, std::string((*segs)[2]), std::move(done));
  }
  if (segs && segs->size() == 4 && (*segs)[0] == "api" && (*segs)[1] == "rooms" &&
      ((*segs)[3] == "kick" || (*segs)[3] == "mute")) {
    if (req.method != "POST") return method_not_allowed("POST");
    if (!is_json_content_type(req.content_type))
      return done(error(415, "unsupported_media_type", "Content-Type must be application/json"));
    if ((*segs)[2].empty() || (*segs)[2].size() > 256) return done(error(400, "bad_request", "bad room name"));
    if ((*segs)[3] == "kick") return kick(req, std::string((*segs)[2]), std::move(done));
    return mute(req, std::string((*segs)[2]), std::move(done));
  }
  if (segs && segs->size() == 4 && (*segs)[0] == "api" && (*segs)[1] == "rooms" && (*segs)[3] == "history") {
    if (!get) return method_not_allowed("GET");
    return history(req, (*segs)[2], std::move(done));
  }
  if (segs && segs->size() == 3 && (*segs)[0] == "api" && ((*segs)[1] == "rooms" || (*segs)[1] == "users")) {
    if (!get) return method_not_allowed("GET");
    if ((*segs)[2].empty() || (*segs)[2].size() > 256) return done(error(400, "bad_request", "bad name"));
    std::string name((*segs)[2]);
    if ((*segs)[1] == "rooms") {
      std::size_t limit = 100;
      if (!parse_limit(req.target, limit)) return done(error(400, "bad_request", "limit must be 1..1000"));
      auto after = protocol::query_param(req.target, "cursor").value_or("");
      if (after.size() > 256)
        return done(error(400, "bad_request", "bad cursor (use next_cursor of the previous page)"));
      return registry_.describe_room(name, [name, after = std::move(after), limit, done = std::move(done)](
                                               std::error_code ec, const registry::room_members& m) {
        done(ec ? registry_unavailable() : ok_json(room_json(name, m, after, limit)));
      });
    }
    return registry_.describe_user(
        name, [name, done = std::move(done)](std::error_code ec, const std::vector<registry::located_session>& s) {
          done(ec ? registry_unavailable() : ok_json(user_json(name, s)));
        });
  }
  if (path == "/api/rooms") {
    if (!get) return method_not_allowed("GET");
    return rooms(req, std::move(done));
  }
  if (path == "/api/nodes") {
    if (!get) return method_not_allowed("GET");
    return registry_.describe_nodes(
        [done = std::move(done)](std::error_code ec, const std::vector<registry::node_entry>& n) {
          done(ec ? registry_unavailable() : ok_json(nodes_json(n)));
        });
  }
  done(error(404, "not_found", "no such API endpoint"));
}

std::optional<std::string> handler::parse_publish(const json::object& o, std::string_view raw, unsigned shard,
                                                  bus::envelope& e) {
  // A field this server doesn't know is refused, not ignored: a "roles" filter silently dropped
  // would send a teachers-only notice to every student.
  bool filtered = false;
  for (const auto& kv : o) {
    const std::string_view k = kv.key();
    if (protocol::is_filter_key(k)) {
      filtered = true;
      continue;
    }
    if (k != "room" && k != "user" && k != "all" && k != "data" && k != "id" && k != "from" && k != "receipts")
      return "unknown field \"" + std::string(k.substr(0, 64)) +
             "\" (known: room, user, all, data, id, from, roles, platforms, users, receipts)";
  }
  const auto* room = o.if_contains("room");
  const auto* user = o.if_contains("user");
  const auto* all = o.if_contains("all");
  const int targets = (room != nullptr) + (user != nullptr) + (all != nullptr);
  if (targets != 1) return "give exactly one of \"room\", \"user\", \"all\"";
  if (room) {
    if (!valid_name(room)) return "\"room\" must be a non-empty string (at most 256 bytes)";
    e.kind = protocol::target_kind::room;
    e.target = std::string(room->get_string());
  } else if (user) {
    if (!valid_name(user)) return "\"user\" must be a non-empty string (at most 256 bytes)";
    e.kind = protocol::target_kind::user;
    e.target = std::string(user->get_string());
  } else {
    if (!all->is_bool() || !all->get_bool()) return "\"all\" must be true";
    e.kind = protocol::target_kind::all;
  }
  if (filtered) {
    if (!room) return "\"roles\", \"platforms\" and \"users\" filter room messages only";
    if (auto why = protocol::parse_filter(o, {.max_users = cfg_.filter_max_users}, e.audience)) return why;
  }
  const auto data = protocol::find_raw_member(raw, "data");
  if (!o.contains("data") || !data) return "\"data\" is required";
  if (const auto* id = o.if_contains("id")) {
    if (!valid_name(id, 128)) return "\"id\" must be a non-empty string (at most 128 bytes)";
    e.id = std::string(id->get_string());
    e.claim_id = true;
  } else {
    e.id = router_.make_id(shard);
  }
  if (const auto* from = o.if_contains("from")) {
    if (!valid_name(from)) return "\"from\" must be a non-empty string (at most 256 bytes)";
    e.from = std::string(from->get_string());
  } else {
    e.from = "api";
  }
  if (const auto* r = o.if_contains("receipts")) {
    if (!r->is_bool()) return "\"receipts\" must be true or false";
    e.receipt = r->get_bool();
    if (e.receipt && !room) return "\"receipts\" applies to room messages only";
    if (e.receipt && !e.claim_id) return "\"receipts\" needs an \"id\" (the receipts are kept under it)";
  }
  e.data = std::string(*data);
  e.origin = router_.node_id();
  return std::nullopt;
}

// One POST /api/publish: a single message (an object) or a batch (an array of them). Every message
// is checked before any is published, so a 400 publishes nothing. The batch is published in array
// order (user messages after the registry said where their users are), and its messages are
// pipelined through the history store and the bus together: one request, one round trip.
void handler::publish(const request& req, respond_fn done) {
  constexpr std::string_view shape = "body must be a JSON object (one message) or an array of them";
  response refused;
  const auto parsed = parse_body(req, shape, refused);
  if (!parsed) return done(std::move(refused));
  const json::value& v = *parsed;
  if (!v.is_object() && !v.is_array()) return done(error(400, "bad_json", shape));
  const bool single = v.is_object();
  std::vector<bus::envelope> batch;
  if (single) {
    batch.resize(1);
    if (auto why = parse_publish(v.get_object(), req.body, req.shard, batch[0]))
      return done(error(400, "bad_request", *why));
  } else {
    const auto& arr = v.get_array();
    if (arr.empty() || arr.size() > cfg_.api_publish_batch_max)
      return done(error(
          400, "bad_request",
          "a batch holds 1 to " + std::to_string(cfg_.api_publish_batch_max) + " messages (api_publish_batch_max)"));
    const auto raws = protocol::split_raw_array(req.body);
    if (!raws || raws->size() != arr.size()) return done(error(400, "bad_json", "cannot split the array"));
    batch.resize(arr.size());
    for (std::size_t i = 0; i < arr.size(); ++i) {
      if (!arr[i].is_object())
        return done(error(400, "bad_request", "[" + std::to_string(i) + "]: a message must be a JSON object"));
      if (auto why = parse_publish(arr[i].get_object(), (*raws)[i], req.shard, batch[i]))
        return done(error(400, "bad_request", "[" + std::to_string(i) + "]: " + *why));
      if (batch[i].receipt)
        return done(error(400, "bad_request",
                          "[" + std::to_string(i) + "]: \"receipts\" is for single publishes (one object)"));
    }
  }
  const auto n = batch.size();
  if (!publish_buckets_[req.shard].try_take(cfg_.api_publish_rate, std::max(1.0, cfg_.api_publish_rate),
                                            std::chrono::steady_clock::now(), static_cast<float>(n))) {
    auto r = error(429, "rate_limited", "over api_publish_rate");
    r.headers.emplace_back("Retry-After", "1");
    return done(std::move(r));
  }
  counters_[req.shard]->publishes_api.add(n);
  if (single && batch[0].receipt) return publish_with_receipts(std::move(batch[0]), std::move(done));

  auto st = std::make_shared<publish_batch>();
  st->single = single;
  st->envelopes = std::move(batch);
  st->outcomes.resize(n);
  st->done = std::move(done);
  // A user message goes only to the nodes holding the user's sessions (all nodes when unknown).
  // Every distinct user is looked up first; then the whole batch is published in order.
  std::map<std::string, std::vector<std::size_t>> users;
  for (std::size_t i = 0; i < n; ++i)
    if (st->envelopes[i].kind == protocol::target_kind::user) users[st->envelopes[i].target].push_back(i);
  // One node (local bus): the user's sessions can only be here; no lookup.
  if (users.empty() || !router_.bus().reaches_other_nodes()) return publish_in_order(st);
  st->lookups_left = users.size();
  for (auto& [user, where_used] : users) {
    registry_.user_sessions(user, [this, st, idx = std::move(where_used)](
                                      std::optional<std::vector<registry::registry::session_location>> where) {
      if (where) {
        std::set<std::string> nodes;
        for (auto& s : *where) nodes.insert(s.node);
        if (nodes.empty()) nodes.insert(router_.node_id());  // offline: nothing to deliver, keep it cheap
        for (auto i : idx) st->envelopes[i].nodes.assign(nodes.begin(), nodes.end());
      }
      if (st->lookups_left.fetch_sub(1, std::memory_order_acq_rel) == 1) publish_in_order(st);
    });
  }
}

void handler::publish_in_order(const std::shared_ptr<publish_batch>& st) {
  st->left = st->envelopes.size();
  for (std::size_t i = 0; i < st->envelopes.size(); ++i) {
    st->outcomes[i].id = st->envelopes[i].id;
    router_.publish(std::move(st->envelopes[i]), [st, i](hub::router::publish_outcome o) {
      st->outcomes[i].result = std::move(o);
      if (st->left.fetch_sub(1, std::memory_order_acq_rel) == 1) finish(*st);
    });
  }
}

namespace {

// Why a message was not accepted, for its error answer.
std::string refusal(const hub::router::publish_outcome& o) {
  return std::string(o.from_history ? "history store" : "bus") + " did not accept the message: " + o.ec.message();
}

// The answer for one message: {"ok":true,"id":…,"seq":…} or {"ok":false,"id":…,"error":{…}}.
void append_outcome(std::string& b, const std::string& id, const hub::router::publish_outcome& o) {
  b += o.ec ? "{\"ok\":false,\"id\":" : "{\"ok\":true,\"id\":";
  append_json_string(b, id);
  if (o.ec) {
    b += ",\"error\":{\"code\":\"unavailable\",\"message\":";
    append_json_string(b, refusal(o));
    b += "}}";
    return;
  }
  if (o.seq != 0) {
    b += ",\"seq\":" + std::to_string(o.seq) + ",\"epoch\":";
    append_json_string(b, o.epoch);
  }
  if (o.duplicate) b += ",\"duplicate\":true";
  if (o.unsequenced) b += ",\"unsequenced\":true";
  if (o.queued) b += ",\"queued\":true";
  b += "}";
}

}  // namespace

void handler::finish(publish_batch& st) {
  std::size_t failed = 0, queued = 0;
  for (const auto& oc : st.outcomes) {
    failed += oc.result.ec ? 1 : 0;
    queued += oc.result.queued ? 1 : 0;
  }
  const std::size_t n = st.outcomes.size();
  if (st.single && failed) {
    const auto& o = st.outcomes[0].result;
    auto resp = error(503, "unavailable", refusal(o));
    resp.headers.emplace_back("Retry-After", "1");
    return st.done(std::move(resp));
  }
  response resp;
  if (st.single) {
    append_outcome(resp.body, st.outcomes[0].id, st.outcomes[0].result);
  } else {
    resp.body = "{\"ok\":";
    resp.body += failed ? "false" : "true";
    resp.body += ",\"count\":" + std::to_string(n) + ",\"failed\":" + std::to_string(failed) +
                 ",\"queued\":" + std::to_string(queued) + ",\"results\":[";
    for (std::size_t i = 0; i < n; ++i) {
      if (i) resp.body += ',';
      append_outcome(resp.body, st.outcomes[i].id, st.outcomes[i].result);
    }
    resp.body += "]}";
  }
  // All accepted: 200 (202 when some wait in the outage buffer); none: 503; some: 207.
  resp.status = failed == 0 ? (queued ? 202 : 200) : failed == n ? 503 : 207;
  if (failed) resp.headers.emplace_back("Retry-After", "1");
  st.done(std::move(resp));
}

// A must-arrive message: its expected users are the room's users (after its filter) now, cluster-
// wide; the receipt is opened before the message goes out, so no confirm can come before it.
void handler::publish_with_receipts(bus::envelope e, respond_fn done) {
  if (!receipts_) return done(error(503, "unavailable", "no receipt store"));
  // One request's state across its three steps (registry, receipt store, history and bus).
  struct step_state {
    bus::envelope e;
    respond_fn done;
    std::size_t expected = 0;
    bool created = false;  // this publish opened the receipt (not a retried id)
  };
  auto st = std::make_shared<step_state>(step_state{std::move(e), std::move(done)});
  auto unavailable = [](const std::string& why) {
    auto r = error(503, "unavailable", why);
    r.headers.emplace_back("Retry-After", "1");
    return r;
  };
  registry_.describe_room(st->e.target, [this, st, unavailable](std::error_code ec, const registry::room_members& m) {
    if (ec) return st->done(registry_unavailable());
    std::vector<std::string> users;
    for (const auto& [user, p] : m.users)
      if (p.reached_by(st->e.audience, user)) users.push_back(user);
    if (users.size() > cfg_.receipt_max_users)
      return st->done(error(400, "bad_request",
                            "the message reaches " + std::to_string(users.size()) + " users; receipts track at most " +
                                std::to_string(cfg_.receipt_max_users) + " (receipt_max_users)"));
    st->expected = users.size();
    receipts_->create(
        st->e.id, st->e.target, protocol::filter_json(st->e.audience), users,
        [this, st, unavailable](std::error_code cec, receipts::create_result cr) {
          if (cec) return st->done(unavailable("receipt store: " + cec.message()));
          if (cr == receipts::create_result::full)
            return st->done(unavailable("too many receipts tracked (receipt_max_messages)"));
          st->created = cr == receipts::create_result::created;
          router_.publish(bus::envelope(st->e), [this, st, unavailable](const hub::router::publish_outcome& o) {
            const auto& e2 = st->e;
            if (o.ec) {
              if (st->created) receipts_->drop(e2.id);
              return st->done(unavailable(refusal(o)));
            }
            if (st->created && !o.duplicate) {
              // What a user who has not confirmed gets again: the frame live delivery sent.
              std::string frame;
              protocol::append_message(frame,
                                       {protocol::target_kind::room, e2.target, e2.id, e2.from, e2.data, o.seq, true});
              receipts_->published(e2.id, std::move(frame), o.seq, o.epoch);
            }
            std::string body;
            append_outcome(body, e2.id, o);
            body.pop_back();
            body += ",\"receipts\":{\"expected\":" + std::to_string(st->expected) + "}}";
            st->done(ok_json(std::move(body)));
          });
        });
  });
}

// GET /api/messages/{id}/receipts: who of the expected users confirmed; the missing ones in pages.
void handler::receipts_of(const request& req, const std::string& id, respond_fn done) {
  if (!receipts_) return done(error(404, "not_found", "no receipts on this node"));
  std::size_t limit = 100;
  if (!parse_limit(req.target, limit)) return done(error(400, "bad_request", "limit must be 1..1000"));
  auto after = protocol::query_param(req.target, "cursor").value_or("");
  if (after.size() > 256) return done(error(400, "bad_request", "bad cursor (use next_cursor of the previous page)"));
  receipts_->describe(id, after, limit,
                      [id, done = std::move(done)](std::error_code ec, std::optional<receipts::status> s) {
                        if (ec) {
                          auto r = error(503, "unavailable", "receipt store: " + ec.message());
                          r.headers.emplace_back("Retry-After", "1");
                          return done(std::move(r));
                        }
                        if (!s) return done(error(404, "not_found", "no receipts for this id (never, or expired)"));
                        done(ok_json(receipts_json(id, *s)));
                      });
}

void handler::history(const request& req, const std::string& room, respond_fn done) {
  if (room.empty() || room.size() > 256) return done(error(400, "bad_request", "bad room name"));
  std::uint64_t since = 0;
  if (auto q = protocol::query_param(req.target, "since")) {
    auto [p, ec] = std::from_chars(q->data(), q->data() + q->size(), since);
    if (ec != std::errc{} || p != q->data() + q->size())
      return done(error(400, "bad_request", "since must be a non-negative integer"));
  }
  std::size_t limit = 1000;
  if (auto q = protocol::query_param(req.target, "limit")) {
    auto [p, ec] = std::from_chars(q->data(), q->data() + q->size(), limit);
    if (ec != std::errc{} || p != q->data() + q->size() || limit == 0 || limit > 10000)
      return done(error(400, "bad_request", "limit must be 1..10000"));
  }
  auto* store = router_.history_store();
  if (!store || !router_.policy_for(room).keeps())
    return done(error(404, "no_history", "this room keeps no history (see the history config rules)"));
  store->read(room, since, limit, std::chrono::milliseconds(0),
              [room, since, done = std::move(done)](history::read_result r) {
                if (r.ec) {
                  auto resp = error(503, "unavailable", "history store: " + r.ec.message());
                  resp.headers.emplace_back("Retry-After", "1");
                  return done(std::move(resp));
                }
                std::string b = "{\"room\":";
                append_json_string(b, room);
                b += ",\"epoch\":";
                append_json_string(b, r.epoch);
                b += ",\"seq\":" + std::to_string(r.head) + ",\"since\":" + std::to_string(since);
                b += ",\"complete\":" + std::string(r.complete ? "true" : "false") + ",\"messages\":[";
                for (std::size_t i = 0; i < r.entries.size(); ++i) {
                  const auto& en = r.entries[i];
                  if (i) b += ",";
                  b += "{\"seq\":" + std::to_string(en.seq) + ",\"id\":";
                  append_json_string(b, en.id);
                  b += ",\"from\":";
                  append_json_string(b, en.from);
                  protocol::append_filter_members(b, en.audience);
                  b += ",\"data\":";
                  b += en.data.empty() ? "null" : en.data;
                  b += "}";
                }
                b += "]}";
                done(ok_json(std::move(b)));
              });
}

namespace {

// A moderation body: {"user": …} plus the given optional fields; anything else is refused.
std::optional<std::string> moderation_body(const json::value& v, std::initializer_list<std::string_view> optional,
                                           std::string& user) {
  if (!v.is_object()) return "body must be a JSON object";
  const auto& o = v.get_object();
  for (const auto& kv : o) {
    const std::string_view k = kv.key();
    if (k != "user" && std::find(optional.begin(), optional.end(), k) == optional.end()) {
      std::string known = "user";
      for (auto f : optional) known += ", " + std::string(f);
      return "unknown field \"" + std::string(k.substr(0, 64)) + "\" (known: " + known + ")";
    }
  }
  if (!valid_name(o.if_contains("user"))) return "\"user\" must be a non-empty string (at most 256 bytes)";
  user = std::string(o.at("user").get_string());
  return std::nullopt;
}

}  // namespace

// POST /api/rooms/{room}/kick: the user's sessions leave the room on every node (over the bus, to
// the nodes that have the room); the connections stay open.
void handler::kick(const request& req, const std::string& room, respond_fn done) {
  response refused;
  const auto parsed = parse_body(req, "body must be a JSON object", refused);
  if (!parsed) return done(std::move(refused));
  const json::value& v = *parsed;
  if (!v.is_object()) return done(error(400, "bad_json", "body must be a JSON object"));
  bus::envelope e;
  if (auto why = moderation_body(v, {"reason"}, e.user)) return done(error(400, "bad_request", *why));
  e.reason = "removed from the room";
  if (const auto* r = v.get_object().if_contains("reason")) {
    if (!r->is_string() || r->get_string().size() > 120)
      return done(error(400, "bad_request", "\"reason\" must be a string of at most 120 bytes"));
    e.reason = std::string(r->get_string());
  }
  e.type = bus::envelope_type::room_kick;
  e.kind = protocol::target_kind::room;
  e.target = room;
  e.id = router_.make_id(req.shard);
  e.from = "api";
  e.origin = router_.node_id();
  std::string body = "{\"ok\":true,\"room\":";
  append_json_string(body, room);
  body += ",\"user\":";
  append_json_string(body, e.user);
  body += "}";
  router_.bus().publish(std::move(e),
                        [body = std::move(body), done = std::move(done)](std::error_code pec, bus::publish_result) {
                          if (pec) {
                            auto r = error(503, "unavailable", "bus did not accept the kick: " + pec.message());
                            r.headers.emplace_back("Retry-After", "1");
                            return done(std::move(r));
                          }
                          done(ok_json(body));
                        });
}

// POST /api/rooms/{room}/mute: the user's client publishes to the room are refused (`muted`) for
// `duration` ("0s" lifts it). Kept by the history store, so every node sees it.
void handler::mute(const request& req, const std::string& room, respond_fn done) {
  response refused;
  const auto parsed = parse_body(req, "body must be a JSON object", refused);
  if (!parsed) return done(std::move(refused));
  const json::value& v = *parsed;
  if (!v.is_object()) return done(error(400, "bad_json", "body must be a JSON object"));
  std::string user;
  if (auto why = moderation_body(v, {"duration"}, user)) return done(error(400, "bad_request", *why));
  const auto* d = v.get_object().if_contains("duration");
  std::optional<std::chrono::milliseconds> duration;
  if (d && d->is_string()) duration = common::parse_duration(d->get_string());
  if (!duration || *duration > std::chrono::hours(24 * 7))
    return done(
        error(400, "bad_request", "\"duration\" must be a duration like \"10m\" (0s lifts the mute; at most 7 days)"));
  auto* store = router_.history_store();
  if (!store) return done(error(503, "unavailable", "no history store to keep the mute"));
  std::string body = "{\"ok\":true,\"room\":";
  append_json_string(body, room);
  body += ",\"user\":";
  append_json_string(body, user);
  body += ",\"muted_ms\":" + std::to_string(duration->count()) + "}";
  store->mute(room, user, *duration, [body = std::move(body), done = std::move(done)](std::error_code mec) {
    if (mec) {
      auto r = error(503, "unavailable", "history store did not keep the mute: " + mec.message());
      r.headers.emplace_back("Retry-After", "1");
      return done(std::move(r));
    }
    done(ok_json(body));
  });
}

void handler::disconnect(const request& req, respond_fn done) {
  response refused;
  const auto parsed = parse_body(req, "body must be a JSON object", refused);
  if (!parsed) return done(std::move(refused));
  const json::value& v = *parsed;
  if (!v.is_object()) return done(error(400, "bad_json", "body must be a JSON object"));
  const auto& o = v.get_object();
  for (const auto& kv : o) {
    const std::string_view k = kv.key();
    if (k != "user" && k != "session" && k != "code" && k != "reason")
      return done(error(400, "bad_request",
                        "unknown field \"" + std::string(k.substr(0, 64)) + "\" (known: user, session, code, reason)"));
  }
  std::uint16_t code = 4000;
  if (const auto* c = o.if_contains("code")) {
    if (!c->is_int64() || c->get_int64() < 4000 || c->get_int64() > 4999)
      return done(error(400, "bad_request", "\"code\" must be an integer from 4000 to 4999"));
    code = static_cast<std::uint16_t>(c->get_int64());
  }
  std::string reason = "disconnected by the server";
  if (const auto* r = o.if_contains("reason")) {
    if (!r->is_string() || r->get_string().size() > 120)
      return done(error(400, "bad_request", "\"reason\" must be a string of at most 120 bytes"));
    reason = std::string(r->get_string());
  }
  const auto* user = o.if_contains("user");
  const auto* session = o.if_contains("session");
  if ((user != nullptr) == (session != nullptr))
    return done(error(400, "bad_request", "give exactly one of \"user\", \"session\""));
  // Every refusal before `done` moves into `answer` (clang-tidy found a call after the move).
  if (user && !valid_name(user)) return done(error(400, "bad_request", "\"user\" must be a non-empty string"));
  std::uint64_t sid = 0;
  if (session && (!session->is_string() || !hub::parse_session_id(session->get_string(), sid)))
    return done(error(400, "bad_request", "\"session\" must be a session id from welcome"));
  auto answer = [done = std::move(done)](std::size_t n) {
    done(ok_json("{\"ok\":true,\"sessions\":" + std::to_string(n) + "}"));
  };
  bus::envelope kick;
  kick.type = bus::envelope_type::kick;
  kick.id = router_.make_id(req.shard);
  kick.from = "api";
  kick.origin = router_.node_id();
  kick.code = code;
  kick.reason = reason;
  if (user) {
    kick.kind = protocol::target_kind::user;
    kick.target = std::string(user->get_string());
    // The registry says where the user's sessions are; the kick travels over the bus to those nodes.
    auto shared = std::make_shared<bus::envelope>(std::move(kick));
    registry_.user_sessions(
        shared->target, [this, shared, answer](std::optional<std::vector<registry::registry::session_location>> where) {
          std::size_t n = 0;
          if (where) {
            std::set<std::string> nodes;
            for (auto& s : *where) nodes.insert(s.node);
            n = where->size();
            if (nodes.empty()) return answer(0);
            shared->nodes.assign(nodes.begin(), nodes.end());
          }
          router_.bus().publish(std::move(*shared), [answer, n](std::error_code, bus::publish_result) { answer(n); });
        });
    return;
  }
  // Sessions are looked up here first; a session of another node is reached by a kick to all nodes,
  // and counted when the registry says a node holds it (it may close on its own meanwhile, as
  // a user's sessions may).
  const unsigned shard = hub::shard_of_session(sid);
  kick.kind = protocol::target_kind::all;
  kick.target = std::string(session->get_string());
  const bool cluster = std::string_view(router_.bus().name()) != "local";
  auto forward = [this, kick, cluster, answer](bool found) mutable {
    if (found || !cluster) return answer(found ? 1 : 0);
    auto shared = std::make_shared<bus::envelope>(std::move(kick));
    registry_.session_node(shared->target, [this, shared, answer](std::optional<std::string> node) {
      const std::size_t n = node && !node->empty() && *node != router_.node_id() ? 1 : 0;
      router_.bus().publish(std::move(*shared), [answer, n](std::error_code, bus::publish_result) { answer(n); });
    });
  };
  if (shard >= router_.shard_count()) return forward(false);
  router_.post(shard,
               [sid, code, reason, forward](hub::shard& s) mutable { forward(s.kick_session(sid, code, reason)); });
}

namespace {
template <class F>
std::uint64_t sum(const std::vector<metrics::shard_counters*>& cs, F f) {
  std::uint64_t n = 0;
  for (const auto* c : cs) n += f(*c).get();
  return n;
}

// "closes":{"client":N,...} and "handshake_failures":{...}, summed over the shards.
void append_closes(std::string& b, const std::vector<metrics::shard_counters*>& c) {
  b += "\"closes\":{";
  for (std::size_t i = 0; i < metrics::close_reason_names.size(); ++i) {
    if (i) b += ",";
    b += "\"" + std::string(metrics::close_reason_names[i]) + "\":" +
         std::to_string(sum(
             c, [i](auto& x) -> auto& { return x.closes[i]; }));
  }
  b += "}";
}
void append_handshake_failures(std::string& b, const std::vector<metrics::shard_counters*>& c) {
  b += "\"handshake_failures\":{";
  for (std::size_t i = 0; i < metrics::handshake_failure_names.size(); ++i) {
    if (i) b += ",";
    b += "\"" + std::string(metrics::handshake_failure_names[i]) + "\":" +
         std::to_string(sum(
             c, [i](auto& x) -> auto& { return x.handshake_failures[i]; }));
  }
  b += "}";
}
// "limits":{...}: what the abuse limits refused, summed over the shards (the dashboard shows them
// with the refused upgrades).
void append_limits(std::string& b, const std::vector<metrics::shard_counters*>& c) {
  const auto n = [&](auto pick) { return std::to_string(sum(c, pick)); };
  b += "\"limits\":{\"source_rate\":" + n([](auto& x) -> auto& { return x.refused_source_rate; });
  b += ",\"pending_handshakes\":" + n([](auto& x) -> auto& { return x.refused_pending_full; });
  b += ",\"json_depth\":" + std::to_string(sum(
                                               c, [](auto& x) -> auto& { return x.json_refused_client[0]; }) +
                                           sum(
                                               c, [](auto& x) -> auto& { return x.json_refused_api[0]; }));
  b += ",\"json_members\":" + std::to_string(sum(
                                                 c, [](auto& x) -> auto& { return x.json_refused_client[1]; }) +
                                             sum(
                                                 c, [](auto& x) -> auto& { return x.json_refused_api[1]; }));
  b += ",\"join_rate\":" + n([](auto& x) -> auto& { return x.join_rate_limited; }) + "}";
}
}  // namespace

response handler::stats() const {
  const auto& c = counters_;
  std::string b = "{\"node\":";
  append_json_string(b, router_.node_id());
  b += ",\"bus\":\"" + std::string(router_.bus().name()) + "\"";
  b += ",\"shards\":" + std::to_string(c.size());
  b += ",\"draining\":" + std::string(state_.draining.load() ? "true" : "false");
  b += ",\"connections\":" + std::to_string(sum(
                                 c, [](auto& x) -> auto& { return x.connections; }));
  b += ",\"index\":{\"sessions\":" + std::to_string(sum(
                                         c, [](auto& x) -> auto& { return x.connections; }));
  b += ",\"rooms\":" + std::to_string(sum(
                           c, [](auto& x) -> auto& { return x.index_rooms; }));
  b += ",\"users\":" + std::to_string(sum(
                           c, [](auto& x) -> auto& { return x.index_users; }));
  b += ",\"node_rooms\":" + std::to_string(router_.node_room_count()) + "}";
  b += ",\"joins\":" + std::to_string(sum(
                           c, [](auto& x) -> auto& { return x.joins; }));
  b += ",";
  append_closes(b, c);
  b += ",";
  append_handshake_failures(b, c);
  b += ",";
  append_limits(b, c);
  b += ",\"messages_in\":" + std::to_string(sum(
                                 c, [](auto& x) -> auto& { return x.messages_in; }));
  b += ",\"messages_out\":" + std::to_string(sum(
                                  c, [](auto& x) -> auto& { return x.messages_out; }));
  b += ",\"bytes_out\":" + std::to_string(sum(
                               c, [](auto& x) -> auto& { return x.bytes_out; }));
  b += ",\"publishes\":{\"api\":" + std::to_string(sum(
                                        c, [](auto& x) -> auto& { return x.publishes_api; }));
  b += ",\"client\":" +
       std::to_string(sum(
           c, [](auto& x) -> auto& { return x.publishes_client; })) +
       "}";
  b += ",\"gap_fills\":" + std::to_string(sum(
                               c, [](auto& x) -> auto& { return x.gap_fills; }));
  b += ",\"room_duplicates_dropped\":" + std::to_string(sum(
                                             c, [](auto& x) -> auto& { return x.duplicates_dropped; }));
  b += ",\"recoveries\":" + std::to_string(sum(
                                c, [](auto& x) -> auto& { return x.recoveries; }));
  b += ",\"recovery_gaps\":" + std::to_string(sum(
                                   c, [](auto& x) -> auto& { return x.recovery_gaps; }));
  b += ",\"registry\":\"" + std::string(registry_.name()) + "\"";
  b += ",\"registry_up\":" + std::string(registry_.healthy() ? "true" : "false");
  router_.bus().append_stats(b);
  b += "}";
  return ok_json(std::move(b));
}

std::string handler::node_summary() const {
  const auto& c = counters_;
  const bool draining = state_.draining.load(std::memory_order_relaxed);
  const bool bus_ok = router_.bus().healthy();
  const auto at =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  std::string b = "{\"connections\":" + std::to_string(sum(
                                            c, [](auto& x) -> auto& { return x.connections; }));
  b += ",\"ready\":" + std::string(!draining && bus_ok ? "true" : "false");
  b += ",\"draining\":" + std::string(draining ? "true" : "false");
  b += ",\"bus\":" + std::string(bus_ok ? "\"up\"" : "\"down\"");
  b += ",\"bus_kind\":\"" + std::string(router_.bus().name()) + "\"";
  b += ",\"registry\":" + std::string(registry_.healthy() ? "\"up\"" : "\"down\"");
  b += ",\"shards\":" + std::to_string(c.size());
  b += ",\"messages_in\":" + std::to_string(sum(
                                 c, [](auto& x) -> auto& { return x.messages_in; }));
  b += ",\"messages_out\":" + std::to_string(sum(
                                  c, [](auto& x) -> auto& { return x.messages_out; }));
  b += ",\"publishes_api\":" + std::to_string(sum(
                                   c, [](auto& x) -> auto& { return x.publishes_api; }));
  b += ",\"publishes_client\":" + std::to_string(sum(
                                      c, [](auto& x) -> auto& { return x.publishes_client; }));
  b += ",\"slow_consumer_closes\":" +
       std::to_string(sum(
           c,
           [](auto& x) -> auto& { return x.closes[static_cast<std::size_t>(metrics::close_reason::slow_consumer)]; }));
  b += ",";
  append_closes(b, c);
  b += ",";
  append_handshake_failures(b, c);
  b += ",";
  append_limits(b, c);
  b += ",\"at\":" + std::to_string(at) + "}";
  return b;
}

void handler::rooms(const request& req, respond_fn done) {
  // limit: a page of the dashboard; cursor: opaque to clients (today the offset in the order).
  std::size_t limit = 20;
  if (!parse_limit(req.target, limit)) return done(error(400, "bad_request", "limit must be 1..1000"));
  std::size_t offset = 0;
  if (auto q = protocol::query_param(req.target, "cursor"); q && !q->empty()) {
    auto [p, ec] = std::from_chars(q->data(), q->data() + q->size(), offset);
    if (ec != std::errc{} || p != q->data() + q->size() || offset > 100'000'000)
      return done(error(400, "bad_request", "bad cursor (use next_cursor of the previous page)"));
  }
  registry_.busiest_rooms(offset, limit,
                          [offset, done = std::move(done)](std::error_code ec, const registry::room_page& page) {
                            if (ec) {
                              return done(registry_unavailable());
                            }
                            done(ok_json(rooms_json(page, offset)));
                          });
}

std::string handler::metrics_text() const {
  const auto& c = counters_;
  std::string o;
  auto metric = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  metric("roomcast_connections", "gauge", "Open sessions (WebSocket and SSE).",
         sum(
             c, [](auto& x) -> auto& { return x.connections; }));
  metric("roomcast_sse_connections", "gauge", "Open SSE streams (counted in roomcast_connections too).",
         sum(
             c, [](auto& x) -> auto& { return x.sse_connections; }));
  metric("roomcast_queued_bytes", "gauge",
         "Bytes waiting in the sessions' outbound queues (frames are shared: a frame queued to N sessions counts N "
         "times).",
         sum(
             c, [](auto& x) -> auto& { return x.queued_bytes; }));
  metric("roomcast_index_rooms", "gauge", "Rooms in the shards' room indexes.",
         sum(
             c, [](auto& x) -> auto& { return x.index_rooms; }));
  metric("roomcast_index_users", "gauge", "Users in the shards' user indexes.",
         sum(
             c, [](auto& x) -> auto& { return x.index_users; }));
  metric("roomcast_joins_total", "counter", "WebSocket sessions opened.",
         sum(
             c, [](auto& x) -> auto& { return x.joins; }));
  metric("roomcast_room_joins_total", "counter", "Room memberships added.",
         sum(
             c, [](auto& x) -> auto& { return x.room_joins; }));
  o += "# HELP roomcast_closes_total WebSocket sessions closed, by reason.\n# TYPE roomcast_closes_total counter\n";
  for (std::size_t i = 0; i < metrics::close_reason_names.size(); ++i)
    o += "roomcast_closes_total{reason=\"" + std::string(metrics::close_reason_names[i]) + "\"} " +
         std::to_string(sum(
             c, [i](auto& x) -> auto& { return x.closes[i]; })) +
         "\n";
  metric("roomcast_slow_consumer_closes_total", "counter", "Sessions closed for exceeding max_queue_bytes.",
         sum(
             c, [](auto& x) -> auto& {
               return x.closes[static_cast<std::size_t>(metrics::close_reason::slow_consumer)];
             }));
  o += "# HELP roomcast_handshake_failures_total Refused or failed upgrades, by reason.\n# TYPE "
       "roomcast_handshake_failures_total counter\n";
  for (std::size_t i = 0; i < metrics::handshake_failure_names.size(); ++i)
    o += "roomcast_handshake_failures_total{reason=\"" + std::string(metrics::handshake_failure_names[i]) + "\"} " +
         std::to_string(sum(
             c, [i](auto& x) -> auto& { return x.handshake_failures[i]; })) +
         "\n";
  o += "# HELP roomcast_connections_refused_total TCP connections refused before their request was read, by "
       "reason.\n# TYPE roomcast_connections_refused_total counter\n";
  o += "roomcast_connections_refused_total{reason=\"source_rate\"} " +
       std::to_string(sum(
           c, [](auto& x) -> auto& { return x.refused_source_rate; })) +
       "\n";
  o += "roomcast_connections_refused_total{reason=\"pending_handshakes\"} " +
       std::to_string(sum(
           c, [](auto& x) -> auto& { return x.refused_pending_full; })) +
       "\n";
  metric("roomcast_pending_handshakes", "gauge", "Connections still in HTTP (not upgraded), summed over the shards.",
         sum(
             c, [](auto& x) -> auto& { return x.pending_handshakes; }));
  metric("roomcast_source_table_entries", "gauge", "Source addresses whose connection rate the shards track.",
         sum(
             c, [](auto& x) -> auto& { return x.source_table_entries; }));
  metric("roomcast_source_table_evictions_total", "counter",
         "Source addresses forgotten early because source_table_size was reached.",
         sum(
             c, [](auto& x) -> auto& { return x.source_table_evictions; }));
  o += "# HELP roomcast_json_refused_total Client frames and API bodies refused by json_max_depth or "
       "json_max_members.\n# TYPE roomcast_json_refused_total counter\n";
  for (int src = 0; src < 2; ++src) {
    for (int lim = 0; lim < 2; ++lim) {
      const auto i = static_cast<std::size_t>(lim);
      o += std::string("roomcast_json_refused_total{source=\"") + (src == 0 ? "client" : "api") + "\",limit=\"" +
           (lim == 0 ? "depth" : "members") + "\"} " +
           std::to_string(src == 0 ? sum(
                                         c, [i](auto& x) -> auto& { return x.json_refused_client[i]; })
                                   : sum(
                                         c, [i](auto& x) -> auto& { return x.json_refused_api[i]; })) +
           "\n";
    }
  }
  metric("roomcast_join_rate_limited_total", "counter", "Client join frames refused by join_rate.",
         sum(
             c, [](auto& x) -> auto& { return x.join_rate_limited; }));
  metric("roomcast_messages_in_total", "counter", "Client text frames received.",
         sum(
             c, [](auto& x) -> auto& { return x.messages_in; }));
  metric("roomcast_messages_out_total", "counter", "Message frames queued to sessions (one per recipient).",
         sum(
             c, [](auto& x) -> auto& { return x.messages_out; }));
  const auto z = router_.compressed();
  metric("roomcast_compressions_total", "counter",
         "Messages compressed for permessage-deflate: once per message on this node, not per recipient.", z.messages);
  metric("roomcast_compression_bytes_in_total", "counter", "Payload bytes of the compressed messages.", z.bytes_in);
  metric("roomcast_compression_bytes_out_total", "counter", "Their compressed size.", z.bytes_out);
  metric("roomcast_deflate_sessions_total", "counter", "Sessions that negotiated permessage-deflate.",
         sum(
             c, [](auto& x) -> auto& { return x.deflate_sessions; }));
  metric("roomcast_messages_inflated_total", "counter", "Compressed client messages inflated.",
         sum(
             c, [](auto& x) -> auto& { return x.messages_inflated; }));
  metric("roomcast_receipts_confirms_received_total", "counter", "Confirm frames (received) from clients.",
         sum(
             c, [](auto& x) -> auto& { return x.receipts_confirmed; }));
  metric("roomcast_receipts_redelivered_total", "counter",
         "Must-arrive messages sent again to a user who had not confirmed them (on a join or reconnect).",
         sum(
             c, [](auto& x) -> auto& { return x.receipts_redelivered; }));
  metric("roomcast_messages_filtered_total", "counter",
         "Room message deliveries skipped because the member is outside the message's roles/platforms/users.",
         sum(
             c, [](auto& x) -> auto& { return x.messages_filtered; }));
  metric("roomcast_bytes_out_total", "counter", "Bytes written to WebSocket sockets.",
         sum(
             c, [](auto& x) -> auto& { return x.bytes_out; }));
  o += "# HELP roomcast_publishes_total Messages published, by source.\n# TYPE roomcast_publishes_total counter\n";
  o += "roomcast_publishes_total{source=\"api\"} " +
       std::to_string(sum(
           c, [](auto& x) -> auto& { return x.publishes_api; })) +
       "\n";
  o += "roomcast_publishes_total{source=\"client\"} " +
       std::to_string(sum(
           c, [](auto& x) -> auto& { return x.publishes_client; })) +
       "\n";
  metric("roomcast_client_errors_total", "counter", "Error frames sent to clients.",
         sum(
             c, [](auto& x) -> auto& { return x.client_errors; }));
  metric("roomcast_http_requests_total", "counter", "HTTP requests served (API, metrics, files).",
         sum(
             c, [](auto& x) -> auto& { return x.http_requests; }));
  metric("roomcast_draining", "gauge", "1 while the node drains.", state_.draining.load() ? 1 : 0);
  metric("roomcast_room_duplicates_dropped_total", "counter",
         "Room messages dropped as already delivered (redelivery).",
         sum(
             c, [](auto& x) -> auto& { return x.duplicates_dropped; }));
  metric("roomcast_gap_fills_total", "counter", "Holes in a room's sequence read from history before delivery.",
         sum(
             c, [](auto& x) -> auto& { return x.gap_fills; }));
  metric("roomcast_gaps_unfilled_total", "counter", "Holes history could not fill (clients got a gap frame).",
         sum(
             c, [](auto& x) -> auto& { return x.gaps_unfilled; }));
  metric("roomcast_recoveries_total", "counter", "Reconnects whose missed messages were sent from history.",
         sum(
             c, [](auto& x) -> auto& { return x.recoveries; }));
  metric("roomcast_history_bypassed_total", "counter",
         "Room messages published without seq: the history store was down.", router_.history_bypassed());
  metric("roomcast_recovery_gaps_total", "counter", "Reconnects told that recovery was impossible (gap frame).",
         sum(
             c, [](auto& x) -> auto& { return x.recovery_gaps; }));
  router_.bus().append_metrics(o);
  registry_.append_metrics(o);
  if (auto* h = router_.history_store()) h->append_metrics(o);
  if (receipts_) receipts_->append_metrics(o);
  for (const auto& f : extra_metrics_) f(o);
  return o;
}

}  // namespace roomcast::api
