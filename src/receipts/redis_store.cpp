#include "receipts/redis_store.hpp"

#include "metrics/prometheus.hpp"
#include "redis/connection.hpp"
#include "redis/hiredis.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <future>

namespace roomcast::receipts {

namespace {

// ARGV: prefix, id, room, ttl_ms, now_ms, max_messages, audience, users... Returns 1 created, 0 exists,
// -1 full.
constexpr const char* create_script = R"lua(
local pre, id = ARGV[1], ARGV[2]
local rec = pre .. ':rc:' .. id
if redis.call('EXISTS', rec) == 1 then return 0 end
local all = pre .. ':rca'
local ttl, now = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', all, '-inf', now)
if redis.call('ZCARD', all) >= tonumber(ARGV[6]) then return -1 end
local exp = now + ttl
redis.call('HSET', rec, 'room', ARGV[3], 'expected', #ARGV - 7, 'frame', '', 'aud', ARGV[7])
redis.call('PEXPIRE', rec, ttl)
local missing = pre .. ':rcm:' .. id
for i = 8, #ARGV do
  redis.call('SADD', missing, ARGV[i])
  local uk = pre .. ':rcu:' .. ARGV[i]
  redis.call('ZADD', uk, exp, id)
  redis.call('PEXPIRE', uk, ttl)
end
if #ARGV > 7 then redis.call('PEXPIRE', missing, ttl) end
redis.call('ZADD', all, exp, id)
return 1
)lua";

// KEYS: record. ARGV: frame, seq, epoch.
constexpr const char* published_script = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'frame', ARGV[1], 'seq', ARGV[2], 'epoch', ARGV[3])
return 1
)lua";

// KEYS: missing set, user's set. ARGV: user, id.
constexpr const char* confirm_script = R"lua(
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
)lua";

// ARGV: prefix, user, room, now_ms. Returns {{id, seq, epoch, frame, audience}, ...}, oldest first: of
// the user's 1,000 oldest unconfirmed messages (every room), those of `room`.
constexpr const char* pending_script = R"lua(
local pre = ARGV[1]
local uk = pre .. ':rcu:' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', uk, '-inf', ARGV[4])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', uk, 0, 999)) do
  local rec = redis.call('HMGET', pre .. ':rc:' .. id, 'room', 'frame', 'seq', 'epoch', 'aud')
  if not rec[1] then
    redis.call('ZREM', uk, id)
  elseif rec[1] == ARGV[3] and rec[2] and rec[2] ~= '' and
         redis.call('SISMEMBER', pre .. ':rcm:' .. id, ARGV[2]) == 1 then
    out[#out + 1] = {id, rec[3] or '0', rec[4] or '', rec[2], rec[5] or ''}
  end
end
return out
)lua";

// KEYS: record, missing set. Returns {room, expected, {missing...}} or {} when unknown.
constexpr const char* describe_script = R"lua(
local rec = redis.call('HMGET', KEYS[1], 'room', 'expected')
if not rec[1] then return {} end
return {rec[1], rec[2], redis.call('SMEMBERS', KEYS[2])}
)lua";

std::string now_ms() {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

using redis::str;

}  // namespace

struct redis_store::impl : std::enable_shared_from_this<impl> {
  impl(redis::loop& l, redis_store_options o)
      : opts(std::move(o)),
        lp(l),
        conn(l, {opts.host, opts.port, "receipts", opts.timeout, std::chrono::milliseconds(100),
                 std::chrono::milliseconds(2000), 100'000, false,
                 "Publishes with receipts answer 503; confirms are lost (those users get the message again)"}),
        create_id(conn.add_script(create_script)),
        published_id(conn.add_script(published_script)),
        confirm_id(conn.add_script(confirm_script)),
        pending_id(conn.add_script(pending_script)),
        describe_id(conn.add_script(describe_script)) {}

  redis_store_options opts;
  redis::loop& lp;
  redis::connection conn;
  redis::script_set::id create_id, published_id, confirm_id, pending_id, describe_id;
  std::atomic<bool> stop_called{false};
  std::atomic<std::uint64_t> created{0}, confirmed{0}, full{0}, failures{0};

  void run(redis::script_set::id s, redis::command args, redis::reply_handler done) {
    lp.post([self = shared_from_this(), s, args = std::move(args), done = std::move(done)]() mutable {
      self->conn.eval(s, std::move(args), [self, done = std::move(done)](const redisReply* r, std::error_code ec) {
        if (ec == redis::make_error(redis::errc::error_reply))
          spdlog::warn("receipts: redis error: {}", redis::view(r));
        if (ec) self->failures.fetch_add(1, std::memory_order_relaxed);
        done(ec ? nullptr : r, ec);
      });
    });
  }
  std::string key(std::string_view kind, std::string_view name) const {
    std::string k = opts.prefix;
    k += ':';
    k += kind;
    k += ':';
    k += name;
    return k;
  }
};

redis_store::redis_store(redis_store_options opts)
    : loop_(redis::loop::shared()), impl_(std::make_shared<impl>(*loop_, std::move(opts))) {}

redis_store::~redis_store() { stop(); }

void redis_store::start() { impl_->conn.start(); }

void redis_store::stop() {
  if (!impl_->stop_called.exchange(true)) impl_->conn.stop_and_wait();
}

void redis_store::create(const std::string& id, const std::string& room, const std::string& audience,
                         const std::vector<std::string>& users,
                         std::function<void(std::error_code, create_result)> cb) {
  const auto& b = impl_->opts.bounds;
  redis::command args{
      "0",     impl_->opts.prefix, id, room, std::to_string(b.ttl.count()), now_ms(), std::to_string(b.max_messages),
      audience};
  args.insert(args.end(), users.begin(), users.end());
  auto* m = impl_.get();
  impl_->run(impl_->create_id, std::move(args), [m, cb = std::move(cb)](const redisReply* r, std::error_code ec) {
    if (ec) return cb(ec, create_result::full);
    const auto v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    if (v == 1) m->created.fetch_add(1, std::memory_order_relaxed);
    if (v == -1) m->full.fetch_add(1, std::memory_order_relaxed);
    if (v == -2) return cb(redis::make_error(redis::errc::bad_reply), create_result::full);
    cb({}, v == 1 ? create_result::created : v == 0 ? create_result::exists : create_result::full);
  });
}

void redis_store::published(const std::string& id, std::string frame, std::uint64_t seq, const std::string& epoch) {
  impl_->run(impl_->published_id, {"1", impl_->key("rc", id), std::move(frame), std::to_string(seq), epoch},
             [](const redisReply*, std::error_code) {});
}

void redis_store::drop(const std::string& id) {
  auto k = impl_->key("rc", id), m = impl_->key("rcm", id), a = impl_->opts.prefix + ":rca";
  impl_->lp.post([self = impl_, k, m, a, id] {
    self->conn.send({"DEL", k, m}, [](const redisReply*, std::error_code) {});
    self->conn.send({"ZREM", a, id}, [](const redisReply*, std::error_code) {});
  });
}

void redis_store::confirm(const std::string& id, const std::string& user) {
  auto* m = impl_.get();
  impl_->run(impl_->confirm_id, {"2", impl_->key("rcm", id), impl_->key("rcu", user), user, id},
             [m](const redisReply* r, std::error_code ec) {
               if (!ec && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
                 m->confirmed.fetch_add(1, std::memory_order_relaxed);
             });
}

void redis_store::pending(const std::string& user, const std::string& room,
                          std::function<void(std::error_code, std::vector<pending_message>)> cb) {
  impl_->run(impl_->pending_id, {"0", impl_->opts.prefix, user, room, now_ms()},
             [cb = std::move(cb)](const redisReply* r, std::error_code ec) {
               std::vector<pending_message> out;
               if (ec) return cb(ec, std::move(out));
               if (r->type == REDIS_REPLY_ARRAY)
                 for (std::size_t i = 0; i < r->elements; ++i) {
                   const redisReply* e = r->element[i];
                   if (e->type != REDIS_REPLY_ARRAY || e->elements != 5) continue;
                   pending_message p{str(e->element[0]), 0, str(e->element[2]), str(e->element[3]), str(e->element[4])};
                   const auto seq = redis::view(e->element[1]);
                   std::from_chars(seq.data(), seq.data() + seq.size(), p.seq);
                   out.push_back(std::move(p));
                 }
               cb({}, std::move(out));
             });
}

void redis_store::describe(const std::string& id, const std::string& after, std::size_t limit,
                           std::function<void(std::error_code, std::optional<status>)> cb) {
  impl_->run(impl_->describe_id, {"2", impl_->key("rc", id), impl_->key("rcm", id)},
             [after, limit, cb = std::move(cb)](const redisReply* r, std::error_code ec) {
               if (ec) return cb(ec, std::nullopt);
               if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return cb({}, std::nullopt);
               status s;
               s.room = str(r->element[0]);
               const auto expected = redis::view(r->element[1]);
               std::from_chars(expected.data(), expected.data() + expected.size(), s.expected);
               std::vector<std::string> missing;
               const redisReply* set = r->element[2];
               for (std::size_t i = 0; set->type == REDIS_REPLY_ARRAY && i < set->elements; ++i)
                 missing.push_back(str(set->element[i]));
               std::sort(missing.begin(), missing.end());
               s.received = s.expected - std::min(s.expected, missing.size());
               page_missing(missing, after, limit, s);
               cb({}, std::move(s));
             });
}

void redis_store::append_metrics(std::string& o) const {
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  impl_->conn.append_metrics(o, "roomcast_receipts", redis::metric_up);
  line("roomcast_receipts_created_total", "counter", "Messages published with receipts.", impl_->created.load());
  line("roomcast_receipts_confirmed_total", "counter", "Users' confirmations recorded.", impl_->confirmed.load());
  line("roomcast_receipts_refused_total", "counter",
       "Publishes with receipts refused: the store was full (receipt_max_messages).", impl_->full.load());
  line("roomcast_receipts_failures_total", "counter", "Receipt operations that failed (Redis unreachable).",
       impl_->failures.load());
}

}  // namespace roomcast::receipts
