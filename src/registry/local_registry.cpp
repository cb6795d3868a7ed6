#include "registry/local_registry.hpp"

#include "protocol/codec.hpp"

#include <algorithm>

namespace roomcast::registry {

using protocol::append_json_string;

std::string session_json(const session_record& s, const std::string& node) {
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

std::string user_json(const std::string& user, const std::vector<std::string>& sessions) {
  std::string b = "{\"user\":";
  append_json_string(b, user);
  b += ",\"online\":";
  b += sessions.empty() ? "false" : "true";
  b += ",\"sessions\":[";
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    if (i) b += ",";
    b += sessions[i];
  }
  b += "]}";
  return b;
}

std::string room_json(const std::string& room, const room_totals& t) {
  std::string b = "{\"room\":";
  append_json_string(b, room);
  b += ",\"online\":" + std::to_string(t.online) + ",\"by_role\":{";
  bool first = true;
  for (const auto& [role, n] : t.by_role) {
    if (!first) b += ",";
    first = false;
    append_json_string(b, role);
    b += ":" + std::to_string(n);
  }
  b += "},\"users\":[";
  first = true;
  for (const auto& u : t.users) {
    if (!first) b += ",";
    first = false;
    append_json_string(b, u);
  }
  b += "]}";
  return b;
}

void local_registry::user_sessions(const std::string& user, sessions_callback cb) {
  const std::string node = router_.node_id();
  router_.gather<std::vector<hub::session_snapshot>>(
      [user](hub::shard& s) { return s.user_info(user); },
      [node, cb = std::move(cb)](std::vector<std::vector<hub::session_snapshot>> parts) {
        std::vector<session_location> out;
        for (auto& p : parts)
          for (auto& s : p) out.push_back({hub::format_session_id(s.session_id), node});
        cb(std::move(out));
      });
}

void local_registry::describe_user(const std::string& user, json_callback cb) {
  const std::string node = router_.node_id();
  router_.gather<std::vector<hub::session_snapshot>>(
      [user](hub::shard& s) { return s.user_info(user); },
      [user, node, cb = std::move(cb)](std::vector<std::vector<hub::session_snapshot>> parts) {
        std::vector<std::string> sessions;
        for (auto& p : parts)
          for (auto& s : p)
            sessions.push_back(session_json({hub::format_session_id(s.session_id), s.user, s.role, s.platform, s.rooms}, node));
        cb(200, user_json(user, sessions));
      });
}

void local_registry::describe_room(const std::string& room, json_callback cb) {
  router_.gather<hub::room_snapshot>([room](hub::shard& s) { return s.room_info(room); },
                                     [room, cb = std::move(cb)](std::vector<hub::room_snapshot> parts) {
                                       room_totals t;
                                       for (auto& p : parts) {
                                         t.online += p.online;
                                         for (auto& [role, n] : p.by_role) t.by_role[role] += n;
                                         t.users.insert(p.users.begin(), p.users.end());
                                       }
                                       cb(200, room_json(room, t));
                                     });
}

std::string node_json(const std::string& node, std::string_view summary) {
  std::string b = "{\"node\":";
  append_json_string(b, node);
  // summary is "{...}": splice its members after the node's name.
  if (summary.size() > 2 && summary.front() == '{' && summary.back() == '}') {
    b += ",";
    b += summary.substr(1);
  } else {
    b += "}";
  }
  return b;
}

room_page page_of(std::vector<room_summary> rooms, std::size_t offset, std::size_t limit) {
  std::sort(rooms.begin(), rooms.end(), [](const room_summary& a, const room_summary& b) {
    return a.online != b.online ? a.online > b.online : a.room < b.room;
  });
  room_page p;
  p.total = rooms.size();
  if (offset < rooms.size()) {
    const auto end = offset + std::min(limit, rooms.size() - offset);
    p.rooms.assign(std::make_move_iterator(rooms.begin() + static_cast<std::ptrdiff_t>(offset)),
                   std::make_move_iterator(rooms.begin() + static_cast<std::ptrdiff_t>(end)));
  }
  return p;
}

void local_registry::describe_nodes(json_callback cb) {
  std::string b = "{\"nodes\":[" + node_json(router_.node_id(), node_summary_()) + "]}";
  cb(200, std::move(b));
}

void local_registry::busiest_rooms(std::size_t offset, std::size_t limit, rooms_callback cb) {
  router_.gather<std::vector<hub::room_load>>(
      [](hub::shard& s) { return s.room_loads(); },
      [offset, limit, cb = std::move(cb)](std::vector<std::vector<hub::room_load>> parts) {
        // A room can have members on several shards: add them up by name.
        std::map<std::string, room_summary> by_name;
        for (auto& p : parts)
          for (auto& c : p) {
            auto& r = by_name[c.room];
            r.online += c.online;
            for (auto& [role, n] : c.by_role) r.by_role[role] += n;
          }
        std::vector<room_summary> rooms;
        rooms.reserve(by_name.size());
        for (auto& [name, r] : by_name) {
          r.room = name;
          rooms.push_back(std::move(r));
        }
        cb({}, page_of(std::move(rooms), offset, limit));
      });
}

}  // namespace roomcast::registry
