// api/views: the registry's typed answers as the JSON of docs/api.md.
#include "api/views.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

using namespace roomcast;
namespace json = boost::json;

TEST(api_views, user_lists_each_session_with_its_node) {
  std::vector<registry::located_session> s{
      {{"s1", "u\"1", "STU", "pc", {"345", "346"}}, "node-a"},
      {{"s2", "u\"1", "STU", "mobile", {}}, "node-b"},
  };
  const auto v = json::parse(api::user_json("u\"1", s)).as_object();
  EXPECT_EQ(v.at("user").as_string(), "u\"1");
  EXPECT_TRUE(v.at("online").as_bool());
  const auto& a = v.at("sessions").as_array();
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].at("node").as_string(), "node-a");
  EXPECT_EQ(json::serialize(a[0].at("rooms")), R"(["345","346"])");
  EXPECT_EQ(a[1].at("platform").as_string(), "mobile");
  EXPECT_FALSE(json::parse(api::user_json("nobody", {})).at("online").as_bool());
}

TEST(api_views, room_counts_roles_and_users) {
  registry::room_members m;
  m.add("a", "STU", "pc");
  m.add("a", "STU", "ios");  // one user on two devices counts once
  m.add("b", "THE", "pc");
  const auto v = json::parse(api::room_json("345", m));
  EXPECT_EQ(json::serialize(v),
            R"({"room":"345","online":3,"sessions":3,"unique_users":2,"by_role":{"STU":2,"THE":1},)"
            R"("by_platform":{"ios":1,"pc":2},"members":[{"user":"a","sessions":2,"roles":["STU"],)"
            R"("platforms":["ios","pc"]},{"user":"b","sessions":1,"roles":["THE"],"platforms":["pc"]}],)"
            R"("users":["a","b"]})");
}

TEST(api_views, room_members_come_in_pages_by_user_id) {
  registry::room_members m;
  for (int i = 0; i < 10'000; ++i) m.add("u" + std::to_string(100'000 + i), i % 50 ? "STU" : "THE", "pc");
  std::string cursor;
  std::size_t seen = 0, pages = 0;
  for (;;) {
    const auto v = json::parse(api::room_json("big", m, cursor, 1000)).as_object();
    EXPECT_EQ(v.at("unique_users").as_int64(), 10'000);
    EXPECT_EQ(v.at("by_role").at("THE").as_int64(), 200);
    const auto& page = v.at("members").as_array();
    if (!page.empty()) {
      EXPECT_GT(std::string(page.front().at("user").as_string()), cursor);
    }
    seen += page.size();
    ++pages;
    if (!v.contains("next_cursor")) break;
    cursor = std::string(v.at("next_cursor").as_string());
    ASSERT_LT(pages, 20u);
  }
  EXPECT_EQ(seen, 10'000u);
  EXPECT_EQ(pages, 10u);
}

TEST(api_views, nodes_splice_each_summary_after_the_name) {
  const auto v =
      json::parse(api::nodes_json({{"n1", R"({"connections":4,"ready":true})"}, {"n2", "garbage"}, {"n3", "{}"}}));
  const auto& a = v.at("nodes").as_array();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(json::serialize(a[0]), R"({"node":"n1","connections":4,"ready":true})");
  EXPECT_EQ(json::serialize(a[1]), R"({"node":"n2"})");  // a value it can't read is left out
  EXPECT_EQ(json::serialize(a[2]), R"({"node":"n3"})");
}

TEST(api_views, room_pages_say_where_the_next_starts) {
  registry::room_page p;
  p.total = 5;
  p.rooms = {{"big", 9, {{"STU", 8}, {"THE", 1}}}, {"mid", 4, {{"STU", 4}}}};
  auto v = json::parse(api::rooms_json(p, 2)).as_object();
  EXPECT_EQ(v.at("next_cursor").as_string(), "4");
  EXPECT_EQ(v.at("total").as_int64(), 5);
  EXPECT_EQ(v.at("rooms").as_array()[0].at("by_role").at("THE").as_int64(), 1);
  p.rooms.pop_back();  // the last page: offset 4 + 1 room = 5 = total
  EXPECT_TRUE(json::parse(api::rooms_json(p, 4)).at("next_cursor").is_null());
  EXPECT_TRUE(json::parse(api::rooms_json({}, 0)).at("next_cursor").is_null());
}
