#include "protocol/codec.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

using namespace roomcast::protocol;

TEST(codec, plain_text_is_a_chat_message) {
  client_frame f;
  decode_error e;
  ASSERT_TRUE(decode_client_frame("hello \"class\"\n", f, e));
  EXPECT_EQ(f.type, client_frame::kind::chat);
  EXPECT_EQ(f.data, R"({"text":"hello \"class\"\n"})");
  EXPECT_TRUE(boost::json::parse(f.data).is_object());
}

TEST(codec, protocol_frames) {
  client_frame f;
  decode_error e;
  ASSERT_TRUE(decode_client_frame(R"({"type":"join","room":"7"})", f, e));
  EXPECT_EQ(f.type, client_frame::kind::join);
  EXPECT_EQ(f.room, "7");
  ASSERT_TRUE(decode_client_frame(R"( {"type":"ping"})", f, e));
  EXPECT_EQ(f.type, client_frame::kind::ping);
  ASSERT_TRUE(decode_client_frame(R"({"type":"publish","room":"7","id":"m1","data": { "x" : [1, 2] } })", f, e));
  EXPECT_EQ(f.type, client_frame::kind::publish);
  EXPECT_EQ(f.id, "m1");
  EXPECT_EQ(f.data, R"({ "x" : [1, 2] })");  // byte for byte
}

TEST(codec, bad_frames_name_their_error) {
  client_frame f;
  decode_error e;
  EXPECT_FALSE(decode_client_frame("{not json", f, e));
  EXPECT_EQ(e.code, error_code::bad_json);
  EXPECT_FALSE(decode_client_frame(R"({"type":"dance"})", f, e));
  EXPECT_EQ(e.code, error_code::unknown_type);
  EXPECT_FALSE(decode_client_frame(R"({"room":"1"})", f, e));
  EXPECT_EQ(e.code, error_code::unknown_type);
  EXPECT_FALSE(decode_client_frame(R"({"type":"join"})", f, e));
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_FALSE(decode_client_frame(R"({"type":"publish","room":"1"})", f, e));
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_FALSE(decode_client_frame(R"({"type":"join","room":5})", f, e));
  EXPECT_EQ(e.code, error_code::bad_request);
}

TEST(codec, find_raw_member_skips_nested_and_strings) {
  const std::string_view doc = R"({"a":{"data":1},"s":"}\"data\":","data" : [ {"k":"v"} ] ,"z":null})";
  auto raw = find_raw_member(doc, "data");
  ASSERT_TRUE(raw);
  EXPECT_EQ(*raw, R"([ {"k":"v"} ])");
  EXPECT_EQ(find_raw_member(R"({"data":-1.5e3})", "data").value_or(""), "-1.5e3");
  EXPECT_EQ(find_raw_member(R"({"d\u0061ta":true})", "data").value_or(""), "true");
  EXPECT_FALSE(find_raw_member(R"({"x":1})", "data"));
}

TEST(codec, split_raw_array_keeps_each_element_byte_for_byte) {
  auto parts = split_raw_array(R"( [ {"a":"],}"} ,[1, [2]],"x\"]",  -1.5e3 ,null] )");
  ASSERT_TRUE(parts);
  ASSERT_EQ(parts->size(), 5u);
  EXPECT_EQ((*parts)[0], R"({"a":"],}"})");
  EXPECT_EQ((*parts)[1], "[1, [2]]");
  EXPECT_EQ((*parts)[2], R"("x\"]")");
  EXPECT_EQ((*parts)[3], "-1.5e3");
  EXPECT_EQ((*parts)[4], "null");
  EXPECT_EQ(split_raw_array("[]").value().size(), 0u);
  EXPECT_FALSE(split_raw_array(R"({"a":1})"));
}

TEST(codec, server_frames_are_valid_json) {
  std::string m;
  append_message(m, {target_kind::room, "345", "id-1", "u\"1", R"({"x":1})"});
  auto v = boost::json::parse(m);
  EXPECT_EQ(v.at("type").as_string(), "message");
  EXPECT_EQ(v.at("room").as_string(), "345");
  EXPECT_EQ(v.at("from").as_string(), "u\"1");
  m.clear();
  append_message(m, {target_kind::all, "", "id-2", "api", "1"});
  EXPECT_TRUE(boost::json::parse(m).at("all").as_bool());
  EXPECT_EQ(boost::json::parse(encode_kicked(4000, "bye")).at("code").as_int64(), 4000);
  EXPECT_EQ(boost::json::parse(encode_error("x", "\x01")).at("message").as_string(), "\x01");
  std::vector<room_position> rooms{{"a", 0, ""}, {"b", 4, "e1"}};
  auto w = boost::json::parse(encode_welcome({"n", "s", "u", &rooms}));
  EXPECT_EQ(w.at("rooms").as_array().size(), 2u);
  EXPECT_FALSE(w.at("rooms").at(0).as_object().contains("seq"));  // no history: no position
  EXPECT_EQ(w.at("rooms").at(1).at("seq").as_int64(), 4);
  auto gap = boost::json::parse(encode_gap("r", "epoch", 9, "e2"));
  EXPECT_EQ(gap.at("type").as_string(), "gap");
  EXPECT_EQ(gap.at("seq").as_int64(), 9);
  auto rec = boost::json::parse(encode_recovered("r", 3, 7));
  EXPECT_EQ(rec.at("from").as_int64(), 3);
  std::string m2;
  append_message(m2, {target_kind::room, "r", "i", "f", "1", 42});
  EXPECT_EQ(boost::json::parse(m2).at("seq").as_int64(), 42);
}

TEST(codec, errors_name_the_frame_they_answer) {
  // A client matches an error to its publish by id and to its join/leave by room.
  const auto v = boost::json::parse(encode_error("forbidden", "no", "m-1", "345")).as_object();
  EXPECT_EQ(v.at("type").as_string(), "error");
  EXPECT_EQ(v.at("id").as_string(), "m-1");
  EXPECT_EQ(v.at("room").as_string(), "345");
  const auto bare = boost::json::parse(encode_error("bad_json", "x")).as_object();
  EXPECT_FALSE(bare.contains("id"));
  EXPECT_FALSE(bare.contains("room"));

  // A bad join field still tells which room it was about; a bad publish its id.
  client_frame f;
  decode_error e;
  EXPECT_FALSE(decode_client_frame(R"({"type":"join","room":"347","since":-1})", f, e));
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_EQ(f.room, "347");
  EXPECT_FALSE(decode_client_frame(R"({"type":"publish","room":"9","id":"p-7"})", f, e));
  EXPECT_EQ(f.id, "p-7");
  EXPECT_EQ(f.room, "9");
}

TEST(codec, welcome_says_dev_kill_only_when_on) {
  const std::vector<room_position> rooms{{"345", 3, "e1"}};
  welcome_info w{"n1", "s1", "u1", &rooms};
  EXPECT_FALSE(boost::json::parse(encode_welcome(w)).as_object().contains("dev_kill"));
  w.dev_kill = true;
  const auto v = boost::json::parse(encode_welcome(w)).as_object();
  EXPECT_TRUE(v.at("dev_kill").as_bool());
  EXPECT_EQ(v.at("rooms").as_array().at(0).as_object().at("seq").as_int64(), 3);

  client_frame f;
  decode_error e;
  ASSERT_TRUE(decode_client_frame(R"({"type":"kill"})", f, e));
  EXPECT_EQ(f.type, client_frame::kind::kill);
}

TEST(codec, a_client_publish_carries_its_filter) {
  client_frame f;
  decode_error e;
  ASSERT_TRUE(
      decode_client_frame(R"({"type":"publish","room":"7","data":1,"roles":["THE"],"platforms":["pc"]})", f, e));
  EXPECT_EQ(f.audience.roles, std::vector<std::string>{"THE"});
  EXPECT_EQ(f.audience.platforms, std::vector<std::string>{"pc"});
  ASSERT_TRUE(decode_client_frame(R"({"type":"publish","room":"7","data":1})", f, e));
  EXPECT_TRUE(f.audience.empty()) << "a frame's filter must not leak into the next";
  EXPECT_FALSE(decode_client_frame(R"({"type":"publish","room":"7","data":1,"roles":[]})", f, e));
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_FALSE(decode_client_frame(R"({"type":"publish","room":"7","data":1,"role":["THE"]})", f, e));
  EXPECT_NE(e.message.find("unknown field \"role\""), std::string::npos) << e.message;
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_FALSE(
      decode_client_frame(R"({"type":"publish","room":"7","data":1,"users":["a","b"]})", f, e, {.max_users = 1}));
  EXPECT_NE(e.message.find("at most 1"), std::string::npos) << e.message;
}

TEST(codec, auth_and_refresh_frames_carry_a_token) {
  client_frame f;
  decode_error e;
  ASSERT_TRUE(decode_client_frame(R"({"type":"auth","token":"a.b.c"})", f, e));
  EXPECT_EQ(f.type, client_frame::kind::auth);
  EXPECT_EQ(f.token, "a.b.c");
  ASSERT_TRUE(decode_client_frame(R"({"type":"refresh","token":"d.e.f"})", f, e));
  EXPECT_EQ(f.type, client_frame::kind::refresh);
  EXPECT_EQ(f.token, "d.e.f");
  EXPECT_FALSE(decode_client_frame(R"({"type":"auth"})", f, e));
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_FALSE(decode_client_frame(R"({"type":"refresh","token":""})", f, e));
  EXPECT_FALSE(decode_client_frame(R"({"type":"auth","token":7})", f, e));
  EXPECT_EQ(encode_refreshed(1796311296), R"({"type":"refreshed","exp":1796311296})");
}

namespace {
std::string nested(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "[";
  for (int i = 0; i < depth; ++i) s += "]";
  return s;
}
std::string array_of(int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) {
    if (i) s += ",";
    s += "\"u" + std::to_string(i) + "\"";
  }
  return s + "]";
}
}  // namespace

TEST(json_limits, depth_and_members_are_refused_with_the_limit_named) {
  const json_limits lim{.max_depth = 8, .max_members = 5};
  boost::json::value v;
  std::string why;
  EXPECT_EQ(parse_json(nested(8), lim, v, why), json_refusal::none) << why;
  EXPECT_EQ(parse_json(nested(9), lim, v, why), json_refusal::depth);
  EXPECT_NE(why.find("json_max_depth"), std::string::npos) << why;
  EXPECT_EQ(parse_json(array_of(5), lim, v, why), json_refusal::none) << why;
  EXPECT_EQ(parse_json(array_of(6), lim, v, why), json_refusal::members);
  EXPECT_NE(why.find("json_max_members"), std::string::npos) << why;
  // Per object or array, at any depth; keys count as members.
  EXPECT_EQ(parse_json(R"({"a":{"b":[1,2,3,4,5,6]}})", lim, v, why), json_refusal::members);
  EXPECT_EQ(parse_json(R"({"a":1,"b":2,"c":3,"d":4,"e":5,"f":6})", lim, v, why), json_refusal::members);
  EXPECT_EQ(parse_json(R"([[1,2,3,4,5],[1,2,3,4,5]])", lim, v, why), json_refusal::none) << why;
  EXPECT_EQ(parse_json("{oops", lim, v, why), json_refusal::invalid);
}

TEST(json_limits, client_frames_are_refused_as_bad_json_and_say_which_limit) {
  client_frame f;
  decode_error e;
  const json_limits lim{.max_depth = 4, .max_members = 3};
  EXPECT_FALSE(decode_client_frame(R"({"type":"publish","data":[[[[1]]]]})", f, e, {}, lim));
  EXPECT_EQ(e.code, error_code::bad_json);
  EXPECT_EQ(e.limit, json_refusal::depth);
  EXPECT_FALSE(decode_client_frame(R"({"type":"publish","data":[1,2,3,4]})", f, e, {}, lim));
  EXPECT_EQ(e.limit, json_refusal::members);
  EXPECT_FALSE(decode_client_frame("{not json", f, e, {}, lim));
  EXPECT_EQ(e.limit, json_refusal::none);
  EXPECT_TRUE(decode_client_frame(R"({"type":"publish","data":[[[1]]]})", f, e, {}, lim)) << e.message;
}

TEST(json_limits, the_defaults_take_a_full_users_filter_and_deep_backend_data) {
  client_frame f;
  decode_error e;
  // filter_max_users (1000) user ids in one publish, data nested 30 levels inside the frame.
  const std::string frame = R"({"type":"publish","users":)" + array_of(1000) + R"(,"data":)" + nested(30) + "}";
  EXPECT_TRUE(decode_client_frame(frame, f, e)) << e.message;
  EXPECT_EQ(f.audience.users.size(), 1000u);
  EXPECT_FALSE(decode_client_frame(R"({"type":"publish","data":)" + nested(32) + "}", f, e));
  EXPECT_EQ(e.limit, json_refusal::depth);
}
