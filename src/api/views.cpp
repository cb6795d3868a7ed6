#include "api/views.hpp"

#include "protocol/codec.hpp"

namespace roomcast::api {

using protocol::append_json_string;

namespace {

void append_strings(std::string& b, const auto& strings) {
  b += "[";
  bool first = true;
  for (const auto& s : strings) {
    if (!first) b += ",";
    first = false;
    append_json_string(b, s);
  }
  b += "]";
}

void append_counts(std::string& b, const auto& counts) {
  b += "{";
  bool first = true;
  for (const auto& [k, n] : counts) {
    if (!first) b += ",";
    first = false;
    append_json_string(b, k);
    b += ":" + std::to_string(n);
  }
  b += "}";
}

}  // namespace

std::string user_json(std::string_view user, const std::vector<registry::located_session>& sessions) {
  std::string b = "{\"user\":";
  append_json_string(b, user);
  b += ",\"online\":";
  b += sessions.empty() ? "false" : "true";
  b += ",\"sessions\":[";
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    const auto& l = sessions[i];
    if (i) b += ",";
    b += "{\"session\":";
    append_json_string(b, l.s.session);
    b += ",\"node\":";
    append_json_string(b, l.node);
    b += ",\"platform\":";
    append_json_string(b, l.s.platform);
    b += ",\"role\":";
    append_json_string(b, l.s.role);
    b += ",\"rooms\":";
    append_strings(b, l.s.rooms);
    b += "}";
  }
  b += "]}";
  return b;
}

std::string room_json(std::string_view room, const registry::room_members& m, std::string_view after,
                      std::size_t limit) {
  std::string b = "{\"room\":";
  append_json_string(b, room);
  b += ",\"online\":" + std::to_string(m.sessions) + ",\"sessions\":" + std::to_string(m.sessions);
  b += ",\"unique_users\":" + std::to_string(m.users.size()) + ",\"by_role\":";
  append_counts(b, m.by_role);
  b += ",\"by_platform\":";
  append_counts(b, m.by_platform);
  // The page: users after `after` in id order.
  auto it = after.empty() ? m.users.begin() : m.users.upper_bound(after);
  std::string members = ",\"members\":[", users = ",\"users\":[";
  std::string_view last;
  for (std::size_t n = 0; it != m.users.end() && n < limit; ++it, ++n) {
    if (n) {
      members += ",";
      users += ",";
    }
    append_json_string(users, it->first);
    members += "{\"user\":";
    append_json_string(members, it->first);
    members += ",\"sessions\":" + std::to_string(it->second.sessions) + ",\"roles\":";
    append_strings(members, it->second.roles);
    members += ",\"platforms\":";
    append_strings(members, it->second.platforms);
    members += "}";
    last = it->first;
  }
  b += members + "]" + users + "]";
  if (it != m.users.end()) {
    b += ",\"next_cursor\":";
    append_json_string(b, last);
  }
  b += "}";
  return b;
}

std::string receipts_json(std::string_view id, const receipts::status& s) {
  std::string b = "{\"id\":";
  append_json_string(b, id);
  b += ",\"room\":";
  append_json_string(b, s.room);
  b += ",\"expected\":" + std::to_string(s.expected) + ",\"received\":" + std::to_string(s.received) +
       ",\"missing_count\":" + std::to_string(s.missing_count) + ",\"missing\":";
  append_strings(b, s.missing);
  if (s.more && !s.missing.empty()) {
    b += ",\"next_cursor\":";
    append_json_string(b, s.missing.back());
  }
  b += "}";
  return b;
}

std::string nodes_json(const std::vector<registry::node_entry>& nodes) {
  std::string b = "{\"nodes\":[";
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i) b += ",";
    b += "{\"node\":";
    append_json_string(b, nodes[i].node);
    // The summary is "{...}" written by a node: splice its members after the name. Anything
    // else (an old or foreign value) is left out rather than breaking the document.
    const std::string_view sum = nodes[i].summary;
    if (sum.size() > 2 && sum.front() == '{' && sum.back() == '}') {
      b += ",";
      b += sum.substr(1);
    } else {
      b += "}";
    }
  }
  b += "]}";
  return b;
}

std::string rooms_json(const registry::room_page& page, std::size_t offset) {
  std::string b = "{\"rooms\":[";
  for (std::size_t i = 0; i < page.rooms.size(); ++i) {
    const auto& r = page.rooms[i];
    if (i) b += ",";
    b += "{\"room\":";
    append_json_string(b, r.room);
    b += ",\"online\":" + std::to_string(r.online) + ",\"by_role\":";
    append_counts(b, r.by_role);
    b += "}";
  }
  b += "],\"total\":" + std::to_string(page.total) + ",\"next_cursor\":";
  const auto next = offset + page.rooms.size();
  b += (!page.rooms.empty() && next < page.total) ? "\"" + std::to_string(next) + "\"" : std::string("null");
  b += "}";
  return b;
}

}  // namespace roomcast::api
