#pragma once
// Protocol v1 codec, sans-io: client frames in, server frames out (docs/protocol.md).
// `data` is the backend's JSON: it is located in the input and copied byte for byte, never re-serialized.
#include "protocol/filter.hpp"
#include "protocol/json_limits.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::protocol {

// Appends s as a JSON string literal (with quotes and escapes).
void append_json_string(std::string& out, std::string_view s);

// Finds the raw text of a top-level member of a JSON object that is already known to be valid.
// Returns nullopt when the member is absent.
std::optional<std::string_view> find_raw_member(std::string_view json_object, std::string_view key);

// Splits a JSON array that is already known to be valid into the raw text of its elements.
// Returns nullopt when the text is not an array.
std::optional<std::vector<std::string_view>> split_raw_array(std::string_view json_array);

// Error codes carried by `error` frames and API errors.
namespace error_code {
inline constexpr std::string_view bad_json = "bad_json";
inline constexpr std::string_view unknown_type = "unknown_type";
inline constexpr std::string_view bad_request = "bad_request";
inline constexpr std::string_view forbidden = "forbidden";
inline constexpr std::string_view rate_limited = "rate_limited";
inline constexpr std::string_view not_in_room = "not_in_room";
inline constexpr std::string_view too_many_rooms = "too_many_rooms";
inline constexpr std::string_view muted = "muted";
inline constexpr std::string_view unauthorized = "unauthorized";
}  // namespace error_code

struct client_frame {
  // kill: dev_kill only; received: confirms a message that asked for a receipt (`id`)
  // auth: the token of a session whose URL had "-" (its first frame)
  // refresh: a new token before the session's expires
  enum class kind : std::uint8_t { publish, join, leave, ping, chat, kill, received, auth, refresh };
  kind type = kind::chat;
  std::string room;         // publish, join, leave
  std::string id;           // publish: optional idempotency key
  std::uint64_t since = 0;  // join: last seq the client has (0 = none)
  std::string epoch;        // join: the epoch that seq belongs to
  std::string data;         // publish: raw JSON; chat: {"text": ...} built from the plain text
  filter audience;          // publish: roles/platforms/users it is for (empty: the whole room)
  std::string token;        // auth, refresh
};

struct decode_error {
  std::string_view code;  // one of error_code
  std::string message;
  json_refusal limit = json_refusal::none;  // depth / members: a json_limits refusal (counted)
};

// Decodes one client text frame. Plain text (first non-space char is not '{') is a chat message.
// Returns false and fills err on a bad frame.
bool decode_client_frame(std::string_view text, client_frame& out, decode_error& err, const filter_limits& limits = {},
                         const json_limits& json = {});

// ---- server -> client payloads (JSON text; the caller frames them) ----

struct room_position {
  std::string room;
  std::uint64_t seq = 0;  // last seq of the room; with an empty epoch the room keeps no history
  std::string epoch;
};

struct welcome_info {
  std::string_view node;
  std::string_view session;
  std::string_view user;
  const std::vector<room_position>* rooms = nullptr;
  bool dev_kill = false;  // the node takes {"type":"kill"} (config dev_kill): demo pages show a button
};
void append_position(std::string& s, const room_position& p);
std::string encode_welcome(const welcome_info& w);

// How a message is addressed: one room, one user (all devices) or everyone.
enum class target_kind : std::uint8_t { room, user, all };

struct message_view {
  target_kind kind;
  std::string_view target;  // room or user; empty for all
  std::string_view id;
  std::string_view from;
  std::string_view data;  // raw JSON
  std::uint64_t seq = 0;  // per-room sequence; 0 = none (no history, or not a room message)
  bool receipt = false;   // must-arrive: the client answers {"type":"received","id"}
};
// Appends the `message` frame payload to out (used to build the shared frame once).
void append_message(std::string& out, const message_view& m);

// id/room (when not empty) name the client frame the error answers, so a client can match it to
// its publish (by id) or join/leave (by room).
std::string encode_error(std::string_view code, std::string_view message, std::string_view id = {},
                         std::string_view room = {});
// After a reconnect: every message in [from, to] was sent again.
std::string encode_recovered(std::string_view room, std::uint64_t from, std::uint64_t to);
// Recovery is impossible (reason: "epoch", "trimmed", "expired", "unavailable", "lost"): the
// client has a hole; seq/epoch say where the room is now.
std::string encode_gap(std::string_view room, std::string_view reason, std::uint64_t seq, std::string_view epoch);
// Answer to join: the room's position, like a welcome entry.
std::string encode_joined(const room_position& p);
std::string encode_kicked(std::uint16_t code, std::string_view reason);
// Answer to a client publish with an id: its seq (0 = none) and whether the id was seen before.
std::string encode_ack(std::string_view id, std::uint64_t seq = 0, bool duplicate = false);
// Answer to leave; kicked: the session was removed from the room (POST /api/rooms/{room}/kick).
// Answer to refresh: the session's token now expires at `exp` (Unix seconds).
std::string encode_refreshed(std::int64_t exp);
std::string encode_left(std::string_view room, std::string_view reason = {}, bool kicked = false);
std::string_view pong_payload() noexcept;

}  // namespace roomcast::protocol
