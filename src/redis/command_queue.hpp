#pragma once
// The commands of one connection that wait for their reply, in the order they were sent (Redis
// answers a pipeline in order). Sans-io: the connection pushes what it writes, pops what Redis
// answered, asks for the next deadline, and fails everything left when the connection goes.
// Bounded: push() refuses past `max`, so a Redis that stopped answering can't grow the node.
// One thread only (the Redis thread).
#include "redis/errors.hpp"

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <system_error>
#include <vector>

namespace roomcast::redis {

// The reply (never null without an error), or the error it failed with (reply null).
using reply_handler = std::function<void(const redisReply*, std::error_code)>;

class command_queue {
 public:
  using clock = std::chrono::steady_clock;
  struct entry {
    reply_handler done;          // may be empty: nobody waits for the reply
    clock::time_point deadline;  // the reply is overdue after it
    std::uint32_t replies = 1;   // (UN)SUBSCRIBE get one confirmation per channel
  };

  explicit command_queue(std::size_t max) : max_(max) {}

  std::size_t size() const noexcept { return q_.size(); }
  bool empty() const noexcept { return q_.empty(); }
  bool full() const noexcept { return q_.size() >= max_; }
  std::size_t max() const noexcept { return max_; }

  // False (and nothing queued) when full.
  bool push(reply_handler done, clock::time_point deadline, std::uint32_t replies = 1) {
    if (full()) return false;
    q_.push_back({std::move(done), deadline, replies == 0 ? 1 : replies});
    return true;
  }

  // One reply arrived: the entry it completes, once its last expected reply came (nullopt while
  // an (UN)SUBSCRIBE still waits for confirmations). `unexpected` is set when nothing waited.
  std::optional<entry> on_reply(bool& unexpected) {
    unexpected = q_.empty();
    if (unexpected) return std::nullopt;
    if (--q_.front().replies > 0) return std::nullopt;
    entry e = std::move(q_.front());
    q_.pop_front();
    return e;
  }

  // When the oldest command's reply is due (nullopt: nothing waits).
  std::optional<clock::time_point> next_deadline() const {
    if (q_.empty()) return std::nullopt;
    return q_.front().deadline;
  }
  bool overdue(clock::time_point now) const { return !q_.empty() && now >= q_.front().deadline; }

  // The connection is gone: every waiting command fails with `ec`, oldest first. The queue is
  // emptied before any handler runs, so a handler may push again.
  std::size_t fail_all(std::error_code ec) {
    std::deque<entry> left;
    left.swap(q_);
    for (auto& e : left)
      if (e.done) e.done(nullptr, ec);
    return left.size();
  }

 private:
  std::size_t max_;
  std::deque<entry> q_;
};

}  // namespace roomcast::redis
