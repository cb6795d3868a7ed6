#include "registry/redis_registry.hpp"

#include "metrics/prometheus.hpp"
#include "protocol/codec.hpp"
#include "redis/connection.hpp"
#include "redis/hiredis.hpp"
#include "registry/resync.hpp"

#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

namespace roomcast::registry {

namespace {

using clock = std::chrono::steady_clock;

// Removes every entry a node wrote. Keys are built inside the script: one Redis, not a cluster.
constexpr const char* reap_body = R"lua(
local function reap(node)
  local sessions = redis.call('SMEMBERS', 'rc:node_sessions:' .. node)
  for _, e in ipairs(sessions) do
    local nl = string.find(e, '\n', 1, true)
    if nl then
      redis.call('HDEL', 'rc:user:' .. string.sub(e, 1, nl - 1), string.sub(e, nl + 1))
      redis.call('HDEL', 'rc:sessions', string.sub(e, nl + 1))
    end
  end
  local rooms = redis.call('SMEMBERS', 'rc:node_rooms:' .. node)
  for _, r in ipairs(rooms) do
    redis.call('DEL', 'rc:room:' .. r .. ':' .. node)
    redis.call('SREM', 'rc:room_nodes:' .. r, node)
  end
  redis.call('DEL', 'rc:node_sessions:' .. node, 'rc:node_rooms:' .. node)
  redis.call('SREM', 'rc:nodes', node)
  return #sessions
end
)lua";

// ARGV[1] = node: reap it (a node starting again under the same id clears its old entries).
const std::string reap_self_script = std::string(reap_body) + "return reap(ARGV[1])\n";

// ARGV[1] = self: reap every other node whose heartbeat key expired; returns the reaped ids.
const std::string reap_dead_script = std::string(reap_body) + R"lua(
local dead = {}
for _, n in ipairs(redis.call('SMEMBERS', 'rc:nodes')) do
  if n ~= ARGV[1] and redis.call('EXISTS', 'rc:node:' .. n) == 0 then
    reap(n)
    dead[#dead + 1] = n
  end
end
return dead
)lua";

// KEYS: room hash, room_nodes set, node_rooms set. ARGV: session, node, room.
constexpr const char* leave_script = R"lua(
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('SREM', KEYS[3], ARGV[3])
end
return 1
)lua";

// ARGV[1] = room: every member hash of the room, as {node, {field, value, ...}} pairs.
constexpr const char* room_script = R"lua(
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', 'rc:room_nodes:' .. ARGV[1])) do
  out[#out + 1] = n
  out[#out + 1] = redis.call('HGETALL', 'rc:room:' .. ARGV[1] .. ':' .. n)
end
return out
)lua";

// Live nodes and their heartbeat values.
constexpr const char* nodes_script = R"lua(
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', 'rc:nodes')) do
  local v = redis.call('GET', 'rc:node:' .. n)
  if v then
    out[#out + 1] = n
    out[#out + 1] = v
  end
end
return out
)lua";

// ARGV[1] = offset, ARGV[2] = limit. Sessions per room summed over the nodes that have it; the
// rooms [offset, offset + limit) of the busiest-first order with their members' roles. Returns
// {total, room, online, {role, n, ...}, room, ...}. Read-only; O(rooms) per call, for a dashboard.
constexpr const char* busiest_rooms_script = R"lua(
local counts = {}
for _, n in ipairs(redis.call('SMEMBERS', 'rc:nodes')) do
  for _, r in ipairs(redis.call('SMEMBERS', 'rc:node_rooms:' .. n)) do
    counts[r] = (counts[r] or 0) + redis.call('HLEN', 'rc:room:' .. r .. ':' .. n)
  end
end
local list = {}
for r, c in pairs(counts) do
  if c > 0 then list[#list + 1] = {r, c} end
end
table.sort(list, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] < b[1]
end)
local out = {#list}
local first = tonumber(ARGV[1]) + 1
local last = math.min(#list, tonumber(ARGV[1]) + tonumber(ARGV[2]))
for i = first, last do
  local r = list[i][1]
  local roles = {}
  for _, n in ipairs(redis.call('SMEMBERS', 'rc:room_nodes:' .. r)) do
    for _, v in ipairs(redis.call('HVALS', 'rc:room:' .. r .. ':' .. n)) do
      local nl = string.find(v, '\n', 1, true)
      local role = nl and string.sub(v, 1, nl - 1) or v
      roles[role] = (roles[role] or 0) + 1
    end
  end
  local flat = {}
  for role, c in pairs(roles) do
    flat[#flat + 1] = role
    flat[#flat + 1] = c
  end
  out[#out + 1] = r
  out[#out + 1] = list[i][2]
  out[#out + 1] = flat
end
return out
)lua";

using redis::str;

std::optional<located_session> parse_session_value(std::string_view text, const std::string& user) {
  boost::json::error_code ec;
  const auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.get_object();
  auto field = [&](std::string_view k) {
    const auto* f = o.if_contains(k);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  // Member by member: gcc 12 -O3 warns (maybe-uninitialized) on the nested aggregate form.
  located_session l;
  l.s.session = field("session");
  l.s.user = user;
  l.s.role = field("role");
  l.s.platform = field("platform");
  l.node = field("node");
  if (const auto* rooms = o.if_contains("rooms"); rooms && rooms->is_array())
    for (const auto& r : rooms->get_array())
      if (r.is_string()) l.s.rooms.emplace_back(r.get_string());
  return l;
}

const std::error_code unreachable = std::make_error_code(std::errc::not_connected);

// A write's reply: nobody waits for it, but Redis refusing it is worth a line.
void log_refused(const redisReply* r, std::error_code ec) {
  if (ec == redis::make_error(redis::errc::error_reply)) spdlog::warn("registry: redis error: {}", redis::view(r));
}

}  // namespace

// Everything runs on the Redis thread; public methods post there. Shared with what is posted, so
// a late post finds it alive.
struct redis_registry::impl : std::enable_shared_from_this<impl> {
  impl(redis::loop& l, redis_options o, snapshot_fn snap, std::function<std::string()> summary)
      : opts(std::move(o)),
        snapshot(std::move(snap)),
        node_summary(std::move(summary)),
        lp(l),
        conn(l, {opts.host, opts.port, "registry", opts.timeout, std::chrono::milliseconds(100),
                 std::chrono::milliseconds(2000), opts.max_pending, false,
                 "Room delivery goes on; user messages go to every node meanwhile"}),
        sync({opts.node_id, opts.heartbeat, opts.node_ttl, opts.max_pending}) {
    reap_self = conn.add_script(reap_self_script);
    reap_dead = conn.add_script(reap_dead_script);
    room_query = conn.add_script(room_script);
    nodes_query = conn.add_script(nodes_script);
    busiest_query = conn.add_script(busiest_rooms_script);
  }

  redis_options opts;
  snapshot_fn snapshot;
  std::function<std::string()> node_summary;
  redis::loop& lp;
  redis::connection conn;
  redis::script_set::id reap_self, reap_dead, room_query, nodes_query, busiest_query;
  resync sync;
  bool stopping = false;  // Redis thread
  std::atomic<bool> stop_called{false};
  std::uint64_t tick_gen = 0;  // only the latest scheduled tick runs
  std::atomic<std::uint64_t> reaped_nodes{0}, resyncs{0}, dropped_writes{0}, failed_queries{0};
  std::function<void()> on_reaped;  // set before start

  void post(std::function<void(impl&)> f) {
    lp.post([self = shared_from_this(), f = std::move(f)] {
      if (!self->stopping) f(*self);
    });
  }
  void counters() {
    resyncs = sync.resyncs();
    dropped_writes = sync.dropped_writes();
  }

  void on_connected() {
    const auto ticket = sync.connected();
    take_snapshot(ticket);
  }
  void take_snapshot(std::uint64_t ticket) {
    counters();
    snapshot([self = shared_from_this(), ticket](std::vector<session_record> s) {
      self->post([ticket, s = std::move(s)](impl& me) { me.apply_snapshot(ticket, s); });
    });
  }
  void apply_snapshot(std::uint64_t ticket, const std::vector<session_record>& sessions) {
    auto r = sync.snapshot(ticket, sessions, std::chrono::steady_clock::now());
    if (!r) return;  // stale: a newer one is on its way
    spdlog::info("registry: rewriting this node's state in redis ({} sessions, {} writes held)", r->sessions, r->held);
    conn.eval(reap_self, {"0", opts.node_id}, log_refused);
    for (const auto& c : r->commands) send_write(c);
    counters();
    tick();
  }
  void write(std::vector<command>& cmds) {
    for (auto& c : cmds) {
      switch (sync.write(c)) {
        case resync::write_action::send:
          send_write(c);
          break;
        case resync::write_action::take_snapshot:
          take_snapshot(sync.ticket());
          return;  // the snapshot covers the rest
        case resync::write_action::held:
        case resync::write_action::dropped:
          break;
      }
    }
    counters();
  }
  void send_write(const command& c) {
    conn.send(c, [this](const redisReply* r, std::error_code ec) {
      log_refused(r, ec);
      // Not taken (queue full): the node's state in Redis is behind, rewrite it.
      if (ec == redis::make_error(redis::errc::queue_full))
        if (const auto t = sync.write_lost()) take_snapshot(*t);
    });
  }
  // Heartbeat when due; then wake up for the next one (each tick replaces the one before).
  void tick() {
    const auto now = std::chrono::steady_clock::now();
    if (conn.up() && sync.heartbeat_due(now)) {
      for (const auto& c : sync.heartbeat(now, node_summary())) send_write(c);
      conn.eval(reap_dead, {"0", opts.node_id}, [this](const redisReply* dead, std::error_code ec) {
        if (ec || dead->type != REDIS_REPLY_ARRAY) return;
        reaped_nodes.fetch_add(dead->elements, std::memory_order_relaxed);
        for (std::size_t i = 0; i < dead->elements; ++i)
          spdlog::info("registry: reaped dead node {}", str(dead->element[i]));
        if (dead->elements > 0 && on_reaped) on_reaped();
      });
    }
    auto wait = opts.heartbeat;
    if (sync.state() == resync::phase::synced && conn.up())
      wait = std::chrono::ceil<std::chrono::milliseconds>(sync.next_heartbeat() - now);
    lp.post_after(std::max(wait, std::chrono::milliseconds(1)), [self = shared_from_this(), g = ++tick_gen] {
      if (g == self->tick_gen && !self->stopping) self->tick();
    });
  }
  // A query's reply, or nullptr when Redis could not answer.
  void query(const command& c, std::function<void(const redisReply*)> on_reply) {
    conn.send(c, [this, on_reply = std::move(on_reply)](const redisReply* r, std::error_code ec) {
      if (ec && ec != redis::make_error(redis::errc::error_reply))
        failed_queries.fetch_add(1, std::memory_order_relaxed);
      on_reply(ec ? nullptr : r);
    });
  }
  void eval_query(redis::script_set::id s, command args, std::function<void(const redisReply*)> on_reply) {
    conn.eval(s, std::move(args), [this, on_reply = std::move(on_reply)](const redisReply* r, std::error_code ec) {
      if (ec && ec != redis::make_error(redis::errc::error_reply))
        failed_queries.fetch_add(1, std::memory_order_relaxed);
      on_reply(ec ? nullptr : r);
    });
  }
};

redis_registry::redis_registry(redis_options opts, snapshot_fn snapshot, std::function<std::string()> node_summary)
    : loop_(redis::loop::shared()),
      impl_(std::make_shared<impl>(*loop_, std::move(opts), std::move(snapshot), std::move(node_summary))) {}

redis_registry::~redis_registry() { stop(); }

void redis_registry::start() {
  auto& me = *impl_;
  me.conn.on_connected([&me] {
    if (!me.stopping) me.on_connected();
  });
  me.conn.on_disconnected([&me](std::error_code) {
    me.sync.disconnected();
    me.counters();
  });
  me.conn.start();
  me.post([](impl& m) { m.tick(); });
}

void redis_registry::stop() {
  auto self = impl_;
  if (self->stop_called.exchange(true)) return;
  std::promise<void> done;
  self->lp.post([self, &done] {
    if (self->stopping) return done.set_value();
    self->stopping = true;
    if (!self->conn.up()) {
      self->conn.stop();
      return done.set_value();
    }
    // Leaving cleanly: remove this node's entries now rather than wait for the reaper (bounded by
    // the connection's timeout).
    self->conn.eval(self->reap_self, {"0", self->opts.node_id}, log_refused);
    self->conn.send({"DEL", "rc:node:" + self->opts.node_id}, [self, &done](const redisReply*, std::error_code) {
      self->conn.stop();
      done.set_value();
    });
  });
  done.get_future().wait();
}

bool redis_registry::healthy() const { return impl_->conn.is_up(); }

void redis_registry::on_nodes_reaped(const std::function<void()>& fn) { impl_->on_reaped = fn; }

void redis_registry::session_opened(const session_record& s) {
  std::vector<command> cmds;
  append_session_writes(s, impl_->opts.node_id, false, cmds);
  impl_->post([cmds = std::move(cmds)](impl& me) mutable { me.write(cmds); });
}

void redis_registry::room_joined(const session_record& s, const std::string& room) {
  const auto& node = impl_->opts.node_id;
  std::vector<command> cmds{{"HSET", "rc:user:" + s.user, s.session, session_value(s, node)},
                            {"HSET", "rc:room:" + room + ":" + node, s.session, room_member_value(s)},
                            {"SADD", "rc:room_nodes:" + room, node},
                            {"SADD", "rc:node_rooms:" + node, room}};
  impl_->post([cmds = std::move(cmds)](impl& me) mutable { me.write(cmds); });
}

void redis_registry::room_left(const session_record& s, const std::string& room) {
  const auto& node = impl_->opts.node_id;
  std::vector<command> cmds{{"HSET", "rc:user:" + s.user, s.session, session_value(s, node)},
                            {"EVAL", leave_script, "3", "rc:room:" + room + ":" + node, "rc:room_nodes:" + room,
                             "rc:node_rooms:" + node, s.session, node, room}};
  impl_->post([cmds = std::move(cmds)](impl& me) mutable { me.write(cmds); });
}

void redis_registry::session_closed(const session_record& s) {
  const auto& node = impl_->opts.node_id;
  std::vector<command> cmds{{"HDEL", "rc:user:" + s.user, s.session},
                            {"SREM", "rc:node_sessions:" + node, s.user + "\n" + s.session},
                            {"HDEL", "rc:sessions", s.session}};
  impl_->post([cmds = std::move(cmds)](impl& me) mutable { me.write(cmds); });
}

void redis_registry::user_sessions(const std::string& user, sessions_callback cb) {
  impl_->post([user, cb = std::move(cb)](impl& me) mutable {
    me.query({"HVALS", "rc:user:" + user}, [cb = std::move(cb)](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_ARRAY) return cb(std::nullopt);
      std::vector<session_location> out;
      auto unquote = [](std::optional<std::string_view> v) {
        return v && v->size() >= 2 ? std::string(v->substr(1, v->size() - 2)) : std::string();
      };
      for (std::size_t i = 0; i < r->elements; ++i) {
        // The value is session JSON (ids and node names need no unescaping).
        const std::string v = str(r->element[i]);
        out.push_back(
            {unquote(protocol::find_raw_member(v, "session")), unquote(protocol::find_raw_member(v, "node"))});
      }
      cb(std::move(out));
    });
  });
}

void redis_registry::session_node(const std::string& session, node_callback cb) {
  impl_->post([session, cb = std::move(cb)](impl& me) mutable {
    me.query({"HGET", "rc:sessions", session}, [cb = std::move(cb)](const redisReply* r) {
      if (!r) return cb(std::nullopt);
      if (r->type == REDIS_REPLY_NIL) return cb(std::string());
      if (r->type != REDIS_REPLY_STRING) return cb(std::nullopt);
      cb(str(r));
    });
  });
}

void redis_registry::describe_user(const std::string& user, user_callback cb) {
  impl_->post([user, cb = std::move(cb)](impl& me) mutable {
    me.query({"HVALS", "rc:user:" + user}, [user, cb = std::move(cb)](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_ARRAY) return cb(unreachable, {});
      std::vector<located_session> sessions;
      for (std::size_t i = 0; i < r->elements; ++i)
        if (auto l = parse_session_value(str(r->element[i]), user)) sessions.push_back(std::move(*l));
      std::sort(sessions.begin(), sessions.end(),
                [](const auto& a, const auto& b) { return a.s.session < b.s.session; });
      cb({}, std::move(sessions));
    });
  });
}

void redis_registry::describe_room(const std::string& room, room_callback cb) {
  impl_->post([room, cb = std::move(cb)](impl& me) mutable {
    me.eval_query(me.room_query, {"0", room}, [cb = std::move(cb)](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_ARRAY) return cb(unreachable, {});
      room_members t;
      for (std::size_t i = 1; i < r->elements; i += 2) {
        const redisReply* h = r->element[i];
        if (h->type != REDIS_REPLY_ARRAY) continue;
        for (std::size_t j = 1; j < h->elements; j += 2) add_room_member_value(redis::view(h->element[j]), t);
      }
      cb({}, std::move(t));
    });
  });
}

void redis_registry::describe_nodes(nodes_callback cb) {
  impl_->post([cb = std::move(cb)](impl& me) mutable {
    me.eval_query(me.nodes_query, {"0"}, [cb = std::move(cb)](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_ARRAY) return cb(unreachable, {});
      std::vector<node_entry> nodes;
      for (std::size_t i = 0; i + 1 < r->elements; i += 2)
        nodes.push_back({str(r->element[i]), str(r->element[i + 1])});
      std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.node < b.node; });
      cb({}, std::move(nodes));
    });
  });
}

void redis_registry::busiest_rooms(std::size_t offset, std::size_t limit, rooms_callback cb) {
  impl_->post([offset, limit, cb = std::move(cb)](impl& me) mutable {
    me.eval_query(
        me.busiest_query, {"0", std::to_string(offset), std::to_string(limit)},
        [cb = std::move(cb)](const redisReply* r) {
          if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->element[0]->type != REDIS_REPLY_INTEGER)
            return cb(unreachable, {});
          room_page p;
          p.total = static_cast<std::size_t>(r->element[0]->integer);
          for (std::size_t i = 1; i + 2 < r->elements; i += 3) {
            const redisReply* roles = r->element[i + 2];
            if (r->element[i + 1]->type != REDIS_REPLY_INTEGER) continue;
            room_summary s{str(r->element[i]), static_cast<std::size_t>(r->element[i + 1]->integer), {}};
            if (roles->type == REDIS_REPLY_ARRAY)
              for (std::size_t j = 0; j + 1 < roles->elements; j += 2)
                if (roles->element[j + 1]->type == REDIS_REPLY_INTEGER)
                  s.by_role[str(roles->element[j])] = static_cast<std::size_t>(roles->element[j + 1]->integer);
            p.rooms.push_back(std::move(s));
          }
          cb({}, std::move(p));
        });
  });
}

void redis_registry::append_metrics(std::string& o) const {
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  impl_->conn.append_metrics(o, "roomcast_registry", redis::metric_up | redis::metric_batches | redis::metric_commands);
  line("roomcast_registry_reaped_nodes_total", "counter", "Dead nodes whose entries this node removed.",
       impl_->reaped_nodes.load());
  line("roomcast_registry_resyncs_total", "counter", "Full rewrites of this node's state.", impl_->resyncs.load());
  line("roomcast_registry_dropped_writes_total", "counter",
       "Writes dropped while Redis was away (covered by a resync).", impl_->dropped_writes.load());
  line("roomcast_registry_failed_queries_total", "counter", "Queries answered 'unavailable'.",
       impl_->failed_queries.load());
}

}  // namespace roomcast::registry
