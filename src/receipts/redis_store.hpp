#pragma once
// Receipts in Redis, shared by every node (the history store's Redis and prefix). One script per
// call, on a redis::connection on the process's Redis thread.
//
// Keys: <p>:rc:<id> hash {room, expected, frame, seq, epoch} · <p>:rcm:<id> set of the users that
// have not confirmed · <p>:rcu:<user> sorted set of the ids the user has not confirmed, scored by
// expiry (ms since the epoch) · <p>:rca sorted set of every live receipt, for receipt_max_messages.
// Every key expires with receipt_ttl.
#include "receipts/store.hpp"

#include <atomic>
#include <memory>

namespace roomcast::redis {
class loop;
}

namespace roomcast::receipts {

struct redis_store_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string prefix = "rc";
  std::chrono::milliseconds timeout{2'000};
  limits bounds;
};

class redis_store final : public store {
 public:
  explicit redis_store(redis_store_options opts);
  ~redis_store() override;

  void start() override;
  void stop() override;
  void create(const std::string& id, const std::string& room, const std::string& audience,
              const std::vector<std::string>& users, std::function<void(std::error_code, create_result)> cb) override;
  void published(const std::string& id, std::string frame, std::uint64_t seq, const std::string& epoch) override;
  void drop(const std::string& id) override;
  void confirm(const std::string& id, const std::string& user) override;
  void pending(const std::string& user, const std::string& room,
               std::function<void(std::error_code, std::vector<pending_message>)> cb) override;
  void describe(const std::string& id, const std::string& after, std::size_t limit,
                std::function<void(std::error_code, std::optional<status>)> cb) override;
  const char* name() const noexcept override { return "redis"; }
  void append_metrics(std::string& out) const override;

 private:
  struct impl;
  std::shared_ptr<redis::loop> loop_;
  std::shared_ptr<impl> impl_;
};

}  // namespace roomcast::receipts
