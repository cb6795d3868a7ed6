// One contract, every bus: the same tests run against `local`, `redis` (a private redis-server)
// and `rabbitmq` (the broker of scripts/run-tests.sh, ROOMCAST_TEST_AMQP_URI; skipped when unset).
// Two bus instances play two nodes (for local: one instance, one node). Contract:
//   - a room message reaches the node that subscribed the room, byte for byte, with seq/epoch;
//   - a user message addressed to a node reaches it; with no nodes listed it reaches every node;
//   - an "all" message reaches every node;
//   - one publisher's messages to a room arrive in publish order, each once;
//   - every publish completes exactly once, without error, while the bus is healthy.
#include "bus/local_bus.hpp"
#include "bus/rabbitmq_bus.hpp"
#include "bus/redis_bus.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/itest.hpp"
#include "support/servers.hpp"

namespace {

using namespace std::chrono_literals;
using namespace roomcast;
using bus::envelope;

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  return itest::poll_until(pred, limit, 10ms);
}

std::string unique(const char* what) {
  static std::mt19937 rng{std::random_device{}()};
  return std::string(what) + std::to_string(rng() % 1000000000u);
}

// What one node received.
struct inbox_log {
  std::mutex mu;
  std::vector<envelope> got;
  void add(const envelope& e) {
    std::lock_guard lk(mu);
    got.push_back(e);
  }
  std::vector<envelope> snapshot() {
    std::lock_guard lk(mu);
    return got;
  }
  std::size_t count_id(const std::string& id) {
    std::lock_guard lk(mu);
    std::size_t n = 0;
    for (auto& e : got) n += e.id == id;
    return n;
  }
};

// The buses under test, as up to two nodes.
struct harness {
  std::unique_ptr<itest::redis_server> redis;    // for redis; stopped after the nodes
  std::vector<std::unique_ptr<bus::bus>> nodes;  // 1 for local, 2 otherwise
  std::vector<std::unique_ptr<inbox_log>> logs;
  std::vector<std::string> ids;

  ~harness() {
    for (auto& n : nodes) n->stop();
  }

  void start_all() {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      logs.push_back(std::make_unique<inbox_log>());
      auto* log = logs.back().get();
      nodes[i]->start([log](const envelope& e, bus::delivery_done done) {
        log->add(e);
        if (done) done();
      });
    }
  }
};

std::unique_ptr<harness> make(const std::string& kind) {
  auto h = std::make_unique<harness>();
  const std::string prefix = unique("contract");
  if (kind == "local") {
    h->nodes.push_back(std::make_unique<bus::local_bus>());
    h->ids = {"n0"};
  } else if (kind == "redis") {
    try {
      h->redis = std::make_unique<itest::redis_server>();
    } catch (const std::exception&) {
      return nullptr;
    }
    for (int i = 0; i < 2; ++i) {
      bus::redis_bus_options o;
      o.port = h->redis->port();
      o.node_id = prefix + "-n" + std::to_string(i);
      o.prefix = prefix;
      o.unbind_grace = 100ms;
      h->ids.push_back(o.node_id);
      h->nodes.push_back(std::make_unique<bus::redis_bus>(o));
    }
  } else {
    const char* uri = std::getenv("ROOMCAST_TEST_AMQP_URI");
    if (!uri) return nullptr;
    for (int i = 0; i < 2; ++i) {
      bus::rabbitmq_options o;
      o.uris = {uri};
      o.node_id = prefix + "-n" + std::to_string(i);
      o.prefix = prefix;
      o.queue_expires = 10s;
      o.unbind_grace = 100ms;
      h->ids.push_back(o.node_id);
      h->nodes.push_back(std::make_unique<bus::rabbitmq_bus>(o));
    }
  }
  h->start_all();
  if (!wait_for([&] {
        for (auto& n : h->nodes)
          if (!n->healthy()) return false;
        return true;
      }))
    return nullptr;
  return h;
}

envelope message(protocol::target_kind kind, std::string target, std::string id, std::string data) {
  envelope e;
  e.kind = kind;
  e.target = std::move(target);
  e.id = std::move(id);
  e.from = "contract";
  e.origin = "test";
  e.data = std::move(data);
  return e;
}

// Publishes and waits for the completion; true when it completed once without error.
bool publish(bus::bus& b, envelope e) {
  std::atomic<int> calls{0};
  std::atomic<bool> ok{false};
  b.publish(std::move(e), [&](std::error_code ec, bus::publish_result r) {
    ok = !ec && !r.queued;
    ++calls;
  });
  if (!wait_for([&] { return calls.load() > 0; })) return false;
  std::this_thread::sleep_for(5ms);  // a second completion would show up here
  return calls.load() == 1 && ok.load();
}

// Subscribes `room` on node i and waits until a probe published there arrives (the subscription
// is in effect). Every bus is allowed to need a moment to bind.
bool subscribe(harness& h, std::size_t i, const std::string& room) {
  h.nodes[i]->subscribe_room(room);
  for (int attempt = 0; attempt < 50; ++attempt) {
    const std::string probe = unique("probe");
    publish(*h.nodes[0], message(protocol::target_kind::room, room, probe, "0"));
    if (wait_for([&] { return h.logs[i]->count_id(probe) > 0; }, 200ms)) return true;
  }
  return false;
}

class bus_contract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    h_ = make(GetParam());
    if (!h_) {
      if (GetParam() == "rabbitmq" && !std::getenv("ROOMCAST_TEST_AMQP_URI"))
        GTEST_SKIP() << "ROOMCAST_TEST_AMQP_URI not set (scripts/run-tests.sh sets it)";
      FAIL() << "could not start the " << GetParam() << " bus";
    }
  }
  std::unique_ptr<harness> h_;
  std::size_t last() const { return h_->nodes.size() - 1; }  // the "other" node (or the only one)
};

TEST_P(bus_contract, room_message_reaches_the_subscribed_node_byte_for_byte) {
  const std::string room = unique("room");
  ASSERT_TRUE(subscribe(*h_, last(), room));
  auto e = message(protocol::target_kind::room, room, unique("m"), R"({ "a" : [1, 2 ,3] })");
  e.seq = 42;
  e.epoch = "e-1";
  ASSERT_TRUE(publish(*h_->nodes[0], e));
  ASSERT_TRUE(wait_for([&] { return h_->logs[last()]->count_id(e.id) == 1; }));
  for (const auto& got : h_->logs[last()]->snapshot()) {
    if (got.id != e.id) continue;
    EXPECT_EQ(got.data, e.data);
    EXPECT_EQ(got.seq, 42u);
    EXPECT_EQ(got.epoch, "e-1");
    EXPECT_EQ(got.kind, protocol::target_kind::room);
    EXPECT_EQ(got.target, room);
  }
}

TEST_P(bus_contract, user_messages_reach_listed_nodes_or_everyone) {
  auto to_one = message(protocol::target_kind::user, "alice", unique("u"), "1");
  to_one.nodes = {h_->ids[last()]};
  ASSERT_TRUE(publish(*h_->nodes[0], to_one));
  ASSERT_TRUE(wait_for([&] { return h_->logs[last()]->count_id(to_one.id) == 1; }));
  auto to_all = message(protocol::target_kind::user, "bob", unique("u"), "2");  // nodes unknown
  ASSERT_TRUE(publish(*h_->nodes[0], to_all));
  for (auto& log : h_->logs) ASSERT_TRUE(wait_for([&] { return log->count_id(to_all.id) == 1; }));
  if (h_->nodes.size() > 1) {
    EXPECT_EQ(h_->logs[0]->count_id(to_one.id), 0u) << "a user message went to a node not listed";
  }
}

TEST_P(bus_contract, all_messages_reach_every_node) {
  auto e = message(protocol::target_kind::all, "", unique("a"), "3");
  ASSERT_TRUE(publish(*h_->nodes[0], e));
  for (auto& log : h_->logs) ASSERT_TRUE(wait_for([&] { return log->count_id(e.id) == 1; }));
}

TEST_P(bus_contract, one_publishers_room_messages_arrive_in_order_once) {
  const std::string room = unique("order");
  ASSERT_TRUE(subscribe(*h_, last(), room));
  const std::string tag = unique("o");
  std::atomic<int> completed{0}, failed{0};
  constexpr int n = 300;
  for (int i = 0; i < n; ++i)
    h_->nodes[0]->publish(message(protocol::target_kind::room, room, tag + "-" + std::to_string(i), std::to_string(i)),
                          [&](std::error_code ec, bus::publish_result) { ++(ec ? failed : completed); });
  ASSERT_TRUE(wait_for([&] { return completed.load() + failed.load() == n; }));
  EXPECT_EQ(failed.load(), 0);
  ASSERT_TRUE(wait_for([&] {
    int c = 0;
    for (const auto& e : h_->logs[last()]->snapshot()) c += e.id.rfind(tag, 0) == 0;
    return c >= n;
  }));
  int expect = 0;
  for (const auto& e : h_->logs[last()]->snapshot()) {
    if (e.id.rfind(tag, 0) != 0) continue;
    EXPECT_EQ(e.data, std::to_string(expect)) << "out of order or duplicated";
    ++expect;
  }
  EXPECT_EQ(expect, n);
}

INSTANTIATE_TEST_SUITE_P(every_bus, bus_contract, ::testing::Values("local", "redis", "rabbitmq"),
                         [](const auto& p) { return p.param; });

}  // namespace
