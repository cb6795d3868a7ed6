#include "registry/resync.hpp"

#include "protocol/codec.hpp"

namespace roomcast::registry {

std::string session_value(const session_record& s, const std::string& node) {
  using protocol::append_json_string;
  std::string o = "{\"session\":";
  append_json_string(o, s.session);
  o += ",\"node\":";
  append_json_string(o, node);
  o += ",\"platform\":";
  append_json_string(o, s.platform);
  o += ",\"role\":";
  append_json_string(o, s.role);
  o += ",\"rooms\":[";
  for (std::size_t i = 0; i < s.rooms.size(); ++i) {
    if (i) o += ",";
    append_json_string(o, s.rooms[i]);
  }
  o += "]}";
  return o;
}

void append_session_writes(const session_record& s, const std::string& node, bool with_rooms,
                           std::vector<command>& out) {
  out.push_back({"HSET", "rc:user:" + s.user, s.session, session_value(s, node)});
  out.push_back({"SADD", "rc:node_sessions:" + node, s.user + "\n" + s.session});
  out.push_back({"HSET", "rc:sessions", s.session, node});
  if (!with_rooms) return;
  const std::string member = room_member_value(s);
  for (const auto& room : s.rooms) {
    std::string key = "rc:room:" + room;
    key += ':';
    key += node;
    out.push_back({"HSET", std::move(key), s.session, member});
    out.push_back({"SADD", "rc:room_nodes:" + room, node});
    out.push_back({"SADD", "rc:node_rooms:" + node, room});
  }
}

std::string room_member_value(const session_record& s) { return s.role + "\n" + s.user + "\n" + s.platform; }

void add_room_member_value(std::string_view v, room_members& to) {
  const auto a = v.find('\n');
  if (a == std::string_view::npos) return to.add({}, v, {});
  const auto b = v.find('\n', a + 1);
  const auto user = v.substr(a + 1, b == std::string_view::npos ? std::string_view::npos : b - a - 1);
  to.add(user, v.substr(0, a), b == std::string_view::npos ? std::string_view{} : v.substr(b + 1));
}

std::uint64_t resync::start_over() {
  dropped_ += held_.size();
  held_.clear();
  phase_ = phase::waiting_snapshot;
  return ++ticket_;
}

std::uint64_t resync::connected() { return start_over(); }

void resync::disconnected() {
  dropped_ += held_.size();
  held_.clear();
  phase_ = phase::down;
  ++ticket_;  // a snapshot still on its way is stale
}

resync::write_action resync::write(command& c) {
  switch (phase_) {
    case phase::down:
      ++dropped_;
      return write_action::dropped;
    case phase::waiting_snapshot:
      if (held_.size() >= opts_.max_held) {
        ++dropped_;
        start_over();
        return write_action::take_snapshot;
      }
      held_.push_back(std::move(c));
      return write_action::held;
    case phase::synced:
      break;
  }
  return write_action::send;
}

std::optional<std::uint64_t> resync::write_lost() {
  ++dropped_;
  if (phase_ == phase::down) return std::nullopt;
  return start_over();
}

std::optional<resync::rewrite> resync::snapshot(std::uint64_t ticket, const std::vector<session_record>& sessions,
                                                clock::time_point now) {
  if (phase_ != phase::waiting_snapshot || ticket != ticket_) return std::nullopt;
  rewrite r;
  r.sessions = sessions.size();
  for (const auto& s : sessions) append_session_writes(s, opts_.node_id, true, r.commands);
  r.held = held_.size();
  for (auto& c : held_) r.commands.push_back(std::move(c));
  held_.clear();
  phase_ = phase::synced;
  ++resyncs_;
  next_beat_ = now;  // announce the node right away
  return r;
}

std::vector<command> resync::heartbeat(clock::time_point now, std::string summary) {
  next_beat_ = now + opts_.heartbeat;
  return {{"SET", "rc:node:" + opts_.node_id, std::move(summary), "PX", std::to_string(opts_.node_ttl.count())},
          {"SADD", "rc:nodes", opts_.node_id}};
}

}  // namespace roomcast::registry
