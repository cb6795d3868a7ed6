#pragma once
// A message as it travels between nodes, and its wire form (sans-io: encode/decode, no I/O).
// Every bus carries the same bytes, so a RabbitMQ and a Redis node read each other's envelopes.
#include "protocol/codec.hpp"
#include "protocol/filter.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::bus {

// What an envelope asks the receiving nodes to do.
enum class envelope_type : std::uint8_t {
  message,    // deliver `data` to the target
  kick,       // close the target user's sessions (kind user) or one session (kind session)
  presence,   // the origin's members of the target room (kind room; every room: kind all) changed
  room_kick,  // `user`'s sessions leave the target room (kind room), with `reason`
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
  // A client's publish: refused when its user is muted in the room (history::mute). Not on the wire.
  bool check_mute = false;
  std::string from;  // publisher: a user id, or "api"
  std::string data;
  protocol::filter audience;  // room messages: only the members it matches get it
  bool receipt = false;       // room messages: must-arrive, members confirm it (receipts::store)
  std::string origin;         // node id that published it
  std::uint64_t seq = 0;      // per-room sequence from the history (0 = none)
  std::string epoch;          // the history epoch seq belongs to
  std::uint16_t code = 0;     // kick: close code
  std::string reason;         // kick, room_kick: reason
  std::string user;           // room_kick: whose sessions leave
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

}  // namespace roomcast::bus
