// Faults on the shared broker:
//  - a node killed with SIGKILL leaves its queue <prefix>.node.<id> behind only until x-expires
//    (rabbitmq_queue_expires) runs out, and the survivors stop listing its sessions;
//  - the same envelope delivered twice (what a broker redelivery looks like) reaches a client once
//    and is counted in bus_duplicates;
//  - bad configuration at start: a malformed broker URI exits 2 with one line naming the key; wrong
//    broker credentials and an unreachable Redis keep the node running, say so in /readyz and log it.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <csignal>
#include <iostream>

#include "support/amqp_client.hpp"
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

std::string stats_summary(std::uint16_t port) {
  try {
    auto s = get_stats(port);
    std::string out;
    for (const char* k : {"bus_received", "bus_duplicates", "bus_published", "bus_outage_buffer"})
      out += std::string(out.empty() ? "" : ", ") + k + "=" + std::to_string(json_int(s, k));
    return out;
  } catch (const std::exception& e) {
    return std::string("(no /api/stats: ") + e.what() + ")";
  }
}

// ---------------------------------------------------------------- 1. queue expiry after kill -9

TEST(cluster_faults, killed_nodes_queue_expires_and_its_sessions_are_reaped) {
  redis_server redis;
  cluster_options o{unique_prefix(), amqp_uri(), redis.address(), {}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("keep", o));
  // The victim's queue expires 10 s after its last consumer is gone (10 s is the configured minimum).
  auto victim_args = cluster_args("victim", o);
  auto it = std::find(victim_args.begin(), victim_args.end(), "--rabbitmq-queue-expires");
  ASSERT_NE(it, victim_args.end());
  *std::next(it) = "10s";
  nodes.push_back({"victim", start_node(victim_args)});
  const auto keep = nodes[0].port(), victim = nodes[1].port();
  for (auto& n : nodes) {
    auto r = wait_ready(n.port());
    ASSERT_EQ(r.status, 200u) << n.id << " not ready: " << r.body;
  }

  const std::string tok = random_token(6);
  const std::string room = "qx" + tok, vuser = "vu" + tok, kuser = "ku" + tok;
  auto on_keep = itest::join(keep, room, "STU", kuser);
  auto on_victim = itest::join(victim, room, "STU", vuser);
  auto before = poll_json(keep, "/api/rooms/" + room, [](const json::value& j) { return json_int(j, "online") == 2; });
  ASSERT_EQ(json_int(before, "online"), 2) << json::serialize(before);

  const std::string queue = o.prefix + ".node.victim";
  ASSERT_TRUE(amqp_queue_exists(amqp_uri(), queue)) << queue << " should exist while its node runs";

  nodes[1].proc->signal(SIGKILL);
  ASSERT_TRUE(nodes[1].proc->wait_exit(5s).has_value()) << "the victim survived SIGKILL";
  const auto killed_at = std::chrono::steady_clock::now();
  auto since_kill = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
  };

  // Right after the kill the queue is still there (durable, waiting for its node to come back).
  EXPECT_TRUE(amqp_queue_exists(amqp_uri(), queue)) << queue << " vanished at once: x-expires should keep it 10 s";

  // The survivor stops listing the victim's sessions (registry reaping: node TTL 2 s).
  const std::set<std::string> live{kuser};
  auto room_after = poll_json(
      keep, "/api/rooms/" + room,
      [&](const json::value& j) { return json_int(j, "online") == 1 && string_set(j, "users") == live; }, 10s);
  EXPECT_EQ(json_int(room_after, "online"), 1) << json::serialize(room_after);
  EXPECT_EQ(string_set(room_after, "users"), live) << json::serialize(room_after);
  auto user_after = poll_json(
      keep, "/api/users/" + vuser,
      [](const json::value& j) {
        const auto* s = json_find(j, "sessions");
        return s && s->is_array() && s->get_array().empty();
      },
      10s - since_kill());
  const auto* sessions = json_find(user_after, "sessions");
  EXPECT_TRUE(sessions && sessions->is_array() && sessions->get_array().empty())
      << "the killed node's session is still listed " << since_kill().count()
      << " ms after SIGKILL: " << json::serialize(user_after);

  // The queue goes once x-expires ran out. A passive declare counts as use and renews the queue's
  // lease (checked against RabbitMQ 3.10), so never probe more often than the lease: once 11 s
  // after the kill (the probe above took a lease of 10 s), and if it is still there, once more
  // 11 s later, within the 25 s deadline.
  bool gone = false;
  std::string probe_error;
  for (auto at : {killed_at + 11s, killed_at + 22500ms}) {
    std::this_thread::sleep_until(at);
    try {
      gone = !amqp_queue_exists(amqp_uri(), queue);
    } catch (const std::exception& e) {
      probe_error = e.what();
    }
    if (gone) break;
  }
  EXPECT_TRUE(gone) << queue << " still exists " << since_kill().count() << " ms after SIGKILL (x-expires 10 s)"
                    << (probe_error.empty() ? "" : "; last probe error: " + probe_error);
  std::cout << "[ INFO     ] " << queue << (gone ? " gone" : " still there") << " " << since_kill().count()
            << " ms after SIGKILL\n";

  // The survivor is unaffected: its room still works.
  auto id = api_publish(keep, R"({"room":")" + room + R"(","data":"after"})");
  std::vector<json::value> skipped;
  EXPECT_TRUE(read_message_id(on_keep, id, &skipped).has_value()) << "survivor's member missed it: " << dump(skipped);
  dump_on_failure(nodes);
}

// ---------------------------------------------------------------- 2. redelivery is not delivered twice

TEST(cluster_faults, same_envelope_twice_is_delivered_once) {
  cluster_options o{unique_prefix(), amqp_uri(), {}, {}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("dd0", o));
  const auto port = nodes[0].port();
  auto r = wait_ready(port);
  ASSERT_EQ(r.status, 200u) << r.body;

  const std::string tok = random_token(6);
  const std::string room = "dup" + tok, id = "dup-1-" + tok;
  auto m = itest::join(port, room, "STU", "u" + tok);
  ASSERT_TRUE(wait_room_binds(port, 1)) << "the node never bound " << room;
  const auto dups_before = stat_int(port, "bus_duplicates");
  const auto received_before = stat_int(port, "bus_received");

  const std::string envelope = R"({"v":1,"type":"message","kind":"room","target":")" + room + R"(","id":")" + id +
                               R"(","from":"test","origin":"test","data":{"x":1}})";
  {
    amqp_test_connection c(amqp_uri());
    c.publish_confirmed(o.prefix + ".rooms", room, envelope);
    c.publish_confirmed(o.prefix + ".rooms", room, envelope);
  }

  std::vector<json::value> skipped;
  auto f = read_message_id(m, id, &skipped);
  ASSERT_TRUE(f.has_value()) << "the client never got " << id << "; got " << dump(skipped) << "; "
                             << stats_summary(port);
  EXPECT_EQ(json_string(*f, "room"), room) << json::serialize(*f);
  EXPECT_EQ(json_int(*f, "data.x"), 1) << json::serialize(*f);
  EXPECT_EQ(json_string(*f, "from"), "test") << json::serialize(*f);

  // Both copies reached the node; the second is counted as a duplicate and not delivered.
  EXPECT_TRUE(poll_until([&] { return stat_int(port, "bus_received") >= received_before + 2; }, 5s))
      << "the node did not receive both copies: " << stats_summary(port);
  EXPECT_TRUE(poll_until([&] { return stat_int(port, "bus_duplicates") >= dups_before + 1; }, 5s))
      << "bus_duplicates did not go up: " << stats_summary(port);
  EXPECT_EQ(stat_int(port, "bus_duplicates"), dups_before + 1) << stats_summary(port);
  auto rest = collect(m, 500ms);
  for (const auto& x : rest) EXPECT_NE(json_string(x, "id"), id) << "delivered twice: " << dump(rest);
  dump_on_failure(nodes);
}

// ---------------------------------------------------------------- 3. bad configuration at start

TEST(cluster_faults, malformed_broker_uri_exits_2_naming_the_key) {
  auto r = run_to_exit(roomcast_bin(), {"--bus", "rabbitmq", "--rabbitmq-uris", "not-a-uri"});
  ASSERT_TRUE(r.exit_code.has_value()) << "still running after 10 s:\n" << r.output;
  EXPECT_EQ(*r.exit_code, 2) << r.output;
  std::istringstream in(r.output);
  std::string line;
  std::vector<std::string> lines, naming;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    lines.push_back(line);
    if (line.find("rabbitmq_uris") != std::string::npos) naming.push_back(line);
  }
  EXPECT_EQ(lines.size(), 1u) << "expected one line of output:\n" << r.output;
  EXPECT_EQ(naming.size(), 1u) << "expected a line naming rabbitmq_uris:\n" << r.output;
  EXPECT_EQ(r.output.find("AddressSanitizer"), std::string::npos) << r.output;
}

TEST(cluster_faults, wrong_broker_credentials_keep_the_node_up_but_not_ready) {
  // amqp://guest:guest@host:port/ -> amqp://guest:wrong@host:port/
  const std::string uri = amqp_uri();
  const auto at = uri.find('@');
  ASSERT_NE(at, std::string::npos) << uri;
  const std::string bad = "amqp://guest:wrong" + uri.substr(at);
  cluster_options o{unique_prefix(), bad, {}, {}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("badpw", o));
  const auto port = nodes[0].port();

  auto line = wait_for_output(
      *nodes[0].proc,
      [](const std::string& l) { return contains_ci(l, "login") || l.find("ACCESS_REFUSED") != std::string::npos; },
      10s);
  EXPECT_FALSE(line.empty()) << "no log line mentions the failed login within 10 s";
  if (!line.empty()) std::cout << "[ INFO     ] log: " << line << "\n";

  EXPECT_TRUE(nodes[0].proc->running()) << "the node exited";
  auto r = readyz(port);
  EXPECT_EQ(r.status, 503u) << r.body;
  if (r.status == 503) {
    auto v = r.json();
    EXPECT_EQ(json_string(v, "bus"), "down") << r.body;
    EXPECT_FALSE(json_bool(v, "ready", true)) << r.body;
  }
  EXPECT_EQ(metric_value(port, "roomcast_bus_up"), 0);
  EXPECT_EQ(http_get(port, "/healthz").status, 200u);
  dump_on_failure(nodes);
}

TEST(cluster_faults, redis_down_at_start_keeps_the_node_ready_and_logs_it) {
  const auto dead_port = script_free_port();
  cluster_options o{unique_prefix(), amqp_uri(), "127.0.0.1:" + std::to_string(dead_port), {}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("noredis", o));
  const auto port = nodes[0].port();

  auto r = wait_ready(port);
  EXPECT_EQ(r.status, 200u) << r.body;
  if (r.status == 200) {
    auto v = r.json();
    EXPECT_EQ(json_string(v, "registry"), "down") << r.body;
    EXPECT_EQ(json_string(v, "bus"), "up") << r.body;
  }
  auto line = wait_for_output(
      *nodes[0].proc,
      [](const std::string& l) {
        return contains_ci(l, "registry") && contains_ci(l, "redis") && contains_ci(l, "unreachable");
      },
      5s);
  EXPECT_FALSE(line.empty()) << "no log line says the registry's redis is unreachable";
  if (!line.empty()) std::cout << "[ INFO     ] log: " << line << "\n";
  // The registry logs it once per outage, not once per retry (other Redis users log their own line).
  std::this_thread::sleep_for(1500ms);  // several reconnect attempts
  std::istringstream in(nodes[0].proc->output());
  std::string l;
  int count = 0;
  while (std::getline(in, l))
    if (contains_ci(l, "registry") && contains_ci(l, "redis") && contains_ci(l, "unreachable")) ++count;
  EXPECT_EQ(count, 1) << "the registry's unreachable line should appear once per outage";
  EXPECT_TRUE(nodes[0].proc->running()) << "the node exited";
  dump_on_failure(nodes);
}

}  // namespace
}  // namespace roomcast::itest::cluster
