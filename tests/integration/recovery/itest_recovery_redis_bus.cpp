// The Redis Pub/Sub bus loses messages (here on purpose: the test build's hook
// ROOMCAST_TEST_HOOK_DROP_EVERY_NTH=7 drops every 7th received room message); a node that
// receives seq n+2 after n reads the hole from history (Redis) before delivering, so members on
// both nodes still get every seq exactly once, in order. Run twice: with the history script
// PUBLISHing room messages itself (redis_script_publish, the default) and with the bus publishing
// them after the script.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cstdlib>
#include <iostream>

#include "recovery_support.hpp"

namespace roomcast::itest::recovery {
namespace {

class recovery_redis_bus : public ::testing::TestWithParam<bool> {};

TEST_P(recovery_redis_bus, holes_left_by_a_lossy_bus_are_filled_from_history) {
  const bool script_publish = GetParam();
  redis_server redis;
  const std::string prefix = unique_prefix(), tok = random_token(5), room = "rb" + tok;
  std::vector<std::unique_ptr<node_process>> nodes;
  // The nodes inherit the hook from this process's environment (test builds read it).
  ::setenv("ROOMCAST_TEST_HOOK_DROP_EVERY_NTH", "7", 1);
  for (int i = 0; i < 2; ++i)
    nodes.push_back(start_node(redis_bus_args("n" + std::to_string(i), redis.address(), prefix, script_publish)));
  ::unsetenv("ROOMCAST_TEST_HOOK_DROP_EVERY_NTH");
  for (auto& n : nodes) {
    auto r = wait_ready(n->port());
    ASSERT_EQ(r.status, 200u) << r.body;
  }

  client_pool pool;
  for (int i = 0; i < 6; ++i) pool.add(nodes[i % 2]->port(), room, "m" + tok + "-" + std::to_string(i));
  std::vector<std::uint16_t> ports;
  for (auto& n : nodes) ports.push_back(n->port());
  const auto why = start_and_wait_subscribed(pool, ports);
  ASSERT_TRUE(why.empty()) << why;

  constexpr int total = 300;
  retry_stats st;
  std::uint64_t head = 0;
  for (int i = 1; i <= total; ++i) {
    auto a = publish_retrying(
        nodes[i % 2]->port(),
        room_body(room, "b-" + tok + "-" + std::to_string(i), "{\"n\":" + std::to_string(i) + "}"), st, 10s);
    ASSERT_EQ(a.status, 200u) << a.error << json::serialize(a.body);
    ASSERT_EQ(a.seq(), static_cast<std::uint64_t>(i)) << json::serialize(a.body);
    head = a.seq();
  }
  const bool caught_up = pool.wait_all([&](const pooled_client& c) { return c.t.last >= head; }, 20s);
  std::this_thread::sleep_for(300ms);  // duplicates would show up now
  pool.stop();
  EXPECT_TRUE(caught_up) << "not every member reached seq " << head;

  pool.inspect([&](auto& cs) {
    for (auto& c : cs) {
      EXPECT_EQ(check_exact(c->t.seqs, 1, head), "") << c->describe() << c->t.context();
      EXPECT_TRUE(c->t.anomalies.empty()) << c->describe() << ": " << c->t.anomalies.front();
      EXPECT_TRUE(c->t.gaps.empty()) << c->describe() << ": " << dump(c->t.gaps);
    }
    return 0;
  });
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto port = nodes[i]->port();
    const double dropped = metric_value(port, "roomcast_bus_test_dropped_total");
    const double fills = metric_value(port, "roomcast_gap_fills_total");
    const double unfilled = metric_value(port, "roomcast_gaps_unfilled_total");
    auto stats = get_stats(port);
    std::cout << "[ INFO     ] n" << i << ": bus dropped " << dropped << ", gap fills " << fills << " (stats "
              << json_int(stats, "gap_fills") << "), unfilled " << unfilled << ", duplicates dropped "
              << json_int(stats, "room_duplicates_dropped") << "\n";
    EXPECT_GT(dropped, 0) << "the test hook dropped nothing on n" << i;
    EXPECT_GT(fills, 0) << "n" << i << " filled no hole";
    EXPECT_GT(json_int(stats, "gap_fills"), 0) << json::serialize(stats);
    EXPECT_EQ(unfilled, 0) << "n" << i;
    // Each node published half of the messages, by the route the setting chose.
    const double by_script = metric_value(port, "roomcast_history_published_total");
    const double by_bus = metric_value(port, "roomcast_bus_published_total");
    EXPECT_EQ(script_publish ? by_script : by_bus, total / 2) << "n" << i;
    EXPECT_EQ(script_publish ? by_bus : by_script, 0) << "n" << i;
  }
}

INSTANTIATE_TEST_SUITE_P(publish_route, recovery_redis_bus, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "script" : "bus"; });

}  // namespace
}  // namespace roomcast::itest::recovery
