#pragma once
// Consumer acks as a stream: deliveries on a channel get tags 1, 2, 3…; a tag may finish out of
// order (dropped at once as a duplicate, or after every shard took it), and the consumer acks
// the longest finished prefix with one basic.ack(multiple). Sans-io; bus thread only.
#include <cstddef>
#include <cstdint>
#include <deque>

namespace roomcast::bus {

class ack_window {
 public:
  // Tag `tag` is finished.
  void finished(std::uint64_t tag) {
    if (tag <= floor_) return;
    const std::size_t i = tag - floor_ - 1;
    if (done_.size() <= i) done_.resize(i + 1, false);
    done_[i] = true;
    advance();
  }
  // Every tag up to `tag` is finished (shards take deliveries in order).
  void finished_through(std::uint64_t tag) {
    if (tag <= floor_) return;
    const std::size_t n = tag - floor_;
    if (done_.size() <= n)
      done_.clear();
    else
      done_.erase(done_.begin(), done_.begin() + static_cast<std::ptrdiff_t>(n));
    floor_ = tag;
    advance();
  }
  // Every tag <= floor() is finished: what one multiple-ack can cover.
  std::uint64_t floor() const noexcept { return floor_; }
  // A new channel numbers its deliveries from 1 again.
  void reset() {
    floor_ = 0;
    done_.clear();
  }

 private:
  void advance() {
    while (!done_.empty() && done_.front()) {
      done_.pop_front();
      ++floor_;
    }
  }
  std::uint64_t floor_ = 0;
  std::deque<bool> done_;  // done_[i]: tag floor_ + 1 + i is finished
};

}  // namespace roomcast::bus
