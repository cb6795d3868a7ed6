#pragma once
// A session's client frames (docs/protocol.md, "Client → server"), decided without I/O: the
// transport hands over the text of one frame and carries out the one command it gets back.
// Rights (who may publish, join, kill), rooms and the publish rate are checked here, so
// transport/ws_session only moves bytes.
#include "hub/token_bucket.hpp"
#include "protocol/filter.hpp"
#include "protocol/json_limits.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::hub {

// What clients may do: from the config, fixed after start.
struct client_rights {
  std::vector<std::string> publish_roles{"THE"};  // roles whose clients may publish
  bool client_join = true;                        // join/leave rooms beyond the URL's
  bool dev_kill = false;                          // {"type":"kill"} SIGKILLs the node (demo)
  double publish_rate = 10;                       // client publishes per second per session
  double publish_burst = 20;
  protocol::filter_limits filter_limits;  // a publish's roles/platforms/users
  protocol::json_limits json_limits;      // every JSON frame
  double join_rate = 10;                  // join frames per second per session
  double join_burst = 32;
};

// The session a frame came from, as the decision needs it.
struct client_session {
  std::string_view role;
  std::string_view url_room;
  std::function<bool(std::string_view room)> in_room;
  token_bucket* publish_bucket;  // the session's
  token_bucket::clock::time_point now;
  token_bucket* join_bucket = nullptr;  // the session's; null: joins are not rate limited
};

struct client_command {
  enum class kind : std::uint8_t {
    pong,      // answer {"type":"pong"}
    error,     // send `text` (an error frame naming the frame's id/room); the session stays open
    join,      // join `room`, recovering after `since` of `epoch` when `recover`
    leave,     // leave `room` (the session is in it), then answer with encode_left
    publish,   // publish `data` to `room` (the session is in it); ack by `id` when not empty
    kill,      // dev_kill: die now
    received,  // confirm the message `id` (receipts) for this session's user
    refresh,   // check `text` (a token) and take its exp as the session's (auth = jwt)
  };
  // Which limit an error is, for its counter (plain refusals are only client_errors).
  enum class limit : std::uint8_t { none, join_rate, json_depth, json_members };
  kind what = kind::error;
  limit refused = limit::none;
  std::string text;  // error: the frame; refresh: the token
  std::string room;
  std::string id;
  std::string data;
  protocol::filter audience;  // publish: who in the room it is for
  std::uint64_t since = 0;
  std::string epoch;
  bool recover = false;
};

// Decides what one client text frame asks for. The publish bucket is charged only for a publish
// that passed every other check.
client_command decide_client_command(std::string_view text, const client_rights& rights, const client_session& s);

}  // namespace roomcast::hub
