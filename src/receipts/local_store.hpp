#pragma once
// Receipts of a single node, in memory. One mutex, taken per publish, confirm and join (never
// per recipient). Bounded by limits::max_messages; expired receipts go on the next call.
#include "receipts/store.hpp"

#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

namespace roomcast::receipts {

class local_store final : public store {
 public:
  explicit local_store(limits l) : limits_(l) {}

  void create(const std::string& id, const std::string& room, const std::string& audience,
              const std::vector<std::string>& users, std::function<void(std::error_code, create_result)> cb) override;
  void published(const std::string& id, std::string frame, std::uint64_t seq, const std::string& epoch) override;
  void drop(const std::string& id) override;
  void confirm(const std::string& id, const std::string& user) override;
  void pending(const std::string& user, const std::string& room,
               std::function<void(std::error_code, std::vector<pending_message>)> cb) override;
  void describe(const std::string& id, const std::string& after, std::size_t limit,
                std::function<void(std::error_code, std::optional<status>)> cb) override;
  const char* name() const noexcept override { return "local"; }
  void append_metrics(std::string& out) const override;

 private:
  using clock = std::chrono::steady_clock;
  struct record {
    std::string room;
    std::string audience;
    std::string frame;  // empty until published
    std::uint64_t seq = 0;
    std::string epoch;
    std::size_t expected = 0;
    std::set<std::string, std::less<>> missing;
    clock::time_point expires;
    std::uint64_t order;  // creation order: pending() answers oldest first
  };
  void expire(clock::time_point now);
  void erase(const std::string& id);

  const limits limits_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, record> records_;
  std::multimap<clock::time_point, std::string> expiry_;
  std::unordered_map<std::string, std::set<std::string>> by_user_;  // user -> ids it hasn't confirmed
  std::uint64_t next_order_ = 0;
  std::uint64_t created_ = 0, confirmed_ = 0, full_ = 0;
};

}  // namespace roomcast::receipts
