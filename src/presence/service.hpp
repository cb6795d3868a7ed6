#pragma once
// Presence frames (config presence_events): tells a room's members who is online, cluster-wide,
// at most once per room per interval.
//
// - A join or leave on this node marks the room changed (shard threads, via the membership feed).
// - A thread (rc-presence) reads changed rooms that are due from the registry, sends the frame to
//   this node's members, and after a read caused by a local change pings the other nodes over the
//   bus (a `presence` envelope to the room) so they read too. The ping goes after the read, so the
//   registry already holds this node's change when they read.
// - A dead node reaped by the registry: every room is read again, on every node.
//
// Threads: every public call is safe from any thread; the lock is never taken on delivery paths.
#include "bus/envelope.hpp"
#include "hub/router.hpp"
#include "presence/tracker.hpp"
#include "registry/registry.hpp"

#include <memory>
#include <string>
#include <thread>

namespace roomcast::presence {

class service {
 public:
  service(const rules& r, std::vector<std::string> name_roles, hub::router& router, registry::registry& reg);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  bool enabled() const noexcept;
  void start();
  void stop();

  // This node's members of `room` changed (a join, leave or close).
  void local_change(const std::string& room);
  // A presence envelope from the bus (another node's ping).
  void on_ping(const bus::envelope& e);
  // The registry removed dead nodes: their members left every room.
  void nodes_reaped();

  void append_metrics(std::string& out) const;

 private:
  // Shared with registry callbacks, so a late answer finds it alive (and stopped).
  struct impl;
  std::shared_ptr<impl> impl_;
  std::thread thread_;
};

}  // namespace roomcast::presence
