#include "protocol/route_template.hpp"

#include <gtest/gtest.h>

using namespace roomcast::protocol;

namespace {
route_template seed() {
  std::string err;
  auto t = route_template::parse("/demo/websocket/{room}/{role}/{user}/{token}/{platform}", err);
  EXPECT_TRUE(t) << err;
  return *t;
}
}  // namespace

TEST(route_template, parses_the_seed_url) {
  route_params p;
  auto segs = split_path("/demo/websocket/345/THE/452784/20201210162113114000eaf319eaeef4/pc");
  ASSERT_TRUE(segs);
  ASSERT_EQ(seed().match(*segs, p), route_template::match_result::ok);
  EXPECT_EQ(p.room, "345");
  EXPECT_EQ(p.role, "THE");
  EXPECT_EQ(p.user, "452784");
  EXPECT_EQ(p.token, "20201210162113114000eaf319eaeef4");
  EXPECT_EQ(p.platform, "pc");
}

TEST(route_template, query_string_and_percent_encoding) {
  route_params p;
  auto segs = split_path("/demo/websocket/r%20one/STU/u%2F1/t/pc?since=5&epoch=ab");
  ASSERT_TRUE(segs);
  ASSERT_EQ(seed().match(*segs, p), route_template::match_result::ok);
  EXPECT_EQ(p.room, "r one");
  EXPECT_EQ(p.user, "u/1");
  EXPECT_EQ(query_param("/x?since=5&epoch=ab", "epoch").value_or(""), "ab");
  EXPECT_FALSE(query_param("/x?since=5", "epoch"));
}

TEST(route_template, mismatches_and_empty_params) {
  route_params p;
  auto t = seed();
  EXPECT_EQ(t.match(*split_path("/demo/websocket/345/THE/452784/tok"), p), route_template::match_result::no_match);
  EXPECT_EQ(t.match(*split_path("/other/websocket/345/THE/452784/tok/pc"), p), route_template::match_result::no_match);
  EXPECT_EQ(t.match(*split_path("/demo/websocket/345/STU//tok/pc"), p), route_template::match_result::empty_param);
  EXPECT_EQ(t.match(*split_path("/demo/websocket//STU/u/tok/pc"), p), route_template::match_result::empty_param);
}

TEST(route_template, custom_template) {
  std::string err;
  auto t = route_template::parse("/ws/{user}/{room}", err);
  ASSERT_TRUE(t) << err;
  route_params p;
  ASSERT_EQ(t->match(*split_path("/ws/u1/r1"), p), route_template::match_result::ok);
  EXPECT_EQ(p.user, "u1");
  EXPECT_EQ(p.room, "r1");
  EXPECT_TRUE(p.token.empty());
}

TEST(route_template, rejects_bad_templates) {
  std::string err;
  EXPECT_FALSE(route_template::parse("demo/{room}/{user}", err));
  EXPECT_FALSE(route_template::parse("/x/{nope}/{room}/{user}", err));
  EXPECT_NE(err.find("nope"), std::string::npos);
  EXPECT_FALSE(route_template::parse("/x/{room}", err));                // no user
  EXPECT_FALSE(route_template::parse("/x/{room}/{room}/{user}", err));  // twice
  EXPECT_FALSE(route_template::parse("/x/a{room}/{user}", err));        // partial segment
  EXPECT_FALSE(route_template::parse("/x//{room}/{user}", err));        // empty segment
}
