#pragma once
// The last N message ids seen, to drop redeliveries. Sans-io, single thread.
#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

namespace roomcast::bus {

class dedupe_window {
 public:
  explicit dedupe_window(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // True when id is new (and remembers it); false for an id among the last `capacity` seen.
  bool insert(std::string_view id) {
    if (set_.count(std::string(id))) return false;
    order_.emplace_back(id);
    set_.insert(order_.back());
    if (order_.size() > capacity_) {
      set_.erase(order_.front());
      order_.pop_front();
    }
    return true;
  }
  std::size_t size() const noexcept { return order_.size(); }

 private:
  std::size_t capacity_;
  std::deque<std::string> order_;
  std::unordered_set<std::string> set_;
};

}  // namespace roomcast::bus
