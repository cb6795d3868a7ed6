#pragma once
// The cluster bus: how a message published on one node reaches the nodes that have its recipients.
// Implementations: local (in-process, one node). RabbitMQ and Redis Pub/Sub follow the same contract.
//
// Threads: every method may be called from any thread. The message handler may be called on any
// thread (an implementation's own I/O thread, or the publisher's for `local`); it must not block.
#include "bus/envelope.hpp"

#include <functional>
#include <string>
#include <system_error>

namespace roomcast::bus {

struct publish_result {
  bool queued = false;  // accepted into an outage buffer rather than confirmed by the broker
};

// Completion of a publish: ec set when the message was not accepted (broker down and buffer full,
// timeout, ...). Called exactly once, on any thread.
using publish_callback = std::function<void(std::error_code, publish_result)>;
// Called once the node has queued a received message on every shard: the bus may ack it then.
using delivery_done = std::function<void()>;
using message_handler = std::function<void(const envelope&, delivery_done)>;

class bus {
 public:
  virtual ~bus() = default;

  virtual void start(message_handler on_message) = 0;
  virtual void stop() = 0;

  virtual void publish(envelope e, publish_callback done) = 0;

  // Called (on the bus's thread) once a room subscription is in effect. Messages published to the
  // room between subscribe_room() and then did not reach this node: the node catches up from
  // history. Set before start().
  // NOLINTNEXTLINE(performance-unnecessary-value-param): a sink; implementations keep it
  virtual void on_room_bound(std::function<void(const std::string&)>) {}

  // Called (on the bus's thread) with true before and false after a burst of messages read
  // together: the handler may hold them and hand them on at the end, one wake per shard per
  // burst instead of one per message. A bus that doesn't call it gets every message at once.
  // Set before start().
  // NOLINTNEXTLINE(performance-unnecessary-value-param): a sink; implementations keep it
  virtual void on_burst(std::function<void(bool begin)>) {}

  // The node gained its first / lost its last local member of a room: room messages for it should
  // start / stop arriving here.
  virtual void subscribe_room(const std::string& room) = 0;
  virtual void unsubscribe_room(const std::string& room) = 0;

  // False while the bus can't deliver (broker unreachable): /readyz reports it.
  virtual bool healthy() const = 0;
  virtual const char* name() const noexcept = 0;
  // False for a bus that only loops back into this node (`local`): nothing to route between nodes.
  virtual bool reaches_other_nodes() const noexcept { return true; }

  // Prometheus lines for the bus's own counters (roomcast_bus_*); may be empty.
  virtual void append_metrics(std::string&) const {}
  // JSON members for /api/stats ("\"bus_x\":1,..."), may be empty.
  virtual void append_stats(std::string&) const {}
};

}  // namespace roomcast::bus
