#pragma once
// Redis Pub/Sub cluster bus. Both connections are redis::connections on the process's Redis thread
// (rc-redis, shared with the redis history and registry); shards and the API post work there, and
// received messages are handed to the node's handler from that thread.
//
// Channels ("roomcast" is the configurable prefix):
//   roomcast:room:<room>     room messages; subscribed while the node has members of the room
//                            (unsubscribed `unbind_grace` after the last one left)
//   roomcast:node:<node-id>  user messages and kicks for a node the registry named (one copy per
//                            node in envelope.nodes)
//   roomcast:all             "all" messages, and user messages when the registry can't say where
//                            the user is (every node checks its own sessions)
//
// Two connections: a subscriber (SUBSCRIBE/UNSUBSCRIBE, pushed messages read in batches) and a
// publisher (PUBLISH, pipelined). A publish completes when Redis replied to its PUBLISH. Room
// messages with history usually don't come through here: the redis history's append script
// PUBLISHes them on the room channel itself (redis_history_options::publish_prefix). They fail
// and reconnect independently (a lost publisher doesn't make the subscriber miss anything); after a
// reconnect the subscriber re-subscribes the node channel, `all` and every wanted room.
//
// Guarantees, and their limits: Redis Pub/Sub is at-most-once — whatever is published while a
// subscriber is disconnected is lost for it (the node-level history fills such holes). While
// Redis is unreachable, publishes wait in a bounded outage buffer (completion says queued) and are
// sent in order once both connections are back and re-subscribed. PUBLISHes whose reply never came
// are re-sent after a reconnect; receivers drop ids already delivered.
//
// Threads: every public method may be called from any thread and never blocks on Redis.
#include "bus/bus.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace roomcast::redis {
class loop;
}

namespace roomcast::bus {

struct redis_bus_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string node_id;
  std::string prefix = "roomcast";  // channels <prefix>:room:<room>, <prefix>:node:<id>, <prefix>:all
  // Connect timeout, and how long a PUBLISH reply or a SUBSCRIBE confirmation may take before the
  // connection is given up as broken.
  std::chrono::milliseconds timeout{2000};
  std::chrono::milliseconds reconnect_min{100};  // backoff between attempts: exponential, jittered
  std::chrono::milliseconds reconnect_max{5000};
  std::size_t dedupe_window = 100000;       // ids remembered to drop duplicates
  std::size_t outage_max_messages = 10000;  // bounds of the buffer of publishes waiting to be sent
  std::size_t outage_max_bytes = 64u << 20;
  std::chrono::milliseconds unbind_grace{5000};  // UNSUBSCRIBE a room this long after its last member left
  // TEST ONLY: when > 0, every nth received room message is dropped on purpose (counted in
  // roomcast_bus_test_dropped_total), so fault tests can prove that history fills the hole.
  // Never set it in production.
  std::uint64_t drop_every_nth_received = 0;
};

class redis_bus final : public bus {
 public:
  explicit redis_bus(redis_bus_options opts);
  ~redis_bus() override;

  void start(message_handler on_message) override;
  void on_room_bound(std::function<void(const std::string&)> f) override;
  void stop() override;
  void publish(envelope e, publish_callback done) override;
  void subscribe_room(const std::string& room) override;
  void unsubscribe_room(const std::string& room) override;
  // True only while both connections are up and the node's channels are subscribed.
  bool healthy() const override;
  const char* name() const noexcept override { return "redis"; }
  void append_metrics(std::string& out) const override;
  void append_stats(std::string& out) const override;

  struct impl;

 private:
  std::shared_ptr<redis::loop> loop_;  // outlives impl_ (what is posted may hold impl_ a little longer)
  std::shared_ptr<impl> impl_;
};

}  // namespace roomcast::bus
