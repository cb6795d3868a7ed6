#include "protocol/filter.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

using namespace roomcast::protocol;

namespace {
std::optional<std::string> parse(std::string_view json, filter& f, filter_limits lim = {}) {
  return parse_filter(boost::json::parse(json).get_object(), lim, f);
}
}  // namespace

TEST(filter, lists_are_and_values_within_a_list_are_or) {
  filter f;
  ASSERT_FALSE(parse(R"({"roles":["THE","ASS"],"platforms":["pc"]})", f));
  EXPECT_TRUE(f.matches("THE", "pc", "u1"));
  EXPECT_TRUE(f.matches("ASS", "pc", "u2"));
  EXPECT_FALSE(f.matches("STU", "pc", "u1"));   // role outside
  EXPECT_FALSE(f.matches("THE", "ios", "u1"));  // platform outside
  filter none;
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(none.matches("STU", "ios", "x"));  // no list: everyone
}

TEST(filter, user_lists_are_sorted_for_lookup_and_deduplicated) {
  filter f;
  std::string users = R"({"users":[)";
  for (int i = 200; i > 0; --i) users += "\"u" + std::to_string(i) + "\",";
  users += R"("u7"]})";
  ASSERT_FALSE(parse(users, f));
  EXPECT_EQ(f.users.size(), 200u);
  EXPECT_TRUE(std::is_sorted(f.users.begin(), f.users.end()));
  EXPECT_TRUE(f.matches("STU", "pc", "u7"));
  EXPECT_TRUE(f.matches("STU", "pc", "u200"));
  EXPECT_FALSE(f.matches("STU", "pc", "u201"));
  EXPECT_FALSE(f.matches("STU", "pc", ""));
}

TEST(filter, bad_lists_say_why) {
  filter f;
  EXPECT_NE(parse(R"({"roles":[]})", f).value_or("").find("must not be empty"), std::string::npos);
  EXPECT_NE(parse(R"({"roles":"THE"})", f).value_or("").find("array"), std::string::npos);
  EXPECT_NE(parse(R"({"platforms":[1]})", f).value_or("").find("non-empty strings"), std::string::npos);
  EXPECT_NE(parse(R"({"users":[""]})", f).value_or("").find("non-empty strings"), std::string::npos);
  EXPECT_NE(parse(R"({"users":["a","b","c"]})", f, {.max_users = 2}).value_or("").find("at most 2"), std::string::npos);
  EXPECT_FALSE(parse(R"({"users":["a","b"]})", f, {.max_users = 2}));
}

TEST(filter, json_form_round_trips) {
  filter f;
  ASSERT_FALSE(parse(R"({"roles":["THE"],"users":["x\"y","a"]})", f));
  const auto j = filter_json(f);
  EXPECT_EQ(j, R"({"roles":["THE"],"users":["a","x\"y"]})");
  filter back;
  ASSERT_TRUE(parse_filter_json(j, back));
  EXPECT_EQ(back, f);
  EXPECT_EQ(filter_json(filter{}), "");
  ASSERT_TRUE(parse_filter_json("", back));
  EXPECT_TRUE(back.empty());
  EXPECT_FALSE(parse_filter_json("{oops", back));
  EXPECT_FALSE(parse_filter_json(R"({"roles":[]})", back));
}
