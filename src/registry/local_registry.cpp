#include "registry/local_registry.hpp"

#include <algorithm>

namespace roomcast::registry {

void local_registry::user_sessions(const std::string& user, sessions_callback cb) {
  const std::string node = router_.node_id();
  router_.gather<std::vector<hub::session_snapshot>>(
      [user](hub::shard& s) { return s.user_info(user); },
      [node, cb = std::move(cb)](const std::vector<std::vector<hub::session_snapshot>>& parts) {
        std::vector<session_location> out;
        for (auto& p : parts)
          for (auto& s : p) out.push_back({hub::format_session_id(s.session_id), node});
        cb(std::move(out));
      });
}

void local_registry::describe_user(const std::string& user, user_callback cb) {
  const std::string node = router_.node_id();
  router_.gather<std::vector<hub::session_snapshot>>(
      [user](hub::shard& s) { return s.user_info(user); },
      [node, cb = std::move(cb)](std::vector<std::vector<hub::session_snapshot>> parts) {
        std::vector<located_session> sessions;
        for (auto& p : parts)
          for (auto& s : p)
            sessions.push_back({{hub::format_session_id(s.session_id), s.user, s.role, s.platform, s.rooms}, node});
        std::sort(sessions.begin(), sessions.end(),
                  [](const auto& a, const auto& b) { return a.s.session < b.s.session; });
        cb({}, std::move(sessions));
      });
}

void local_registry::describe_room(const std::string& room, room_callback cb) {
  router_.gather<room_members>([room](hub::shard& s) { return s.room_info(room); },
                               [cb = std::move(cb)](const std::vector<room_members>& parts) {
                                 room_members t;
                                 for (const auto& p : parts) t.merge(p);
                                 cb({}, std::move(t));
                               });
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

void local_registry::describe_nodes(nodes_callback cb) { cb({}, {{router_.node_id(), node_summary_()}}); }

void local_registry::busiest_rooms(std::size_t offset, std::size_t limit, rooms_callback cb) {
  router_.gather<std::vector<hub::room_load>>(
      [](hub::shard& s) { return s.room_loads(); },
      [offset, limit, cb = std::move(cb)](const std::vector<std::vector<hub::room_load>>& parts) {
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
