#pragma once
// Which rooms a node's bus should receive, which it does receive (bound on the broker, or
// subscribed on Redis), and when a room whose last local member left is let go: `grace` later,
// unless a member came back meanwhile (students reconnecting don't cause unbind/bind churn).
// Sans-io: the bus does the I/O and reports each outcome here. Bus thread only.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace roomcast::bus {

class room_bindings {
 public:
  using clock = std::chrono::steady_clock;

  explicit room_bindings(clock::duration grace) : grace_(grace) {}

  // The node's first local member of `room`. True: bind it now (it is not bound).
  bool want(const std::string& room) {
    wanted_.insert(room);
    release_at_.erase(room);
    return !bound_.count(room);
  }
  // The node's last local member left `room`: let it go after the grace, unless wanted again.
  void unwant(const std::string& room, clock::time_point now) {
    wanted_.erase(room);
    if (bound_.count(room)) release_at_[room] = now + grace_;
  }
  // Rooms to let go now: grace over, not wanted again, still bound. Report each with released()
  // once done (a failed release stays bound, to be reconciled after the reconnect).
  std::vector<std::string> take_due(clock::time_point now) {
    std::vector<std::string> out;
    for (auto it = release_at_.begin(); it != release_at_.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      if (!wanted_.count(it->first) && bound_.count(it->first)) out.push_back(it->first);
      it = release_at_.erase(it);
    }
    return out;
  }
  bool releases_pending() const noexcept { return !release_at_.empty(); }
  // When the next release comes due (time_point::max() with none): how long the bus may sleep.
  clock::time_point next_release() const noexcept {
    auto first = clock::time_point::max();
    for (const auto& [room, at] : release_at_) first = std::min(first, at);
    return first;
  }

  void bound(const std::string& room) { bound_.insert(room); }
  void released(const std::string& room) { bound_.erase(room); }

  // For a bus whose binds and unbinds are answered later (pipelined on the connection):
  // A bind the server confirmed. If the last member left while it was on its way, the release is
  // scheduled as for any bound room (after the grace).
  void bind_confirmed(const std::string& room, clock::time_point now) {
    bound_.insert(room);
    if (!wanted_.count(room)) release_at_[room] = now + grace_;
  }
  // An unbind the server confirmed. True: a member came back while it was on its way (want()
  // said no then, the room was still bound): bind it again now.
  bool unbind_confirmed(const std::string& room) {
    bound_.erase(room);
    return wanted_.count(room) > 0;
  }
  bool is_bound(const std::string& room) const { return bound_.count(room) > 0; }
  const std::set<std::string>& wanted() const noexcept { return wanted_; }
  const std::set<std::string>& bound_rooms() const noexcept { return bound_; }

  // The connection is gone. bindings_survive: the server keeps them (RabbitMQ queue bindings), so
  // what is bound is kept, to be reconciled after the reconnect; else (Redis subscriptions die
  // with their connection) nothing is bound any more. Pending releases are dropped either way:
  // a room not wanted then is simply not bound again.
  void connection_lost(bool bindings_survive) {
    if (!bindings_survive) bound_.clear();
    release_at_.clear();
  }

  // After a reconnect with surviving bindings: rooms still bound but no longer wanted (release
  // them), and every wanted room (bind it; binding twice is harmless on the broker).
  struct plan {
    std::vector<std::string> release, bind;
  };
  plan reconcile() const {
    plan p;
    for (const auto& r : bound_)
      if (!wanted_.count(r)) p.release.push_back(r);
    p.bind.assign(wanted_.begin(), wanted_.end());
    return p;
  }

 private:
  clock::duration grace_;
  std::set<std::string> wanted_;
  std::set<std::string> bound_;
  std::map<std::string, clock::time_point> release_at_;
};

}  // namespace roomcast::bus
