#pragma once
// Messages waiting for the broker (or Redis), in publish order, bounded in count and bytes. A
// publish that doesn't fit whole is refused (the API answers 503), never split or dropped later.
// Unconfirmed messages go back to the front after a lost connection (at-least-once). Sans-io;
// bus thread only. T has a `body` string (its size is what counts).
#include <cstddef>
#include <deque>

namespace roomcast::bus {

template <class T>
class outage_buffer {
 public:
  outage_buffer(std::size_t max_messages, std::size_t max_bytes) : max_messages_(max_messages), max_bytes_(max_bytes) {}

  // Whether `n` more messages of `bytes` in all fit.
  bool fits(std::size_t n, std::size_t bytes) const noexcept {
    return items_.size() + n <= max_messages_ && bytes_ + bytes <= max_bytes_;
  }
  void push_back(T m) {
    bytes_ += m.body.size();
    items_.push_back(std::move(m));
  }
  // Back in front of everything (a message sent but not confirmed before the connection was lost).
  void push_front(T m) {
    bytes_ += m.body.size();
    items_.push_front(std::move(m));
  }
  T& front() { return items_.front(); }
  T pop_front() {
    T m = std::move(items_.front());
    items_.pop_front();
    bytes_ -= m.body.size();
    return m;
  }
  void clear() {
    items_.clear();
    bytes_ = 0;
  }
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }

 private:
  std::size_t max_messages_, max_bytes_;
  std::deque<T> items_;
  std::size_t bytes_ = 0;
};

}  // namespace roomcast::bus
