#pragma once
// When a room's presence frame is due, and what it says (sans-io, unit-tested; presence::service
// does the I/O).
//
// A room is read (its cluster-wide members, from the registry) when it changed since its last
// read and its interval has passed since then: a join surge of N students costs one read and one
// frame per member per interval, not N² frames. Changes are local (this node's members) or remote
// (another node's ping); after a read that a local change caused, the other nodes are pinged so
// they read too. Not thread-safe: the service holds its lock around every call.
#include "hub/presence.hpp"
#include "presence/rules.hpp"

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace roomcast::presence {

class tracker {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t max_names_per_role = 100;

  // name_roles: roles whose members' names the frames carry (config presence_names).
  tracker(const rules& r, std::vector<std::string> name_roles) : rules_(r), name_roles_(std::move(name_roles)) {}

  // The room's members changed: on this node (local) or on another (remote). Rooms without a
  // presence rule are ignored.
  void changed(std::string_view room, bool local);
  // Every room this node tracks (a dead node's members left them all).
  void changed_all();

  struct job {
    std::string room;
    bool local;  // a change of this node's: ping the other nodes once the read is done
  };
  // Rooms to read now. A room has at most one read in flight.
  std::vector<job> due(clock::time_point now);
  // When the next changed room becomes due (nullopt: none is waiting).
  std::optional<clock::time_point> next_due() const;

  // The read of a room from due() is done. Returns the frame for its members on this node, when
  // there is one to send: it differs from the last, or the change was local (members that just
  // joined get the room's state even when the counts came back the same).
  std::optional<std::string> read_done(std::string_view room, const hub::room_presence& p, bool local,
                                       bool has_members);
  // The read failed: the room stays changed and is read again after its interval.
  void read_failed(std::string_view room);

  std::size_t tracked() const noexcept { return rooms_.size(); }

 private:
  using names = std::set<std::pair<std::string, std::string>>;  // (role, user)
  struct state {
    std::chrono::milliseconds interval{};
    clock::time_point last_read{};
    bool changed = false, local = false, reading = false;
    std::string last_state;  // the last frame sent, without its joined/left lists
    names last_names;
  };
  // The frame up to its joined/left lists (which say what changed since the last frame sent).
  std::string encode_state(std::string_view room, const hub::room_presence& p, names& now) const;

  const rules& rules_;
  std::vector<std::string> name_roles_;
  std::unordered_map<std::string, state> rooms_;
  std::set<std::string> changed_;  // rooms with changed = true and no read in flight
};

}  // namespace roomcast::presence
