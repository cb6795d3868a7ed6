#include "bus/ack_window.hpp"
#include "bus/bus.hpp"
#include "bus/dedupe_window.hpp"
#include "bus/confirm_window.hpp"
#include "bus/local_bus.hpp"
#include "bus/outage_buffer.hpp"
#include "bus/room_bindings.hpp"

#include <gtest/gtest.h>

using namespace roomcast;
using namespace roomcast::bus;

TEST(envelope, round_trips_with_raw_data) {
  envelope e;
  e.kind = protocol::target_kind::user;
  e.target = "452784";
  e.id = "m-\"1\"";
  e.from = "api";
  e.origin = "node-8091";
  e.data = R"({ "b" : [1, 2 ,3] })";
  envelope d;
  ASSERT_TRUE(decode_envelope(encode_envelope(e), d));
  EXPECT_EQ(d.type, envelope_type::message);
  EXPECT_EQ(d.kind, protocol::target_kind::user);
  EXPECT_EQ(d.target, e.target);
  EXPECT_EQ(d.id, e.id);
  EXPECT_EQ(d.origin, e.origin);
  EXPECT_EQ(d.data, e.data);  // byte for byte
}

TEST(envelope, carries_the_audience_of_a_room_message) {
  envelope e;
  e.target = "r";
  e.id = "m1";
  e.from = "api";
  e.origin = "n";
  e.data = "1";
  e.audience.roles = {"THE"};
  e.audience.users = {"a", "b"};
  envelope d;
  ASSERT_TRUE(decode_envelope(encode_envelope(e), d));
  EXPECT_EQ(d.audience, e.audience);
  // The redis history script splices the seq between the parts: the audience must survive that.
  const auto parts = encode_envelope_parts(e);
  envelope s;
  ASSERT_TRUE(decode_envelope(parts.head + ",\"seq\":3,\"epoch\":\"e\"" + parts.tail, s));
  EXPECT_EQ(s.audience, e.audience);
  EXPECT_EQ(s.seq, 3u);
  // A corrupt list is refused, not read as "everyone".
  EXPECT_FALSE(decode_envelope(R"({"v":1,"type":"message","kind":"room","target":"r","id":"m","from":"a",)"
                               R"("origin":"n","roles":[],"data":1})",
                               d));
}

TEST(envelope, parts_around_the_seq_make_the_same_wire_form) {
  envelope e;
  e.kind = protocol::target_kind::room;
  e.target = "r\"1";
  e.id = "m1";
  e.from = "u";
  e.origin = "n";
  e.data = R"({"x":[1,2]})";
  const auto parts = encode_envelope_parts(e);
  EXPECT_EQ(parts.head + parts.tail, encode_envelope(e));  // no seq
  e.seq = 42;
  e.epoch = "0123456789abcdef";
  EXPECT_EQ(parts.head + ",\"seq\":42,\"epoch\":\"0123456789abcdef\"" + parts.tail, encode_envelope(e));
  envelope d;
  ASSERT_TRUE(decode_envelope(parts.head + ",\"seq\":42,\"epoch\":\"0123456789abcdef\"" + parts.tail, d));
  EXPECT_EQ(d.seq, 42u);
  EXPECT_EQ(d.epoch, e.epoch);
  EXPECT_EQ(d.target, e.target);
  EXPECT_EQ(d.data, e.data);
}

TEST(envelope, kicks_and_bad_input) {
  envelope k;
  k.type = envelope_type::kick;
  k.kind = protocol::target_kind::all;
  k.target = "00ab00cd00000001";
  k.id = "k1";
  k.code = 4321;
  k.reason = "bye";
  envelope d;
  ASSERT_TRUE(decode_envelope(encode_envelope(k), d));
  EXPECT_EQ(d.type, envelope_type::kick);
  EXPECT_EQ(d.code, 4321);
  EXPECT_EQ(d.reason, "bye");
  EXPECT_FALSE(decode_envelope("not json", d));
  EXPECT_FALSE(decode_envelope(R"({"type":"message"})", d));
  // A broker message can't make the node send a close code it may not (found by fuzz_envelope's rule).
  for (const char* code : {"70000", "1005", "0", "-1", "3999", "5000"}) {
    const std::string wire = std::string(R"({"v":1,"type":"kick","kind":"all","target":"","id":"k","from":"api",)") +
                             R"("origin":"n","code":)" + code + R"(,"reason":"","data":null})";
    EXPECT_FALSE(decode_envelope(wire, d)) << code;
  }
  EXPECT_FALSE(
      decode_envelope(R"({"v":1,"type":"x","kind":"room","target":"","id":"","from":"","origin":"","data":1})", d));
}

TEST(dedupe_window, remembers_the_last_n) {
  dedupe_window w(3);
  EXPECT_TRUE(w.insert("a"));
  EXPECT_FALSE(w.insert("a"));
  EXPECT_TRUE(w.insert("b"));
  EXPECT_TRUE(w.insert("c"));
  EXPECT_TRUE(w.insert("d"));  // evicts a
  EXPECT_TRUE(w.insert("a"));
  EXPECT_FALSE(w.insert("d"));
  EXPECT_EQ(w.size(), 3u);
}

TEST(local_bus, hands_messages_back_and_completes) {
  local_bus b;
  int got = 0;
  b.start([&](const envelope& e, delivery_done) { got += e.id == "x"; });
  bool done = false;
  envelope e;
  e.id = "x";
  b.publish(e, [&](std::error_code ec, publish_result r) { done = !ec && !r.queued; });
  EXPECT_EQ(got, 1);
  EXPECT_TRUE(done);
  EXPECT_TRUE(b.healthy());
}

TEST(dedupe_window, long_and_short_ids_survive_eviction_and_moves) {
  dedupe_window w(100);
  auto id = [](int i) { return (i % 2 ? std::string("s") : std::string(40, 'x')) + std::to_string(i); };
  for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(w.insert(id(i)));
  dedupe_window moved(1);
  moved = std::move(w);  // the views into the deque must stay valid
  for (int i = 9'900; i < 10'000; ++i) EXPECT_FALSE(moved.insert(id(i))) << i;
  EXPECT_TRUE(moved.insert(id(9'899)));  // evicted long ago
  EXPECT_EQ(moved.size(), 100u);
}

// ---- room_bindings: wanted rooms, bound rooms, the unbind grace, reconnects ----

namespace {
using std::chrono::milliseconds;
const room_bindings::clock::time_point t0{std::chrono::seconds(100)};
}  // namespace

TEST(room_bindings, a_member_leaving_while_the_bind_is_on_its_way_releases_it_after_the_grace) {
  room_bindings b(milliseconds(5000));
  EXPECT_TRUE(b.want("r"));  // bind sent
  b.unwant("r", t0);         // not bound yet: nothing to release now
  EXPECT_FALSE(b.releases_pending());
  b.bind_confirmed("r", t0 + milliseconds(10));
  EXPECT_TRUE(b.is_bound("r"));
  EXPECT_EQ(b.next_release(), t0 + milliseconds(5010));
  EXPECT_EQ(b.take_due(t0 + milliseconds(5010)), std::vector<std::string>{"r"});

  // Still wanted when the bind comes back: it stays.
  EXPECT_TRUE(b.want("s"));
  b.bind_confirmed("s", t0);
  EXPECT_FALSE(b.releases_pending());
}

TEST(room_bindings, a_member_coming_back_while_the_unbind_is_on_its_way_binds_the_room_again) {
  room_bindings b(milliseconds(0));
  b.want("r");
  b.bound("r");
  b.unwant("r", t0);
  ASSERT_EQ(b.take_due(t0), std::vector<std::string>{"r"});  // unbind sent
  EXPECT_FALSE(b.want("r"));                                 // still bound: want() can't ask for a bind yet
  EXPECT_TRUE(b.unbind_confirmed("r"));                      // so the unbind's answer does
  EXPECT_FALSE(b.is_bound("r"));

  b.want("s");
  b.bound("s");
  b.unwant("s", t0);
  ASSERT_EQ(b.take_due(t0), std::vector<std::string>{"s"});
  EXPECT_FALSE(b.unbind_confirmed("s"));  // nobody came back
}

TEST(room_bindings, a_room_is_released_after_the_grace_unless_wanted_again) {
  room_bindings b(milliseconds(5000));
  EXPECT_TRUE(b.want("r"));  // not bound: bind it
  b.bound("r");
  EXPECT_FALSE(b.want("r"));  // a second member: nothing to do
  b.unwant("r", t0);
  EXPECT_TRUE(b.releases_pending());
  EXPECT_EQ(b.next_release(), t0 + milliseconds(5000));
  EXPECT_TRUE(b.take_due(t0 + milliseconds(4999)).empty());
  EXPECT_EQ(b.take_due(t0 + milliseconds(5000)), std::vector<std::string>{"r"});
  EXPECT_TRUE(b.is_bound("r"));  // until the bus says the release was done
  b.released("r");
  EXPECT_FALSE(b.is_bound("r"));
  EXPECT_FALSE(b.releases_pending());

  // Wanted again within the grace: no release, no bind.
  b.want("s");
  b.bound("s");
  b.unwant("s", t0);
  EXPECT_FALSE(b.want("s"));
  EXPECT_TRUE(b.take_due(t0 + milliseconds(9000)).empty());
  EXPECT_TRUE(b.is_bound("s"));
}

TEST(room_bindings, broker_bindings_survive_a_reconnect_redis_subscriptions_do_not) {
  room_bindings rabbit(milliseconds(5000));
  for (const char* r : {"a", "b", "c"}) {
    rabbit.want(r);
    rabbit.bound(r);
  }
  rabbit.unwant("b", t0);
  rabbit.connection_lost(true);  // the broker keeps a, b, c bound
  EXPECT_FALSE(rabbit.releases_pending());
  auto plan = rabbit.reconcile();
  EXPECT_EQ(plan.release, std::vector<std::string>{"b"});
  EXPECT_EQ(plan.bind, (std::vector<std::string>{"a", "c"}));

  room_bindings redis(milliseconds(5000));
  redis.want("a");
  redis.bound("a");
  redis.connection_lost(false);
  EXPECT_FALSE(redis.is_bound("a"));
  EXPECT_TRUE(redis.want("a"));  // subscribe again on the new connection
  EXPECT_EQ(redis.wanted().size(), 1u);
}

// ---- outage_buffer: bounded in count and bytes, order kept, resends in front ----

namespace {
struct msg {
  std::string body;
};
}  // namespace

TEST(outage_buffer, bounded_in_messages_and_bytes_and_keeps_order) {
  roomcast::bus::outage_buffer<msg> q(3, 10);
  EXPECT_TRUE(q.fits(3, 10));
  EXPECT_FALSE(q.fits(4, 1));
  EXPECT_FALSE(q.fits(1, 11));
  q.push_back({"1234"});
  q.push_back({"56"});
  EXPECT_EQ(q.bytes(), 6u);
  EXPECT_FALSE(q.fits(1, 5));  // 6 + 5 > 10
  EXPECT_TRUE(q.fits(1, 4));
  q.push_front({"0"});         // sent but unconfirmed when the connection was lost: first again
  EXPECT_FALSE(q.fits(1, 0));  // 3 messages
  EXPECT_EQ(q.pop_front().body, "0");
  EXPECT_EQ(q.pop_front().body, "1234");
  EXPECT_EQ(q.bytes(), 2u);
  EXPECT_EQ(q.size(), 1u);
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
}

// ---- confirm_window: publisher confirms as a stream ----

TEST(confirm_window, acks_settle_one_tag_or_every_tag_up_to_it_in_order) {
  roomcast::bus::confirm_window<msg> w(3);
  const auto t = roomcast::bus::confirm_window<msg>::clock::time_point{} + std::chrono::seconds(10);
  w.sent({"a"}, t);  // tag 1
  w.sent({"b"}, t);  // tag 2
  w.sent({"c"}, t);  // tag 3
  EXPECT_TRUE(w.full());
  std::vector<std::string> settled;
  auto record = [&](msg& m, bool ack) { settled.push_back(m.body + (ack ? "+" : "-")); };
  w.confirm(2, false, false, record);  // a nack of tag 2 alone
  EXPECT_EQ(settled, std::vector<std::string>{"b-"});
  w.confirm(3, true, true, record);  // everything up to 3
  EXPECT_EQ(settled, (std::vector<std::string>{"b-", "a+", "c+"}));
  EXPECT_TRUE(w.empty());
  w.confirm(9, true, true, record);  // a confirm for nothing waiting changes nothing
  EXPECT_EQ(settled.size(), 3u);
}

TEST(confirm_window, overdue_messages_stay_and_a_lost_channel_returns_them_newest_first) {
  using window = roomcast::bus::confirm_window<msg>;
  window w(10);
  const window::clock::time_point t0{std::chrono::seconds(100)};
  w.sent({"a"}, t0);
  w.sent({"b"}, t0 + std::chrono::seconds(5));
  std::vector<std::string> late;
  w.overdue(t0 + std::chrono::seconds(1), [&](msg& m) { late.push_back(m.body); });
  EXPECT_EQ(late, std::vector<std::string>{"a"});
  EXPECT_EQ(w.size(), 2u);  // a late confirm still settles them
  std::vector<std::string> back;
  w.lost([&](msg m) { back.push_back(m.body); });
  EXPECT_EQ(back, (std::vector<std::string>{"b", "a"}));
  EXPECT_TRUE(w.empty());
  // Tags restart at 1 on the new channel.
  w.sent({"c"}, t0);
  std::vector<std::string> settled;
  w.confirm(1, false, true, [&](msg& m, bool) { settled.push_back(m.body); });
  EXPECT_EQ(settled, std::vector<std::string>{"c"});
}

// ---- ack_window: the longest finished prefix of delivery tags ----

TEST(ack_window, a_tag_finished_early_waits_for_the_ones_before_it) {
  ack_window w;
  w.finished(2);  // a duplicate, dropped at once
  w.finished(3);
  EXPECT_EQ(w.floor(), 0u);  // tag 1 is still with the shards
  w.finished(1);
  EXPECT_EQ(w.floor(), 3u);
  w.finished(2);  // again: nothing changes
  EXPECT_EQ(w.floor(), 3u);
}

TEST(ack_window, the_shards_prefix_joins_tags_finished_after_it) {
  ack_window w;
  w.finished(5);  // dropped while 1–4 are with the shards
  w.finished(7);
  w.finished_through(3);
  EXPECT_EQ(w.floor(), 3u);
  w.finished_through(4);
  EXPECT_EQ(w.floor(), 5u);  // 5 was already finished
  w.finished_through(6);
  EXPECT_EQ(w.floor(), 7u);
  w.finished_through(2);  // an older prefix: nothing changes
  EXPECT_EQ(w.floor(), 7u);
  w.reset();
  EXPECT_EQ(w.floor(), 0u);
  w.finished(1);
  EXPECT_EQ(w.floor(), 1u);
}
