#include "registry/redis_registry.hpp"
#include "redis/hiredis.hpp"
#include "common/backoff.hpp"
#include "metrics/prometheus.hpp"

#include "protocol/codec.hpp"

#include <pthread.h>
#include <boost/json/parse.hpp>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>

namespace roomcast::registry {

namespace {

using clock = std::chrono::steady_clock;

// Removes every entry a node wrote. Keys are built inside the script: one Redis, not a cluster.
constexpr const char* reap_body = R"lua(
local function reap(node)
  local sessions = redis.call('SMEMBERS', 'rc:node_sessions:' .. node)
  for _, e in ipairs(sessions) do
    local nl = string.find(e, '\n', 1, true)
    if nl then redis.call('HDEL', 'rc:user:' .. string.sub(e, 1, nl - 1), string.sub(e, nl + 1)) end
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

using command = std::vector<std::string>;

using redis::reply_ptr;

// A query: its command, and what to do with the reply (nullptr = Redis unreachable).
struct query {
  command cmd;
  std::function<void(const redisReply*)> on_reply;
};

using redis::str;

}  // namespace

struct redis_registry::impl {
  redis_options opts;
  snapshot_fn snapshot;
  std::function<std::string()> node_summary;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<command> writes;  // pending, in order
  std::vector<query> queries;
  std::optional<std::vector<session_record>> snapshot_result;
  bool overflowed = false;  // writes were dropped: resync when possible
  bool stopping = false;

  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> batches{0}, commands_sent{0}, reaped_nodes{0}, resyncs{0}, dropped_writes{0},
      failed_queries{0};
  std::thread thread;

  // registry thread only
  redisContext* ctx = nullptr;
  bool needs_resync = true;
  bool reported_down = false;
  bool snapshot_requested = false;
  clock::time_point next_heartbeat{};

  void push_write(command c) {
    {
      std::lock_guard lk(mu);
      if (writes.size() >= opts.max_pending) {
        overflowed = true;
        dropped_writes.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      writes.push_back(std::move(c));
    }
    cv.notify_one();
  }
  void push_query(query q) {
    {
      std::lock_guard lk(mu);
      queries.push_back(std::move(q));
    }
    cv.notify_one();
  }

  void run();
  bool connect();
  void disconnect(const char* why);
  bool exec(std::vector<command>& cmds, std::vector<reply_ptr>* replies);
};

namespace {

// How a session is stored in rc:user:<user> (field = session id): JSON, read back by
// describe_user and (only session and node) by user_sessions on the publish path.
std::string session_value(const session_record& s, const std::string& node) {
  using protocol::append_json_string;
  std::string o = "{\"session\":";
  append_json_string(o, s.session);
  o += ",\"node\":";
  append_json_string(o, node);
  o += ",\"platform\":";
  append_json_string(o, s.platform);
  o += ",\"role\":";
  append_json_string(o, s.role);
  o += ",\"rooms\":[";
  for (std::size_t i = 0; i < s.rooms.size(); ++i) {
    if (i) o += ",";
    append_json_string(o, s.rooms[i]);
  }
  o += "]}";
  return o;
}

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

}  // namespace

redis_registry::redis_registry(redis_options opts, snapshot_fn snapshot, std::function<std::string()> node_summary)
    : impl_(std::make_unique<impl>()) {
  impl_->opts = std::move(opts);
  impl_->snapshot = std::move(snapshot);
  impl_->node_summary = std::move(node_summary);
}

redis_registry::~redis_registry() { stop(); }

void redis_registry::start() {
  impl_->thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "rc-registry");  // top -H, perf
    impl_->run();
  });
}

void redis_registry::stop() {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_one();
  impl_->thread.join();
}

bool redis_registry::healthy() const { return impl_->connected.load(std::memory_order_relaxed); }

void redis_registry::session_opened(const session_record& s) {
  const auto& node = impl_->opts.node_id;
  impl_->push_write({"HSET", "rc:user:" + s.user, s.session, session_value(s, node)});
  impl_->push_write({"SADD", "rc:node_sessions:" + node, s.user + "\n" + s.session});
}

void redis_registry::room_joined(const session_record& s, const std::string& room) {
  const auto& node = impl_->opts.node_id;
  impl_->push_write({"HSET", "rc:user:" + s.user, s.session, session_value(s, node)});
  impl_->push_write({"HSET", "rc:room:" + room + ":" + node, s.session, s.role + "\n" + s.user});
  impl_->push_write({"SADD", "rc:room_nodes:" + room, node});
  impl_->push_write({"SADD", "rc:node_rooms:" + node, room});
}

void redis_registry::room_left(const session_record& s, const std::string& room) {
  const auto& node = impl_->opts.node_id;
  impl_->push_write({"HSET", "rc:user:" + s.user, s.session, session_value(s, node)});
  impl_->push_write({"EVAL", leave_script, "3", "rc:room:" + room + ":" + node, "rc:room_nodes:" + room,
                     "rc:node_rooms:" + node, s.session, node, room});
}

void redis_registry::session_closed(const session_record& s) {
  const auto& node = impl_->opts.node_id;
  impl_->push_write({"HDEL", "rc:user:" + s.user, s.session});
  impl_->push_write({"SREM", "rc:node_sessions:" + node, s.user + "\n" + s.session});
}

void redis_registry::user_sessions(const std::string& user, sessions_callback cb) {
  impl_->push_query({{"HVALS", "rc:user:" + user}, [cb = std::move(cb)](const redisReply* r) {
                       if (!r || r->type != REDIS_REPLY_ARRAY) return cb(std::nullopt);
                       std::vector<session_location> out;
                       auto unquote = [](std::optional<std::string_view> v) {
                         return v && v->size() >= 2 ? std::string(v->substr(1, v->size() - 2)) : std::string();
                       };
                       for (std::size_t i = 0; i < r->elements; ++i) {
                         // The value is session JSON (ids and node names need no unescaping).
                         const std::string v = str(r->element[i]);
                         out.push_back({unquote(protocol::find_raw_member(v, "session")),
                                        unquote(protocol::find_raw_member(v, "node"))});
                       }
                       cb(std::move(out));
                     }});
}

void redis_registry::describe_user(const std::string& user, user_callback cb) {
  impl_->push_query({{"HVALS", "rc:user:" + user}, [user, cb = std::move(cb)](const redisReply* r) {
                       if (!r || r->type != REDIS_REPLY_ARRAY) return cb(unreachable, {});
                       std::vector<located_session> sessions;
                       for (std::size_t i = 0; i < r->elements; ++i)
                         if (auto l = parse_session_value(str(r->element[i]), user)) sessions.push_back(std::move(*l));
                       std::sort(sessions.begin(), sessions.end(),
                                 [](const auto& a, const auto& b) { return a.s.session < b.s.session; });
                       cb({}, std::move(sessions));
                     }});
}

void redis_registry::describe_room(const std::string& room, room_callback cb) {
  impl_->push_query({{"EVAL", room_script, "0", room}, [cb = std::move(cb)](const redisReply* r) {
                       if (!r || r->type != REDIS_REPLY_ARRAY) return cb(unreachable, {});
                       room_members t;
                       for (std::size_t i = 1; i < r->elements; i += 2) {
                         const redisReply* h = r->element[i];
                         if (h->type != REDIS_REPLY_ARRAY) continue;
                         for (std::size_t j = 1; j < h->elements; j += 2) {
                           const std::string v = str(h->element[j]);
                           const auto nl = v.find('\n');
                           ++t.online;
                           ++t.by_role[v.substr(0, nl)];
                           if (nl != std::string::npos) t.users.insert(v.substr(nl + 1));
                         }
                       }
                       cb({}, std::move(t));
                     }});
}

void redis_registry::describe_nodes(nodes_callback cb) {
  impl_->push_query({{"EVAL", nodes_script, "0"}, [cb = std::move(cb)](const redisReply* r) {
                       if (!r || r->type != REDIS_REPLY_ARRAY) return cb(unreachable, {});
                       std::vector<node_entry> nodes;
                       for (std::size_t i = 0; i + 1 < r->elements; i += 2)
                         nodes.push_back({str(r->element[i]), str(r->element[i + 1])});
                       std::sort(nodes.begin(), nodes.end(),
                                 [](const auto& a, const auto& b) { return a.node < b.node; });
                       cb({}, std::move(nodes));
                     }});
}

void redis_registry::busiest_rooms(std::size_t offset, std::size_t limit, rooms_callback cb) {
  impl_->push_query(
      {{"EVAL", busiest_rooms_script, "0", std::to_string(offset), std::to_string(limit)},
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
       }});
}

void redis_registry::append_metrics(std::string& o) const {
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  line("roomcast_registry_up", "gauge", "1 while connected to Redis.", healthy() ? 1 : 0);
  line("roomcast_registry_batches_total", "counter", "Pipelines sent to Redis.", impl_->batches.load());
  line("roomcast_registry_commands_total", "counter", "Commands sent to Redis.", impl_->commands_sent.load());
  line("roomcast_registry_reaped_nodes_total", "counter", "Dead nodes whose entries this node removed.",
       impl_->reaped_nodes.load());
  line("roomcast_registry_resyncs_total", "counter", "Full rewrites of this node's state.", impl_->resyncs.load());
  line("roomcast_registry_dropped_writes_total", "counter",
       "Writes dropped while Redis was away (covered by a resync).", impl_->dropped_writes.load());
  line("roomcast_registry_failed_queries_total", "counter", "Queries answered 'unavailable'.",
       impl_->failed_queries.load());
}

// ---------------- registry thread ----------------

bool redis_registry::impl::connect() {
  std::string why;
  ctx = redis::connect(opts.host, opts.port, opts.timeout, why);
  if (!ctx) {
    // Logged once per outage, not once per retry.
    if (!reported_down) {
      spdlog::warn(
          "registry: redis {}:{} unreachable ({}); retrying. Room delivery goes on; user messages go to "
          "every node meanwhile",
          opts.host, opts.port, why);
      reported_down = true;
    }
    return false;
  }
  reported_down = false;
  connected = true;
  needs_resync = true;
  snapshot_requested = false;
  next_heartbeat = {};
  spdlog::info("registry: connected to redis {}:{}", opts.host, opts.port);
  return true;
}

void redis_registry::impl::disconnect(const char* why) {
  if (ctx) {
    spdlog::warn("registry: redis {}:{}: {}", opts.host, opts.port, why);
    redisFree(ctx);
    ctx = nullptr;
  }
  connected = false;
}

// Sends every command as one pipeline and reads every reply. False when the connection broke.
bool redis_registry::impl::exec(std::vector<command>& cmds, std::vector<reply_ptr>* replies) {
  if (cmds.empty()) return true;
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (auto& c : cmds) {
    argv.clear();
    lens.clear();
    for (auto& a : c) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data());
  }
  batches.fetch_add(1, std::memory_order_relaxed);
  commands_sent.fetch_add(cmds.size(), std::memory_order_relaxed);
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    void* r = nullptr;
    if (redisGetReply(ctx, &r) != REDIS_OK || !r) {
      disconnect(ctx && ctx->errstr[0] ? ctx->errstr : "reply failed");
      return false;
    }
    reply_ptr p(static_cast<redisReply*>(r));
    if (p->type == REDIS_REPLY_ERROR) spdlog::warn("registry: redis error: {}", std::string(p->str, p->len));
    if (replies) replies->push_back(std::move(p));
  }
  return true;
}

void redis_registry::impl::run() {
  common::backoff retry(std::chrono::milliseconds(100), std::chrono::milliseconds(2000));  // as every backend
  while (true) {
    {
      std::lock_guard lk(mu);
      if (stopping) break;
    }
    if (!ctx && !connect()) {
      // Unreachable: answer queries now (user messages fall back to every node), drop writes.
      std::vector<query> qs;
      {
        std::unique_lock lk(mu);
        qs.swap(queries);
        if (!writes.empty()) {
          dropped_writes.fetch_add(writes.size(), std::memory_order_relaxed);
          writes.clear();
        }
        overflowed = false;
      }
      failed_queries.fetch_add(qs.size(), std::memory_order_relaxed);
      for (auto& q : qs) q.on_reply(nullptr);
      std::unique_lock lk(mu);
      cv.wait_for(lk, retry.next(), [&] { return stopping || !queries.empty(); });
      continue;
    }
    retry.reset();

    if (needs_resync && !snapshot_requested) {
      // Drop what was queued so far; the snapshot taken after this point covers it (the writes
      // queued meanwhile are idempotent, so applying both is harmless).
      {
        std::lock_guard lk(mu);
        writes.clear();
        overflowed = false;
        snapshot_result.reset();
      }
      snapshot_requested = true;
      snapshot([this](std::vector<session_record> s) {
        {
          std::lock_guard lk(mu);
          snapshot_result = std::move(s);
        }
        cv.notify_one();
      });
    }

    std::vector<command> batch;
    std::vector<query> qs;
    std::optional<std::vector<session_record>> snap;
    {
      std::unique_lock lk(mu);
      // While a resync waits for its snapshot, writes and heartbeats wait too.
      const auto until = needs_resync ? clock::now() + std::chrono::milliseconds(100) : next_heartbeat;
      cv.wait_until(lk, until, [&] {
        return stopping || !queries.empty() || snapshot_result.has_value() ||
               (!needs_resync && (!writes.empty() || clock::now() >= next_heartbeat));
      });
      if (stopping) break;
      if (overflowed) {
        needs_resync = true;
        snapshot_requested = false;
        writes.clear();
        overflowed = false;
        continue;
      }
      snap.swap(snapshot_result);
      // Writes queued before the snapshot was applied wait until it is.
      if (!needs_resync || snap) batch.swap(writes);
      qs.swap(queries);
    }

    std::vector<command> cmds;
    if (snap) {
      cmds.push_back({"EVAL", reap_self_script, "0", opts.node_id});
      for (const auto& s : *snap) {
        cmds.push_back({"HSET", "rc:user:" + s.user, s.session, session_value(s, opts.node_id)});
        cmds.push_back({"SADD", "rc:node_sessions:" + opts.node_id, s.user + "\n" + s.session});
        for (const auto& room : s.rooms) {
          cmds.push_back({"HSET", "rc:room:" + room + ":" + opts.node_id, s.session, s.role + "\n" + s.user});
          cmds.push_back({"SADD", "rc:room_nodes:" + room, opts.node_id});
          cmds.push_back({"SADD", "rc:node_rooms:" + opts.node_id, room});
        }
      }
      needs_resync = false;
      resyncs.fetch_add(1, std::memory_order_relaxed);
      next_heartbeat = {};  // announce ourselves right away
    }
    for (auto& c : batch) cmds.push_back(std::move(c));
    const bool beat = clock::now() >= next_heartbeat && !needs_resync;
    std::size_t beat_at = 0;
    if (beat) {
      const auto ttl = std::to_string(opts.node_ttl.count());
      cmds.push_back({"SET", "rc:node:" + opts.node_id, node_summary(), "PX", ttl});
      cmds.push_back({"SADD", "rc:nodes", opts.node_id});
      beat_at = cmds.size();
      cmds.push_back({"EVAL", reap_dead_script, "0", opts.node_id});
      next_heartbeat = clock::now() + opts.heartbeat;
    }
    const std::size_t first_query = cmds.size();
    for (auto& q : qs) cmds.push_back(q.cmd);

    std::vector<reply_ptr> replies;
    if (!exec(cmds, &replies)) {
      failed_queries.fetch_add(qs.size(), std::memory_order_relaxed);
      for (auto& q : qs) q.on_reply(nullptr);
      continue;
    }
    if (beat) {
      const redisReply* dead = replies[beat_at].get();
      if (dead->type == REDIS_REPLY_ARRAY && dead->elements > 0) {
        reaped_nodes.fetch_add(dead->elements, std::memory_order_relaxed);
        for (std::size_t i = 0; i < dead->elements; ++i)
          spdlog::info("registry: reaped dead node {}", str(dead->element[i]));
      }
    }
    for (std::size_t i = 0; i < qs.size(); ++i) qs[i].on_reply(replies[first_query + i].get());
  }
  // Leaving cleanly: remove this node's entries now rather than waiting for the reaper.
  if (ctx) {
    std::vector<command> bye{{"EVAL", reap_self_script, "0", opts.node_id}, {"DEL", "rc:node:" + opts.node_id}};
    exec(bye, nullptr);
    redisFree(ctx);
    ctx = nullptr;
  }
}

}  // namespace roomcast::registry
