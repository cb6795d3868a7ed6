#pragma once
// The redis registry's resync after an outage, sans-io (no sockets, no threads, no clock of its
// own): it is told what happened (Redis came back or went away, a write was made or could not be
// sent, a snapshot of the shards arrived, time passed) and answers with what to do (send this
// write, take a snapshot, rewrite the node with these commands, heartbeat now).
//
// Why a resync: while Redis is away the node's writes are dropped (Redis may also have lost its
// data, or reaped this node), so once it is back the node rewrites its whole state from a
// snapshot of its shards: it reaps its own old entries, then writes every session. Writes made
// while the snapshot is being taken are held and sent after it, in order (they are idempotent,
// so one already in the snapshot is harmless). A write that can't be sent or held (queues full)
// starts the resync over with a new snapshot; a snapshot asked for before that is ignored when
// it arrives (tickets). Heartbeats (this node's summary with a TTL) wait until the node is
// rewritten, then go every `heartbeat`.
//
// Keys: see redis_registry.hpp. One thread only (the Redis thread).
#include "registry/registry.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace roomcast::registry {

using command = std::vector<std::string>;

// The writes of one session on `node`: its user entry and node_sessions member, and with
// with_rooms each of its rooms' entries too (what a resync writes; a join writes one room).
void append_session_writes(const session_record& s, const std::string& node, bool with_rooms,
                           std::vector<command>& out);
// The value of rc:user:<user>'s field for the session: JSON (session, node, platform, role, rooms).
std::string session_value(const session_record& s, const std::string& node);
// A session's entry in its room's hash (rc:room:<room>:<node>): "role\nuser\nplatform".
std::string room_member_value(const session_record& s);
// Adds one such entry to `to` (an entry of an older node, "role\nuser", has platform "").
void add_room_member_value(std::string_view value, room_members& to);

class resync {
 public:
  using clock = std::chrono::steady_clock;
  struct options {
    std::string node_id;
    std::chrono::milliseconds heartbeat{2'000};
    std::chrono::milliseconds node_ttl{6'000};
    std::size_t max_held = 200'000;  // writes held while a snapshot is taken
  };
  enum class phase { down, waiting_snapshot, synced };
  enum class write_action {
    send,           // send it now (the caller's command)
    held,           // kept until the snapshot is applied
    dropped,        // Redis is away: the next resync covers it
    take_snapshot,  // too many held: dropped; take a new snapshot (ticket())
  };
  // What a snapshot turns into: reap this node's old entries first (the reap_self script), then
  // these commands, in order.
  struct rewrite {
    std::vector<command> commands;
    std::size_t sessions = 0;
    std::size_t held = 0;  // of the commands, the writes held while waiting
  };

  explicit resync(options o) : opts_(std::move(o)) {}

  // Redis is up (again): take a snapshot for the returned ticket.
  std::uint64_t connected();
  // Redis went away: what was held is dropped; writes are dropped until the next connect.
  void disconnected();
  // The node made a write. `c` is moved from when held.
  write_action write(command& c);
  // A write could not be sent (the connection's queue was full): start over; take a snapshot
  // for the returned ticket. nullopt while Redis is down (the connect resyncs anyway).
  std::optional<std::uint64_t> write_lost();
  // The shards' snapshot for `ticket`: the rewrite to send, or nullopt when it is stale (a newer
  // snapshot was asked for, or Redis went away meanwhile).
  std::optional<rewrite> snapshot(std::uint64_t ticket, const std::vector<session_record>& sessions,
                                  clock::time_point now);
  // Whether a heartbeat is due, and its commands (the node's summary with its TTL, and its
  // membership in rc:nodes; the caller then reaps dead nodes). Heartbeats wait for the rewrite.
  bool heartbeat_due(clock::time_point now) const noexcept { return phase_ == phase::synced && now >= next_beat_; }
  std::vector<command> heartbeat(clock::time_point now, std::string summary);
  // When the next heartbeat is due (synced only).
  clock::time_point next_heartbeat() const noexcept { return next_beat_; }

  phase state() const noexcept { return phase_; }
  std::uint64_t ticket() const noexcept { return ticket_; }
  std::size_t held() const noexcept { return held_.size(); }
  std::uint64_t resyncs() const noexcept { return resyncs_; }
  std::uint64_t dropped_writes() const noexcept { return dropped_; }

 private:
  std::uint64_t start_over();

  options opts_;
  phase phase_ = phase::down;
  std::uint64_t ticket_ = 0;
  std::vector<command> held_;
  clock::time_point next_beat_{};
  std::uint64_t resyncs_ = 0, dropped_ = 0;
};

}  // namespace roomcast::registry
