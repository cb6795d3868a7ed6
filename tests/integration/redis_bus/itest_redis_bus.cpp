// redis_bus against a real redis-server: two bus instances (nodes A and B, same prefix) on a
// private redis started per test on a free port. Waits are polls with deadlines, never sleeps for
// an outcome; "B did not get X" is proven with a fence: a later message on a channel B surely
// hears (Redis delivers one publisher's messages in order), so once the fence arrived, X would
// have arrived before it.
#include "bus/errors.hpp"
#include "bus/redis_bus.hpp"
#include "history/redis_history.hpp"
#include "redis/errors.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/itest.hpp"
#include "support/servers.hpp"

namespace {

using namespace std::chrono_literals;
using roomcast::bus::envelope;
using roomcast::bus::publish_result;
using roomcast::bus::redis_bus;
using roomcast::bus::redis_bus_options;
using roomcast::protocol::target_kind;

using roomcast::itest::redis_cli;
using roomcast::itest::redis_server;

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  return roomcast::itest::poll_until(pred, limit, 10ms);
}

// Subscribers of a channel, as Redis sees them.
int numsub(const redis_server& redis, const std::string& channel) {
  const auto out = redis_cli(redis.port(), "PUBSUB NUMSUB " + channel).output;
  const auto nl = out.find('\n');
  return nl == std::string::npos ? -1 : std::atoi(out.c_str() + nl + 1);
}

// Collects what a bus hands to its handler.
class collector {
 public:
  roomcast::bus::message_handler handler() {
    return [this](const envelope& e, roomcast::bus::delivery_done done) {
      {
        std::lock_guard lk(mu_);
        ids_.push_back(e.id);
      }
      if (done) done();
    };
  }
  std::vector<std::string> ids() const {
    std::lock_guard lk(mu_);
    return ids_;
  }
  int count(const std::string& id) const {
    std::lock_guard lk(mu_);
    return static_cast<int>(std::count(ids_.begin(), ids_.end(), id));
  }
  bool has(const std::string& id) const { return count(id) > 0; }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> ids_;
};

// Completions of publishes, by id.
struct completions {
  std::mutex mu;
  std::map<std::string, std::pair<std::error_code, publish_result>> done;
  roomcast::bus::publish_callback on(const std::string& id) {
    return [this, id](std::error_code ec, publish_result r) {
      std::lock_guard lk(mu);
      done[id] = {ec, r};
    };
  }
  bool has(const std::string& id) {
    std::lock_guard lk(mu);
    return done.count(id) > 0;
  }
  std::pair<std::error_code, publish_result> get(const std::string& id) {
    std::lock_guard lk(mu);
    return done.at(id);
  }
};

// The value of one roomcast_bus_* metric line.
std::uint64_t metric(const redis_bus& b, const std::string& name) {
  std::string m;
  b.append_metrics(m);
  const auto at = m.find("\n" + name + " ");
  return at == std::string::npos ? ~0ull : std::strtoull(m.c_str() + at + name.size() + 2, nullptr, 10);
}

envelope make(target_kind kind, std::string target, std::string id, std::vector<std::string> nodes = {}) {
  envelope e;
  e.kind = kind;
  e.target = std::move(target);
  e.id = std::move(id);
  e.from = "api";
  e.origin = "test";
  e.data = R"({"n":1})";
  e.nodes = std::move(nodes);
  return e;
}

class redis_bus_test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(redis.port(), 0);
    ASSERT_TRUE(redis.start());
    prefix = "t" + std::to_string(::getpid());
  }

  redis_bus_options options(const std::string& node) {
    redis_bus_options o;
    o.port = redis.port();
    o.node_id = node;
    o.prefix = prefix;
    o.reconnect_min = 50ms;
    o.reconnect_max = 200ms;
    o.unbind_grace = 500ms;
    o.timeout = 1000ms;
    return o;
  }

  // Publishes a fence on `all` from `from` and waits until `to` got it: everything `from`
  // published before has reached `to` by then, if it was going to.
  void fence(redis_bus& from, collector& to) {
    const std::string id = "fence-" + std::to_string(++fences);
    from.publish(make(target_kind::all, "", id), nullptr);
    ASSERT_TRUE(wait_for([&] { return to.has(id); })) << id;
  }

  std::string room_channel(const std::string& room) const { return prefix + ":room:" + room; }

  redis_server redis{{.start = false}};  // started by SetUp
  std::string prefix;
  int fences = 0;
};

TEST_F(redis_bus_test, room_message_reaches_only_subscribed_nodes) {
  collector got_a, got_b;
  redis_bus a(options("A")), b(options("B"));
  EXPECT_STREQ(a.name(), "redis");
  a.start(got_a.handler());
  b.start(got_b.handler());
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy(); }));

  a.publish(make(target_kind::room, "r1", "before-subscribe"), nullptr);
  fence(a, got_b);
  EXPECT_FALSE(got_b.has("before-subscribe"));

  b.subscribe_room("r1");
  ASSERT_TRUE(wait_for([&] { return numsub(redis, room_channel("r1")) == 1; }));
  completions c;
  a.publish(make(target_kind::room, "r1", "subscribed"), c.on("subscribed"));
  ASSERT_TRUE(wait_for([&] { return got_b.has("subscribed"); }));
  ASSERT_TRUE(wait_for([&] { return c.has("subscribed"); }));
  EXPECT_FALSE(c.get("subscribed").first);
  EXPECT_FALSE(c.get("subscribed").second.queued);  // confirmed by Redis, not buffered
  fence(b, got_a);
  EXPECT_FALSE(got_a.has("subscribed"));  // A has no member of r1

  // Left and came back within the grace: stays subscribed.
  b.unsubscribe_room("r1");
  b.subscribe_room("r1");
  std::this_thread::sleep_for(800ms);  // past the grace on purpose: nothing must happen
  EXPECT_EQ(numsub(redis, room_channel("r1")), 1);

  // Left for good: unsubscribed after the grace, not before.
  const auto left = std::chrono::steady_clock::now();
  b.unsubscribe_room("r1");
  ASSERT_TRUE(wait_for([&] { return numsub(redis, room_channel("r1")) == 0; }));
  EXPECT_GE(std::chrono::steady_clock::now() - left, 400ms);
  a.publish(make(target_kind::room, "r1", "after-unsubscribe"), nullptr);
  fence(a, got_b);
  EXPECT_FALSE(got_b.has("after-unsubscribe"));
  EXPECT_EQ(got_b.count("subscribed"), 1);

  std::string metrics;
  b.append_metrics(metrics);
  EXPECT_NE(metrics.find("roomcast_bus_room_subscribes_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("roomcast_bus_room_unsubscribes_total 1"), std::string::npos) << metrics;
}

TEST_F(redis_bus_test, user_messages_go_to_the_listed_nodes_or_to_all) {
  collector got_a, got_b;
  redis_bus a(options("A")), b(options("B"));
  a.start(got_a.handler());
  b.start(got_b.handler());
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy(); }));

  completions c;
  a.publish(make(target_kind::user, "u1", "to-b", {"B"}), c.on("to-b"));
  ASSERT_TRUE(wait_for([&] { return got_b.has("to-b"); }));
  fence(b, got_a);
  EXPECT_FALSE(got_a.has("to-b"));

  // Two nodes: one completion, once both PUBLISHes were answered.
  a.publish(make(target_kind::user, "u1", "to-both-listed", {"A", "B"}), c.on("to-both-listed"));
  ASSERT_TRUE(wait_for([&] { return got_a.has("to-both-listed") && got_b.has("to-both-listed"); }));
  ASSERT_TRUE(wait_for([&] { return c.has("to-both-listed"); }));
  EXPECT_FALSE(c.get("to-both-listed").first);

  // Registry couldn't say: every node gets it through `all`.
  a.publish(make(target_kind::user, "u2", "to-all"), nullptr);
  ASSERT_TRUE(wait_for([&] { return got_a.has("to-all") && got_b.has("to-all"); }));

  std::string metrics, stats;
  a.append_metrics(metrics);
  a.append_stats(stats);
  EXPECT_NE(metrics.find("roomcast_bus_up 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("roomcast_bus_user_fallback_all_total 1"), std::string::npos) << metrics;
  EXPECT_NE(stats.find("\"bus_up\":true"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"bus_fallback_all\":1"), std::string::npos) << stats;
  for (const char* k : {"bus_received", "bus_duplicates", "bus_published", "bus_outage_buffer"})
    EXPECT_NE(stats.find(std::string("\"") + k + "\":"), std::string::npos) << k;
}

TEST_F(redis_bus_test, same_id_is_handed_over_once) {
  collector got_a, got_b;
  redis_bus a(options("A")), b(options("B"));
  a.start(got_a.handler());
  b.start(got_b.handler());
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy(); }));

  a.publish(make(target_kind::all, "", "dup"), nullptr);
  a.publish(make(target_kind::all, "", "dup"), nullptr);
  fence(a, got_b);
  EXPECT_EQ(got_b.count("dup"), 1);
  std::string metrics;
  b.append_metrics(metrics);
  EXPECT_NE(metrics.find("roomcast_bus_duplicates_total 1"), std::string::npos) << metrics;
}

TEST_F(redis_bus_test, outage_buffers_publishes_and_sends_them_in_order_after_reconnect) {
  collector got_a, got_b;
  redis_bus a(options("A")), b(options("B"));
  a.start(got_a.handler());
  b.start(got_b.handler());
  a.subscribe_room("r");
  b.subscribe_room("r");
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy() && numsub(redis, room_channel("r")) == 2; }));

  redis.stop();
  ASSERT_TRUE(wait_for([&] { return !a.healthy() && !b.healthy(); }));

  completions c;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back("buffered-" + std::to_string(i));
    a.publish(make(target_kind::room, "r", ids.back()), c.on(ids.back()));
  }
  for (const auto& id : ids) {
    ASSERT_TRUE(wait_for([&] { return c.has(id); })) << id;
    EXPECT_FALSE(c.get(id).first) << id;
    EXPECT_TRUE(c.get(id).second.queued) << id;
  }
  std::string stats;
  a.append_stats(stats);
  EXPECT_NE(stats.find("\"bus_up\":false"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"bus_outage_buffer\":5"), std::string::npos) << stats;

  ASSERT_TRUE(redis.start());  // same port
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy(); }, 15s));

  // A re-subscribed before it sent its buffer, so it hears its own buffered messages, in order.
  ASSERT_TRUE(wait_for([&] {
    const auto got = got_a.ids();
    return std::count_if(got.begin(), got.end(), [](const std::string& s) { return s.rfind("buffered-", 0) == 0; }) ==
           5;
  }));
  std::vector<std::string> in_a;
  for (const auto& id : got_a.ids())
    if (id.rfind("buffered-", 0) == 0) in_a.push_back(id);
  EXPECT_EQ(in_a, ids);

  // Both re-subscribed their node channel, `all` and the room.
  EXPECT_TRUE(wait_for([&] { return numsub(redis, room_channel("r")) == 2; }));
  EXPECT_EQ(numsub(redis, prefix + ":all"), 2);
  EXPECT_EQ(numsub(redis, prefix + ":node:A"), 1);
  EXPECT_EQ(numsub(redis, prefix + ":node:B"), 1);
  a.publish(make(target_kind::room, "r", "after-reconnect"), c.on("after-reconnect"));
  ASSERT_TRUE(wait_for([&] { return got_b.has("after-reconnect"); }));
  ASSERT_TRUE(wait_for([&] { return c.has("after-reconnect"); }));
  EXPECT_FALSE(c.get("after-reconnect").second.queued);

  // B may have come back after A flushed (Pub/Sub loses what a disconnected subscriber missed:
  // history's job); whatever part of the buffer it got came in order.
  std::vector<std::string> in_b;
  for (const auto& id : got_b.ids())
    if (id.rfind("buffered-", 0) == 0) in_b.push_back(id);
  EXPECT_TRUE(std::is_sorted(in_b.begin(), in_b.end()));

  std::string metrics;
  a.append_metrics(metrics);
  EXPECT_NE(metrics.find("roomcast_bus_reconnects_total 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("roomcast_bus_buffered_total 5"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("roomcast_bus_outage_buffer_messages 0"), std::string::npos) << metrics;
}

// Only A's publisher connection is killed (CLIENT KILL TYPE normal), repeatedly, while A
// publishes: B's subscriber stays up, so B must get every message exactly once, in order (the
// PUBLISHes whose reply was lost are re-sent; B drops the duplicates). Also: a write to a killed
// connection must not raise SIGPIPE.
TEST_F(redis_bus_test, killed_publisher_loses_nothing) {
  collector got_a, got_b;
  redis_bus a(options("A")), b(options("B"));
  a.start(got_a.handler());
  b.start(got_b.handler());
  b.subscribe_room("r");
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy() && numsub(redis, room_channel("r")) == 1; }));

  const int total = 2000;
  completions c;
  std::thread publisher([&] {
    for (int i = 0; i < total; ++i) {
      const auto id = "k" + std::to_string(100000 + i);  // sorts like its number
      a.publish(make(target_kind::room, "r", id), c.on(id));
      if (i % 100 == 99) std::this_thread::sleep_for(5ms);
    }
  });
  for (int k = 0; k < 3; ++k) {
    std::this_thread::sleep_for(20ms);
    redis_cli(redis.port(), "CLIENT KILL TYPE normal");
  }
  publisher.join();
  ASSERT_TRUE(wait_for([&] { return got_b.ids().size() >= static_cast<std::size_t>(total); }, 20s))
      << got_b.ids().size();
  fence(a, got_b);
  auto ids = got_b.ids();
  ids.pop_back();  // the fence
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(total));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  for (int i = 0; i < total; ++i) {
    const auto id = "k" + std::to_string(100000 + i);
    ASSERT_TRUE(c.has(id)) << id;
    EXPECT_FALSE(c.get(id).first) << id;
  }
  EXPECT_TRUE(wait_for([&] { return a.healthy() && b.healthy(); }));
  EXPECT_GE(metric(a, "roomcast_bus_reconnects_total"), 2u);  // the kills did land
  std::printf("A: reconnects %llu, resent %llu; B: received %llu, duplicates %llu\n",
              static_cast<unsigned long long>(metric(a, "roomcast_bus_reconnects_total")),
              static_cast<unsigned long long>(metric(a, "roomcast_bus_resent_total")),
              static_cast<unsigned long long>(metric(b, "roomcast_bus_received_total")),
              static_cast<unsigned long long>(metric(b, "roomcast_bus_duplicates_total")));
}

// Redis holds every command (CLIENT PAUSE) longer than the bus's timeout: the PUBLISH gets no
// reply in time, the publisher connection is given up, its publisher told "queued", and the
// message re-sent once Redis answers again. Whatever Redis executed twice, B hands over once.
TEST_F(redis_bus_test, publish_without_reply_is_resent_and_handed_over_once) {
  collector got_a, got_b;
  auto oa = options("A");
  oa.timeout = 300ms;
  redis_bus a(oa), b(options("B"));
  a.start(got_a.handler());
  b.start(got_b.handler());
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy(); }));

  redis_cli(redis.port(), "CLIENT PAUSE 1200 ALL");
  completions c;
  a.publish(make(target_kind::all, "", "paused"), c.on("paused"));
  ASSERT_TRUE(wait_for([&] { return c.has("paused"); }));
  EXPECT_FALSE(c.get("paused").first);
  EXPECT_TRUE(c.get("paused").second.queued);
  ASSERT_TRUE(wait_for([&] { return got_b.has("paused"); }));
  ASSERT_TRUE(wait_for([&] { return a.healthy(); }));
  fence(a, got_b);
  EXPECT_EQ(got_b.count("paused"), 1);
  EXPECT_GE(metric(a, "roomcast_bus_resent_total"), 1u);
}

TEST_F(redis_bus_test, full_outage_buffer_refuses_with_an_error) {
  redis.stop();
  auto o = options("A");
  o.outage_max_messages = 3;
  collector got;
  redis_bus a(o);
  a.start(got.handler());
  completions c;
  for (int i = 0; i < 4; ++i) {
    const auto id = "m" + std::to_string(i);
    a.publish(make(target_kind::room, "r", id), c.on(id));
  }
  ASSERT_TRUE(wait_for([&] { return c.has("m3"); }));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(c.get("m" + std::to_string(i)).second.queued);
  const auto ec = c.get("m3").first;
  ASSERT_TRUE(ec);
  EXPECT_EQ(ec, roomcast::bus::make_error(roomcast::bus::errc::buffer_full)) << ec.message();
  EXPECT_FALSE(a.healthy());

  a.stop();
  std::string metrics;
  a.append_metrics(metrics);
  EXPECT_NE(metrics.find("roomcast_bus_buffer_full_total 1"), std::string::npos) << metrics;
}

TEST_F(redis_bus_test, test_hook_drops_every_nth_room_message) {
  collector got_a, got_b;
  auto ob = options("B");
  ob.drop_every_nth_received = 2;
  redis_bus a(options("A")), b(ob);
  a.start(got_a.handler());
  b.start(got_b.handler());
  b.subscribe_room("r");
  ASSERT_TRUE(wait_for([&] { return a.healthy() && b.healthy() && numsub(redis, room_channel("r")) == 1; }));
  for (int i = 1; i <= 4; ++i) a.publish(make(target_kind::room, "r", "d" + std::to_string(i)), nullptr);
  fence(a, got_b);
  EXPECT_TRUE(got_b.has("d1"));
  EXPECT_FALSE(got_b.has("d2"));
  EXPECT_TRUE(got_b.has("d3"));
  EXPECT_FALSE(got_b.has("d4"));
  std::string metrics;
  b.append_metrics(metrics);
  EXPECT_NE(metrics.find("roomcast_bus_test_dropped_total 2"), std::string::npos) << metrics;
}

// With publish_prefix set (the redis bus on the same Redis), the history's append script PUBLISHes
// the envelope itself, with the seq it assigned; a duplicate id is not published again.
TEST_F(redis_bus_test, history_script_publishes_with_its_seq) {
  struct got_t {
    std::mutex mu;
    std::vector<envelope> list;
  } got;
  redis_bus b(options("B"));
  b.start([&](const envelope& e, roomcast::bus::delivery_done done) {
    {
      std::lock_guard lk(got.mu);
      got.list.push_back(e);
    }
    if (done) done();
  });
  b.subscribe_room("r");
  ASSERT_TRUE(wait_for([&] { return b.healthy() && numsub(redis, room_channel("r")) == 1; }));

  roomcast::history::redis_history_options ho;
  ho.port = redis.port();
  ho.prefix = prefix + "h";
  ho.publish_prefix = prefix + ":room:";
  roomcast::history::redis_history h(ho);
  h.start();

  std::mutex mu;
  std::vector<roomcast::history::append_result> results;
  auto append = [&](envelope e, roomcast::history::policy p) {
    h.append(e, p, [&](roomcast::history::append_result r) {
      std::lock_guard lk(mu);
      results.push_back(std::move(r));
    });
  };
  auto keep = roomcast::history::policy{};
  auto e1 = make(target_kind::room, "r", "m1");
  e1.data = R"({"text":"a \"quoted\" one"})";
  auto e2 = make(target_kind::room, "r", "m2");
  e2.claim_id = true;
  append(e1, keep);
  append(e2, keep);
  append(e2, keep);                              // the same claimed id again: a duplicate, not published
  auto e3 = make(target_kind::room, "r", "m3");  // a room without history: published without seq
  e3.claim_id = true;
  append(e3, roomcast::history::policy{0, {}});
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lk(mu);
    return results.size() == 4;
  }));
  {
    std::lock_guard lk(mu);
    for (const auto& r : results) EXPECT_FALSE(r.ec) << r.ec.message();
    // The store says it publishes room messages (the router then skips the bus); what reached B
    // below shows it did, once each, and not the duplicate.
    EXPECT_TRUE(h.publishes(e1));
    EXPECT_FALSE(h.publishes(make(target_kind::user, "u", "x")));
    EXPECT_EQ(results[0].seq, 1u);
    EXPECT_EQ(results[1].seq, 2u);
    EXPECT_TRUE(results[2].duplicate);
    EXPECT_EQ(results[2].seq, 2u);
    EXPECT_FALSE(results[3].duplicate);
    EXPECT_EQ(results[3].seq, 0u);
  }
  // A fence published after every script replied: Redis hands B the channels' messages in the
  // order it ran them, so once the fence is in, a second m2 would be too.
  b.publish(make(target_kind::all, "", "fence"), nullptr);
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lk(got.mu);
    return !got.list.empty() && got.list.back().id == "fence";
  }));
  std::lock_guard lk(got.mu);
  ASSERT_EQ(got.list.size(), 4u);  // m1, m2, m3 and the fence
  EXPECT_EQ(got.list[0].id, "m1");
  EXPECT_EQ(got.list[0].seq, 1u);
  EXPECT_EQ(got.list[0].epoch, results[0].epoch);
  EXPECT_EQ(got.list[0].epoch.size(), 16u);
  EXPECT_EQ(got.list[0].data, e1.data);
  EXPECT_EQ(got.list[0].origin, "test");
  EXPECT_EQ(got.list[1].id, "m2");
  EXPECT_EQ(got.list[1].seq, 2u);
  EXPECT_EQ(got.list[2].id, "m3");
  EXPECT_EQ(got.list[2].seq, 0u);
  EXPECT_TRUE(got.list[2].epoch.empty());
  std::string m;
  h.append_metrics(m);
  EXPECT_NE(m.find("roomcast_history_published_total 3"), std::string::npos) << m;
  h.stop();
}

// The history's scripts run by sha (loaded once per connection). When Redis forgets them (SCRIPT
// FLUSH), the next append gets NOSCRIPT: the client loads the script again and resends the call,
// so the publisher sees no error.
TEST_F(redis_bus_test, history_survives_a_script_flush) {
  roomcast::history::redis_history_options ho;
  ho.port = redis.port();
  ho.prefix = prefix + "h";
  roomcast::history::redis_history h(ho);
  h.start();
  std::mutex mu;
  std::vector<roomcast::history::append_result> results;
  auto append = [&](const std::string& id) {
    h.append(make(target_kind::room, "r", id), roomcast::history::policy{}, [&](roomcast::history::append_result r) {
      std::lock_guard lk(mu);
      results.push_back(std::move(r));
    });
  };
  auto got = [&](std::size_t n) {
    return wait_for([&] {
      std::lock_guard lk(mu);
      return results.size() == n;
    });
  };
  append("f1");
  ASSERT_TRUE(got(1));
  redis_cli(redis.port(), "SCRIPT FLUSH");
  append("f2");
  append("f3");
  ASSERT_TRUE(got(3));
  std::lock_guard lk(mu);
  for (const auto& r : results) EXPECT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(results[1].seq, 2u);
  EXPECT_EQ(results[2].seq, 3u);
  std::string m;
  h.append_metrics(m);
  EXPECT_NE(m.find("roomcast_history_failures_total 0"), std::string::npos) << m;
  EXPECT_NE(m.find("roomcast_history_up 1"), std::string::npos) << m;
}

// hiredis has no command timeout: the client's own bounds a reply. Redis holds every command
// (CLIENT PAUSE) longer than the history's timeout: the append fails with redis::errc::timeout
// in about the timeout, not when Redis answers, and the history reconnects once Redis serves.
TEST_F(redis_bus_test, history_reply_times_out_and_the_history_comes_back) {
  roomcast::history::redis_history_options ho;
  ho.port = redis.port();
  ho.prefix = prefix + "h";
  ho.timeout = 300ms;
  roomcast::history::redis_history h(ho);
  h.start();
  ASSERT_TRUE(wait_for([&] { return h.healthy(); }));
  std::mutex mu;
  std::vector<std::error_code> ecs;
  auto append = [&](const std::string& id) {
    h.append(make(target_kind::room, "r", id), roomcast::history::policy{}, [&](roomcast::history::append_result r) {
      std::lock_guard lk(mu);
      ecs.push_back(r.ec);
    });
  };
  redis_cli(redis.port(), "CLIENT PAUSE 1500 ALL");
  const auto t0 = std::chrono::steady_clock::now();
  append("paused");
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lk(mu);
    return ecs.size() == 1;
  }));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1200ms);
  {
    std::lock_guard lk(mu);
    EXPECT_EQ(ecs[0], roomcast::redis::make_error(roomcast::redis::errc::timeout)) << ecs[0].message();
  }
  ASSERT_TRUE(wait_for([&] { return h.healthy(); }));
  append("after");
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lk(mu);
    return ecs.size() == 2;
  }));
  std::lock_guard lk(mu);
  EXPECT_FALSE(ecs[1]) << ecs[1].message();
}

// Receive rate of one bus (decode + dedupe + handler), fed by a raw pipelined hiredis publisher
// that keeps at most `window` messages ahead of the receiver (so Redis's pubsub output buffer
// limit is never hit). Not a correctness test: run with
//   itest_redis_bus --gtest_also_run_disabled_tests --gtest_filter='*receive_rate*'
TEST_F(redis_bus_test, DISABLED_receive_rate) {
  const int total = std::getenv("ROOMCAST_RATE_N") ? std::atoi(std::getenv("ROOMCAST_RATE_N")) : 300000;
  const int window = 20000;
  std::atomic<int> received{0};
  redis_bus b(options("B"));
  b.start([&](const envelope&, roomcast::bus::delivery_done) { received.fetch_add(1, std::memory_order_relaxed); });
  b.subscribe_room("bench");
  ASSERT_TRUE(wait_for([&] { return b.healthy() && numsub(redis, room_channel("bench")) == 1; }));

  redisContext* pub = redisConnect("127.0.0.1", redis.port());
  ASSERT_TRUE(pub && !pub->err);
  const std::string channel = room_channel("bench");
  const std::string data = R"({"text":"hello, this is a typical chat message of about a hundred bytes","n":12345})";
  const auto t0 = std::chrono::steady_clock::now();
  int sent = 0;
  while (sent < total) {
    const int batch = std::min({1000, total - sent, window - (sent - received.load())});
    if (batch <= 0) {
      std::this_thread::yield();
      continue;
    }
    for (int i = 0; i < batch; ++i) {
      auto e = make(target_kind::room, "bench", "bench-" + std::to_string(sent + i));
      e.data = data;
      const std::string body = roomcast::bus::encode_envelope(e);
      redisAppendCommand(pub, "PUBLISH %b %b", channel.data(), channel.size(), body.data(), body.size());
    }
    for (int i = 0; i < batch; ++i) {
      void* r = nullptr;
      ASSERT_EQ(redisGetReply(pub, &r), REDIS_OK);
      freeReplyObject(r);
    }
    sent += batch;
  }
  ASSERT_TRUE(wait_for([&] { return received.load() == total; }, 60s)) << received.load() << "/" << total;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  redisFree(pub);
  std::string metrics;
  b.append_metrics(metrics);
  const auto at = metrics.find("\nroomcast_bus_read_batches_total ") + 1;
  std::printf("received %d messages in %.3f s: %.0f msgs/s (%s)\n", total, secs, total / secs,
              metrics.substr(at, metrics.find('\n', at) - at).c_str());
}

}  // namespace
