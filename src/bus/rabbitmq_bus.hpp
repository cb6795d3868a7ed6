#pragma once
// RabbitMQ cluster bus. One thread owns two connections to the broker: one publishes (confirm
// mode), one consumes the node queue and holds the bindings, so a broker that blocks publishers
// never stops this node from consuming. rabbitmq-c opens each connection (login, declarations);
// after that the thread speaks the frames itself (bus/amqp_wire.hpp, bus/amqp_link.hpp):
// every publish ready in a loop goes out in one write, binds are pipelined, and the shards
// report finished deliveries through one atomic instead of a message each. Shards and the API
// hand work to the thread through an inbox (mutex + eventfd); it hands received messages to the
// node's handler from that thread.
//
// Topology (all durable; "roomcast" is the configurable prefix):
//   exchange roomcast.rooms (direct, key = room)   <- room messages
//   exchange roomcast.nodes (direct, key = node id) <- user messages and kicks for known nodes
//   exchange roomcast.all   (fanout)                <- "all" messages, and user messages when the
//                                                      registry can't say where the user is
//   queue roomcast.node.<node-id> (durable, x-expires), bound to its node key, to all, and to
//   each room with local members (unbound `unbind_grace` after the last member leaves).
//
// Guarantees: publisher confirms (a publish completes when the broker confirmed it); while the
// broker is unreachable publishes wait in a bounded outage buffer (completion says queued) and
// are sent in order when it is back; unconfirmed messages are re-sent after a reconnect; the
// consumer acks after every shard queued the message; ids already delivered are dropped.
#include "bus/bus.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace roomcast::bus {

struct rabbitmq_options {
  std::vector<std::string> uris;  // amqp://user:pass@host:port/vhost, tried in turn
  std::string node_id;
  std::string prefix = "roomcast";  // names: <prefix>.rooms/.nodes/.all, <prefix>.node.<id>
  std::chrono::milliseconds queue_expires{600'000};
  std::uint16_t prefetch = 256;
  std::chrono::milliseconds publish_timeout{5'000};
  std::size_t outage_max_messages = 10'000;
  std::size_t outage_max_bytes = 64u << 20;
  std::chrono::milliseconds unbind_grace{5'000};
  std::size_t max_in_flight = 1'000;
  bool persistent = true;
  std::size_t dedupe_window = 100'000;
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5'000};
};

class rabbitmq_bus final : public bus {
 public:
  explicit rabbitmq_bus(rabbitmq_options opts);
  ~rabbitmq_bus() override;

  void start(message_handler on_message) override;
  void on_room_bound(std::function<void(const std::string&)> f) override;
  void on_burst(std::function<void(bool)> f) override;
  void stop() override;
  void publish(envelope e, publish_callback done) override;
  void subscribe_room(const std::string& room) override;
  void unsubscribe_room(const std::string& room) override;
  bool healthy() const override;
  const char* name() const noexcept override { return "rabbitmq"; }
  void append_metrics(std::string& out) const override;
  void append_stats(std::string& out) const override;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace roomcast::bus
