#pragma once
// Who is in a room: sessions, distinct users, by role and platform (GET /api/rooms/{room} and the
// presence frames). Built from members one session at a time, by a shard or from the registry.
#include "protocol/filter.hpp"

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace roomcast::hub {

struct user_presence {
  std::size_t sessions = 0;
  std::set<std::string, std::less<>> roles, platforms;
  std::set<std::pair<std::string, std::string>> devices;  // (role, platform) of each kind of session

  // A message with this audience reaches the user: one of its sessions matches.
  bool reached_by(const protocol::filter& f, std::string_view user) const {
    for (const auto& [role, platform] : devices)
      if (f.matches(role, platform, user)) return true;
    return false;
  }
};

struct room_presence {
  std::size_t sessions = 0;
  std::map<std::string, std::size_t, std::less<>> by_role;      // sessions per role
  std::map<std::string, std::size_t, std::less<>> by_platform;  // sessions per platform
  std::map<std::string, user_presence, std::less<>> users;      // distinct users, by id

  void add(std::string_view user, std::string_view role, std::string_view platform) {
    ++sessions;
    count(by_role, role);
    count(by_platform, platform);
    auto it = users.find(user);
    if (it == users.end()) it = users.emplace(std::string(user), user_presence{}).first;
    ++it->second.sessions;
    it->second.roles.emplace(role);
    it->second.platforms.emplace(platform);
    it->second.devices.emplace(role, platform);
  }
  void merge(const room_presence& o) {
    sessions += o.sessions;
    for (const auto& [k, n] : o.by_role) by_role[k] += n;
    for (const auto& [k, n] : o.by_platform) by_platform[k] += n;
    for (const auto& [u, p] : o.users) {
      auto& mine = users[u];
      mine.sessions += p.sessions;
      mine.roles.insert(p.roles.begin(), p.roles.end());
      mine.platforms.insert(p.platforms.begin(), p.platforms.end());
      mine.devices.insert(p.devices.begin(), p.devices.end());
    }
  }

 private:
  static void count(std::map<std::string, std::size_t, std::less<>>& m, std::string_view k) {
    auto it = m.find(k);
    if (it == m.end()) it = m.emplace(std::string(k), 0).first;
    ++it->second;
  }
};

}  // namespace roomcast::hub
