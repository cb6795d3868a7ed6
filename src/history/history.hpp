#pragma once
// A room's recent messages with their per-room sequence numbers, and publish idempotency.
// Implementations: local (in memory, one node) and redis (one atomic script per publish, pipelined).
//
// Threads: any thread may call; callbacks run on any thread (the caller posts back).
#include "bus/bus.hpp"

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
  std::string data;  // raw JSON
};

// How a room keeps history (from the `history` config rules).
struct policy {
  std::size_t max_messages = 300;  // 0 = no history (no seq)
  std::chrono::milliseconds ttl{600'000};  // history is dropped after this long without a message
  bool keeps() const noexcept { return max_messages > 0; }
};

struct append_result {
  std::error_code ec;      // set: nothing was stored (store unreachable)
  bool duplicate = false;  // the id was accepted before: seq/epoch are the first publish's
  std::uint64_t seq = 0;   // 0 when the room keeps no history
  std::string epoch;
  // The store also put the message on the bus (redis history with the redis bus: the append script
  // PUBLISHes it): the caller must not publish it again.
  bool published = false;
};

struct read_result {
  std::error_code ec;
  std::string epoch;  // empty: the room has no history (never had, or it expired)
  std::uint64_t head = 0;  // last seq assigned
  bool complete = false;   // entries hold every seq in (since, head]
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

  // Entries after `since` (at most `limit`), the head and the epoch. create_ttl > 0: a room without
  // history gets its epoch now (seq 0, kept create_ttl), so a client joining a fresh room learns
  // the epoch its first messages will belong to.
  virtual void read(const std::string& room, std::uint64_t since, std::size_t limit,
                    std::chrono::milliseconds create_ttl, std::function<void(read_result)> cb) = 0;

  virtual bool healthy() const { return true; }
  virtual const char* name() const noexcept = 0;
  virtual void append_metrics(std::string&) const {}
};

// First matching rule wins: "pattern size ttl", e.g. "lobby-* 0 0s", "* 300 10m".
// Patterns: '*' matches any run of characters, everything else literally.
class rules {
 public:
  // Parses rule strings; on error returns false with a message.
  bool parse(const std::vector<std::string>& specs, std::string& error);
  policy for_room(std::string_view room) const;
  bool any_keeps() const noexcept {
    for (const auto& r : rules_)
      if (r.p.keeps()) return true;
    return false;
  }
  static bool glob_match(std::string_view pattern, std::string_view s) noexcept;

 private:
  struct rule {
    std::string pattern;
    policy p;
  };
  std::vector<rule> rules_;
};

// A random epoch id (16 hex digits).
std::string new_epoch();

}  // namespace roomcast::history
