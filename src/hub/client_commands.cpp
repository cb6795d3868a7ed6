#include "hub/client_commands.hpp"

#include "protocol/codec.hpp"

#include <algorithm>

namespace roomcast::hub {

namespace {

client_command refuse(std::string_view code, std::string_view message, std::string_view id = {},
                      std::string_view room = {}) {
  client_command c;
  c.what = client_command::kind::error;
  c.text = protocol::encode_error(code, message, id, room);
  return c;
}

}  // namespace

client_command decide_client_command(std::string_view text, const client_rights& rights, const client_session& s) {
  namespace ec = protocol::error_code;
  protocol::client_frame f;
  protocol::decode_error err;
  if (!protocol::decode_client_frame(text, f, err, rights.filter_limits, rights.json_limits)) {
    auto c = refuse(err.code, err.message, f.id, f.room);
    if (err.limit == protocol::json_refusal::depth) c.refused = client_command::limit::json_depth;
    if (err.limit == protocol::json_refusal::members) c.refused = client_command::limit::json_members;
    return c;
  }
  client_command c;
  switch (f.type) {
    case protocol::client_frame::kind::ping:
      c.what = client_command::kind::pong;
      return c;
    case protocol::client_frame::kind::auth:
      return refuse(ec::bad_request, "this session is authenticated already");
    case protocol::client_frame::kind::refresh:
      c.what = client_command::kind::refresh;
      c.text = std::move(f.token);
      return c;
    case protocol::client_frame::kind::received:
      // A confirm costs a tenth of a publish: a client confirms what it gets, at the fan-out rate.
      if (!s.publish_bucket->try_take(rights.publish_rate * 10, rights.publish_burst * 10, s.now))
        return refuse(ec::rate_limited, "too many confirms; slow down", f.id);
      c.what = client_command::kind::received;
      c.id = std::move(f.id);
      return c;
    case protocol::client_frame::kind::kill:
      if (!rights.dev_kill) return refuse(ec::forbidden, "kill needs dev_kill = true on the node");
      c.what = client_command::kind::kill;
      return c;
    case protocol::client_frame::kind::join:
      if (!rights.client_join) return refuse(ec::forbidden, "joining rooms is disabled", {}, f.room);
      // Each join costs a registry write and maybe a history read: a client looping on join/leave
      // must not turn into a storm behind max_rooms_per_session.
      if (s.join_bucket && !s.join_bucket->try_take(rights.join_rate, rights.join_burst, s.now)) {
        auto r = refuse(ec::rate_limited, "too many joins; slow down", {}, f.room);
        r.refused = client_command::limit::join_rate;
        return r;
      }
      c.what = client_command::kind::join;
      c.recover = !f.epoch.empty() || f.since > 0;
      c.since = f.since;
      c.epoch = std::move(f.epoch);
      c.room = std::move(f.room);
      return c;
    case protocol::client_frame::kind::leave:
      if (!s.in_room(f.room)) return refuse(ec::not_in_room, "not in that room", {}, f.room);
      c.what = client_command::kind::leave;
      c.room = std::move(f.room);
      return c;
    case protocol::client_frame::kind::chat:
    case protocol::client_frame::kind::publish: {
      std::string room = f.room.empty() ? std::string(s.url_room) : std::move(f.room);
      const auto& roles = rights.publish_roles;
      if (std::find(roles.begin(), roles.end(), s.role) == roles.end())
        return refuse(ec::forbidden, "role '" + std::string(s.role.substr(0, 64)) + "' may not publish", f.id, room);
      if (!s.in_room(room)) return refuse(ec::not_in_room, "join the room first", f.id, room);
      if (!s.publish_bucket->try_take(rights.publish_rate, rights.publish_burst, s.now))
        return refuse(ec::rate_limited, "too many publishes; slow down", f.id, room);
      c.what = client_command::kind::publish;
      c.room = std::move(room);
      c.id = std::move(f.id);
      c.data = std::move(f.data);
      c.audience = std::move(f.audience);
      return c;
    }
  }
  return refuse(ec::unknown_type, "unknown frame");
}

}  // namespace roomcast::hub
