#pragma once
// History and idempotency in Redis, shared by every node. One Lua script per publish does the id
// claim (SET NX semantics), INCR of the room's seq and XADD with MAXLEN, atomically, so every
// node and client sees the same numbers. The scripts run by sha on a redis::connection on the
// process's Redis thread, pipelined (the measurement: ~137k scripts/s pipelined vs ~51k/s
// one by one). While Redis is away, calls fail at once (redis::errc::not_connected): the API says
// 503 rather than hold requests. Callbacks run on the Redis thread; methods may be called from any.
//
// Keys: <p>:hm:<room> hash {epoch, seq} · <p>:hs:<room> stream, entry id "<seq>-0" with fields
// i (id), f (from), d (data) · <p>:id:<id> "<seq>|<epoch>" with the id window as TTL.
// A lost history (FLUSHALL, expiry) has no epoch: the next publish starts a new one.
//
// With the redis bus on the same server (`publish_prefix` set), the append script also PUBLISHes
// the room message's envelope on <publish_prefix><room>, with the seq it just assigned: one round
// trip instead of two, no hop through the bus thread, and the channel carries a room's messages in
// seq order whichever node published them.
#include "history/history.hpp"

#include <memory>
#include <string_view>

struct redisReply;

namespace roomcast::redis {
class loop;
}

namespace roomcast::history {

struct redis_history_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string prefix = "rc";
  std::chrono::milliseconds timeout{2'000};
  std::chrono::milliseconds id_window{300'000};
  std::size_t max_pending = 100'000;  // operations waiting for Redis; beyond it they fail at once (queue_full)
  // Non-empty: room messages are PUBLISHed by the append script on <publish_prefix><room> (the
  // redis bus's room channels, e.g. "roomcast:room:"); append_result.published says so.
  std::string publish_prefix;
};

// The read script's reply as a read_result (sans-io; exposed for the fuzzer and the tests).
// Entries out of order, outside (since, head] or with an unreadable audience are left out.
read_result decode_read_reply(const redisReply* r, std::uint64_t since, std::string_view room);

class redis_history final : public history {
 public:
  explicit redis_history(redis_history_options opts);
  ~redis_history() override;

  void start() override;
  void stop() override;
  void append(const bus::envelope& e, const policy& p, std::function<void(append_result)> cb) override;
  void mute(const std::string& room, const std::string& user, std::chrono::milliseconds duration,
            std::function<void(std::error_code)> cb) override;
  void read(const std::string& room, std::uint64_t since, std::size_t limit, std::chrono::milliseconds create_ttl,
            std::function<void(read_result)> cb) override;
  bool publishes(const bus::envelope& e) const noexcept override;
  bool healthy() const override;
  const char* name() const noexcept override { return "redis"; }
  void append_metrics(std::string& out) const override;

  struct impl;

 private:
  std::shared_ptr<redis::loop> loop_;  // outlives impl_ (what is posted may hold impl_ a little longer)
  std::shared_ptr<impl> impl_;
};

}  // namespace roomcast::history
