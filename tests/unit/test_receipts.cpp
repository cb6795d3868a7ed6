#include "receipts/local_store.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace roomcast::receipts;
using namespace std::chrono_literals;

namespace {
create_result create(local_store& s, const std::string& id, const std::string& room, std::vector<std::string> users,
                     const std::string& audience = "") {
  create_result out{};
  s.create(id, room, audience, users, [&](std::error_code ec, create_result r) {
    EXPECT_FALSE(ec);
    out = r;
  });
  return out;
}
std::vector<pending_message> pending(local_store& s, const std::string& user, const std::string& room) {
  std::vector<pending_message> out;
  s.pending(user, room, [&](std::error_code, std::vector<pending_message> p) { out = std::move(p); });
  return out;
}
std::optional<status> describe(local_store& s, const std::string& id, const std::string& after = "",
                               std::size_t limit = 100) {
  std::optional<status> out;
  s.describe(id, after, limit, [&](std::error_code, std::optional<status> st) { out = std::move(st); });
  return out;
}
}  // namespace

TEST(receipts_local, confirms_count_once_and_pending_follows_them) {
  local_store s({10min, 10, 100});
  ASSERT_EQ(create(s, "q1", "r", {"a", "b", "c"}, R"({"roles":["STU"]})"), create_result::created);
  EXPECT_EQ(create(s, "q1", "r", {"x"}), create_result::exists);
  EXPECT_TRUE(pending(s, "a", "r").empty()) << "not published yet: nothing to send again";
  s.published("q1", R"({"type":"message"})", 7, "e1");
  auto p = pending(s, "a", "r");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].seq, 7u);
  EXPECT_EQ(p[0].audience, R"({"roles":["STU"]})");
  EXPECT_TRUE(pending(s, "a", "other").empty());
  s.confirm("q1", "a");
  s.confirm("q1", "a");    // twice: counted once
  s.confirm("q1", "zed");  // not expected: ignored
  EXPECT_TRUE(pending(s, "a", "r").empty());
  auto st = describe(s, "q1");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->expected, 3u);
  EXPECT_EQ(st->received, 1u);
  EXPECT_EQ(st->missing, (std::vector<std::string>{"b", "c"}));
  st = describe(s, "q1", "b", 1);
  EXPECT_EQ(st->missing, (std::vector<std::string>{"c"}));
  EXPECT_FALSE(st->more);
  EXPECT_TRUE(describe(s, "q1", "", 1)->more);
  EXPECT_FALSE(describe(s, "nope"));
}

TEST(receipts_local, bounded_dropped_and_expired) {
  local_store s({50ms, 2, 100});
  EXPECT_EQ(create(s, "m1", "r", {"a"}), create_result::created);
  EXPECT_EQ(create(s, "m2", "r", {"a"}), create_result::created);
  EXPECT_EQ(create(s, "m3", "r", {"a"}), create_result::full);
  s.drop("m2");
  EXPECT_FALSE(describe(s, "m2"));
  EXPECT_EQ(create(s, "m3", "r", {"a"}), create_result::created);
  s.published("m1", "f1", 1, "e");
  s.published("m3", "f3", 2, "e");
  auto p = pending(s, "a", "r");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].id, "m1");  // oldest first
  std::this_thread::sleep_for(60ms);
  EXPECT_TRUE(pending(s, "a", "r").empty());
  EXPECT_FALSE(describe(s, "m1"));
  EXPECT_EQ(create(s, "m4", "r", {"a"}), create_result::created) << "expired receipts free their room";
}
