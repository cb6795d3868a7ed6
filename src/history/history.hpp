#pragma once
// A room's recent messages with their per-room sequence numbers, and publish idempotency.
// Implementations: local (in memory, one node) and redis (one atomic script per publish, pipelined).
//
// Threads: any thread may call; callbacks run on any thread (the caller posts back).
#include "bus/envelope.hpp"
#include "history/rules.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

namespace roomcast::history {

struct entry {
  std::uint64_t seq = 0;
  std::string id;
  std::string from;
  std::string data;           // raw JSON
  protocol::filter audience;  // who in the room it is for (empty: everyone)
  bool receipt = false;       // must-arrive (its frame asks the client to confirm)
};

struct append_result {
  std::error_code ec;      // set: nothing was stored (store unreachable)
  bool duplicate = false;  // the id was accepted before: seq/epoch are the first publish's
  bool muted = false;      // check_mute and the publisher is muted in the room: nothing stored
  std::uint64_t seq = 0;   // 0 when the room keeps no history
  std::string epoch;
};

struct read_result {
  std::error_code ec;
  std::string epoch;           // empty: the room has no history (never had, or it expired)
  std::uint64_t head = 0;      // last seq assigned
  bool complete = false;       // entries hold every seq in (since, head]
  std::vector<entry> entries;  // ascending seq, all > since
};

class history {
 public:
  virtual ~history() = default;
  virtual void start() {}
  virtual void stop() {}

  // Claims e.id for `id_window` (a second publish of the same id is reported as duplicate and must
  // not be delivered) and, when the room keeps history, assigns the next seq and stores it.
  virtual void append(const bus::envelope& e, const policy& p, std::function<void(append_result)> cb) = 0;

  // Mutes `user` in `room` for `duration` (0: unmutes): a publish with check_mute from that user
  // is refused (append_result::muted) until then. Held where the ids are: cluster-wide with Redis.
  virtual void mute(const std::string& room, const std::string& user, std::chrono::milliseconds duration,
                    std::function<void(std::error_code)> cb) = 0;

  // Entries after `since` (at most `limit`), the head and the epoch. create_ttl > 0: a room without
  // history gets its epoch now (seq 0, kept create_ttl), so a client joining a fresh room learns
  // the epoch its first messages will belong to.
  virtual void read(const std::string& room, std::uint64_t since, std::size_t limit,
                    std::chrono::milliseconds create_ttl, std::function<void(read_result)> cb) = 0;

  // True when a successful append of `e` that is not a duplicate has also put `e` on the bus, so
  // the caller must not publish it again: the redis history's script PUBLISHes room messages on
  // the redis bus's channel itself (redis_script_publish). Fixed by the configuration.
  virtual bool publishes(const bus::envelope&) const noexcept { return false; }

  virtual bool healthy() const { return true; }
  virtual const char* name() const noexcept = 0;
  virtual void append_metrics(std::string&) const {}
};

// A random epoch id (16 hex digits).
std::string new_epoch();

}  // namespace roomcast::history
