// registry::resync: what the redis registry does when Redis comes back after an outage, without
// Redis: events in (connected, disconnected, writes, snapshots, time), commands and actions out.
#include "registry/resync.hpp"

#include <gtest/gtest.h>

namespace {

using roomcast::registry::command;
using roomcast::registry::resync;
using roomcast::registry::session_record;
using action = resync::write_action;
using std::chrono::milliseconds;

resync::options opts(std::size_t max_held = 100) { return {"n1", milliseconds(2000), milliseconds(6000), max_held}; }

session_record alice() { return {"s1", "alice", "student", "pc", {"r1", "r2"}}; }

command write_of(const std::string& key) { return {"SADD", key, "x"}; }

TEST(registry_resync, writes_are_dropped_until_redis_is_up_and_the_node_rewritten) {
  resync r(opts());
  const auto t0 = resync::clock::now();
  EXPECT_EQ(r.state(), resync::phase::down);
  auto w = write_of("k0");
  EXPECT_EQ(r.write(w), action::dropped);
  EXPECT_FALSE(r.heartbeat_due(t0));

  const auto ticket = r.connected();
  EXPECT_EQ(r.state(), resync::phase::waiting_snapshot);
  EXPECT_FALSE(r.heartbeat_due(t0));  // not before the node is rewritten
  auto w1 = write_of("k1");
  EXPECT_EQ(r.write(w1), action::held);

  const auto rw = r.snapshot(ticket, {alice()}, t0);
  ASSERT_TRUE(rw);
  EXPECT_EQ(rw->sessions, 1u);
  EXPECT_EQ(rw->held, 1u);
  // The session, each of its rooms, then what was held, in order.
  const std::vector<command> want{
      {"HSET", "rc:user:alice", "s1",
       R"({"session":"s1","node":"n1","platform":"pc","role":"student","rooms":["r1","r2"]})"},
      {"SADD", "rc:node_sessions:n1", "alice\ns1"},
      {"HSET", "rc:sessions", "s1", "n1"},
      {"HSET", "rc:room:r1:n1", "s1", "student\nalice\npc"},
      {"SADD", "rc:room_nodes:r1", "n1"},
      {"SADD", "rc:node_rooms:n1", "r1"},
      {"HSET", "rc:room:r2:n1", "s1", "student\nalice\npc"},
      {"SADD", "rc:room_nodes:r2", "n1"},
      {"SADD", "rc:node_rooms:n1", "r2"},
      write_of("k1")};
  EXPECT_EQ(rw->commands, want);
  EXPECT_EQ(r.state(), resync::phase::synced);
  EXPECT_EQ(r.resyncs(), 1u);
  EXPECT_EQ(r.dropped_writes(), 1u);

  auto w2 = write_of("k2");
  EXPECT_EQ(r.write(w2), action::send);
  EXPECT_EQ(w2, write_of("k2"));  // the caller sends it
}

TEST(registry_resync, heartbeats_start_with_the_rewrite_and_follow_the_interval) {
  resync r(opts());
  const auto t0 = resync::clock::now();
  ASSERT_TRUE(r.snapshot(r.connected(), {}, t0));
  EXPECT_TRUE(r.heartbeat_due(t0));  // the node announces itself right away
  const auto beat = r.heartbeat(t0, R"({"connections":0})");
  EXPECT_EQ(beat, (std::vector<command>{{"SET", "rc:node:n1", R"({"connections":0})", "PX", "6000"},
                                        {"SADD", "rc:nodes", "n1"}}));
  EXPECT_FALSE(r.heartbeat_due(t0 + milliseconds(1999)));
  EXPECT_TRUE(r.heartbeat_due(t0 + milliseconds(2000)));
  r.disconnected();
  EXPECT_FALSE(r.heartbeat_due(t0 + milliseconds(5000)));  // nothing to beat to
}

TEST(registry_resync, an_outage_during_the_snapshot_makes_it_stale) {
  resync r(opts());
  const auto t0 = resync::clock::now();
  const auto first = r.connected();
  auto w = write_of("held");
  EXPECT_EQ(r.write(w), action::held);
  r.disconnected();  // the held write is lost with the connection
  EXPECT_EQ(r.held(), 0u);
  EXPECT_EQ(r.dropped_writes(), 1u);
  EXPECT_FALSE(r.snapshot(first, {alice()}, t0));  // arrives after Redis went away: ignored
  const auto second = r.connected();
  EXPECT_NE(first, second);
  EXPECT_FALSE(r.snapshot(first, {alice()}, t0));  // still the old one: ignored
  const auto rw = r.snapshot(second, {}, t0);
  ASSERT_TRUE(rw);
  EXPECT_TRUE(rw->commands.empty());
  EXPECT_EQ(r.resyncs(), 1u);
}

TEST(registry_resync, too_many_held_writes_start_over_with_a_new_snapshot) {
  resync r(opts(2));
  const auto t0 = resync::clock::now();
  const auto first = r.connected();
  auto a = write_of("a"), b = write_of("b"), c = write_of("c");
  EXPECT_EQ(r.write(a), action::held);
  EXPECT_EQ(r.write(b), action::held);
  EXPECT_EQ(r.write(c), action::take_snapshot);  // bounded: everything held so far is dropped
  EXPECT_EQ(r.held(), 0u);
  EXPECT_EQ(r.dropped_writes(), 3u);
  EXPECT_NE(r.ticket(), first);
  EXPECT_FALSE(r.snapshot(first, {alice()}, t0));
  ASSERT_TRUE(r.snapshot(r.ticket(), {alice()}, t0));
}

TEST(registry_resync, a_write_lost_while_synced_rewrites_the_node) {
  resync r(opts());
  const auto t0 = resync::clock::now();
  ASSERT_TRUE(r.snapshot(r.connected(), {}, t0));
  const auto t = r.write_lost();  // the connection's queue was full
  ASSERT_TRUE(t);
  EXPECT_EQ(r.state(), resync::phase::waiting_snapshot);
  auto w = write_of("during");
  EXPECT_EQ(r.write(w), action::held);
  const auto rw = r.snapshot(*t, {alice()}, t0);
  ASSERT_TRUE(rw);
  EXPECT_EQ(rw->commands.back(), write_of("during"));
  EXPECT_EQ(r.resyncs(), 2u);
  // While down, a lost write needs nothing more: the connect resyncs anyway.
  r.disconnected();
  EXPECT_FALSE(r.write_lost());
}

TEST(registry_resync, a_session_without_rooms_writes_only_its_user_entry) {
  std::vector<command> out;
  session_record s{"s2", "bob", "teacher", "mobile", {}};
  roomcast::registry::append_session_writes(s, "n2", true, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1], (command{"SADD", "rc:node_sessions:n2", "bob\ns2"}));
  EXPECT_EQ(out[2], (command{"HSET", "rc:sessions", "s2", "n2"}));  // where the session is, by id
  out.clear();
  roomcast::registry::append_session_writes(alice(), "n2", false, out);  // a session just opened
  EXPECT_EQ(out.size(), 3u);
}

}  // namespace

TEST(registry_resync, room_member_values_carry_role_user_and_platform) {
  roomcast::registry::session_record s{"s1", "alice", "STU", "ios", {"r"}};
  roomcast::registry::room_members m;
  roomcast::registry::add_room_member_value(roomcast::registry::room_member_value(s), m);
  roomcast::registry::add_room_member_value("THE\nbob", m);  // written by an older node: no platform
  EXPECT_EQ(m.sessions, 2u);
  EXPECT_EQ(m.by_platform.at("ios"), 1u);
  EXPECT_EQ(m.by_platform.at(""), 1u);
  EXPECT_EQ(m.users.at("alice").roles.count("STU"), 1u);
  EXPECT_EQ(m.users.at("bob").roles.count("THE"), 1u);
}
