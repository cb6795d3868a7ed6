#include "receipts/local_store.hpp"

#include "metrics/prometheus.hpp"

#include <algorithm>

namespace roomcast::receipts {

void local_store::expire(clock::time_point now) {
  while (!expiry_.empty() && expiry_.begin()->first <= now) {
    const std::string id = expiry_.begin()->second;
    expiry_.erase(expiry_.begin());
    erase(id);
  }
}

void local_store::erase(const std::string& id) {
  auto it = records_.find(id);
  if (it == records_.end()) return;
  for (const auto& user : it->second.missing) {
    auto u = by_user_.find(user);
    if (u == by_user_.end()) continue;
    u->second.erase(id);
    if (u->second.empty()) by_user_.erase(u);
  }
  records_.erase(it);
}

void local_store::create(const std::string& id, const std::string& room, const std::string& audience,
                         const std::vector<std::string>& users,
                         std::function<void(std::error_code, create_result)> cb) {
  create_result r = create_result::created;
  {
    std::lock_guard lk(mu_);
    const auto now = clock::now();
    expire(now);
    if (records_.contains(id)) {
      r = create_result::exists;
    } else if (records_.size() >= limits_.max_messages) {
      r = create_result::full;
      ++full_;
    } else {
      auto& rec = records_[id];
      rec.room = room;
      rec.audience = audience;
      rec.expected = users.size();
      rec.missing.insert(users.begin(), users.end());
      rec.expires = now + limits_.ttl;
      rec.order = next_order_++;
      expiry_.emplace(rec.expires, id);
      for (const auto& u : users) by_user_[u].insert(id);
      ++created_;
    }
  }
  cb({}, r);
}

void local_store::published(const std::string& id, std::string frame, std::uint64_t seq, const std::string& epoch) {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return;
  it->second.frame = std::move(frame);
  it->second.seq = seq;
  it->second.epoch = epoch;
}

void local_store::drop(const std::string& id) {
  std::lock_guard lk(mu_);
  erase(id);
}

void local_store::confirm(const std::string& id, const std::string& user) {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end() || it->second.missing.erase(user) == 0) return;
  ++confirmed_;
  auto u = by_user_.find(user);
  if (u == by_user_.end()) return;
  u->second.erase(id);
  if (u->second.empty()) by_user_.erase(u);
}

void local_store::pending(const std::string& user, const std::string& room,
                          std::function<void(std::error_code, std::vector<pending_message>)> cb) {
  std::vector<std::pair<std::uint64_t, pending_message>> found;
  {
    std::lock_guard lk(mu_);
    expire(clock::now());
    auto u = by_user_.find(user);
    if (u != by_user_.end()) {
      for (const auto& id : u->second) {
        const auto& rec = records_.at(id);
        if (rec.room != room || rec.frame.empty()) continue;
        found.push_back({rec.order, {id, rec.seq, rec.epoch, rec.frame, rec.audience}});
      }
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<pending_message> out;
  out.reserve(found.size());
  for (auto& f : found) out.push_back(std::move(f.second));
  cb({}, std::move(out));
}

void local_store::describe(const std::string& id, const std::string& after, std::size_t limit,
                           std::function<void(std::error_code, std::optional<status>)> cb) {
  std::optional<status> s;
  {
    std::lock_guard lk(mu_);
    expire(clock::now());
    auto it = records_.find(id);
    if (it != records_.end()) {
      const auto& rec = it->second;
      s.emplace();
      s->room = rec.room;
      s->expected = rec.expected;
      s->received = rec.expected - rec.missing.size();
      const std::vector<std::string> sorted(rec.missing.begin(), rec.missing.end());
      page_missing(sorted, after, limit, *s);
    }
  }
  cb({}, std::move(s));
}

void local_store::append_metrics(std::string& o) const {
  std::lock_guard lk(mu_);
  metrics::append_metric(o, "roomcast_receipts_live", "gauge", "Receipts kept (not confirmed by all, not expired).",
                         records_.size());
  metrics::append_metric(o, "roomcast_receipts_created_total", "counter", "Messages published with receipts.",
                         created_);
  metrics::append_metric(o, "roomcast_receipts_confirmed_total", "counter", "Users' confirmations recorded.",
                         confirmed_);
  metrics::append_metric(o, "roomcast_receipts_refused_total", "counter",
                         "Publishes with receipts refused: the store was full (receipt_max_messages).", full_);
}

}  // namespace roomcast::receipts
