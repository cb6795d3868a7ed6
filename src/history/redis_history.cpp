#include "history/redis_history.hpp"
#include "redis/hiredis.hpp"
#include "common/backoff.hpp"
#include "metrics/prometheus.hpp"

#include <pthread.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <condition_variable>
#include <mutex>

namespace roomcast::history {

namespace {

using clock = std::chrono::steady_clock;

// KEYS: meta, stream, id key. ARGV: keep, maxlen, ttl_ms, epoch candidate, id, from, data, id_window_ms,
// claim (1: the publisher chose the id: check and remember it), channel ('' = don't publish), envelope
// head, envelope tail (bus::encode_envelope_parts). Returns {duplicate (0/1), "<seq>|<epoch>"}.
constexpr const char* append_script = R"lua(
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
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'i', ARGV[5], 'f', ARGV[6], 'd', ARGV[7])
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

enum class errc { unreachable = 1, overloaded, bad_reply };
struct category_t : std::error_category {
  const char* name() const noexcept override { return "roomcast.history"; }
  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::unreachable:
        return "history store (redis) unreachable";
      case errc::overloaded:
        return "history store queue full";
      case errc::bad_reply:
        return "unexpected reply from the history store";
    }
    return "unknown";
  }
};
const category_t category{};
std::error_code make_error(errc e) { return {static_cast<int>(e), category}; }

using redis::num;
using redis::reply_ptr;
using redis::str;

// A queued operation: its command and what to do with the reply (nullptr = failed).
struct op {
  std::vector<std::string> cmd;  // cmd[0] is "EVALSHA"; cmd[1] is filled with the sha when sent
  int script;                    // 0 append, 1 read
  std::function<void(const redisReply*, std::error_code)> done;
};

}  // namespace

struct redis_history::impl {
  redis_history_options opts;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<op> ops;
  bool stopping = false;
  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> appends{0}, duplicates{0}, reads{0}, batches{0}, failures{0}, published{0};
  std::thread thread;

  redisContext* ctx = nullptr;
  std::string sha[2];
  bool reported_down = false;

  void push(op o) {
    {
      std::unique_lock lk(mu);
      if (ops.size() >= opts.max_pending) {
        lk.unlock();
        failures.fetch_add(1, std::memory_order_relaxed);
        o.done(nullptr, make_error(errc::overloaded));
        return;
      }
      ops.push_back(std::move(o));
    }
    cv.notify_one();
  }

  bool connect() {
    std::string why;
    ctx = redis::connect(opts.host, opts.port, opts.timeout, why);
    if (!ctx) {
      if (!reported_down) {
        spdlog::warn("history: redis {}:{} unreachable ({}); publishes to rooms with history answer 503 meanwhile",
                     opts.host, opts.port, why);
        reported_down = true;
      }
      return false;
    }
    const char* scripts[2] = {append_script, read_script};
    for (int i = 0; i < 2; ++i) {
      reply_ptr r(static_cast<redisReply*>(redisCommand(ctx, "SCRIPT LOAD %s", scripts[i])));
      if (!r || r->type != REDIS_REPLY_STRING) {
        redisFree(ctx);
        ctx = nullptr;
        return false;
      }
      sha[i] = str(r.get());
    }
    reported_down = false;
    connected = true;
    spdlog::info("history: connected to redis {}:{}", opts.host, opts.port);
    return true;
  }

  void disconnect(const char* why) {
    if (ctx) {
      spdlog::warn("history: redis {}:{}: {}", opts.host, opts.port, why);
      redisFree(ctx);
      ctx = nullptr;
    }
    connected = false;
  }

  void run() {
    // The same reconnect policy as every backend (common/backoff.hpp); callers are answered
    // `unreachable` at once meanwhile, so the API says 503 instead of holding requests.
    common::backoff retry(std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
    for (;;) {
      std::vector<op> batch;
      {
        std::unique_lock lk(mu);
        cv.wait_for(lk, std::chrono::milliseconds(500), [&] { return stopping || !ops.empty(); });
        if (stopping) break;
        batch.swap(ops);
      }
      if (!ctx && !connect()) {
        // Fail fast rather than hold callers: the API answers 503 and the backend retries.
        failures.fetch_add(batch.size(), std::memory_order_relaxed);
        for (auto& o : batch) o.done(nullptr, make_error(errc::unreachable));
        std::unique_lock lk(mu);
        cv.wait_for(lk, retry.next(), [&] { return stopping; });
        continue;
      }
      retry.reset();
      if (batch.empty()) continue;
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (auto& o : batch) {
        o.cmd[1] = sha[o.script];
        argv.clear();
        lens.clear();
        for (auto& a : o.cmd) {
          argv.push_back(a.data());
          lens.push_back(a.size());
        }
        redisAppendCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data());
      }
      batches.fetch_add(1, std::memory_order_relaxed);
      std::size_t i = 0;
      for (; i < batch.size(); ++i) {
        void* r = nullptr;
        if (redisGetReply(ctx, &r) != REDIS_OK || !r) break;
        reply_ptr p(static_cast<redisReply*>(r));
        if (p->type == REDIS_REPLY_ERROR) {
          const std::string e = str(p.get());
          spdlog::warn("history: redis error: {}", e);
          failures.fetch_add(1, std::memory_order_relaxed);
          batch[i].done(nullptr, make_error(errc::bad_reply));
          if (e.rfind("NOSCRIPT", 0) == 0) sha[0].clear();  // scripts flushed: reload on reconnect
          continue;
        }
        batch[i].done(p.get(), {});
      }
      if (i < batch.size()) {
        disconnect(ctx && ctx->errstr[0] ? ctx->errstr : "reply failed");
        failures.fetch_add(batch.size() - i, std::memory_order_relaxed);
        for (; i < batch.size(); ++i) batch[i].done(nullptr, make_error(errc::unreachable));
      } else if (sha[0].empty()) {
        disconnect("scripts missing (SCRIPT FLUSH?)");
      }
    }
    if (ctx) redisFree(ctx);
    ctx = nullptr;
    // Answer what is left so no caller waits forever.
    std::vector<op> left;
    {
      std::lock_guard lk(mu);
      left.swap(ops);
    }
    for (auto& o : left) o.done(nullptr, make_error(errc::unreachable));
  }
};

redis_history::redis_history(redis_history_options opts) : impl_(std::make_unique<impl>()) {
  impl_->opts = std::move(opts);
}

redis_history::~redis_history() { stop(); }

void redis_history::start() {
  impl_->thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "rc-history");  // top -H, perf
    impl_->run();
  });
}

void redis_history::stop() {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_one();
  impl_->thread.join();
}

bool redis_history::publishes(const bus::envelope& e) const noexcept {
  return !impl_->opts.publish_prefix.empty() && e.kind == protocol::target_kind::room &&
         e.type == bus::envelope_type::message;
}

bool redis_history::healthy() const { return impl_->connected.load(std::memory_order_relaxed); }

void redis_history::append(const bus::envelope& e, const policy& p, std::function<void(append_result)> cb) {
  const auto& pre = impl_->opts.prefix;
  const bool keep = p.keeps() && e.kind == protocol::target_kind::room;
  if (!keep && !e.claim_id) return cb({});  // nothing to claim, nothing to store
  impl_->appends.fetch_add(1, std::memory_order_relaxed);
  const bool publish = publishes(e);
  op o;
  o.script = 0;
  o.cmd.reserve(18);
  o.cmd = {"EVALSHA",
           "",
           "3",
           pre + ":hm:" + e.target,
           pre + ":hs:" + e.target,
           pre + ":id:" + e.id,
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
    o.cmd.push_back(impl_->opts.publish_prefix + e.target);
    o.cmd.push_back(std::move(parts.head));
    o.cmd.push_back(std::move(parts.tail));
  } else {
    o.cmd.insert(o.cmd.end(), {"", "", ""});
  }
  o.done = [cb = std::move(cb), m = impl_.get(), publish](const redisReply* r, std::error_code ec) {
    append_result res;
    if (ec) {
      res.ec = ec;
      return cb(std::move(res));
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      res.ec = make_error(errc::bad_reply);
      return cb(std::move(res));
    }
    res.duplicate = num(r->element[0]) == 1;
    if (res.duplicate) m->duplicates.fetch_add(1, std::memory_order_relaxed);
    if (publish && !res.duplicate) m->published.fetch_add(1, std::memory_order_relaxed);
    const std::string rec = str(r->element[1]);
    const auto bar = rec.find('|');
    std::from_chars(rec.data(), rec.data() + bar, res.seq);
    if (bar != std::string::npos) res.epoch = rec.substr(bar + 1);
    cb(std::move(res));
  };
  impl_->push(std::move(o));
}

void redis_history::read(const std::string& room, std::uint64_t since, std::size_t limit,
                         std::chrono::milliseconds create_ttl, std::function<void(read_result)> cb) {
  const auto& pre = impl_->opts.prefix;
  impl_->reads.fetch_add(1, std::memory_order_relaxed);
  op o;
  o.script = 1;
  o.cmd = {"EVALSHA",
           "",
           "2",
           pre + ":hm:" + room,
           pre + ":hs:" + room,
           std::to_string(since),
           std::to_string(limit),
           std::to_string(create_ttl.count()),
           new_epoch()};
  o.done = [cb = std::move(cb), since](const redisReply* r, std::error_code ec) {
    read_result res;
    if (ec) {
      res.ec = ec;
      return cb(std::move(res));
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
      res.ec = make_error(errc::bad_reply);
      return cb(std::move(res));
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
        const redisReply* kv = item->element[1];
        for (std::size_t k = 0; k + 1 < kv->elements; k += 2) {
          const std::string key = str(kv->element[k]);
          if (key == "i")
            en.id = str(kv->element[k + 1]);
          else if (key == "f")
            en.from = str(kv->element[k + 1]);
          else if (key == "d")
            en.data = str(kv->element[k + 1]);
        }
        res.entries.push_back(std::move(en));
      }
    }
    res.complete = since >= res.head || (!res.entries.empty() && res.entries.front().seq == since + 1 &&
                                         res.entries.back().seq == res.head && res.entries.size() == res.head - since);
    if (res.epoch.empty()) res.complete = since == 0;
    cb(std::move(res));
  };
  impl_->push(std::move(o));
}

void redis_history::append_metrics(std::string& o) const {
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  line("roomcast_history_up", "gauge", "1 while connected to the history store.", healthy() ? 1 : 0);
  line("roomcast_history_appends_total", "counter", "Publishes sent to the history store.", impl_->appends.load());
  line("roomcast_history_duplicates_total", "counter", "Publishes refused as duplicate ids.", impl_->duplicates.load());
  line("roomcast_history_reads_total", "counter", "History reads (recovery, gap fills, API).", impl_->reads.load());
  line("roomcast_history_batches_total", "counter", "Pipelines sent to the history store.", impl_->batches.load());
  line("roomcast_history_failures_total", "counter", "History operations that failed.", impl_->failures.load());
  line("roomcast_history_published_total", "counter",
       "Room messages the append script PUBLISHed itself (redis bus on the same Redis).", impl_->published.load());
}

}  // namespace roomcast::history
