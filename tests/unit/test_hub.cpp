#include "hub/router.hpp"
#include "hub/shard.hpp"
#include "hub/token_bucket.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace roomcast;
using namespace roomcast::hub;

namespace {
struct fake_member : member {
  explicit fake_member(std::uint64_t sid, std::string user, std::string role = "STU")
      : member(identity{sid, std::move(user), std::move(role), "pc"}) {}
  // Test frames are short (< 126 bytes): the WebSocket header is 2 bytes.
  void deliver(const frame_ref& f) override { got.emplace_back(f->bytes().substr(2)); }
  void kick(std::uint16_t code, std::string_view) override { kicked = code; }
  std::vector<std::string> got;
  std::uint16_t kicked = 0;
};

frame_ref frame(std::string_view s) { return make_local(protocol::make_frame(protocol::ws_opcode::text, s)); }
}  // namespace

TEST(shard, delivers_to_room_user_and_all) {
  metrics::shard_counters c;
  shard s(0, c);
  fake_member a(1, "alice"), b(2, "bob"), a2(3, "alice");
  for (auto* m : {&a, &b, &a2}) s.add(*m);
  s.join(a, "r1", 16);
  s.join(b, "r2", 16);
  s.join(a2, "r1", 16);
  EXPECT_EQ(s.deliver_room("r1", frame("x")), 2u);
  EXPECT_EQ(s.deliver_room("nope", frame("x")), 0u);
  EXPECT_EQ(s.deliver_user("alice", frame("y")), 2u);
  EXPECT_EQ(s.deliver_all(frame("z")), 3u);
  EXPECT_EQ(a.got.size(), 3u);
  EXPECT_EQ(b.got.size(), 1u);
  EXPECT_EQ(c.messages_out.get(), 7u);
  auto info = s.room_info("r1");
  EXPECT_EQ(info.sessions, 2u);
  ASSERT_EQ(info.users.size(), 1u);
  EXPECT_EQ(info.users.begin()->first, "alice");
  EXPECT_EQ(info.users.begin()->second.sessions, 2u);
  EXPECT_EQ(info.by_platform.at("pc"), 2u);
  EXPECT_EQ(s.user_info("alice").size(), 2u);
  EXPECT_EQ(s.kick_user("alice", 4001, "x"), 2u);
  EXPECT_EQ(a.kicked, 4001);
  for (auto* m : {&a, &b, &a2}) s.remove(*m);
  EXPECT_EQ(s.session_count(), 0u);
  EXPECT_EQ(s.room_count(), 0u);
  EXPECT_EQ(s.user_count(), 0u);
}

TEST(shard, join_limits_and_room_change_events) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::pair<std::string, bool>> events;
  s.on_room_change([&](const std::string& r, bool gained) { events.emplace_back(r, gained); });
  fake_member a(1, "a"), b(2, "b");
  s.add(a);
  s.add(b);
  EXPECT_EQ(s.join(a, "r", 2), shard::join_result::joined);
  EXPECT_EQ(s.join(a, "r", 2), shard::join_result::already);
  EXPECT_EQ(s.join(b, "r", 2), shard::join_result::joined);
  EXPECT_EQ(s.join(a, "q", 2), shard::join_result::joined);
  EXPECT_EQ(s.join(a, "w", 2), shard::join_result::too_many);
  EXPECT_TRUE(s.leave(a, "r"));
  EXPECT_FALSE(s.leave(a, "r"));
  s.remove(b);  // last member of r
  s.remove(a);  // last member of q
  const std::vector<std::pair<std::string, bool>> want{{"r", true}, {"q", true}, {"r", false}, {"q", false}};
  EXPECT_EQ(events, want);
}

// Random joins, leaves and removals must leave every index consistent and finally empty.
TEST(shard, random_churn_keeps_indexes_consistent) {
  metrics::shard_counters c;
  shard s(0, c);
  std::mt19937 rng(42);
  std::vector<std::unique_ptr<fake_member>> live;
  std::uint64_t next = 1;
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 4);
    if (op == 0 || live.empty()) {
      live.push_back(std::make_unique<fake_member>(next++, "u" + std::to_string(rng() % 50)));
      s.add(*live.back());
      s.join(*live.back(), "r" + std::to_string(rng() % 20), 8);
    } else if (op == 1) {
      s.join(*live[rng() % live.size()], "r" + std::to_string(rng() % 20), 8);
    } else if (op == 2) {
      s.leave(*live[rng() % live.size()], "r" + std::to_string(rng() % 20));
    } else {
      const auto i = rng() % live.size();
      s.remove(*live[i]);
      live.erase(live.begin() + static_cast<long>(i));
    }
    if (step % 1000 == 0) {
      // Every member's rooms deliver to it exactly once per room.
      std::size_t expected = 0;
      for (auto& m : live) expected += m->room_count();
      std::size_t delivered = 0;
      for (int r = 0; r < 20; ++r) delivered += s.deliver_room("r" + std::to_string(r), frame("x"));
      EXPECT_EQ(delivered, expected);
      EXPECT_EQ(s.session_count(), live.size());
    }
  }
  for (auto& m : live) s.remove(*m);
  EXPECT_EQ(s.session_count(), 0u);
  EXPECT_EQ(s.room_count(), 0u);
  EXPECT_EQ(s.user_count(), 0u);
  EXPECT_EQ(c.connections.get(), 0u);
  EXPECT_EQ(c.index_rooms.get(), 0u);
  EXPECT_EQ(c.index_users.get(), 0u);
}

TEST(token_bucket, limits_and_refills) {
  token_bucket b;
  const auto t0 = std::chrono::steady_clock::time_point(std::chrono::seconds(100));
  int ok = 0;
  for (int i = 0; i < 10; ++i) ok += b.try_take(2, 3, t0);
  EXPECT_EQ(ok, 3);  // burst
  EXPECT_FALSE(b.try_take(2, 3, t0 + std::chrono::milliseconds(400)));
  EXPECT_TRUE(b.try_take(2, 3, t0 + std::chrono::milliseconds(600)));  // 2/s refill
  EXPECT_TRUE(b.try_take(0, 1, t0));                                   // 0 = unlimited
}

TEST(session_id, round_trip) {
  const std::uint64_t id = (std::uint64_t{0xabcdef} << 40) | (std::uint64_t{3} << 32) | 77;
  std::uint64_t back = 0;
  ASSERT_TRUE(parse_session_id(format_session_id(id), back));
  EXPECT_EQ(back, id);
  EXPECT_EQ(shard_of_session(id), 3u);
  EXPECT_FALSE(parse_session_id("xyz", back));
}

namespace {
std::vector<std::uint64_t> seqs_of(const fake_member& m) {
  std::vector<std::uint64_t> out;
  for (const auto& g : m.got) {
    // Test frames are "s<seq>"; anything else (a gap frame) counts as 0.
    out.push_back(g.rfind("s", 0) == 0 ? std::stoull(g.substr(1)) : 0);
  }
  return out;
}
frame_ref seq_frame(std::uint64_t s) { return frame("s" + std::to_string(s)); }
}  // namespace

// A filtered room message takes a seq like any other: members outside its audience pass over it
// (no delivery, no hole), live, while syncing and when a hole is filled from history.
TEST(shard_sequence, filtered_messages_reach_their_audience_and_are_no_hole_for_others) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::uint64_t> fills;
  s.on_fill([&](const std::string&, std::uint64_t since) { fills.push_back(since); });
  s.on_member_fill([](std::uint64_t, const std::string&, std::uint64_t) { FAIL() << "no member hole expected"; });
  fake_member teacher(1, "t", "THE"), student(2, "s", "STU"), late(3, "l", "STU");
  for (auto* m : {&teacher, &student, &late}) s.add(*m);
  s.join(teacher, "r", 4);
  s.join(student, "r", 4);
  auto only_teachers = std::make_shared<const protocol::filter>(protocol::filter{{"THE"}, {}, {}});
  auto for_teachers = [&](std::uint64_t n) {
    return make_local(protocol::make_frame(protocol::ws_opcode::text, "s" + std::to_string(n)), only_teachers);
  };
  s.deliver_room("r", seq_frame(1), 1, "e1");
  s.deliver_room("r", for_teachers(2), 2, "e1");
  s.join(late, "r", 4, /*sync=*/true);
  s.deliver_room("r", for_teachers(3), 3, "e1");  // held for the syncing member
  s.deliver_room("r", seq_frame(4), 4, "e1");
  ASSERT_TRUE(s.finish_sync(late, "r", 2, "e1"));
  EXPECT_EQ(seqs_of(teacher), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(seqs_of(student), (std::vector<std::uint64_t>{1, 4}));
  EXPECT_EQ(seqs_of(late), (std::vector<std::uint64_t>{4}));
  // A hole whose history holds a filtered message: the fill applies the filter too.
  s.deliver_room("r", seq_frame(7), 7, "e1");
  ASSERT_EQ(fills, (std::vector<std::uint64_t>{4}));
  s.fill_done("r", true, "e1", {{5, for_teachers(5)}, {6, seq_frame(6)}, {7, seq_frame(7)}}, 7);
  EXPECT_EQ(seqs_of(teacher), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(seqs_of(student), (std::vector<std::uint64_t>{1, 4, 6, 7}));
  EXPECT_EQ(seqs_of(late), (std::vector<std::uint64_t>{4, 6, 7}));
  EXPECT_EQ(c.gaps_unfilled.get(), 0u) << "a message for others was reported as lost";
  EXPECT_EQ(c.messages_filtered.get(), 5u);  // 2: student; 3: student, late; 5: both
  for (auto* m : {&teacher, &student, &late}) s.remove(*m);
}

TEST(shard_sequence, drops_duplicates_and_fills_holes_from_history) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::pair<std::string, std::uint64_t>> fills;
  s.on_fill([&](const std::string& room, std::uint64_t since) { fills.emplace_back(room, since); });
  fake_member a(1, "a");
  s.add(a);
  s.join(a, "r", 4);
  s.deliver_room("r", seq_frame(1), 1, "e1");
  s.deliver_room("r", seq_frame(2), 2, "e1");
  s.deliver_room("r", seq_frame(2), 2, "e1");  // redelivery
  EXPECT_EQ(c.duplicates_dropped.get(), 1u);
  s.deliver_room("r", seq_frame(5), 5, "e1");  // 3 and 4 lost on the bus
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].second, 2u);
  s.deliver_room("r", seq_frame(6), 6, "e1");  // held behind the hole
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{1, 2}));
  s.fill_done("r", true, "e1", {{3, seq_frame(3)}, {4, seq_frame(4)}, {5, seq_frame(5)}});
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
  s.remove(a);
}

// Found by the kill -9 test with several publishers per room: a hole seen while a fill is in
// flight may lie past the head that fill read (numbered later, on its way through the bus). It is
// read again, not announced as lost.
TEST(shard_sequence, hole_numbered_after_the_fill_read_is_read_again_not_lost) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::uint64_t> fills;
  s.on_fill([&](const std::string&, std::uint64_t since) { fills.push_back(since); });
  fake_member a(1, "a");
  s.add(a);
  s.join(a, "r", 4);
  s.deliver_room("r", seq_frame(1), 1, "e1");
  s.deliver_room("r", seq_frame(3), 3, "e1");  // 2 not here yet: fill after 1
  ASSERT_EQ(fills, (std::vector<std::uint64_t>{1}));
  s.deliver_room("r", seq_frame(6), 6, "e1");  // 4 and 5 numbered after that read
  s.fill_done("r", true, "e1", {{2, seq_frame(2)}, {3, seq_frame(3)}}, 3);
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{1, 2, 3}));
  ASSERT_EQ(fills, (std::vector<std::uint64_t>{1, 3})) << "the hole 4..5 must be read again";
  EXPECT_EQ(c.gaps_unfilled.get(), 0u);
  s.deliver_room("r", seq_frame(4), 4, "e1");  // the live copy arrives meanwhile: held
  s.fill_done("r", true, "e1", {{4, seq_frame(4)}, {5, seq_frame(5)}, {6, seq_frame(6)}}, 6);
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(c.gaps_unfilled.get(), 0u);
  // A hole the history should have had (its head is past it) is still announced.
  s.deliver_room("r", seq_frame(9), 9, "e1");
  ASSERT_EQ(fills.size(), 3u);
  s.fill_done("r", true, "e1", {{8, seq_frame(8)}, {9, seq_frame(9)}}, 9);
  EXPECT_EQ(c.gaps_unfilled.get(), 1u);
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 0, 9}));
  s.remove(a);
}

TEST(shard_sequence, unfillable_hole_is_announced_and_new_epoch_resets) {
  metrics::shard_counters c;
  shard s(0, c);
  s.on_fill([](const std::string&, std::uint64_t) {});
  fake_member a(1, "a");
  s.add(a);
  s.join(a, "r", 4);
  s.deliver_room("r", seq_frame(1), 1, "e1");
  s.deliver_room("r", seq_frame(3), 3, "e1");
  s.fill_done("r", false, "", {});  // history couldn't be read
  ASSERT_EQ(a.got.size(), 3u);
  EXPECT_NE(a.got[1].find("\"gap\""), std::string::npos);
  EXPECT_EQ(c.gaps_unfilled.get(), 1u);
  s.deliver_room("r", seq_frame(1), 1, "e2");  // history lost: numbering restarts
  ASSERT_EQ(a.got.size(), 5u);
  EXPECT_NE(a.got[3].find("\"epoch\""), std::string::npos);
  EXPECT_EQ(seqs_of(a).back(), 1u);
  s.remove(a);
}

TEST(shard_sequence, syncing_member_gets_held_frames_after_its_recovery) {
  metrics::shard_counters c;
  shard s(0, c);
  fake_member a(1, "a"), b(2, "b");
  s.add(a);
  s.add(b);
  s.join(a, "r", 4);
  s.deliver_room("r", seq_frame(1), 1, "e1");
  s.join(b, "r", 4, /*sync=*/true);            // b reconnects; its history read is in flight
  s.deliver_room("r", seq_frame(2), 2, "e1");  // live while b syncs
  s.deliver_room("r", seq_frame(3), 3, "e1");
  EXPECT_TRUE(b.got.empty());
  // b's recovery sent it everything up to 2 from history; 3 is still new to it.
  b.got.push_back("s1");
  b.got.push_back("s2");
  ASSERT_TRUE(s.finish_sync(b, "r", 2, "e1"));
  EXPECT_EQ(seqs_of(b), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{1, 2, 3}));
  s.remove(a);
  s.remove(b);
  EXPECT_FALSE(s.finish_sync(b, "r", 2, "e1"));
}

// A member's history read returns the head while that message may still be on the bus: the
// room's sequence must not jump to it, or members behind it would lose the live copy.
TEST(shard_sequence, a_join_does_not_swallow_a_message_still_on_the_bus) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::uint64_t> fills;
  s.on_fill([&](const std::string&, std::uint64_t since) { fills.push_back(since); });
  fake_member a(1, "a"), b(2, "b");
  s.add(a);
  s.add(b);
  s.join(a, "r", 4, true);
  ASSERT_TRUE(s.finish_sync(a, "r", 9, "e1"));  // a joined at head 9
  s.join(b, "r", 4, true);
  ASSERT_TRUE(s.finish_sync(b, "r", 10, "e1"));  // b read head 10; 10 is still on the bus
  s.deliver_room("r", seq_frame(10), 10, "e1");
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{10}));
  EXPECT_TRUE(b.got.empty());
  EXPECT_EQ(c.duplicates_dropped.get(), 0u);
  s.deliver_room("r", seq_frame(12), 12, "e1");  // 11 lost: filled from history
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0], 10u);
  s.remove(a);
  s.remove(b);
}

// A join storm: the bus became live while the only member was still reading its position. The
// catch-up waits for that position instead of reading from 0 (a trimmed history would announce a
// gap nobody has).
TEST(shard_sequence, catch_up_waits_for_a_known_position) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::uint64_t> fills;
  s.on_fill([&](const std::string&, std::uint64_t since) { fills.push_back(since); });
  fake_member a(1, "a");
  s.add(a);
  s.join(a, "r", 4, true);
  s.catch_up("r");
  EXPECT_TRUE(fills.empty());
  ASSERT_TRUE(s.finish_sync(a, "r", 2005, "e1"));
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0], 2005u);
  s.fill_done("r", true, "e1", {{2006, seq_frame(2006)}});
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{2006}));
  EXPECT_EQ(c.gaps_unfilled.get(), 0u);
  s.remove(a);
}

// The member read head 5; 6 went by on the bus before the room was bound here, and 7 arrived live
// while it was reading: it must get 6 (read for it alone) before 7.
TEST(shard_sequence, hole_between_a_members_position_and_held_frames_is_read_for_it) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> member_fills;
  s.on_fill([](const std::string&, std::uint64_t) {});
  s.on_member_fill(
      [&](std::uint64_t sid, const std::string&, std::uint64_t since) { member_fills.emplace_back(sid, since); });
  fake_member a(1, "a");
  s.add(a);
  s.join(a, "r", 4, true);
  s.deliver_room("r", seq_frame(7), 7, "e1");
  ASSERT_TRUE(s.finish_sync(a, "r", 5, "e1"));
  ASSERT_EQ(member_fills.size(), 1u);
  EXPECT_EQ(member_fills[0], (std::pair<std::uint64_t, std::uint64_t>{1, 5}));
  EXPECT_TRUE(a.got.empty());
  s.deliver_room("r", seq_frame(8), 8, "e1");  // still held behind the hole
  s.member_fill_done(1, "r", true, "e1", {{6, seq_frame(6)}, {7, seq_frame(7)}});
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{6, 7, 8}));
  s.deliver_room("r", seq_frame(9), 9, "e1");
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{6, 7, 8, 9}));
  EXPECT_EQ(c.gaps_unfilled.get(), 0u);
  s.remove(a);
}

// b's position was read before 4 and 5, which the room had already delivered: the next live
// message shows b's hole, which is read for b alone; a is not held up.
TEST(shard_sequence, member_behind_the_room_is_filled_alone) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::uint64_t> member_fills;
  s.on_fill([](const std::string&, std::uint64_t) {});
  s.on_member_fill([&](std::uint64_t sid, const std::string&, std::uint64_t since) {
    EXPECT_EQ(sid, 2u);
    member_fills.push_back(since);
  });
  fake_member a(1, "a"), b(2, "b");
  s.add(a);
  s.add(b);
  s.join(a, "r", 4, true);
  ASSERT_TRUE(s.finish_sync(a, "r", 3, "e1"));
  s.deliver_room("r", seq_frame(4), 4, "e1");
  s.deliver_room("r", seq_frame(5), 5, "e1");
  s.join(b, "r", 4, true);
  ASSERT_TRUE(s.finish_sync(b, "r", 3, "e1"));  // a stale read
  s.deliver_room("r", seq_frame(6), 6, "e1");
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{4, 5, 6}));
  ASSERT_EQ(member_fills.size(), 1u);
  EXPECT_EQ(member_fills[0], 3u);
  // History lost 4: b is told, then gets the rest.
  s.member_fill_done(2, "r", true, "e1", {{5, seq_frame(5)}, {6, seq_frame(6)}});
  ASSERT_FALSE(b.got.empty());
  EXPECT_NE(b.got[0].find("\"gap\""), std::string::npos) << b.got[0];
  EXPECT_EQ(seqs_of(b), (std::vector<std::uint64_t>{0, 5, 6}));
  EXPECT_EQ(c.gaps_unfilled.get(), 1u);
  s.remove(a);
  s.remove(b);
}

// A member's hole read may come back before later seqs were even numbered (head 6 < held 8): that
// is not a loss; it reads again instead of announcing a gap.
TEST(shard_sequence, member_fill_reads_again_when_the_hole_is_past_the_history_head) {
  metrics::shard_counters c;
  shard s(0, c);
  std::vector<std::uint64_t> member_fills;
  s.on_fill([](const std::string&, std::uint64_t) {});
  s.on_member_fill([&](std::uint64_t, const std::string&, std::uint64_t since) { member_fills.push_back(since); });
  fake_member a(1, "a");
  s.add(a);
  s.join(a, "r", 4, true);
  s.deliver_room("r", seq_frame(8), 8, "e1");
  ASSERT_TRUE(s.finish_sync(a, "r", 5, "e1"));
  ASSERT_EQ(member_fills, (std::vector<std::uint64_t>{5}));
  s.member_fill_done(1, "r", true, "e1", {{6, seq_frame(6)}}, /*head=*/6);
  EXPECT_EQ(member_fills, (std::vector<std::uint64_t>{5, 6}));
  EXPECT_EQ(c.gaps_unfilled.get(), 0u);
  s.member_fill_done(1, "r", true, "e1", {{7, seq_frame(7)}, {8, seq_frame(8)}}, /*head=*/8);
  EXPECT_EQ(seqs_of(a), (std::vector<std::uint64_t>{6, 7, 8}));
  EXPECT_EQ(c.gaps_unfilled.get(), 0u);
  s.remove(a);
}

// ---- router: a bus thread's burst reaches each shard as one task, in order ----

namespace {
struct null_bus : roomcast::bus::bus {
  void start(roomcast::bus::message_handler) override {}
  void stop() override {}
  void publish(roomcast::bus::envelope, roomcast::bus::publish_callback) override {}
  void subscribe_room(const std::string&) override {}
  void unsubscribe_room(const std::string&) override {}
  bool healthy() const override { return true; }
  const char* name() const noexcept override { return "null"; }
};
bus::envelope room_message(std::string room, std::string data) {
  bus::envelope e;
  e.kind = protocol::target_kind::room;
  e.target = std::move(room);
  e.id = "id-" + data;
  e.data = std::move(data);
  return e;
}
}  // namespace

TEST(router, a_burst_reaches_each_shard_as_one_task_in_order_and_acks_after_the_last_shard) {
  null_bus b;
  router r("n1", b);
  metrics::shard_counters c0, c1;
  shard s0(0, c0), s1(1, c1);
  std::vector<std::vector<router::task>> queued(2);
  r.add_shard({&s0, [&](router::task t) { queued[0].push_back(std::move(t)); }});
  r.add_shard({&s1, [&](router::task t) { queued[1].push_back(std::move(t)); }});
  fake_member m(1, "alice");
  s1.add(m);
  s1.join(m, "room", 16);

  std::vector<int> done;
  r.begin_burst();
  for (int i = 1; i <= 5; ++i)
    r.dispatch(room_message("room", "\"m" + std::to_string(i) + "\""), [&done, i] { done.push_back(i); });
  EXPECT_TRUE(queued[0].empty());  // held until the burst ends
  r.end_burst();
  ASSERT_EQ(queued[0].size(), 1u);
  ASSERT_EQ(queued[1].size(), 1u);
  queued[0].front()();
  EXPECT_TRUE(done.empty());  // shard 1 has not taken them yet
  queued[1].front()();
  EXPECT_EQ(done, (std::vector<int>{1, 2, 3, 4, 5}));
  ASSERT_EQ(m.got.size(), 5u);
  for (int i = 0; i < 5; ++i)
    EXPECT_NE(m.got[static_cast<std::size_t>(i)].find("m" + std::to_string(i + 1)), std::string::npos)
        << m.got[static_cast<std::size_t>(i)];

  // Outside a burst every message is posted at once.
  queued[0].clear();
  queued[1].clear();
  r.dispatch(room_message("room", "\"x\""), {});
  r.dispatch(room_message("room", "\"y\""), {});
  EXPECT_EQ(queued[0].size(), 2u);
  EXPECT_EQ(queued[1].size(), 2u);
  s1.leave(m, "room");
}

// Every envelope the bus hands over is acked once it is handled, whatever its type (a presence
// ping that is never acked holds a RabbitMQ prefetch slot forever: 256 of them stop the node's
// consumer). Kicks from a room are acked after every shard ran them.
TEST(router, every_envelope_type_is_acked) {
  null_bus b;
  router r("n1", b);
  metrics::shard_counters c0;
  shard s0(0, c0);
  r.add_shard({&s0, [](router::task t) { t(); }});
  std::vector<std::string> pings;
  r.on_presence([&](const bus::envelope& e) { pings.push_back(e.target); });
  fake_member m(1, "s");
  s0.add(m);
  s0.join(m, "room", 16);
  int acked = 0;
  bus::envelope ping;
  ping.type = bus::envelope_type::presence;
  ping.target = "room";
  r.dispatch(ping, [&] { ++acked; });
  EXPECT_EQ(acked, 1);
  EXPECT_EQ(pings, std::vector<std::string>{"room"});
  EXPECT_TRUE(m.got.empty()) << "a presence ping is not for members";
  bus::envelope kick;
  kick.type = bus::envelope_type::room_kick;
  kick.target = "room";
  kick.user = "s";
  kick.reason = "x";
  r.dispatch(kick, [&] { ++acked; });
  EXPECT_EQ(acked, 2);
  EXPECT_FALSE(s0.in_room(m, "room"));
  ASSERT_EQ(m.got.size(), 1u);
  EXPECT_NE(m.got[0].find("\"kicked\":true"), std::string::npos);
  s0.remove(m);
}
