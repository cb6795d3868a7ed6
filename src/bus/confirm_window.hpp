#pragma once
// Publisher confirms as a stream: messages sent on a confirm-mode channel get delivery tags
// 1, 2, 3… in order; the broker's basic.ack / basic.nack settle one tag or, with `multiple`,
// every tag up to it. At most `max` wait at once. Sans-io; bus thread only.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>

namespace roomcast::bus {

template <class T>
class confirm_window {
 public:
  using clock = std::chrono::steady_clock;

  explicit confirm_window(std::size_t max) : max_(max) {}

  bool full() const noexcept { return items_.size() >= max_; }
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }

  // `msg` went out on the channel: it takes the channel's next tag.
  void sent(T msg, clock::time_point deadline) { items_.push_back({next_tag_++, std::move(msg), deadline}); }

  // basic.ack (ack) or basic.nack: settled(msg, ack) for each message the confirm covers, in tag
  // order; they leave the window.
  template <class F>
  void confirm(std::uint64_t tag, bool multiple, bool ack, F&& settled) {
    if (multiple) {
      while (!items_.empty() && items_.front().tag <= tag) {
        settled(items_.front().msg, ack);
        items_.pop_front();
      }
      return;
    }
    for (auto it = items_.begin(); it != items_.end(); ++it)
      if (it->tag == tag) {
        settled(it->msg, ack);
        items_.erase(it);
        return;
      }
  }

  // overdue(msg) for each message whose confirm is later than its deadline (they stay in the
  // window: a late confirm still settles them), oldest first.
  template <class F>
  void overdue(clock::time_point now, F&& f) {
    for (auto& e : items_) {
      if (e.deadline > now) break;
      f(e.msg);
    }
  }

  // The channel is gone and with it every tag: returned(msg) for each unconfirmed message, newest
  // first (so pushing each to the front of a queue keeps their order); tags restart at 1.
  template <class F>
  void lost(F&& returned) {
    for (auto it = items_.rbegin(); it != items_.rend(); ++it) returned(std::move(it->msg));
    items_.clear();
    next_tag_ = 1;
  }

 private:
  struct entry {
    std::uint64_t tag;
    T msg;
    clock::time_point deadline;
  };
  std::size_t max_;
  std::uint64_t next_tag_ = 1;
  std::deque<entry> items_;
};

}  // namespace roomcast::bus
