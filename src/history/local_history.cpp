#include "history/local_history.hpp"

namespace roomcast::history {

void local_history::expire(clock::time_point now) {
  while (!id_order_.empty() && (id_order_.front().first <= now || ids_.size() > max_ids_)) {
    auto it = ids_.find(id_order_.front().second);
    if (it != ids_.end() && it->second.expires == id_order_.front().first) ids_.erase(it);
    id_order_.pop_front();
  }
  // One entry per room: when it comes due and the room was written since, it moves to the new
  // expiry (so the index doesn't grow with the publish rate).
  while (!room_expiry_.empty() && room_expiry_.begin()->first <= now) {
    auto node = room_expiry_.extract(room_expiry_.begin());
    auto it = rooms_.find(node.mapped());
    if (it == rooms_.end()) continue;
    if (it->second.expires <= now) {
      rooms_.erase(it);
    } else {
      node.key() = it->second.expires;
      room_expiry_.insert(std::move(node));
    }
  }
}

void local_history::append(const bus::envelope& e, const policy& p, std::function<void(append_result)> cb) {
  append_result r;
  {
    std::lock_guard lk(mu_);
    const auto now = clock::now();
    expire(now);
    if (e.check_mute) {
      auto m = mutes_.find({e.target, e.from});
      r.muted = m != mutes_.end() && m->second > now;
    }
    if (e.claim_id && !r.muted) {
      if (auto it = ids_.find(e.id); it != ids_.end()) {
        r.duplicate = true;
        r.seq = it->second.seq;
        r.epoch = it->second.epoch;
      }
    }
    if (!r.duplicate && !r.muted) {
      if (p.keeps() && e.kind == protocol::target_kind::room) {
        auto& log = rooms_[e.target];
        if (log.epoch.empty()) {  // new, or expired: a new epoch (and the room's one expiry entry)
          log.epoch = new_epoch();
          room_expiry_.emplace(now + p.ttl, e.target);
        }
        r.seq = ++log.seq;
        r.epoch = log.epoch;
        log.entries.push_back({r.seq, e.id, e.from, e.data, e.audience, e.receipt});
        while (log.entries.size() > p.max_messages) log.entries.pop_front();
        log.expires = now + p.ttl;
      }
      if (e.claim_id) {
        const auto exp = now + id_window_;
        ids_[e.id] = {r.seq, r.epoch, exp};
        id_order_.emplace_back(exp, e.id);
      }
    }
  }
  cb(std::move(r));
}

void local_history::read(const std::string& room, std::uint64_t since, std::size_t limit,
                         std::chrono::milliseconds create_ttl, std::function<void(read_result)> cb) {
  read_result r;
  {
    std::lock_guard lk(mu_);
    const auto now = clock::now();
    expire(now);
    auto it = rooms_.find(room);
    if (it == rooms_.end() && create_ttl.count() > 0) {
      auto& log = rooms_[room];
      log.epoch = new_epoch();
      log.expires = now + create_ttl;
      room_expiry_.emplace(log.expires, room);
      it = rooms_.find(room);
    }
    if (it != rooms_.end()) {
      const auto& log = it->second;
      r.epoch = log.epoch;
      r.head = log.seq;
      for (const auto& en : log.entries) {
        if (en.seq <= since) continue;
        if (r.entries.size() == limit) break;
        r.entries.push_back(en);
      }
      // Complete when nothing between since and head is missing.
      r.complete = since >= r.head ||
                   (!r.entries.empty() && r.entries.front().seq == since + 1 && r.entries.back().seq == r.head);
    } else {
      r.complete = since == 0;
    }
  }
  cb(std::move(r));
}

void local_history::mute(const std::string& room, const std::string& user, std::chrono::milliseconds duration,
                         std::function<void(std::error_code)> cb) {
  std::error_code ec;
  {
    std::lock_guard lk(mu_);
    const auto now = clock::now();
    std::erase_if(mutes_, [now](const auto& kv) { return kv.second <= now; });
    if (duration.count() <= 0)
      mutes_.erase({room, user});
    else if (mutes_.size() >= max_mutes && !mutes_.contains({room, user}))
      ec = std::make_error_code(std::errc::no_buffer_space);
    else
      mutes_[{room, user}] = now + duration;
  }
  cb(ec);
}

void local_history::clear() {
  std::lock_guard lk(mu_);
  rooms_.clear();
  room_expiry_.clear();
}

}  // namespace roomcast::history
