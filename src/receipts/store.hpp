#pragma once
// Must-arrive messages: who was expected to get a message (its room's users, after its filter, at
// publish time), who confirmed it, and its frame, so a user who has not confirmed gets it again
// when it reconnects, on any node, until it confirms or the receipt expires (receipt_ttl).
// Implementations: local (in memory, one node) and redis (cluster-wide).
//
// Threads: any thread may call; callbacks run on any thread (the caller posts back).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace roomcast::receipts {

// Bounds (config receipt_ttl, receipt_max_messages, receipt_max_users).
struct limits {
  std::chrono::milliseconds ttl{600'000};
  std::size_t max_messages = 10'000;  // receipts alive at once; more: create() fails (store full)
  std::size_t max_users = 10'000;     // expected users of one message
};

// A message the user has not confirmed yet, as it goes to the client again.
struct pending_message {
  std::string id;
  std::uint64_t seq = 0;  // its seq in its room (0: none)
  std::string epoch;
  std::string frame;     // the message frame's JSON text, with "receipt":true
  std::string audience;  // its filter (protocol::filter_json; "" = everyone): which sessions get it
};

// GET /api/messages/{id}/receipts: counts, and a page of the missing users (sorted).
struct status {
  std::string room;
  std::size_t expected = 0;
  std::size_t received = 0;
  std::size_t missing_count = 0;
  std::vector<std::string> missing;  // users after the cursor, at most `limit`
  bool more = false;                 // more missing users after this page
};

enum class create_result { created, exists, full };

class store {
 public:
  virtual ~store() = default;
  virtual void start() {}
  virtual void stop() {}

  // Opens the receipt of message `id` with its expected users (sorted, distinct) and its filter
  // (protocol::filter_json). exists: the id has a receipt already (a publish retried): kept as is.
  virtual void create(const std::string& id, const std::string& room, const std::string& audience,
                      const std::vector<std::string>& users,
                      std::function<void(std::error_code, create_result)> cb) = 0;
  // The message went out: its frame (what reconnecting users get again) and place.
  virtual void published(const std::string& id, std::string frame, std::uint64_t seq, const std::string& epoch) = 0;
  // The publish failed: forget the receipt.
  virtual void drop(const std::string& id) = 0;
  // `user` confirmed `id` (a client's {"type":"received"}); unknown ids and users are ignored.
  virtual void confirm(const std::string& id, const std::string& user) = 0;
  // The messages of `room` that `user` has not confirmed (published, not expired), oldest first.
  virtual void pending(const std::string& user, const std::string& room,
                       std::function<void(std::error_code, std::vector<pending_message>)> cb) = 0;
  // The receipt of `id` (nullopt: unknown or expired), with the missing users after `after`.
  virtual void describe(const std::string& id, const std::string& after, std::size_t limit,
                        std::function<void(std::error_code, std::optional<status>)> cb) = 0;

  virtual const char* name() const noexcept = 0;
  virtual void append_metrics(std::string&) const {}
};

// The page of `missing` (sorted) after `after`, at most `limit` (status::missing and more).
inline void page_missing(const std::vector<std::string>& sorted, const std::string& after, std::size_t limit,
                         status& out) {
  out.missing_count = sorted.size();
  auto it = after.empty() ? sorted.begin() : std::upper_bound(sorted.begin(), sorted.end(), after);
  for (; it != sorted.end() && out.missing.size() < limit; ++it) out.missing.push_back(*it);
  out.more = it != sorted.end();
}

}  // namespace roomcast::receipts
