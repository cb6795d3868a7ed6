#pragma once
// The cluster bus: how a message published on one node reaches the nodes that have its recipients.
// Implementations: local (in-process, one node). RabbitMQ and Redis Pub/Sub follow the same contract.
//
// Threads: every method may be called from any thread. The message handler may be called on any
// thread (an implementation's own I/O thread, or the publisher's for `local`); it must not block.
#include "protocol/codec.hpp"

#include <cstdint>
#include <functional>
#include <vector>
#include <string>
#include <system_error>

namespace roomcast::bus {

// What an envelope asks the receiving nodes to do.
enum class envelope_type : std::uint8_t {
  message,       // deliver `data` to the target
  kick,          // close the target user's sessions (kind user) or one session (kind session)
};

// A message as it travels between nodes. `data` is the backend's raw JSON.
struct envelope {
  envelope_type type = envelope_type::message;
  protocol::target_kind kind = protocol::target_kind::room;
  std::string target;  // room or user (or session id for a session kick); empty for all
  std::string id;      // idempotency key, unique per message
  // The publisher chose `id` (API or client `id`): the history remembers it for the idempotency
  // window. A generated id can't come again, so it is not stored. Not carried on the wire.
  bool claim_id = false;
  std::string from;    // publisher: a user id, or "api"
  std::string data;
  std::string origin;  // node id that published it
  std::uint64_t seq = 0;   // per-room sequence from the history (0 = none)
  std::string epoch;       // the history epoch seq belongs to
  std::uint16_t code = 0;  // kick: close code
  std::string reason;      // kick: reason
  // For user targets: the nodes that hold the user's sessions, from the registry. Empty = unknown:
  // the bus sends to every node. Not carried on the wire.
  std::vector<std::string> nodes;
};

// Wire form of an envelope between nodes (JSON, `data` last and raw). Sans-io.
std::string encode_envelope(const envelope& e);
// The same wire form in two parts around the seq: encode_envelope(e) of an envelope with seq S and
// epoch E (16 hex digits, no escaping) is head + ",\"seq\":S,\"epoch\":\"E\"" + tail, and head + tail
// without a seq. Lets the redis history script publish the envelope with the seq it assigns.
struct envelope_parts {
  std::string head, tail;
};
envelope_parts encode_envelope_parts(const envelope& e);
bool decode_envelope(std::string_view wire, envelope& out);

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
  virtual void on_room_bound(std::function<void(const std::string&)>) {}

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
