#pragma once
// The cluster bus: how a message published on one node reaches the nodes that have its recipients.
// Implementations: local (in-process, one node). RabbitMQ and Redis Pub/Sub follow the same contract.
//
// Threads: every method may be called from any thread. The message handler may be called on any
// thread (an implementation's own I/O thread, or the publisher's for `local`); it must not block.
#include "protocol/codec.hpp"

#include <functional>
#include <string>
#include <system_error>

namespace roomcast::bus {

// A message as it travels between nodes. `data` is the backend's raw JSON.
struct envelope {
  protocol::target_kind kind = protocol::target_kind::room;
  std::string target;  // room or user; empty for all
  std::string id;      // idempotency key, unique per message
  std::string from;    // publisher: a user id, or "api"
  std::string data;
  std::string origin;  // node id that published it
};

struct publish_result {
  bool queued = false;  // accepted into an outage buffer rather than confirmed by the broker
};

// Completion of a publish: ec set when the message was not accepted (broker down and buffer full,
// timeout, ...). Called exactly once, on any thread.
using publish_callback = std::function<void(std::error_code, publish_result)>;
using message_handler = std::function<void(const envelope&)>;

class bus {
 public:
  virtual ~bus() = default;

  virtual void start(message_handler on_message) = 0;
  virtual void stop() = 0;

  virtual void publish(envelope e, publish_callback done) = 0;

  // The node gained its first / lost its last local member of a room: room messages for it should
  // start / stop arriving here.
  virtual void subscribe_room(const std::string& room) = 0;
  virtual void unsubscribe_room(const std::string& room) = 0;

  // False while the bus can't deliver (broker unreachable): /readyz reports it.
  virtual bool healthy() const = 0;
  virtual const char* name() const noexcept = 0;
};

}  // namespace roomcast::bus
