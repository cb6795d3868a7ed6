#pragma once
// The last N message ids seen, to drop redeliveries. Sans-io, single thread.
// Each id is stored once (in the deque); the set indexes it by string_view, so a lookup allocates
// nothing. A deque never moves its elements on push_back/pop_front, so the views stay valid.
#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

namespace roomcast::bus {

class dedupe_window {
 public:
  // The index is sized once: growing it would rehash every id on the receiving thread (a pause
  // of milliseconds at 100k ids), several times while the first `capacity` messages arrive.
  explicit dedupe_window(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
    set_.reserve(capacity_ + 1);
  }
  dedupe_window(const dedupe_window&) = delete;
  dedupe_window& operator=(const dedupe_window&) = delete;
  dedupe_window(dedupe_window&& o) noexcept : capacity_(o.capacity_) { swap(o); }
  dedupe_window& operator=(dedupe_window&& o) noexcept {
    capacity_ = o.capacity_;
    swap(o);
    return *this;
  }

  // True when id is new (and remembers it); false for an id among the last `capacity` seen.
  bool insert(std::string_view id) {
    // One lookup for the common case (a new id): store it, then index the stored copy.
    order_.emplace_back(id);
    if (!set_.insert(std::string_view(order_.back())).second) {
      order_.pop_back();
      return false;
    }
    if (order_.size() > capacity_) {
      set_.erase(std::string_view(order_.front()));
      order_.pop_front();
    }
    return true;
  }
  std::size_t size() const noexcept { return order_.size(); }

 private:
  // Swapping deques keeps element addresses (and the views in the swapped sets) valid.
  void swap(dedupe_window& o) noexcept {
    order_.swap(o.order_);
    set_.swap(o.set_);
  }

  std::size_t capacity_;
  std::deque<std::string> order_;
  std::unordered_set<std::string_view> set_;
};

}  // namespace roomcast::bus
