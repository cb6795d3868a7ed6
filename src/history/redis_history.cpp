#include "history/redis_history.hpp"

#include "metrics/prometheus.hpp"
#include "redis/connection.hpp"
#include "redis/hiredis.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <future>

namespace roomcast::history {

namespace {

using clock = std::chrono::steady_clock;

// KEYS: meta, stream, id key, mute key. ARGV: keep, maxlen, ttl_ms, epoch candidate, id, from, data,
// id_window_ms, claim (1: the publisher chose the id: check and remember it), channel ('' = don't
// publish), envelope head, envelope tail (bus::encode_envelope_parts), audience ('' = everyone;
// protocol::filter_json), check mute (1: refuse when the mute key exists), receipt ('1': stored as r).
// Returns {duplicate (0/1; 2 = muted), "<seq>|<epoch>"}.
constexpr const char* append_script = R"lua(
if ARGV[14] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return {2, ''} end
if ARGV[9] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then return {1, prev} end
end
local seq, epoch = 0, ''
if ARGV[1] == '1' then
  epoch = redis.call('HGET', KEYS[1], 'epoch')
  if not epoch then
    epoch = ARGV[4]
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'epoch', epoch)
  end
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  local fields = {'i', ARGV[5], 'f', ARGV[6], 'd', ARGV[7]}
  if ARGV[13] ~= '' then fields[#fields + 1] = 'a'; fields[#fields + 1] = ARGV[13] end
  if ARGV[15] == '1' then fields[#fields + 1] = 'r'; fields[#fields + 1] = '1' end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', unpack(fields))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local rec = seq .. '|' .. epoch
if ARGV[9] == '1' then redis.call('SET', KEYS[3], rec, 'PX', ARGV[8]) end
if ARGV[10] ~= '' then
  if seq > 0 then
    redis.call('PUBLISH', ARGV[10], ARGV[11] .. ',"seq":' .. seq .. ',"epoch":"' .. epoch .. '"' .. ARGV[12])
  else
    redis.call('PUBLISH', ARGV[10], ARGV[11] .. ARGV[12])
  end
end
return {0, rec}
)lua";

// KEYS: meta, stream. ARGV: since, limit, create_ttl_ms, epoch candidate. Returns {epoch, head,
// XRANGE entries}. With create_ttl_ms > 0 a room without history gets its epoch (seq 0) now.
constexpr const char* read_script = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
if epoch == '' and tonumber(ARGV[3]) > 0 then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local head = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local entries = {}
if head > tonumber(ARGV[1]) and tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', ARGV[2])
end
return {epoch, head, entries}
)lua";

// The room and user, unambiguous whatever characters they hold (the room's length first).
std::string mute_key(const std::string& prefix, const std::string& room, const std::string& user) {
  return prefix + ":mu:" + std::to_string(room.size()) + ":" + room + user;
}

using redis::num;
using redis::str;

// Errors are Redis's own (redis/errors.hpp); a reply of the wrong shape is bad_reply.
const std::error_code bad_reply = redis::make_error(redis::errc::bad_reply);

}  // namespace

// Runs on the Redis thread; public methods post there. Shared with what is posted.
struct redis_history::impl : std::enable_shared_from_this<impl> {
  impl(redis::loop& l, redis_history_options o)
      : opts(std::move(o)),
        lp(l),
        conn(l, {opts.host, opts.port, "history", opts.timeout, std::chrono::milliseconds(100),
                 std::chrono::milliseconds(2000), opts.max_pending, false,
                 "Publishes to rooms with history answer 503 meanwhile"}),
        append_id(conn.add_script(append_script)),
        read_id(conn.add_script(read_script)) {}

  redis_history_options opts;
  redis::loop& lp;
  redis::connection conn;
  redis::script_set::id append_id, read_id;
  std::atomic<bool> stop_called{false};
  std::atomic<std::uint64_t> appends{0}, duplicates{0}, reads{0}, failures{0}, published{0};

  // Fails fast while Redis is away (the API answers 503 and the backend retries) rather than
  // holding callers; every error is counted and logged by the connection.
  void run(redis::script_set::id s, redis::command args, redis::reply_handler done) {
    lp.post([self = shared_from_this(), s, args = std::move(args), done = std::move(done)]() mutable {
      self->conn.eval(s, std::move(args), [self, done = std::move(done)](const redisReply* r, std::error_code ec) {
        if (ec == redis::make_error(redis::errc::error_reply)) spdlog::warn("history: redis error: {}", redis::view(r));
        if (ec) self->failures.fetch_add(1, std::memory_order_relaxed);
        done(ec ? nullptr : r, ec);
      });
    });
  }
};

redis_history::redis_history(redis_history_options opts)
    : loop_(redis::loop::shared()), impl_(std::make_shared<impl>(*loop_, std::move(opts))) {}

redis_history::~redis_history() { stop(); }

void redis_history::start() { impl_->conn.start(); }

void redis_history::stop() {
  // What still waits is answered (errc::stopped) so no caller waits forever.
  if (!impl_->stop_called.exchange(true)) impl_->conn.stop_and_wait();
}

bool redis_history::publishes(const bus::envelope& e) const noexcept {
  return !impl_->opts.publish_prefix.empty() && e.kind == protocol::target_kind::room &&
         e.type == bus::envelope_type::message;
}

bool redis_history::healthy() const { return impl_->conn.is_up(); }

void redis_history::append(const bus::envelope& e, const policy& p, std::function<void(append_result)> cb) {
  const auto& pre = impl_->opts.prefix;
  const bool keep = p.keeps() && e.kind == protocol::target_kind::room;
  if (!keep && !e.claim_id && !e.check_mute) return cb({});  // nothing to claim, store or check
  impl_->appends.fetch_add(1, std::memory_order_relaxed);
  const bool publish = publishes(e);
  redis::command args;
  args.reserve(19);
  args = {"4",
          pre + ":hm:" + e.target,
          pre + ":hs:" + e.target,
          pre + ":id:" + e.id,
          mute_key(pre, e.target, e.from),
          keep ? "1" : "0",
          std::to_string(p.max_messages),
          std::to_string(p.ttl.count()),
          new_epoch(),
          e.id,
          e.from,
          e.data,
          std::to_string(impl_->opts.id_window.count()),
          e.claim_id ? "1" : "0"};
  if (publish) {
    auto parts = bus::encode_envelope_parts(e);
    args.push_back(impl_->opts.publish_prefix + e.target);
    args.push_back(std::move(parts.head));
    args.push_back(std::move(parts.tail));
  } else {
    args.insert(args.end(), {"", "", ""});
  }
  args.push_back(protocol::filter_json(e.audience));
  args.push_back(e.check_mute ? "1" : "0");
  args.push_back(e.receipt ? "1" : "0");
  auto* m = impl_.get();
  impl_->run(impl_->append_id, std::move(args),
             [cb = std::move(cb), m, publish](const redisReply* r, std::error_code ec) {
               append_result res;
               if (!ec && (r->type != REDIS_REPLY_ARRAY || r->elements != 2)) ec = bad_reply;
               if (ec) {
                 res.ec = ec;
                 return cb(std::move(res));
               }
               res.muted = num(r->element[0]) == 2;
               if (res.muted) return cb(std::move(res));
               res.duplicate = num(r->element[0]) == 1;
               if (res.duplicate) m->duplicates.fetch_add(1, std::memory_order_relaxed);
               if (publish && !res.duplicate) m->published.fetch_add(1, std::memory_order_relaxed);
               const std::string rec = str(r->element[1]);
               const auto bar = rec.find('|');
               std::from_chars(rec.data(), rec.data() + bar, res.seq);
               if (bar != std::string::npos) res.epoch = rec.substr(bar + 1);
               cb(std::move(res));
             });
}

// The read script's reply {epoch, head, [[id, [k, v, ...]], ...]}: what came back from Redis is
// checked, not trusted (tests/fuzz/fuzz_history_reply.cpp feeds it arbitrary RESP).
read_result decode_read_reply(const redisReply* r, std::uint64_t since, std::string_view room) {
  read_result res;
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
    res.ec = bad_reply;
    return res;
  }
  res.epoch = str(r->element[0]);
  res.head = num(r->element[1]);
  const redisReply* list = r->element[2];
  if (list->type == REDIS_REPLY_ARRAY) {
    res.entries.reserve(list->elements);
    for (std::size_t i = 0; i < list->elements; ++i) {
      const redisReply* item = list->element[i];  // [id, [k, v, ...]]
      if (item->type != REDIS_REPLY_ARRAY || item->elements != 2) continue;
      entry en;
      const std::string id = str(item->element[0]);
      std::from_chars(id.data(), id.data() + id.size(), en.seq);
      // read_result promises ascending seqs in (since, head]: an entry out of that order is dropped
      // (the completeness check below then reports the hole).
      if (en.seq <= since || en.seq > res.head || (!res.entries.empty() && en.seq <= res.entries.back().seq)) continue;
      const redisReply* kv = item->element[1];
      bool readable = kv->type == REDIS_REPLY_ARRAY;
      for (std::size_t k = 0; readable && k + 1 < kv->elements; k += 2) {
        const std::string key = str(kv->element[k]);
        if (key == "i")
          en.id = str(kv->element[k + 1]);
        else if (key == "f")
          en.from = str(kv->element[k + 1]);
        else if (key == "d")
          en.data = str(kv->element[k + 1]);
        else if (key == "r")
          en.receipt = true;
        else if (key == "a")
          readable = protocol::parse_filter_json(str(kv->element[k + 1]), en.audience);
      }
      // Who a message was for must be known: a corrupt entry is reported as lost (a gap), never
      // sent to members it may not be for.
      if (!readable) {
        spdlog::warn("history: room {} seq {}: unreadable entry; treated as lost", room, en.seq);
        continue;
      }
      res.entries.push_back(std::move(en));
    }
  }
  res.complete = since >= res.head || (!res.entries.empty() && res.entries.front().seq == since + 1 &&
                                       res.entries.back().seq == res.head && res.entries.size() == res.head - since);
  if (res.epoch.empty()) res.complete = since == 0;
  return res;
}

void redis_history::read(const std::string& room, std::uint64_t since, std::size_t limit,
                         std::chrono::milliseconds create_ttl, std::function<void(read_result)> cb) {
  const auto& pre = impl_->opts.prefix;
  impl_->reads.fetch_add(1, std::memory_order_relaxed);
  redis::command args{"2",
                      pre + ":hm:" + room,
                      pre + ":hs:" + room,
                      std::to_string(since),
                      std::to_string(limit),
                      std::to_string(create_ttl.count()),
                      new_epoch()};
  impl_->run(impl_->read_id, std::move(args),
             [cb = std::move(cb), since, room](const redisReply* r, std::error_code ec) {
               cb(ec ? read_result{ec} : decode_read_reply(r, since, room));
             });
}

void redis_history::mute(const std::string& room, const std::string& user, std::chrono::milliseconds duration,
                         std::function<void(std::error_code)> cb) {
  redis::command c = duration.count() > 0 ? redis::command{"SET", mute_key(impl_->opts.prefix, room, user), "1", "PX",
                                                           std::to_string(duration.count())}
                                          : redis::command{"DEL", mute_key(impl_->opts.prefix, room, user)};
  impl_->lp.post([self = impl_, c = std::move(c), cb = std::move(cb)]() mutable {
    self->conn.send(c, [cb = std::move(cb)](const redisReply*, std::error_code ec) { cb(ec); });
  });
}

void redis_history::append_metrics(std::string& o) const {
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  impl_->conn.append_metrics(o, "roomcast_history", redis::metric_up);
  line("roomcast_history_appends_total", "counter", "Publishes sent to the history store.", impl_->appends.load());
  line("roomcast_history_duplicates_total", "counter", "Publishes refused as duplicate ids.", impl_->duplicates.load());
  line("roomcast_history_reads_total", "counter", "History reads (recovery, gap fills, API).", impl_->reads.load());
  impl_->conn.append_metrics(o, "roomcast_history", redis::metric_batches);
  line("roomcast_history_failures_total", "counter", "History operations that failed.", impl_->failures.load());
  line("roomcast_history_published_total", "counter",
       "Room messages the append script PUBLISHed itself (redis bus on the same Redis).", impl_->published.load());
}

}  // namespace roomcast::history
