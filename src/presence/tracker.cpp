#include "presence/tracker.hpp"

#include "protocol/codec.hpp"

#include <algorithm>

namespace roomcast::presence {

using protocol::append_json_string;

void tracker::changed(std::string_view room, bool local) {
  auto it = rooms_.find(std::string(room));
  if (it == rooms_.end()) {
    const auto interval = rules_.interval_for(room);
    if (!interval) return;
    it = rooms_.emplace(std::string(room), state{}).first;
    it->second.interval = *interval;
  }
  auto& s = it->second;
  s.changed = true;
  s.local = s.local || local;
  if (!s.reading) changed_.insert(it->first);
}

void tracker::changed_all() {
  for (auto& [room, s] : rooms_) {
    s.changed = true;
    if (!s.reading) changed_.insert(room);
  }
}

std::vector<tracker::job> tracker::due(clock::time_point now) {
  std::vector<job> out;
  for (auto it = changed_.begin(); it != changed_.end();) {
    auto& s = rooms_.at(*it);
    if (now < s.last_read + s.interval) {
      ++it;
      continue;
    }
    out.push_back({*it, s.local});
    s.changed = s.local = false;
    s.reading = true;
    s.last_read = now;
    it = changed_.erase(it);
  }
  return out;
}

std::optional<tracker::clock::time_point> tracker::next_due() const {
  std::optional<clock::time_point> t;
  for (const auto& room : changed_) {
    const auto& s = rooms_.at(room);
    const auto at = s.last_read + s.interval;
    if (!t || at < *t) t = at;
  }
  return t;
}

void tracker::read_failed(std::string_view room) {
  auto it = rooms_.find(std::string(room));
  if (it == rooms_.end()) return;
  it->second.reading = false;
  it->second.changed = true;
  changed_.insert(it->first);
}

std::optional<std::string> tracker::read_done(std::string_view room, const hub::room_presence& p, bool local,
                                              bool has_members) {
  auto it = rooms_.find(std::string(room));
  if (it == rooms_.end()) return std::nullopt;
  auto& s = it->second;
  s.reading = false;
  if (s.changed) changed_.insert(it->first);  // changed again meanwhile: read again when due
  if (!has_members) {
    // Nobody here to tell; forget the room unless it changed meanwhile (a join on its way).
    if (!s.changed) rooms_.erase(it);
    return std::nullopt;
  }
  names now;
  auto frame = encode_state(room, p, now);
  if (frame == s.last_state && !local) return std::nullopt;
  s.last_state = frame;
  if (!name_roles_.empty()) {
    auto list = [&frame](const char* key, const names& a, const names& b) {
      frame += ",\"";
      frame += key;
      frame += "\":[";
      bool first = true;
      for (const auto& rn : a) {
        if (b.contains(rn)) continue;
        if (!first) frame += ',';
        first = false;
        frame += "{\"user\":";
        append_json_string(frame, rn.second);
        frame += ",\"role\":";
        append_json_string(frame, rn.first);
        frame += '}';
      }
      frame += ']';
    };
    list("joined", now, s.last_names);
    list("left", s.last_names, now);
    s.last_names = std::move(now);
  }
  return frame + "}";
}

std::string tracker::encode_state(std::string_view room, const hub::room_presence& p, names& now) const {
  std::string f = "{\"type\":\"presence\",\"room\":";
  append_json_string(f, room);
  f += ",\"online\":{\"users\":" + std::to_string(p.users.size()) + ",\"sessions\":" + std::to_string(p.sessions) +
       ",\"by_role\":{";
  bool first = true;
  for (const auto& [role, n] : p.by_role) {
    if (!first) f += ',';
    first = false;
    append_json_string(f, role);
    f += ':' + std::to_string(n);
  }
  f += "}}";
  if (name_roles_.empty()) return f;
  // The names of the chosen roles, capped (the counts stay exact).
  f += ",\"names\":{";
  for (std::size_t i = 0; i < name_roles_.size(); ++i) {
    const auto& role = name_roles_[i];
    if (i) f += ',';
    append_json_string(f, role);
    f += ":[";
    std::size_t n = 0;
    for (const auto& [user, up] : p.users) {
      if (!up.roles.contains(role)) continue;
      if (n == max_names_per_role) break;
      if (n++) f += ',';
      append_json_string(f, user);
      now.emplace(role, user);
    }
    f += ']';
  }
  f += '}';
  return f;
}

}  // namespace roomcast::presence
