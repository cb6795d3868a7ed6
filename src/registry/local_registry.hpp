#pragma once
// Registry of a single node: this node's shards are the truth, so queries gather from them and
// writes are nothing to do.
#include "hub/router.hpp"
#include "registry/registry.hpp"

namespace roomcast::registry {

class local_registry final : public registry {
 public:
  // node_summary(): this node's state as a JSON object (api::handler::node_summary), for describe_nodes.
  local_registry(hub::router& router, std::function<std::string()> node_summary)
      : router_(router), node_summary_(std::move(node_summary)) {}

  void user_sessions(const std::string& user, sessions_callback cb) override;
  void describe_user(const std::string& user, user_callback cb) override;
  void describe_room(const std::string& room, room_callback cb) override;
  void describe_nodes(nodes_callback cb) override;
  void busiest_rooms(std::size_t offset, std::size_t limit, rooms_callback cb) override;
  const char* name() const noexcept override { return "local"; }

 private:
  hub::router& router_;
  std::function<std::string()> node_summary_;
};

// Sorts rooms busiest first (then by name) and keeps [offset, offset + limit).
room_page page_of(std::vector<room_summary> rooms, std::size_t offset, std::size_t limit);

}  // namespace roomcast::registry
