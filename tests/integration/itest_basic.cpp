// Happy paths: welcome, fan-out to rooms / users / everyone, raw data passthrough,
// plain-text chat, ping, join/leave, API queries.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <algorithm>

#include "support/itest.hpp"

namespace roomcast::itest {
namespace {

namespace json = boost::json;

class basic_test : public ::testing::Test {
 protected:
  void SetUp() override { node_ = start_node(); }

  std::uint16_t port() const { return node_->port(); }
  member join(const std::string& room, const std::string& role, const std::string& user,
              const std::string& platform = "pc") {
    return itest::join(port(), room, role, user, platform);
  }
  std::string publish(const std::string& body) { return api_publish(port(), body); }

  // The next frame must be a `message`; returns it (or an empty object after a failed expectation).
  static json::value next_message(member& m) {
    auto frame = m->read_json();
    EXPECT_TRUE(frame.has_value()) << "no frame (stream: " << m->read_error() << ")";
    if (!frame) return json::object();
    EXPECT_EQ(json_string(*frame, "type"), "message") << json::serialize(*frame);
    return *frame;
  }

  // Publishes a marker (here: to `room`). A publish answered 200 before the next one is sent
  // reaches a common recipient first, so a marker proves nothing else was queued before it.
  std::string publish_marker(const std::string& target_json) {
    return publish("{" + target_json + R"(,"data":{"marker":true}})");
  }
  static void expect_marker_next(member& m, const std::string& marker) {
    auto frame = next_message(m);
    EXPECT_EQ(json_string(frame, "id"), marker) << "unexpected frame before marker: " << json::serialize(frame);
    EXPECT_TRUE(json_bool(frame, "data.marker")) << json::serialize(frame);
  }

  std::unique_ptr<node_process> node_;
};

TEST_F(basic_test, welcome_describes_the_session) {
  auto m = join("345", "STU", "452784");
  EXPECT_EQ(json_string(m.welcome, "user"), "452784");
  EXPECT_FALSE(json_string(m.welcome, "node").empty());
  EXPECT_FALSE(m.session().empty());
  // The URL's room with its history position: seq 0 and a fresh epoch before any message.
  const auto& rooms = m.welcome.at("rooms").as_array();
  ASSERT_EQ(rooms.size(), 1u) << json::serialize(m.welcome);
  EXPECT_EQ(json_string(rooms.at(0), "room"), "345");
  EXPECT_EQ(json_int(rooms.at(0), "seq"), 0) << json::serialize(m.welcome);
  EXPECT_EQ(json_string(rooms.at(0), "epoch").size(), 16u) << json::serialize(m.welcome);

  auto other = join("345", "STU", "452785");
  EXPECT_NE(other.session(), m.session()) << "session ids must be unique";
}

TEST_F(basic_test, room_publish_reaches_each_member_once_and_no_other_room) {
  std::vector<member> in_345;
  for (auto user : {"a1", "a2", "a3"}) in_345.push_back(join("345", "STU", user));
  in_345.push_back(join("345", "THE", "t1"));
  std::vector<member> in_346;
  for (auto user : {"b1", "b2"}) in_346.push_back(join("346", "STU", user));

  auto id = publish(R"({"room":"345","data":{"n":1}})");
  EXPECT_FALSE(id.empty());
  auto marker_345 = publish_marker(R"("room":"345")");
  auto marker_346 = publish_marker(R"("room":"346")");
  for (auto& m : in_345) {
    auto frame = next_message(m);
    EXPECT_EQ(json_string(frame, "room"), "345");
    EXPECT_EQ(json_string(frame, "id"), id);
    EXPECT_EQ(json_int(frame, "data.n"), 1);
    EXPECT_EQ(json_find(frame, "user"), nullptr);
    EXPECT_EQ(json_find(frame, "all"), nullptr);
    expect_marker_next(m, marker_345);  // exactly once
  }
  for (auto& m : in_346) expect_marker_next(m, marker_346);
}

TEST_F(basic_test, user_publish_reaches_every_device_of_that_user_only) {
  auto pc = join("345", "STU", "452784", "pc");
  auto mobile = join("346", "STU", "452784", "mobile");
  auto other = join("345", "STU", "452785", "pc");

  auto id = publish(R"({"user":"452784","data":{"hello":"you"}})");
  auto marker = publish_marker(R"("all":true)");
  for (auto* m : {&pc, &mobile}) {
    auto frame = next_message(*m);
    EXPECT_EQ(json_string(frame, "user"), "452784") << json::serialize(frame);
    EXPECT_EQ(json_find(frame, "room"), nullptr) << json::serialize(frame);
    EXPECT_EQ(json_string(frame, "id"), id);
    EXPECT_EQ(json_string(frame, "data.hello"), "you");
    expect_marker_next(*m, marker);  // once per device
  }
  expect_marker_next(other, marker);
}

TEST_F(basic_test, publish_all_reaches_everybody) {
  std::vector<member> members;
  members.push_back(join("345", "STU", "u1"));
  members.push_back(join("346", "STU", "u2"));
  members.push_back(join("347", "THE", "u3", "mobile"));
  members.push_back(join("347", "STU", "u3", "pc"));

  auto id = publish(R"({"all":true,"data":[1,2,3]})");
  for (auto& m : members) {
    auto frame = next_message(m);
    EXPECT_TRUE(json_bool(frame, "all")) << json::serialize(frame);
    EXPECT_EQ(json_string(frame, "id"), id);
    EXPECT_EQ(json::serialize(frame.at("data")), "[1,2,3]");
  }
}

TEST_F(basic_test, data_is_passed_byte_for_byte) {
  auto m = join("345", "STU", "u1");
  const std::string raw_data = R"({"b":1,  "a":[1,2 ,3]})";
  auto id = publish(R"({"room":"345",  "data": )" + raw_data + R"( , "id":"raw-1"})");
  EXPECT_EQ(id, "raw-1") << "the caller's id must be kept";

  auto text = m->read_text();
  ASSERT_TRUE(text.has_value());
  EXPECT_NE(text->find(raw_data), std::string::npos) << "frame: " << *text;
  auto frame = parse_json(*text);
  EXPECT_EQ(json_string(frame, "id"), "raw-1");
  EXPECT_EQ(frame.at("data"), parse_json(raw_data));
}

TEST_F(basic_test, batch_publish_delivers_in_array_order_with_one_answer_each) {
  auto a = join("345", "STU", "u1");
  auto b = join("346", "STU", "u2");
  const std::string raw = R"({"k": [1, 2]})";
  auto res = http_post_json(port(), "/api/publish",
                            R"([{"room":"345","data":1},{"user":"u2","data":"for u2","id":"b-2"},)"
                            R"({"room":"345","data":)" +
                                raw + R"(},{"all":true,"data":3},{"room":"345","data":4}])");
  ASSERT_EQ(res.status, 200u) << res.body;
  const auto v = res.json();
  EXPECT_TRUE(json_bool(v, "ok")) << res.body;
  EXPECT_EQ(v.at("count").as_int64(), 5);
  EXPECT_EQ(v.at("failed").as_int64(), 0);
  const auto& results = v.at("results").as_array();
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(json_string(results[1], "id"), "b-2");
  // Room messages are numbered in array order.
  EXPECT_EQ(results[2].at("seq").as_int64(), results[0].at("seq").as_int64() + 1);
  EXPECT_EQ(results[4].at("seq").as_int64(), results[2].at("seq").as_int64() + 1);

  for (int i : {0, 2, 3, 4}) {
    auto text = a->read_text();
    ASSERT_TRUE(text.has_value()) << "message " << i;
    auto f = parse_json(*text);
    EXPECT_EQ(json_string(f, "id"), json_string(results[static_cast<std::size_t>(i)], "id")) << *text;
    if (i == 2) {
      EXPECT_NE(text->find(raw), std::string::npos) << "data byte for byte: " << *text;
    }
  }
  for (int i : {1, 3}) {
    auto f = next_message(b);
    EXPECT_EQ(json_string(f, "id"), json_string(results[static_cast<std::size_t>(i)], "id"));
  }
  // A repeated id in a later batch is a duplicate with its first answer.
  auto again = http_post_json(port(), "/api/publish", R"([{"user":"u2","data":"again","id":"b-2"}])");
  ASSERT_EQ(again.status, 200u) << again.body;
  EXPECT_TRUE(json_bool(again.json().at("results").as_array()[0], "duplicate")) << again.body;
  expect_marker_next(b, publish_marker(R"("user":"u2")"));
}

TEST_F(basic_test, teacher_plain_text_reaches_the_room) {
  auto teacher = join("345", "THE", "t1");
  auto student = join("345", "STU", "s1");
  auto elsewhere = join("346", "STU", "s2");

  ASSERT_TRUE(teacher->send_text("hello class"));
  auto frame = next_message(student);
  EXPECT_EQ(json_string(frame, "room"), "345");
  EXPECT_EQ(json_string(frame, "from"), "t1");
  EXPECT_EQ(json::serialize(frame.at("data")), R"({"text":"hello class"})");
  EXPECT_FALSE(json_string(frame, "id").empty());
  // The chat is fanned out before the student could read it, so a marker sent now comes after it.
  expect_marker_next(elsewhere, publish_marker(R"("room":"346")"));
}

TEST_F(basic_test, student_plain_text_is_forbidden_but_connection_stays_open) {
  auto teacher = join("345", "THE", "t1");
  auto student = join("345", "STU", "s1");

  ASSERT_TRUE(student->send_text("can I talk?"));
  auto frame = student->read_json();
  ASSERT_TRUE(frame.has_value()) << student->read_error();
  EXPECT_EQ(json_string(*frame, "type"), "error") << json::serialize(*frame);
  EXPECT_EQ(json_string(*frame, "code"), "forbidden") << json::serialize(*frame);
  EXPECT_TRUE(student->is_open());

  // Still subscribed, and the teacher never saw the student's text.
  auto id = publish(R"({"room":"345","data":{"after":"forbidden"}})");
  auto later = next_message(student);
  EXPECT_EQ(json_string(later, "id"), id);
  auto teacher_frame = next_message(teacher);
  EXPECT_EQ(json_string(teacher_frame, "id"), id) << json::serialize(teacher_frame);
}

TEST_F(basic_test, client_publish_by_teacher_is_acked_and_delivered) {
  auto teacher = join("345", "THE", "t1");
  auto student = join("345", "STU", "s1");

  ASSERT_TRUE(teacher->send_text(R"({"type":"publish","room":"345","data":{"q":"2+2"},"id":"c-1"})"));
  auto ack = teacher->read_type("ack");
  ASSERT_TRUE(ack.has_value()) << "no ack (stream: " << teacher->read_error() << ")";
  EXPECT_EQ(json_string(*ack, "id"), "c-1");

  auto frame = next_message(student);
  EXPECT_EQ(json_string(frame, "room"), "345");
  EXPECT_EQ(json_string(frame, "from"), "t1");
  EXPECT_EQ(json_string(frame, "data.q"), "2+2");

  // A student may not publish, even with the structured form.
  ASSERT_TRUE(student->send_text(R"({"type":"publish","room":"345","data":{"q":"no"}})"));
  auto err = student->read_json();
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(json_string(*err, "code"), "forbidden") << json::serialize(*err);
}

TEST_F(basic_test, ping_gets_pong) {
  auto m = join("345", "STU", "u1");
  ASSERT_TRUE(m->send_text(R"({"type":"ping"})"));
  auto frame = m->read_json();
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(json::serialize(*frame), R"({"type":"pong"})");
}

TEST_F(basic_test, join_and_leave_change_delivery) {
  auto m = join("345", "STU", "u1");
  // A join is answered by `joined` once the room's history position is known (the session is in
  // the room from then on); a leave is answered by `left`.
  auto barrier = [&](const char* type) {
    auto f = m->read_type(type);
    ASSERT_TRUE(f.has_value()) << m->read_error();
  };

  ASSERT_TRUE(m->send_text(R"({"type":"join","room":"999"})"));
  barrier("joined");
  auto id = publish(R"({"room":"999","data":{"in":999}})");
  auto frame = next_message(m);
  EXPECT_EQ(json_string(frame, "room"), "999");
  EXPECT_EQ(json_string(frame, "id"), id);

  auto users = get_json(port(), "/api/users/u1");
  ASSERT_EQ(users.at("sessions").as_array().size(), 1u) << json::serialize(users);
  auto rooms = json::serialize(users.at("sessions").at(0).at("rooms"));
  EXPECT_NE(rooms.find("999"), std::string::npos) << rooms;

  ASSERT_TRUE(m->send_text(R"({"type":"leave","room":"999"})"));
  barrier("left");
  publish(R"({"room":"999","data":{"in":999}})");
  expect_marker_next(m, publish_marker(R"("room":"345")"));

  // Leaving the URL room works too; then room messages stop.
  ASSERT_TRUE(m->send_text(R"({"type":"leave","room":"345"})"));
  barrier("left");
  publish(R"({"room":"345","data":{"gone":true}})");
  expect_marker_next(m, publish_marker(R"("user":"u1")"));
}

TEST_F(basic_test, leave_unknown_room_and_too_many_rooms) {
  auto m = join("345", "STU", "u1");
  ASSERT_TRUE(m->send_text(R"({"type":"leave","room":"never-joined"})"));
  auto err = m->read_type("error");
  ASSERT_TRUE(err.has_value()) << m->read_error();
  EXPECT_EQ(json_string(*err, "code"), "not_in_room") << json::serialize(*err);

  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(m->send_text(R"({"type":"join","room":"many)" + std::to_string(i) + R"("})"));
  }
  auto too_many = m->read_type("error");
  ASSERT_TRUE(too_many.has_value()) << "40 joins never hit the per-session room limit";
  EXPECT_EQ(json_string(*too_many, "code"), "too_many_rooms") << json::serialize(*too_many);
  ASSERT_TRUE(m->send_text(R"({"type":"ping"})"));
  EXPECT_TRUE(m->read_type("pong").has_value()) << m->read_error();
}

TEST_F(basic_test, room_and_user_queries) {
  auto t = join("345", "THE", "t1");
  auto s1 = join("345", "STU", "s1", "pc");
  auto s1m = join("345", "STU", "s1", "mobile");
  auto s2 = join("345", "STU", "s2");

  auto room = get_json(port(), "/api/rooms/345");
  EXPECT_EQ(json_string(room, "room"), "345");
  EXPECT_EQ(json_int(room, "online"), 4) << json::serialize(room);
  EXPECT_EQ(json_int(room, "by_role.STU"), 3) << json::serialize(room);
  EXPECT_EQ(json_int(room, "by_role.THE"), 1) << json::serialize(room);
  std::vector<std::string> users;
  for (const auto& u : room.at("users").as_array()) users.emplace_back(u.as_string().c_str());
  std::sort(users.begin(), users.end());
  EXPECT_EQ(users, (std::vector<std::string>{"s1", "s2", "t1"})) << json::serialize(room);

  auto user = get_json(port(), "/api/users/s1");
  EXPECT_EQ(json_string(user, "user"), "s1");
  const auto& sessions = user.at("sessions").as_array();
  ASSERT_EQ(sessions.size(), 2u) << json::serialize(user);
  std::vector<std::string> platforms;
  for (const auto& s : sessions) {
    platforms.push_back(json_string(s, "platform"));
    EXPECT_EQ(json_string(s, "role"), "STU");
    EXPECT_FALSE(json_string(s, "node").empty());
    EXPECT_EQ(json::serialize(s.at("rooms")).find("345") != std::string::npos, true) << json::serialize(s);
    auto sid = json_string(s, "session");
    EXPECT_TRUE(sid == s1.session() || sid == s1m.session()) << sid;
  }
  std::sort(platforms.begin(), platforms.end());
  EXPECT_EQ(platforms, (std::vector<std::string>{"mobile", "pc"}));

  auto stats = get_stats(port());
  EXPECT_EQ(json_int(stats, "connections"), 4) << json::serialize(stats);
  EXPECT_EQ(json_int(stats, "index.sessions"), 4);
  // The index is per shard and stats sum the shards: a room (or user) with sessions on two
  // shards counts twice. So only bounds here.
  EXPECT_GE(json_int(stats, "index.users"), 3);
  EXPECT_GE(json_int(stats, "index.rooms"), 1);
  EXPECT_FALSE(json_bool(stats, "draining", true));

  // An empty room reads as online 0 (or 404); never an error 5xx.
  auto empty = http_get(port(), "/api/rooms/nobody-here");
  EXPECT_TRUE(empty.status == 200 || empty.status == 404) << empty.status << " " << empty.body;
  if (empty.status == 200) {
    EXPECT_EQ(json_int(empty.json(), "online"), 0) << empty.body;
  }
}

TEST_F(basic_test, busiest_rooms_in_pages) {
  auto t = join("big", "THE", "t1");
  auto a = join("big", "STU", "s1");
  auto b = join("big", "STU", "s2");
  auto c = join("mid", "STU", "s3");
  auto d = join("mid", "STU", "s4", "mobile");
  auto e = join("small", "STU", "s5");
  // Several shards hold members of one room: the counts are the node's, not a shard's.
  auto first = get_json(port(), "/api/rooms?limit=2");
  ASSERT_EQ(first.at("rooms").as_array().size(), 2u) << json::serialize(first);
  EXPECT_EQ(json_int(first, "total"), 3);
  EXPECT_EQ(json_string(first.at("rooms").at(0), "room"), "big");
  EXPECT_EQ(json_int(first.at("rooms").at(0), "online"), 3);
  EXPECT_EQ(json_int(first.at("rooms").at(0), "by_role.STU"), 2);
  EXPECT_EQ(json_int(first.at("rooms").at(0), "by_role.THE"), 1);
  EXPECT_EQ(json_string(first.at("rooms").at(1), "room"), "mid");
  const auto cursor = json_string(first, "next_cursor");
  ASSERT_FALSE(cursor.empty()) << json::serialize(first);
  auto second = get_json(port(), "/api/rooms?limit=2&cursor=" + cursor);
  ASSERT_EQ(second.at("rooms").as_array().size(), 1u) << json::serialize(second);
  EXPECT_EQ(json_string(second.at("rooms").at(0), "room"), "small");
  EXPECT_TRUE(second.at("next_cursor").is_null()) << json::serialize(second);
  EXPECT_EQ(http_get(port(), "/api/rooms?limit=0").status, 400u);
  EXPECT_EQ(http_get(port(), "/api/rooms?cursor=x").status, 400u);
}

TEST_F(basic_test, nodes_carry_the_dashboard_counters) {
  auto t = join("345", "THE", "t1");
  ASSERT_TRUE(t->send_text(R"({"type":"publish","data":{"n":1},"id":"c-1"})"));
  ASSERT_TRUE(t->read_type("ack").has_value()) << t->read_error();
  publish(R"({"room":"345","data":{"n":2}})");
  ASSERT_TRUE(poll_until(
      [&] {
        auto n = get_json(port(), "/api/nodes").at("nodes").at(0);
        return json_int(n, "messages_out") >= 2 && json_int(n, "publishes_api") >= 1;
      },
      std::chrono::seconds(5)));
  auto n = get_json(port(), "/api/nodes").at("nodes").at(0);
  EXPECT_EQ(json_int(n, "connections"), 1) << json::serialize(n);
  EXPECT_EQ(json_int(n, "publishes_client"), 1) << json::serialize(n);
  EXPECT_TRUE(json_bool(n, "ready")) << json::serialize(n);
  EXPECT_EQ(json_string(n, "bus"), "up");
  EXPECT_GE(json_int(n, "messages_in"), 1);
  EXPECT_GT(json_int(n, "at"), 1'700'000'000'000LL);
  EXPECT_TRUE(n.at("closes").as_object().contains("slow_consumer")) << json::serialize(n);
  EXPECT_TRUE(n.at("handshake_failures").as_object().contains("unauthorized")) << json::serialize(n);
}

TEST_F(basic_test, errors_name_the_publish_or_room_they_answer) {
  auto s = join("345", "STU", "s1");
  ASSERT_TRUE(s->send_text(R"({"type":"publish","data":{},"id":"p-1"})"));
  auto err = s->read_type("error");
  ASSERT_TRUE(err.has_value()) << s->read_error();
  EXPECT_EQ(json_string(*err, "code"), "forbidden");
  EXPECT_EQ(json_string(*err, "id"), "p-1");
  EXPECT_EQ(json_string(*err, "room"), "345");
  ASSERT_TRUE(s->send_text(R"({"type":"leave","room":"never"})"));
  err = s->read_type("error");
  ASSERT_TRUE(err.has_value()) << s->read_error();
  EXPECT_EQ(json_string(*err, "room"), "never");
}

TEST_F(basic_test, health_and_readiness) {
  EXPECT_EQ(http_get(port(), "/healthz").status, 200u);
  EXPECT_EQ(http_get(port(), "/readyz").status, 200u);
  auto metrics = http_get(port(), "/metrics");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_NE(metrics.body.find("roomcast_connections"), std::string::npos) << metrics.body.substr(0, 2000);
}

}  // namespace
}  // namespace roomcast::itest
