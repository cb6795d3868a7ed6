#pragma once
// Cluster-wide registry in Redis, on the process's Redis thread (redis::connection: never on a
// shard). Writes are pipelined as they come, so a join storm of thousands of sessions costs a few
// round trips. Each node heartbeats a key with a TTL; live nodes reap the entries of a node whose
// key expired (crash, kill -9). When Redis is unreachable writes are dropped and the node rewrites
// its whole state once Redis is back (registry::resync, sans-io).
//
// Keys (prefix rc:):
//   rc:nodes                     set of node ids
//   rc:node:<node>               the node's summary JSON (connections, counters) with TTL = node_ttl (the heartbeat)
//   rc:user:<user>               hash session id -> session JSON (node, platform, role, rooms)
//   rc:node_sessions:<node>      set of "<user>\n<session>" (for reaping)
//   rc:sessions                  hash session id -> node (POST /api/disconnect of one session)
//   rc:room:<room>:<node>        hash session id -> "<role>\n<user>"
//   rc:room_nodes:<room>         set of nodes with members in the room
//   rc:node_rooms:<node>         set of rooms with members on the node
#include "registry/registry.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace roomcast::redis {
class loop;
}

namespace roomcast::registry {

struct redis_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string node_id;
  std::chrono::milliseconds heartbeat{2'000};
  std::chrono::milliseconds node_ttl{6'000};
  std::chrono::milliseconds timeout{2'000};  // connect, and each reply
  std::size_t max_pending = 200'000;         // writes waiting (sent or held); over it: drop and resync
};

class redis_registry final : public registry {
 public:
  // snapshot(cb): gathers this node's sessions from the shards (used to resync); node_summary():
  // this node's state as a JSON object (connections, counters), written with every heartbeat and
  // returned by describe_nodes. Both are called on the Redis thread (rc-redis); callbacks of
  // queries run there too. Every public method may be called from any thread.
  using snapshot_fn = std::function<void(std::function<void(std::vector<session_record>)>)>;
  redis_registry(redis_options opts, snapshot_fn snapshot, std::function<std::string()> node_summary);
  ~redis_registry() override;

  void start() override;
  void stop() override;
  void on_nodes_reaped(const std::function<void()>& fn) override;
  bool wants_writes() const noexcept override { return true; }
  void session_opened(const session_record& s) override;
  void room_joined(const session_record& s, const std::string& room) override;
  void room_left(const session_record& s, const std::string& room) override;
  void session_closed(const session_record& s) override;
  void user_sessions(const std::string& user, sessions_callback cb) override;
  void session_node(const std::string& session, node_callback cb) override;
  void describe_user(const std::string& user, user_callback cb) override;
  void describe_room(const std::string& room, room_callback cb) override;
  void describe_nodes(nodes_callback cb) override;
  void busiest_rooms(std::size_t offset, std::size_t limit, rooms_callback cb) override;
  bool healthy() const override;
  const char* name() const noexcept override { return "redis"; }
  void append_metrics(std::string& out) const override;

  struct impl;

 private:
  std::shared_ptr<redis::loop> loop_;  // outlives impl_ (what is posted may hold impl_ a little longer)
  std::shared_ptr<impl> impl_;
};

}  // namespace roomcast::registry
