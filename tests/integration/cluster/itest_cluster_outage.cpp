// Degraded clusters:
//  - broker unreachable (a URI on a port nothing listens on): /readyz 503 with "bus":"down",
//    POST /api/publish answers 202 queued while the outage buffer has room, then 503 + Retry-After;
//  - registry unreachable (redis on a dead port) with the real broker: rooms still work, user
//    messages fall back to every node, /readyz stays 200 with "registry":"down";
//  - a second process started with a node_id already running: it must not delete the live node's
//    queue; it stays unready until the first one is gone, then takes over.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "support/cluster.hpp"
#include "support/servers.hpp"

namespace roomcast::itest::cluster {
namespace {

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new broker_environment);

void dump_on_failure(const std::vector<cluster_node>& nodes) {
  if (!::testing::Test::HasFailure()) return;
  for (const auto& n : nodes)
    std::cerr << "--- node " << n.id << " (port " << n.port() << ") ---\n" << n.proc->output_tail(40);
}

TEST(cluster_outage, broker_unreachable_buffers_publishes_then_refuses) {
  const auto dead_port = script_free_port();
  cluster_options o{unique_prefix(),
                    "amqp://guest:guest@127.0.0.1:" + std::to_string(dead_port) + "/",
                    {},
                    {"--outage-buffer-messages", "3"}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("down0", o));
  const auto port = nodes[0].port();

  // The node is alive (it passed /healthz) but not ready.
  auto r = readyz(port);
  EXPECT_EQ(r.status, 503u) << r.body;
  auto ready = r.json();
  EXPECT_FALSE(json_bool(ready, "ready", true)) << r.body;
  EXPECT_EQ(json_string(ready, "bus"), "down") << r.body;
  EXPECT_FALSE(json_bool(ready, "draining", true)) << r.body;
  EXPECT_EQ(metric_value(port, "roomcast_bus_up"), 0);

  // A client can still connect (its messages will be delivered once the broker is back).
  auto m = itest::join(port, "out", "STU", "u1");

  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto res = http_post_json(port, "/api/publish", R"({"room":"out","data":{"i":)" + std::to_string(i) + "}}");
    EXPECT_EQ(res.status, 202u) << "publish #" << i + 1 << ": " << res.body;
    if (res.status != 202) continue;
    auto v = res.json();
    EXPECT_TRUE(json_bool(v, "ok")) << res.body;
    EXPECT_TRUE(json_bool(v, "queued")) << res.body;
    EXPECT_FALSE(json_string(v, "id").empty()) << res.body;
    ids.push_back(json_string(v, "id"));
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size()) << "ids must differ";
  EXPECT_EQ(stat_int(port, "bus_outage_buffer"), 3);

  auto full = http_post_json(port, "/api/publish", R"({"room":"out","data":{"i":3}})");
  EXPECT_EQ(full.status, 503u) << full.body;
  EXPECT_TRUE(full.has_header("Retry-After")) << "503 without Retry-After: " << full.body;
  EXPECT_EQ(stat_int(port, "bus_outage_buffer"), 3) << "a refused publish must not enter the buffer";

  // Nothing was delivered meanwhile, and the node still answers.
  auto frames = collect(m, 200ms);
  EXPECT_TRUE(frames.empty()) << dump(frames);
  EXPECT_EQ(readyz(port).status, 503u);
  dump_on_failure(nodes);
}

TEST(cluster_outage, registry_unreachable_still_delivers_rooms_and_user_messages) {
  const auto dead_port = script_free_port();
  cluster_options o{unique_prefix(), amqp_uri(), "127.0.0.1:" + std::to_string(dead_port), {}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("nr0", o));
  nodes.push_back(start_cluster_node("nr1", o));
  const auto p0 = nodes[0].port(), p1 = nodes[1].port();

  for (auto& n : nodes) {
    auto r = wait_ready(n.port());
    EXPECT_EQ(r.status, 200u) << n.id << ": " << r.body;
    if (r.status != 200) continue;
    auto v = r.json();
    EXPECT_TRUE(json_bool(v, "ready")) << r.body;
    EXPECT_EQ(json_string(v, "bus"), "up") << r.body;
    EXPECT_EQ(json_string(v, "registry"), "down") << r.body;
    EXPECT_EQ(metric_value(n.port(), "roomcast_registry_up"), 0);
  }
  if (HasFailure()) return dump_on_failure(nodes);

  const std::string tok = random_token(6);
  const std::string room = "rr" + tok, user = "ru" + tok;
  auto r1 = itest::join(p1, room, "STU", "member" + tok);
  auto u1 = itest::join(p1, "elsewhere" + tok, "STU", user, "mobile");
  auto bystander = itest::join(p0, "elsewhere" + tok, "STU", "by" + tok);
  ASSERT_TRUE(wait_room_binds(p1, 2)) << "node nr1 never bound its rooms";
  ASSERT_TRUE(wait_room_binds(p0, 1)) << "node nr0 never bound its room";

  // A room message published on nr0 reaches nr1's member (routing needs no registry).
  auto rid = api_publish(p0, R"({"room":")" + room + R"(","data":"room"})");
  std::vector<json::value> skipped;
  EXPECT_TRUE(read_message_id(r1, rid, &skipped).has_value()) << "room member missed it; got " << dump(skipped);

  // A user message: the registry cannot say where the user is, so it goes to every node.
  const auto fallback_before = stat_int(p0, "bus_fallback_all");
  auto uid = api_publish(p0, R"({"user":")" + user + R"(","data":"user"})");
  skipped.clear();
  auto f = read_message_id(u1, uid, &skipped);
  EXPECT_TRUE(f.has_value()) << "user on nr1 missed the user message; got " << dump(skipped);
  if (f) {
    EXPECT_EQ(json_string(*f, "user"), user) << json::serialize(*f);
  }
  auto after = collect(u1, 300ms);
  EXPECT_TRUE(after.empty()) << "duplicates? " << dump(after);
  EXPECT_TRUE(collect(bystander, 100ms).empty()) << "another user received the user message";
  EXPECT_GE(stat_int(p0, "bus_fallback_all"), fallback_before + 1);
  EXPECT_GE(stat_int(p0, "bus_fallback_all"), 1);
  EXPECT_GE(metric_value(p0, "roomcast_bus_user_fallback_all_total"), 1);

  // Registry-backed queries answer 503 rather than a wrong answer.
  auto room_q = http_get(p0, "/api/rooms/" + room);
  EXPECT_EQ(room_q.status, 503u) << room_q.body;

  // Still ready: the registry alone does not take the node out of the load balancer.
  auto r = readyz(p0);
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(json_string(r.json(), "registry"), "down") << r.body;
  dump_on_failure(nodes);
}

TEST(cluster_outage, second_process_with_the_same_node_id_waits_instead_of_taking_the_queue) {
  cluster_options o{unique_prefix(), amqp_uri(), {}, {"--drain-window", "0s"}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("same", o));
  const auto p0 = nodes[0].port();
  auto r0 = wait_ready(p0);
  ASSERT_EQ(r0.status, 200u) << r0.body;
  const std::string tok = random_token(6), room = "dup" + tok;
  auto member = itest::join(p0, room, "STU", "m" + tok);
  ASSERT_TRUE(wait_room_binds(p0, 1)) << "the first node never bound " << room;

  nodes.push_back(start_cluster_node("same", o));
  const auto p1 = nodes[1].port();
  EXPECT_TRUE(poll_until([&] { return metric_value(p1, "roomcast_bus_node_id_in_use_total") >= 1; }, 10s))
      << "the second process did not notice the live queue";
  EXPECT_EQ(readyz(p1).status, 503u) << "the second process must stay out of the load balancer";
  EXPECT_NE(nodes[1].proc->output().find("is in use"), std::string::npos) << nodes[1].proc->output_tail(20);

  // The first node's queue and bindings are intact: its member still gets room messages.
  auto id = api_publish(p0, R"({"room":")" + room + R"(","data":"still here"})");
  std::vector<json::value> skipped;
  EXPECT_TRUE(read_message_id(member, id, &skipped).has_value())
      << "the first node lost its queue; got " << dump(skipped);

  // Once the first process is gone, the second takes the node_id over.
  nodes[0].proc->terminate();
  ASSERT_TRUE(nodes[0].proc->wait_exit(30s).has_value()) << "the first node did not exit";
  auto r1 = wait_ready(p1, 30s);
  EXPECT_EQ(r1.status, 200u) << r1.body;
  dump_on_failure(nodes);
}

}  // namespace
}  // namespace roomcast::itest::cluster
