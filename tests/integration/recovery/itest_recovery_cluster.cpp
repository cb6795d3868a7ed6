// History and recovery across a cluster: RabbitMQ bus (the run's shared broker, a unique
// --rabbitmq-prefix per test), Redis history store and registry (a redis-server per test).
//   - the same publish id sent to two nodes is delivered once with one seq;
//   - kill -9 of one of three nodes behind nginx while 1,000 clients in 10 rooms receive 20 msgs/s
//     per room (200 msgs/s): dropped clients reconnect through nginx with since/epoch and nobody
//     misses or repeats a seq;
//   - FLUSHALL mid-stream: a new epoch, connected clients get a gap frame, a reconnecting client too;
//   - redis restarted (persistent) mid-stream with history_unavailable = reject, 400 clients in 4
//     rooms on two nodes: every seq once.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <csignal>
#include <iostream>
#include <set>

#include "recovery_support.hpp"

namespace roomcast::itest::recovery {
namespace {

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new broker_environment);

class recovery_cluster : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) {
      for (auto& n : nodes_)
        if (n.proc) std::cerr << "--- node " << n.id << " (port " << n.port() << ") ---\n" << n.proc->output_tail(30);
    }
    pool_.reset();
    nginx_.reset();
    nodes_.clear();
  }

  void start_nodes(int n, const std::string& redis_address, std::vector<std::string> extra = {}) {
    cluster_options o{unique_prefix(), amqp_uri(), redis_address, std::move(extra)};
    for (int i = 0; i < n; ++i) nodes_.push_back(start_cluster_node("n" + std::to_string(i), o));
    for (auto& node : nodes_) {
      auto r = wait_ready(node.port());
      ASSERT_EQ(r.status, 200u) << "node " << node.id << " not ready: " << r.body;
    }
  }

  std::uint16_t port_of(const std::string& node_id) const {
    for (const auto& n : nodes_)
      if (n.id == node_id) return n.port();
    return 0;
  }

  // Every node binds the rooms its welcomed clients are in (so no publish outruns a binding).
  void wait_binds() {
    std::map<std::string, std::set<std::string>> rooms_of;
    pool_->inspect([&](auto& cs) {
      for (auto& c : cs)
        if (!c->nodes.empty()) rooms_of[c->nodes.back()].insert(c->room);
      return 0;
    });
    for (auto& [node, rooms] : rooms_of) {
      auto p = port_of(node);
      ASSERT_NE(p, 0) << "welcome from unknown node " << node;
      EXPECT_TRUE(wait_room_binds(p, static_cast<double>(rooms.size())))
          << node << " never bound its " << rooms.size() << " rooms";
    }
  }

  // Seeds each room with one message (so welcomes carry the epoch), connects the pool, waits for welcomes.
  void connect_pool(const std::vector<std::string>& rooms, std::uint16_t seed_port) {
    for (const auto& r : rooms) {
      auto a = try_publish(seed_port, room_body(r, "seed-" + r, "{\"seed\":true}"));
      ASSERT_EQ(a.status, 200u) << a.error << json::serialize(a.body);
      ASSERT_EQ(a.seq(), 1u) << json::serialize(a.body);
    }
    auto why = pool_->connect_all();
    ASSERT_TRUE(why.empty()) << why;
    pool_->start();
    ASSERT_TRUE(pool_->wait_all([](const pooled_client& c) { return c.ever_welcomed; }, 20s))
        << "not every client got its welcome";
    pool_->inspect([&](auto& cs) {
      for (auto& c : cs) {
        EXPECT_EQ(c->start, 1u) << c->describe();
        EXPECT_FALSE(c->start_epoch.empty()) << c->describe();
      }
      return 0;
    });
    wait_binds();
  }

  // Every client has every seq start+1..head of its room exactly once, in order, and no gap frame.
  void expect_every_seq_once(stream_publisher& pub, const std::string& what) {
    std::size_t bad = 0, reconnected = 0, recoveries = 0;
    pool_->inspect([&](auto& cs) {
      for (auto& c : cs) {
        if (c->connects > 1) ++reconnected;
        recoveries += c->t.recovered.size();
        const auto head = pub.head(c->room);
        auto diff = check_exact(c->t.seqs, c->start + 1, head);
        const bool ok = diff.empty() && c->t.anomalies.empty() && c->t.gaps.empty();
        if (!ok && ++bad > 5) ADD_FAILURE() << what << ": " << c->describe() << ": " << diff;
        if (!ok && bad <= 5) {
          ADD_FAILURE() << what << ": " << c->describe() << ": " << diff
                        << "\n  anomalies: " << (c->t.anomalies.empty() ? std::string("none") : c->t.anomalies.front())
                        << "\n  gaps: " << dump(c->t.gaps) << "\n  recovered: " << dump(c->t.recovered)
                        << "\n  recent frames:" << c->t.context();
        }
      }
      return 0;
    });
    EXPECT_EQ(bad, 0u) << what << ": clients with a missing, repeated or out-of-order seq, or a gap frame";
    if (bad) {
      for (const auto& r : pub.retried()) std::cerr << "  retried publish: " << r << "\n";
      for (auto& n : nodes_) {
        if (!n.proc || !n.proc->running()) continue;
        try {
          auto st = get_stats(n.port());
          std::cerr << "  stats of " << n.id << ": gap_fills " << json_int(st, "gap_fills")
                    << ", room_duplicates_dropped " << json_int(st, "room_duplicates_dropped") << ", recoveries "
                    << json_int(st, "recoveries") << ", recovery_gaps " << json_int(st, "recovery_gaps")
                    << ", gaps_unfilled " << metric_value(n.port(), "roomcast_gaps_unfilled_total") << "\n";
        } catch (const std::exception& e) {
          std::cerr << "  stats of " << n.id << ": " << e.what() << "\n";
        }
      }
    }
    std::cout << "[ INFO     ] " << what << ": " << pool_->upgrade_summary() << "; connections ended:";
    for (auto& [why, n] : pool_->drop_reasons()) std::cout << " [" << why << "] x" << n;
    std::cout << "\n[ INFO     ] " << what << ": " << pub.total_accepted() << " messages accepted, "
              << pub.stats.retries << " publish retries, " << pub.stats.duplicates << " duplicates answered, "
              << reconnected << " clients reconnected, " << recoveries << " recovered frames, " << bad
              << " bad clients\n";
  }

  std::vector<cluster_node> nodes_;
  std::unique_ptr<nginx_server> nginx_;
  std::unique_ptr<client_pool> pool_ = std::make_unique<client_pool>();
};

// (a) The same id to two different nodes: one seq, one delivery.
TEST_F(recovery_cluster, same_publish_id_on_two_nodes_is_delivered_once) {
  redis_server redis;
  start_nodes(2, redis.address());
  const std::string tok = random_token(6), room = "ci" + tok;
  std::vector<member> members;
  for (auto& n : nodes_) members.push_back(join_path(n.port(), recovery_path(room, "STU", "m" + n.id)));
  for (auto& n : nodes_) ASSERT_TRUE(wait_room_binds(n.port(), 1)) << n.id << " never bound " << room;

  const std::string id = "same-" + tok;
  auto a0 = try_publish(nodes_[0].port(), room_body(room, id, "{\"n\":1}"));
  auto a1 = try_publish(nodes_[1].port(), room_body(room, id, "{\"n\":2}"));
  ASSERT_EQ(a0.status, 200u) << json::serialize(a0.body);
  ASSERT_EQ(a1.status, 200u) << json::serialize(a1.body);
  EXPECT_FALSE(a0.duplicate()) << json::serialize(a0.body);
  EXPECT_TRUE(a1.duplicate()) << json::serialize(a1.body);
  EXPECT_EQ(a0.seq(), 1u) << json::serialize(a0.body);
  EXPECT_EQ(a1.seq(), a0.seq()) << json::serialize(a1.body);
  EXPECT_EQ(a1.epoch(), a0.epoch()) << json::serialize(a1.body);

  // Concurrently, to both nodes at once: exactly one wins.
  const std::string id2 = "race-" + tok;
  publish_answer r0, r1;
  std::thread t0([&] { r0 = try_publish(nodes_[0].port(), room_body(room, id2, "{\"n\":3}")); });
  std::thread t1([&] { r1 = try_publish(nodes_[1].port(), room_body(room, id2, "{\"n\":3}")); });
  t0.join();
  t1.join();
  ASSERT_EQ(r0.status, 200u) << json::serialize(r0.body);
  ASSERT_EQ(r1.status, 200u) << json::serialize(r1.body);
  EXPECT_EQ(r0.duplicate() + r1.duplicate(), 1) << json::serialize(r0.body) << " " << json::serialize(r1.body);
  EXPECT_EQ(r0.seq(), 2u) << json::serialize(r0.body);
  EXPECT_EQ(r1.seq(), 2u) << json::serialize(r1.body);

  auto marker = try_publish(nodes_[1].port(), room_body(room, "marker-" + tok, "{\"marker\":true}"));
  ASSERT_EQ(marker.status, 200u);
  EXPECT_EQ(marker.seq(), 3u) << json::serialize(marker.body);
  for (std::size_t i = 0; i < members.size(); ++i) {
    std::vector<json::value> frames;
    ASSERT_TRUE(read_message_id(members[i], "marker-" + tok, &frames).has_value())
        << "member on " << nodes_[i].id << ": " << dump(frames);
    ASSERT_EQ(frames.size(), 2u) << "member on " << nodes_[i].id << " must get seq 1 and 2 once each: " << dump(frames);
    EXPECT_EQ(json_string(frames[0], "id"), id) << dump(frames);
    EXPECT_EQ(json_int(frames[0], "seq"), 1) << dump(frames);
    EXPECT_EQ(json_int(frames[0], "data.n"), 1) << dump(frames);
    EXPECT_EQ(json_string(frames[1], "id"), id2) << dump(frames);
    EXPECT_EQ(json_int(frames[1], "seq"), 2) << dump(frames);
  }
}

// (b) kill -9 one of three nodes behind nginx mid-stream.
TEST_F(recovery_cluster, kill9_behind_nginx_clients_recover_every_seq) {
  redis_server redis;
  start_nodes(3, redis.address());
  std::vector<std::uint16_t> ports;
  for (auto& n : nodes_) ports.push_back(n.port());
  nginx_ = std::make_unique<nginx_server>(ports);

  const std::string tok = random_token(5);
  constexpr int room_count = 10, per_room = 100;
  constexpr double rate = 20;  // messages/s per room
  std::vector<std::string> rooms;
  for (int r = 0; r < room_count; ++r) rooms.push_back("ck" + tok + "r" + std::to_string(r));
  for (int i = 0; i < room_count * per_room; ++i)
    pool_->add(nginx_->port(), rooms[i % room_count], "u" + tok + "-" + std::to_string(i));
  connect_pool(rooms, nodes_[0].port());
  if (HasFatalFailure()) return;

  // Kill the node holding the most clients.
  std::map<std::string, int> per_node;
  pool_->inspect([&](auto& cs) {
    for (auto& c : cs) ++per_node[c->nodes.back()];
    return 0;
  });
  std::string victim = per_node.begin()->first;
  for (auto& [n, k] : per_node)
    if (k > per_node[victim]) victim = n;
  std::cout << "[ INFO     ] clients per node:";
  for (auto& [n, k] : per_node) std::cout << " " << n << "=" << k;
  std::cout << "; killing " << victim << "\n";

  // 20 msgs/s per room, 200/s in all, through nginx: one publisher per room on its own kept-alive
  // connection; each request carries the messages that came due while the previous one waited for
  // the broker's confirm (a JSON-array batch), so the rate holds on a loaded debug build.
  stream_publisher pub(nginx_->port(), rooms, rate, "k" + tok);
  pub.start_batched();
  std::this_thread::sleep_for(2500ms);
  const auto killed_at = std::chrono::steady_clock::now();
  for (auto& n : nodes_)
    if (n.id == victim) {
      n.proc->signal(SIGKILL);
      ASSERT_TRUE(n.proc->wait_exit(5s).has_value()) << victim << " survived SIGKILL";
    }
  // Time until every client of the victim is connected to a survivor again and welcomed.
  std::optional<double> all_back_s;
  poll_until(
      [&] {
        const bool back = pool_->inspect([&](auto& cs) {
          return std::all_of(cs.begin(), cs.end(),
                             [&](const auto& c) { return c->is_open() && c->welcomed && c->nodes.back() != victim; });
        });
        if (back) all_back_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
        return back;
      },
      4000ms, 50ms);
  std::this_thread::sleep_until(killed_at + 4000ms);
  pub.stop();
  std::cout << "[ INFO     ] publisher: " << pub.total_accepted() << " accepted in " << pub.run_seconds()
            << " s = " << pub.achieved_rate() << " msgs/s (target " << rate * room_count << "), " << pub.skipped_ticks()
            << " ticks skipped, publish took " << pub.mean_publish_ms() << " ms on average, "
            << pub.slowest_publish_ms() << " ms at most; victim's clients back in "
            << (all_back_s ? std::to_string(*all_back_s) + " s" : std::string("> 4 s")) << "\n";
  // A hole is found when a later seq arrives: one last message per room closes any hole left by a
  // publish the dead node had numbered but not yet handed to the bus.
  pub.publish_once_each();
  EXPECT_TRUE(pub.given_up().empty()) << pub.given_up().front();

  const bool all_caught_up = pool_->wait_all(
      [&](const pooled_client& c) { return !c.closed() && c.welcomed && c.t.last >= pub.head(c.room); }, 30s);
  std::this_thread::sleep_for(300ms);  // duplicates would arrive now
  pool_->stop();
  EXPECT_TRUE(all_caught_up) << "not every client reached its room's head";

  std::size_t moved = 0;
  pool_->inspect([&](auto& cs) {
    for (auto& c : cs)
      if (c->nodes.front() == victim) {
        ++moved;
        EXPECT_GE(c->connects, 2) << c->describe();
        EXPECT_NE(c->nodes.back(), victim) << c->describe();
        EXPECT_FALSE(c->t.recovered.empty())
            << "reconnected without a recovered frame: " << c->describe() << c->t.context();
      }
    return 0;
  });
  EXPECT_EQ(moved, static_cast<std::size_t>(per_node[victim]));
  expect_every_seq_once(pub, "kill -9");
  EXPECT_EQ(pub.stats.unsequenced, 0);
}

// Clients joining a busy room must not make its members miss a message: a join reads the room's
// head from history, and the live copy of that head may still be on its way through the bus.
// (Found by the kill -9 test: the reconnect storm makes survivors' members miss one seq.)
TEST_F(recovery_cluster, joins_during_a_stream_do_not_make_members_miss_messages) {
  redis_server redis;
  start_nodes(2, redis.address());
  const std::string tok = random_token(5), room = "cj" + tok;
  for (int i = 0; i < 6; ++i) pool_->add(nodes_[1].port(), room, "m" + tok + "-" + std::to_string(i));
  connect_pool({room}, nodes_[0].port());
  if (HasFatalFailure()) return;

  stream_publisher pub(nodes_[0].port(), {room}, 100, "j" + tok);
  pub.start(1);
  std::string epoch;
  int joins = 0;
  auto until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < until) {
    // Plain joins and recovering joins, each closed right after its welcome (and recovery).
    const bool recover = joins % 2 == 1 && !epoch.empty();
    const auto head = pub.head(room);
    auto j = join_path(nodes_[1].port(), recover ? recovery_path(room, "STU", "j" + tok, head > 3 ? head - 3 : 1, epoch)
                                                 : recovery_path(room, "STU", "j" + tok));
    if (epoch.empty()) epoch = json_string(welcome_room(j.welcome, room), "epoch");
    ++joins;
    collect(j, 20ms);
    j->close();
  }
  pub.stop();
  pub.publish_once_each();
  const bool caught_up = pool_->wait_all([&](const pooled_client& c) { return c.t.last >= pub.head(room); }, 15s);
  std::this_thread::sleep_for(300ms);
  pool_->stop();
  EXPECT_TRUE(caught_up) << "not every member reached the head " << pub.head(room);
  std::cout << "[ INFO     ] " << joins << " joins on " << nodes_[1].id << " while " << pub.head(room)
            << " messages went out\n";
  expect_every_seq_once(pub, "joins during a stream");
}

// (c) FLUSHALL mid-stream: history lost -> a new epoch; everyone is told.
TEST_F(recovery_cluster, flushall_starts_a_new_epoch_and_clients_get_a_gap) {
  redis_server redis;
  start_nodes(2, redis.address());
  const std::string tok = random_token(5);
  std::vector<std::string> rooms{"cf" + tok + "a", "cf" + tok + "b"};
  for (int i = 0; i < 8; ++i) pool_->add(nodes_[i % 2].port(), rooms[(i / 2) % 2], "u" + tok + "-" + std::to_string(i));
  connect_pool(rooms, nodes_[0].port());
  if (HasFatalFailure()) return;

  // A client that leaves before the flush and comes back after it with the old epoch.
  auto parked = join_path(nodes_[1].port(), recovery_path(rooms[0], "STU", "parked" + tok));
  const std::string old_epoch = json_string(welcome_room(parked.welcome, rooms[0]), "epoch");
  ASSERT_FALSE(old_epoch.empty()) << json::serialize(parked.welcome);

  stream_publisher pub(nodes_[0].port(), rooms, 20, "f" + tok);
  pub.start(1);
  std::this_thread::sleep_for(1000ms);
  std::uint64_t parked_last = 0;
  for (auto& f : collect(parked, 300ms))
    if (json_string(f, "type") == "message") parked_last = static_cast<std::uint64_t>(json_int(f, "seq"));
  ASSERT_GT(parked_last, 1u);
  parked->close();

  auto flush = redis_cli(redis.port(), "FLUSHALL");
  ASSERT_EQ(flush.status, 0) << flush.output;
  std::this_thread::sleep_for(1500ms);
  pub.stop();

  for (const auto& r : rooms) {
    auto st = pub.state(r);
    ASSERT_EQ(st.epochs.size(), 2u) << "room " << r << ": the publish answers should show exactly two epochs";
  }
  const auto st0 = pub.state(rooms[0]);
  const std::string new_epoch = st0.epochs[1];
  EXPECT_NE(new_epoch, old_epoch);

  const bool caught_up =
      pool_->wait_all([&](const pooled_client& c) { return !c.t.gaps.empty() && c.t.last >= pub.head(c.room); }, 15s);
  std::this_thread::sleep_for(300ms);
  pool_->stop();
  EXPECT_TRUE(caught_up) << "not every client reached the new epoch's head";

  std::size_t bad = 0;
  pool_->inspect([&](auto& cs) {
    for (auto& c : cs) {
      const auto st = pub.state(c->room);
      std::string why;
      if (c->t.gaps.size() != 1) why += "gap frames: " + dump(c->t.gaps) + "; ";
      if (!c->t.anomalies.empty()) why += "anomaly: " + c->t.anomalies.front() + "; ";
      if (c->t.gaps.size() == 1) {
        const auto& g = c->t.gaps[0];
        if (json_string(g, "reason") != "epoch" || json_string(g, "epoch") != st.epochs[1] || json_int(g, "seq") != 0)
          why += "gap should be {reason epoch, seq 0, epoch " + st.epochs[1] + "}: " + json::serialize(g) + "; ";
        const auto at = c->gap_at[0];
        std::vector<std::uint64_t> before(c->t.seqs.begin(), c->t.seqs.begin() + static_cast<std::ptrdiff_t>(at));
        std::vector<std::uint64_t> after(c->t.seqs.begin() + static_cast<std::ptrdiff_t>(at), c->t.seqs.end());
        auto d1 = check_exact(before, c->start + 1, st.max_seq.at(st.epochs[0]));
        auto d2 = check_exact(after, 1, st.max_seq.at(st.epochs[1]));
        if (!d1.empty()) why += "old epoch: " + d1 + "; ";
        if (!d2.empty()) why += "new epoch: " + d2 + "; ";
      }
      if (!why.empty() && ++bad <= 5) ADD_FAILURE() << c->describe() << ": " << why << "\n  recent:" << c->t.context();
    }
    return 0;
  });
  EXPECT_EQ(bad, 0u);

  // The parked client comes back with its old epoch: it must be told it can't recover.
  auto back = join_path(nodes_[1].port(), recovery_path(rooms[0], "STU", "parked" + tok, parked_last, old_epoch));
  auto f = back->read_json();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(json_string(*f, "type"), "gap") << json::serialize(*f);
  EXPECT_EQ(json_string(*f, "reason"), "epoch") << json::serialize(*f);
  EXPECT_EQ(json_string(*f, "epoch"), new_epoch) << json::serialize(*f);
  EXPECT_EQ(json_int(*f, "seq"), static_cast<std::int64_t>(pub.head(rooms[0]))) << json::serialize(*f);
  std::cout << "[ INFO     ] FLUSHALL: room " << rooms[0] << " epoch " << old_epoch << " up to seq "
            << st0.max_seq.at(old_epoch) << ", then " << new_epoch << " up to " << st0.max_seq.at(new_epoch) << "\n";
}

// (d) redis-server stopped and started again (persistent) mid-stream; publishes are refused while
// it's down (history_unavailable = reject) and retried: every client gets every seq once.
TEST_F(recovery_cluster, redis_restart_mid_stream_loses_nothing) {
  redis_server redis({.persist = true});
  start_nodes(2, redis.address(), {"--history-unavailable", "reject", "--redis-timeout", "500ms"});
  const std::string tok = random_token(5);
  std::vector<std::string> rooms;
  for (int r = 0; r < 4; ++r) rooms.push_back("cr" + tok + "r" + std::to_string(r));
  for (int i = 0; i < 400; ++i)  // 100 per room, half on each node
    pool_->add(nodes_[i % 2].port(), rooms[(i / 2) % 4], "u" + tok + "-" + std::to_string(i));
  connect_pool(rooms, nodes_[0].port());
  if (HasFatalFailure()) return;

  stream_publisher pub(nodes_[0].port(), rooms, 20, "r" + tok);
  pub.start(4);  // one thread (and connection) per room
  std::this_thread::sleep_for(1500ms);
  auto stop = redis.stop();
  ASSERT_EQ(stop.status, 0) << stop.output;
  const auto before_restart = pub.stats.retries.load();
  std::this_thread::sleep_for(1000ms);
  auto start = redis.start();
  ASSERT_EQ(start.status, 0) << start.output;
  std::this_thread::sleep_for(3000ms);
  pub.stop();
  std::cout << "[ INFO     ] publisher: " << pub.total_accepted() << " accepted in " << pub.run_seconds()
            << " s = " << pub.achieved_rate() << " msgs/s (target " << 20 * rooms.size() << ")\n";
  pub.publish_once_each();
  EXPECT_TRUE(pub.given_up().empty()) << pub.given_up().front();
  EXPECT_GT(pub.stats.retries.load(), before_restart) << "no publish was refused while redis was down";
  EXPECT_EQ(pub.stats.unsequenced, 0) << "history_unavailable = reject must never deliver without seq";
  for (const auto& r : rooms) {
    auto st = pub.state(r);
    EXPECT_EQ(st.epochs.size(), 1u) << "room " << r << " changed epoch across a persistent restart";
  }

  const bool caught_up = pool_->wait_all([&](const pooled_client& c) { return c.t.last >= pub.head(c.room); }, 20s);
  std::this_thread::sleep_for(300ms);
  pool_->stop();
  EXPECT_TRUE(caught_up) << "not every client reached its room's head";
  expect_every_seq_once(pub, "redis restart");
  {
    std::lock_guard lk(pub.stats.mu);
    std::cout << "[ INFO     ] refused while redis was down, e.g.:";
    for (std::size_t i = 0; i < pub.stats.failures.size() && i < 3; ++i)
      std::cout << " [" << pub.stats.failures[i] << "]";
    std::cout << "\n";
  }
}

}  // namespace
}  // namespace roomcast::itest::recovery
