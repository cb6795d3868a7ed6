// Three nodes behind nginx (round robin, no stickiness): a client's node is killed with SIGKILL;
// the client sees the drop, reconnects through nginx to a survivor and keeps receiving; the
// survivors reap the dead node's sessions from the registry and stop listing it.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <csignal>
#include <iostream>

#include "support/cluster.hpp"
#include "support/servers.hpp"

namespace roomcast::itest::cluster {
namespace {

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new broker_environment);

class cluster_failover : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<redis_server>();
    cluster_options o{unique_prefix(), amqp_uri(), redis_->address(), {}};
    std::vector<std::uint16_t> ports;
    for (int i = 0; i < 3; ++i) {
      nodes_.push_back(start_cluster_node("n" + std::to_string(i), o));
      ports.push_back(nodes_.back().port());
    }
    for (auto& n : nodes_) {
      auto r = wait_ready(n.port());
      ASSERT_EQ(r.status, 200u) << "node " << n.id << " not ready: " << r.body;
    }
    nginx_ = std::make_unique<nginx_server>(ports);
  }
  void TearDown() override {
    if (HasFailure()) {
      for (auto& n : nodes_)
        std::cerr << "--- node " << n.id << " (port " << n.port() << ") ---\n" << n.proc->output_tail(40);
    }
    nginx_.reset();
    nodes_.clear();
    redis_.reset();
  }

  std::size_t index_of(const std::string& node_id) const {
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].id == node_id) return i;
    return nodes_.size();
  }

  // Joins through nginx; a connection refused by a dead upstream is retried by nginx itself,
  // but allow the client a few attempts as a real client would.
  member join_via_nginx(const std::string& room, const std::string& user) {
    std::string why;
    for (int attempt = 0; attempt < 5; ++attempt) {
      try {
        return itest::join(nginx_->port(), room, "STU", user);
      } catch (const std::exception& e) {
        why = e.what();
      }
      std::this_thread::sleep_for(200ms);  // client reconnect backoff
    }
    throw std::runtime_error("could not join through nginx: " + why);
  }

  std::unique_ptr<redis_server> redis_;
  std::vector<cluster_node> nodes_;
  std::unique_ptr<nginx_server> nginx_;
};

TEST_F(cluster_failover, client_reconnects_to_a_survivor_and_the_dead_node_is_reaped) {
  const std::string tok = random_token(6);
  const std::string room = "fo" + tok;
  // One observer per node, so every node is bound to the room and holds a session in it.
  std::vector<member> observers;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    observers.push_back(itest::join(nodes_[i].port(), room, "STU", "obs" + std::to_string(i)));
  for (auto& n : nodes_) ASSERT_TRUE(wait_room_binds(n.port(), 1)) << n.id << " never bound " << room;

  auto roamer = join_via_nginx(room, "roamer" + tok);
  const std::string first_node = json_string(roamer.welcome, "node");
  const std::size_t dead = index_of(first_node);
  ASSERT_LT(dead, nodes_.size()) << "welcome names an unknown node: " << json::serialize(roamer.welcome);
  const std::size_t survivor = (dead + 1) % nodes_.size();

  auto before = poll_json(nodes_[survivor].port(), "/api/rooms/" + room,
                          [](const json::value& j) { return json_int(j, "online") == 4; });
  ASSERT_EQ(json_int(before, "online"), 4) << json::serialize(before);

  auto id1 = api_publish(nodes_[survivor].port(), R"({"room":")" + room + R"(","data":{"n":1}})");
  std::vector<json::value> skipped;
  ASSERT_TRUE(read_message_id(roamer, id1, &skipped).has_value())
      << "roamer (on " << first_node << ") missed the first message; got " << dump(skipped);

  // kill -9 the roamer's node: its connection drops (nginx closes the client side).
  nodes_[dead].proc->signal(SIGKILL);
  ASSERT_TRUE(nodes_[dead].proc->wait_exit(5s).has_value()) << "node " << first_node << " survived SIGKILL";
  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(roamer->wait_closed(10s)) << "the roamer's connection did not drop after its node died";
  EXPECT_TRUE(observers[dead]->wait_closed(5s)) << "a direct client of the dead node is still open";

  // Reconnect through nginx: it must land on a live node.
  auto again = join_via_nginx(room, "roamer" + tok);
  const std::string second_node = json_string(again.welcome, "node");
  EXPECT_NE(second_node, first_node) << json::serialize(again.welcome);
  EXPECT_LT(index_of(second_node), nodes_.size()) << json::serialize(again.welcome);

  auto id2 = api_publish(nodes_[survivor].port(), R"({"room":")" + room + R"(","data":{"n":2}})");
  skipped.clear();
  auto f = read_message_id(again, id2, &skipped);
  ASSERT_TRUE(f.has_value()) << "reconnected roamer (on " << second_node << ") missed the new message; got "
                             << dump(skipped);
  EXPECT_EQ(json_int(*f, "data.n"), 2);
  for (std::size_t i = 0; i < observers.size(); ++i) {
    if (i == dead) continue;
    skipped.clear();
    EXPECT_TRUE(read_message_id(observers[i], id2, &skipped).has_value())
        << "observer on " << nodes_[i].id << " missed the message; got " << dump(skipped);
  }

  // The survivors reap the dead node: the room lists only live sessions (2 observers + the roamer).
  const std::set<std::string> live_users{"obs" + std::to_string(survivor),
                                         "obs" + std::to_string((dead + 2) % nodes_.size()), "roamer" + tok};
  auto after = poll_json(
      nodes_[survivor].port(), "/api/rooms/" + room,
      [&](const json::value& j) { return json_int(j, "online") == 3 && string_set(j, "users") == live_users; }, 8s);
  const auto reaped_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
  EXPECT_EQ(json_int(after, "online"), 3) << json::serialize(after);
  EXPECT_EQ(string_set(after, "users"), live_users) << json::serialize(after);
  // registry_node_ttl 2s + heartbeat 500ms: ~3 s expected; 6 s leaves room for a loaded machine.
  EXPECT_LE(reaped_after.count(), 6000) << "dead node's sessions were reaped only after " << reaped_after.count()
                                        << " ms";
  std::cout << "[ INFO     ] dead node " << first_node << " reaped from the room view " << reaped_after.count()
            << " ms after SIGKILL; roamer moved to " << second_node << "\n";

  auto roamer_sessions = poll_json(nodes_[survivor].port(), "/api/users/roamer" + tok, [&](const json::value& j) {
    return string_set(j, "sessions", "node") == std::set<std::string>{second_node};
  });
  EXPECT_EQ(string_set(roamer_sessions, "sessions", "node"), std::set<std::string>{second_node})
      << "the dead node's session of the roamer is still listed: " << json::serialize(roamer_sessions);

  std::set<std::string> alive;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (i != dead) alive.insert(nodes_[i].id);
  auto nodes = poll_json(nodes_[survivor].port(), "/api/nodes",
                         [&](const json::value& j) { return string_set(j, "nodes", "node") == alive; });
  EXPECT_EQ(string_set(nodes, "nodes", "node"), alive) << json::serialize(nodes);
  EXPECT_EQ(json_find(nodes, "nodes")->get_array().size(), 2u) << json::serialize(nodes);
  EXPECT_GE(metric_value(nodes_[survivor].port(), "roomcast_registry_reaped_nodes_total") +
                metric_value(nodes_[(dead + 2) % nodes_.size()].port(), "roomcast_registry_reaped_nodes_total"),
            1)
      << "no survivor counted the reaped node";
}

}  // namespace
}  // namespace roomcast::itest::cluster
