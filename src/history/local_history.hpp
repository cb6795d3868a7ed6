#pragma once
// History of a single node, in memory. One mutex: taken once per publish and per read, never per
// recipient. Bounded: max_messages per room, rooms dropped after their ttl, ids after the window.
#include "history/history.hpp"

#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

namespace roomcast::history {

class local_history final : public history {
 public:
  explicit local_history(std::chrono::milliseconds id_window, std::size_t max_ids = 1'000'000)
      : id_window_(id_window), max_ids_(max_ids) {}

  void append(const bus::envelope& e, const policy& p, std::function<void(append_result)> cb) override;
  void read(const std::string& room, std::uint64_t since, std::size_t limit, std::chrono::milliseconds create_ttl,
            std::function<void(read_result)> cb) override;
  void mute(const std::string& room, const std::string& user, std::chrono::milliseconds duration,
            std::function<void(std::error_code)> cb) override;
  static constexpr std::size_t max_mutes = 100'000;
  const char* name() const noexcept override { return "local"; }

  // Test hook: forget everything, as a flushed Redis would (new epochs from now on).
  void clear();

 private:
  using clock = std::chrono::steady_clock;
  struct room_log {
    std::string epoch;
    std::uint64_t seq = 0;
    std::deque<entry> entries;
    clock::time_point expires;
  };
  struct id_record {
    std::uint64_t seq;
    std::string epoch;
    clock::time_point expires;
  };
  void expire(clock::time_point now);

  std::chrono::milliseconds id_window_;
  std::size_t max_ids_;
  std::mutex mu_;
  std::unordered_map<std::string, room_log> rooms_;
  std::unordered_map<std::string, id_record> ids_;
  std::deque<std::pair<clock::time_point, std::string>> id_order_;
  std::multimap<clock::time_point, std::string> room_expiry_;
  std::map<std::pair<std::string, std::string>, clock::time_point> mutes_;  // (room, user) -> until
};

}  // namespace roomcast::history
