#pragma once
// Who is online where: user -> sessions -> node, room -> members by role, node liveness.
// Implementations: local (this node's shards answer) and redis (cluster-wide, batched writes).
//
// Threads: the write calls come from shard threads on join/leave paths and never block; the
// query callbacks run on any thread.
#include "hub/presence.hpp"

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <string>
#include <vector>

namespace roomcast::registry {

// A session as the registry stores it.
struct session_record {
  std::string session;  // id from welcome
  std::string user;
  std::string role;
  std::string platform;
  std::vector<std::string> rooms;
};

// A session as queries answer it: the record and the node holding it.
struct located_session {
  session_record s;
  std::string node;
};

// A room's members (cluster-wide, or this node's): sessions, by role and platform, distinct users.
using room_members = hub::room_presence;

// A live node and its summary: the JSON object it wrote with its last heartbeat
// (api::handler::node_summary), carried as is.
struct node_entry {
  std::string node;
  std::string summary;
};

// One room of GET /api/rooms: its sessions (cluster-wide, or this node's), by role.
struct room_summary {
  std::string room;
  std::size_t online = 0;
  std::map<std::string, std::size_t> by_role;
};
struct room_page {
  std::size_t total = 0;  // rooms with members
  std::vector<room_summary> rooms;
};

class registry {
 public:
  virtual ~registry() = default;

  virtual void start() {}
  virtual void stop() {}

  // Membership changes of this node's sessions. `s.rooms` is the state after the change.
  // shard::remove reports room_left for every room before session_closed.
  virtual bool wants_writes() const noexcept { return false; }
  virtual void session_opened(const session_record&) {}
  virtual void room_joined(const session_record&, const std::string& /*room*/) {}
  virtual void room_left(const session_record&, const std::string& /*room*/) {}
  virtual void session_closed(const session_record&) {}

  // The user's sessions and their nodes; nullopt when the registry can't answer (send to all).
  struct session_location {
    std::string session;
    std::string node;
  };
  using sessions_callback = std::function<void(std::optional<std::vector<session_location>>)>;
  virtual void user_sessions(const std::string& user, sessions_callback cb) = 0;

  // The node holding a session (id from welcome): "" when no node has it, nullopt when the
  // registry can't answer (or, like the local one, knows only this node's sessions).
  using node_callback = std::function<void(std::optional<std::string>)>;
  virtual void session_node(const std::string& /*session*/, node_callback cb) { cb(std::nullopt); }

  // Queries for the API (api/ turns the answers into JSON). ec is set when the registry can't
  // answer (Redis unreachable); the callbacks run on any thread.
  using user_callback = std::function<void(std::error_code, std::vector<located_session>)>;  // by session id
  using room_callback = std::function<void(std::error_code, room_members)>;
  using nodes_callback = std::function<void(std::error_code, std::vector<node_entry>)>;  // by node id
  virtual void describe_user(const std::string& user, user_callback cb) = 0;
  virtual void describe_room(const std::string& room, room_callback cb) = 0;
  virtual void describe_nodes(nodes_callback cb) = 0;

  // The busiest rooms (most sessions first, then by name): rooms [offset, offset + limit) of that
  // order. ec is set when the registry can't answer.
  using rooms_callback = std::function<void(std::error_code, room_page)>;
  virtual void busiest_rooms(std::size_t offset, std::size_t limit, rooms_callback cb) = 0;

  // fn runs (on any thread) after this node removed dead nodes' entries: their sessions left
  // every room (presence recounts). Set before start().
  virtual void on_nodes_reaped(const std::function<void()>& /*fn*/) {}

  virtual bool healthy() const { return true; }
  virtual const char* name() const noexcept = 0;
  virtual void append_metrics(std::string&) const {}
};

}  // namespace roomcast::registry
