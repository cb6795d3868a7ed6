#include "presence/rules.hpp"
#include "presence/tracker.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

using namespace roomcast;
using namespace roomcast::presence;
using namespace std::chrono_literals;

namespace {
rules parse(std::vector<std::string> specs) {
  rules r;
  std::string err;
  EXPECT_TRUE(r.parse(specs, err)) << err;
  return r;
}
hub::room_presence class_of(int students, int teachers) {
  hub::room_presence p;
  for (int i = 0; i < students; ++i) p.add("s" + std::to_string(i), "STU", i % 2 ? "ios" : "pc");
  for (int i = 0; i < teachers; ++i) p.add("t" + std::to_string(i), "THE", "pc");
  return p;
}
}  // namespace

TEST(presence_rules, first_match_wins_and_intervals_are_bounded) {
  auto r = parse({"lobby-* off", "class-* 500ms", "vip"});
  EXPECT_FALSE(r.interval_for("lobby-1"));
  EXPECT_EQ(r.interval_for("class-7"), 500ms);
  EXPECT_EQ(r.interval_for("vip"), 1s);  // default interval
  EXPECT_FALSE(r.interval_for("other"));
  std::string err;
  rules bad;
  EXPECT_FALSE(bad.parse({"* 10ms"}, err));
  EXPECT_FALSE(bad.parse({"* 1s extra"}, err));
  EXPECT_FALSE(bad.parse({"* soon"}, err));
}

// 10,000 joins within one interval: one read and one frame, not one per join.
TEST(presence_tracker, a_join_surge_is_one_read_per_interval) {
  const auto r = parse({"* 1s"});
  tracker t(r, {});
  const auto t0 = tracker::clock::now();
  t.changed("c", true);
  auto jobs = t.due(t0);
  ASSERT_EQ(jobs.size(), 1u);  // the first change goes out at once
  EXPECT_TRUE(jobs[0].local);
  for (int i = 0; i < 10'000; ++i) t.changed("c", true);
  EXPECT_TRUE(t.due(t0 + 10ms).empty()) << "a read is in flight";
  ASSERT_TRUE(t.read_done("c", class_of(1, 0), true, true));
  EXPECT_TRUE(t.due(t0 + 500ms).empty()) << "within the interval";
  EXPECT_EQ(t.next_due(), t0 + 1s);
  jobs = t.due(t0 + 1s);
  ASSERT_EQ(jobs.size(), 1u);
  auto f = t.read_done("c", class_of(10'000, 1), true, true);
  ASSERT_TRUE(f);
  const auto v = boost::json::parse(*f);
  EXPECT_EQ(v.at("type").as_string(), "presence");
  EXPECT_EQ(v.at("online").at("users").as_int64(), 10'001);
  EXPECT_EQ(v.at("online").at("by_role").at("STU").as_int64(), 10'000);
  EXPECT_FALSE(t.next_due());  // nothing changed since
}

TEST(presence_tracker, remote_reads_that_change_nothing_send_nothing) {
  const auto r = parse({"* 1s"});
  tracker t(r, {});
  const auto t0 = tracker::clock::now();
  t.changed("c", false);
  t.due(t0);
  EXPECT_TRUE(t.read_done("c", class_of(3, 1), false, true));
  t.changed("c", false);
  ASSERT_EQ(t.due(t0 + 1s).size(), 1u);
  EXPECT_FALSE(t.read_done("c", class_of(3, 1), false, true)) << "same counts, nobody new here";
  t.changed("c", true);  // a member joined here (and one left): it must learn the state
  ASSERT_EQ(t.due(t0 + 2s).size(), 1u);
  EXPECT_TRUE(t.read_done("c", class_of(3, 1), true, true));
}

TEST(presence_tracker, rooms_without_a_rule_or_members_are_not_kept) {
  const auto r = parse({"class-* 1s"});
  tracker t(r, {});
  t.changed("lobby", true);
  EXPECT_EQ(t.tracked(), 0u);
  t.changed("class-1", true);
  ASSERT_EQ(t.due(tracker::clock::now()).size(), 1u);
  EXPECT_FALSE(t.read_done("class-1", class_of(0, 0), true, false));  // the last member left
  EXPECT_EQ(t.tracked(), 0u);
}

TEST(presence_tracker, failed_reads_are_retried_after_the_interval) {
  const auto r = parse({"* 1s"});
  tracker t(r, {});
  const auto t0 = tracker::clock::now();
  t.changed("c", true);
  t.due(t0);
  t.read_failed("c");
  EXPECT_TRUE(t.due(t0 + 100ms).empty());
  EXPECT_EQ(t.due(t0 + 1s).size(), 1u);
}

TEST(presence_tracker, named_roles_say_who_joined_and_left) {
  const auto r = parse({"* 1s"});
  tracker t(r, {"THE"});
  auto now = tracker::clock::now();
  hub::room_presence p = class_of(2, 0);
  p.add("anna", "THE", "pc");
  t.changed("c", true);
  t.due(now);
  auto f = t.read_done("c", p, true, true);
  ASSERT_TRUE(f);
  EXPECT_EQ(boost::json::serialize(boost::json::parse(*f).at("names")), R"({"THE":["anna"]})");
  EXPECT_EQ(boost::json::serialize(boost::json::parse(*f).at("joined")), R"([{"user":"anna","role":"THE"}])");
  hub::room_presence q = class_of(2, 0);
  q.add("bert", "THE", "ios");
  t.changed("c", false);
  now += 1s;
  t.due(now);
  f = t.read_done("c", q, false, true);
  ASSERT_TRUE(f);
  const auto v = boost::json::parse(*f);
  EXPECT_EQ(boost::json::serialize(v.at("joined")), R"([{"user":"bert","role":"THE"}])");
  EXPECT_EQ(boost::json::serialize(v.at("left")), R"([{"user":"anna","role":"THE"}])");
}
