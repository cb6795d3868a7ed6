#include "bus/bus.hpp"
#include "bus/dedupe_window.hpp"
#include "bus/local_bus.hpp"

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
