// hub/client_commands: what a client frame asks for, and every refusal, without a socket.
#include "hub/client_commands.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <set>

using namespace roomcast::hub;
using kind = client_command::kind;

namespace {

struct fixture {
  client_rights rights;
  std::set<std::string, std::less<>> rooms{"345"};
  token_bucket bucket;
  token_bucket::clock::time_point now{std::chrono::seconds(1000)};
  std::string role = "THE";

  client_command run(std::string_view text) {
    client_session s{role, "345", [this](std::string_view r) { return rooms.count(r) > 0; }, &bucket, now};
    return decide_client_command(text, rights, s);
  }
};

boost::json::object error_of(const client_command& c) {
  EXPECT_EQ(c.what, kind::error);
  return boost::json::parse(c.text).as_object();
}

}  // namespace

TEST(client_commands, publish_defaults_to_the_url_room_and_keeps_data_byte_for_byte) {
  fixture f;
  auto c = f.run(R"({"type":"publish","data": {"a" : 1},"id":"m1"})");
  ASSERT_EQ(c.what, kind::publish);
  EXPECT_EQ(c.room, "345");
  EXPECT_EQ(c.id, "m1");
  EXPECT_EQ(c.data, R"({"a" : 1})");
  auto chat = f.run("hello");  // the seed's plain text
  ASSERT_EQ(chat.what, kind::publish);
  EXPECT_EQ(chat.data, R"({"text":"hello"})");
  EXPECT_TRUE(chat.id.empty());
}

TEST(client_commands, a_role_outside_publish_roles_is_refused_with_the_frame_named) {
  fixture f;
  f.role = "STU";
  auto e = error_of(f.run(R"({"type":"publish","data":1,"id":"p-9"})"));
  EXPECT_EQ(e.at("code").as_string(), "forbidden");
  EXPECT_EQ(e.at("id").as_string(), "p-9");
  EXPECT_EQ(e.at("room").as_string(), "345");
}

TEST(client_commands, publish_and_leave_need_the_room) {
  fixture f;
  auto e = error_of(f.run(R"({"type":"publish","room":"999","data":1})"));
  EXPECT_EQ(e.at("code").as_string(), "not_in_room");
  EXPECT_EQ(e.at("room").as_string(), "999");
  e = error_of(f.run(R"({"type":"leave","room":"999"})"));
  EXPECT_EQ(e.at("code").as_string(), "not_in_room");
  auto c = f.run(R"({"type":"leave","room":"345"})");
  EXPECT_EQ(c.what, kind::leave);
  EXPECT_EQ(c.room, "345");
}

TEST(client_commands, publish_rate_is_charged_only_for_publishes_that_pass) {
  fixture f;
  f.rights.publish_rate = 1;
  f.rights.publish_burst = 2;
  f.role = "STU";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.run(R"({"type":"publish","data":1})").what, kind::error);  // forbidden
  f.role = "THE";
  EXPECT_EQ(f.run(R"({"type":"publish","data":1})").what, kind::publish);
  EXPECT_EQ(f.run(R"({"type":"publish","data":1})").what, kind::publish);
  auto e = error_of(f.run(R"({"type":"publish","data":1,"id":"x"})"));
  EXPECT_EQ(e.at("code").as_string(), "rate_limited");
  f.now += std::chrono::seconds(1);  // one token back
  EXPECT_EQ(f.run(R"({"type":"publish","data":1})").what, kind::publish);
}

TEST(client_commands, join_carries_recovery_and_obeys_client_join) {
  fixture f;
  auto c = f.run(R"({"type":"join","room":"346","since":41,"epoch":"e1"})");
  ASSERT_EQ(c.what, kind::join);
  EXPECT_EQ(c.room, "346");
  EXPECT_TRUE(c.recover);
  EXPECT_EQ(c.since, 41u);
  EXPECT_EQ(c.epoch, "e1");
  EXPECT_FALSE(f.run(R"({"type":"join","room":"347"})").recover);
  f.rights.client_join = false;
  auto e = error_of(f.run(R"({"type":"join","room":"346"})"));
  EXPECT_EQ(e.at("code").as_string(), "forbidden");
  EXPECT_EQ(e.at("room").as_string(), "346");
}

TEST(client_commands, ping_kill_and_bad_frames) {
  fixture f;
  EXPECT_EQ(f.run(R"({"type":"ping"})").what, kind::pong);
  EXPECT_EQ(error_of(f.run(R"({"type":"kill"})")).at("code").as_string(), "forbidden");
  f.rights.dev_kill = true;
  EXPECT_EQ(f.run(R"({"type":"kill"})").what, kind::kill);
  EXPECT_EQ(error_of(f.run("{oops")).at("code").as_string(), "bad_json");
  EXPECT_EQ(error_of(f.run(R"({"type":"dance"})")).at("code").as_string(), "unknown_type");
}

TEST(client_commands, joins_are_rate_limited_per_session_like_publishes) {
  fixture f;
  f.rights.join_rate = 2;
  f.rights.join_burst = 3;
  token_bucket joins;
  auto run = [&](std::string_view text) {
    client_session s{f.role,    "345", [&f](std::string_view r) { return f.rooms.count(r) > 0; },
                     &f.bucket, f.now, &joins};
    return decide_client_command(text, f.rights, s);
  };
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(R"({"type":"join","room":"r"})").what, kind::join) << i;
  auto refused = run(R"({"type":"join","room":"r9"})");
  EXPECT_EQ(refused.refused, client_command::limit::join_rate);
  auto e = error_of(refused);
  EXPECT_EQ(e.at("code").as_string(), "rate_limited");
  EXPECT_EQ(e.at("room").as_string(), "r9");  // names the join it refuses
  // Other frames are not charged, and the bucket refills at join_rate.
  EXPECT_EQ(run(R"({"type":"publish","data":1})").what, kind::publish);
  f.now += std::chrono::milliseconds(500);
  EXPECT_EQ(run(R"({"type":"join","room":"r"})").what, kind::join);
  EXPECT_EQ(run(R"({"type":"join","room":"r"})").what, kind::error);
}

TEST(client_commands, json_limits_refuse_a_frame_and_say_which_for_the_counter) {
  fixture f;
  f.rights.json_limits = {.max_depth = 3, .max_members = 2};
  auto deep = f.run(R"({"type":"publish","data":[[[1]]],"id":"d1"})");
  EXPECT_EQ(deep.refused, client_command::limit::json_depth);
  EXPECT_EQ(error_of(deep).at("code").as_string(), "bad_json");
  auto wide = f.run(R"({"type":"ping","a":1,"b":2})");
  EXPECT_EQ(wide.refused, client_command::limit::json_members);
  auto bad = f.run("{nope");
  EXPECT_EQ(bad.refused, client_command::limit::none);
  EXPECT_EQ(f.run(R"({"type":"ping"})").what, kind::pong);
}
