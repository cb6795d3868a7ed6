// Must-arrive messages with receipts, and moderation (kick, mute), on one node and on three nodes
// (RabbitMQ bus, Redis registry, history and receipts): a user who reconnects to another node gets
// what it didn't confirm, one who never confirms is reported missing, kicks and mutes reach every
// node.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <iostream>

#include "support/cluster.hpp"
#include "support/servers.hpp"

namespace roomcast::itest::cluster {
namespace {

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new broker_environment);

// The next `message` frame with `id` (other frames are skipped).
std::optional<boost::json::value> read_id(member& m, const std::string& id, std::chrono::milliseconds timeout = 5s) {
  return read_message_id(m, id, nullptr, timeout);
}

void confirm(member& m, const std::string& id) {
  ASSERT_TRUE(m->send_text(R"({"type":"received","id":")" + id + R"("})"));
}

boost::json::value receipts(std::uint16_t port, const std::string& id, const std::string& query = {}) {
  return get_json(port, "/api/messages/" + id + "/receipts" + query);
}

// Polls the receipts of `id` until `received` users confirmed.
boost::json::value wait_received(std::uint16_t port, const std::string& id, std::int64_t received) {
  return poll_json(
      port, "/api/messages/" + id + "/receipts",
      [&](const boost::json::value& v) { return json_int(v, "received") == received; }, 5s);
}

// The scenario on `ports` (one node, or three): the nodes each student is on, and where b comes back.
void receipts_scenario(const std::vector<std::uint16_t>& ports) {
  const auto on = [&](std::size_t i) { return ports[i % ports.size()]; };
  const std::string room = "quiz" + random_token(6);
  auto teacher = join(on(0), room, "THE", "t");
  auto a = join(on(1), room, "STU", "a");
  auto b = join(on(2), room, "STU", "b");
  auto c = join(on(1), room, "STU", "c", "ios");
  if (ports.size() > 1) {
    for (auto p : ports) ASSERT_TRUE(wait_room_binds(p, 1));
  }
  // Everyone is in the registry before the publish (the expected users are read from it).
  poll_json(on(0), "/api/rooms/" + room, [](const boost::json::value& v) { return json_int(v, "sessions") == 4; });

  const std::string id = "quiz-" + random_token(6);
  auto r = http_post_json(
      on(0), "/api/publish",
      R"({"room":")" + room + R"(","id":")" + id + R"(","data":{"q":1},"receipts":true,"roles":["STU"]})");
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto answer = boost::json::parse(r.body);
  EXPECT_EQ(json_int(answer, "receipts.expected"), 3) << r.body;  // a, b, c: not the teacher (filter)

  for (auto* m : {&a, &b, &c}) {
    auto f = read_id(*m, id);
    ASSERT_TRUE(f) << "a student did not get the quiz";
    EXPECT_TRUE(f->at("receipt").as_bool());
  }
  confirm(a, id);
  auto v = wait_received(on(0), id, 1);
  EXPECT_EQ(json_int(v, "expected"), 3) << boost::json::serialize(v);
  EXPECT_EQ(string_set(v, "missing"), (std::set<std::string>{"b", "c"})) << boost::json::serialize(v);

  // b drops without confirming and comes back on another node, without since: it gets the quiz again.
  b->drop();
  auto b2 = join(on(0), room, "STU", "b");
  auto again = read_id(b2, id);
  ASSERT_TRUE(again) << "b did not get the unconfirmed quiz after reconnecting";
  EXPECT_TRUE(again->at("receipt").as_bool());
  confirm(b2, id);
  v = wait_received(on(ports.size() > 2 ? 2 : 0), id, 2);
  EXPECT_EQ(json_int(v, "received"), 2) << boost::json::serialize(v);
  EXPECT_EQ(string_set(v, "missing"), (std::set<std::string>{"c"})) << boost::json::serialize(v);
  EXPECT_EQ(json_int(v, "missing_count"), 1);

  // a reconnects: it confirmed, nothing comes again.
  a->drop();
  auto a2 = join(on(2), room, "STU", "a");
  EXPECT_FALSE(read_id(a2, id, 1500ms)) << "a confirmed the quiz and got it again";

  // c never confirms: it stays missing, and gets the quiz on every reconnect, even after history
  // moved past it (the room keeps 3 messages).
  for (int i = 0; i < 5; ++i) api_publish(on(1), R"({"room":")" + room + R"(","data":)" + std::to_string(i) + "}");
  c->drop();
  auto c2 = join(on(0), room, "STU", "c", "ios");
  EXPECT_TRUE(read_id(c2, id)) << "c did not get the quiz beyond the history's length";
  EXPECT_EQ(string_set(receipts(on(1), id), "missing"), (std::set<std::string>{"c"}));

  // Paging, unknown ids, bad input.
  EXPECT_EQ(receipts(on(0), id, "?limit=1").at("missing").as_array().size(), 1u);
  EXPECT_EQ(http_get(on(0), "/api/messages/nope/receipts").status, 404u);
  EXPECT_EQ(http_post_json(on(0), "/api/publish", R"({"room":"x","data":1,"receipts":true})").status, 400u);  // no id
  EXPECT_EQ(http_post_json(on(0), "/api/publish", R"({"user":"x","id":"u1","data":1,"receipts":true})").status, 400u);
  EXPECT_EQ(http_post_json(on(0), "/api/publish", R"({"room":"x","id":"u2","data":1,"receipts":"yes"})").status, 400u);
}

// Kick and mute given to one node, carried out where the user's sessions are (three nodes), or on
// the one node.
void moderation_scenario(const std::vector<std::uint16_t>& ports) {
  const auto on = [&](std::size_t i) { return ports[i % ports.size()]; };
  const std::string room = "mod" + random_token(6);
  auto watcher = join(on(0), room, "THE", "w");
  auto s1 = join(on(1), room, "STU", "s");
  auto s2 = join(on(2), room, "STU", "s", "ios");  // the same user on a second device
  auto loud = join(on(2), room, "THE", "loud");
  if (ports.size() > 1) {
    for (auto p : ports) ASSERT_TRUE(wait_room_binds(p, 1));
  }
  ASSERT_TRUE(s1->send_text(R"({"type":"join","room":"other"})"));
  ASSERT_TRUE(s1->read_type("joined"));

  // Kick s from the room through node 0: both its sessions leave it, on nodes 1 and 2, and stay open.
  auto r = http_post_json(on(0), "/api/rooms/" + room + "/kick", R"({"user":"s","reason":"spam"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  for (auto* m : {&s1, &s2}) {
    auto left = (*m)->read_type("left");
    ASSERT_TRUE(left) << "no left frame after the kick";
    EXPECT_EQ(json_string(*left, "room"), room);
    EXPECT_EQ(json_string(*left, "reason"), "spam");
    EXPECT_TRUE(left->at("kicked").as_bool());
  }
  const auto after = api_publish(on(0), R"({"room":")" + room + R"(","data":"after the kick"})");
  EXPECT_TRUE(read_message_id(watcher, after));
  EXPECT_FALSE(read_message_id(s1, after, nullptr, 1s)) << "a kicked session still gets the room";
  EXPECT_TRUE(s1->is_open());
  const auto other = api_publish(on(0), R"({"room":"other","data":"still here"})");
  EXPECT_TRUE(read_message_id(s1, other)) << "the kicked session lost its other room";
  auto v = poll_json(on(0), "/api/rooms/" + room,
                     [](const boost::json::value& j) { return json_int(j, "unique_users") == 2; });
  EXPECT_EQ(json_int(v, "unique_users"), 2) << boost::json::serialize(v);

  // Mute `loud` (a teacher, who may publish) through node 1; it publishes on node 2.
  r = http_post_json(on(1), "/api/rooms/" + room + "/mute", R"({"user":"loud","duration":"10m"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  ASSERT_TRUE(loud->send_text(R"({"type":"publish","id":"p1","data":"hello"})"));
  auto err = loud->read_type("error");
  ASSERT_TRUE(err);
  EXPECT_EQ(json_string(*err, "code"), "muted");
  EXPECT_EQ(json_string(*err, "id"), "p1");
  EXPECT_FALSE(read_message_id(watcher, "p1", nullptr, 1s)) << "a muted publish was delivered";
  // Lifted through node 0: the next publish goes out.
  ASSERT_EQ(http_post_json(on(0), "/api/rooms/" + room + "/mute", R"({"user":"loud","duration":"0s"})").status, 200u);
  ASSERT_TRUE(loud->send_text(R"({"type":"publish","id":"p2","data":"hello again"})"));
  EXPECT_TRUE(loud->read_type("ack"));
  EXPECT_TRUE(read_message_id(watcher, "p2"));

  // Bad inputs change nothing.
  EXPECT_EQ(http_post_json(on(0), "/api/rooms/" + room + "/kick", R"({"user":""})").status, 400u);
  EXPECT_EQ(http_post_json(on(0), "/api/rooms/" + room + "/mute", R"({"user":"x","duration":"-1s"})").status, 400u);
}

TEST(classroom_single, kick_and_mute) {
  auto node = start_node({});
  moderation_scenario({node->port()});
}

TEST(classroom_single, receipts_track_who_confirmed_and_resend_to_who_did_not) {
  auto node = start_node({"--history", "quiz* 3 10m, * 300 10m"});
  receipts_scenario({node->port()});
}

TEST(classroom_single, a_receipt_store_that_is_full_refuses_with_503) {
  auto node = start_node({"--receipt-max-messages", "1"});
  auto s = join(node->port(), "r", "STU", "s");
  EXPECT_EQ(http_post_json(node->port(), "/api/publish", R"({"room":"r","id":"m1","data":1,"receipts":true})").status,
            200u);
  auto full = http_post_json(node->port(), "/api/publish", R"({"room":"r","id":"m2","data":1,"receipts":true})");
  EXPECT_EQ(full.status, 503u) << full.body;
  EXPECT_NE(full.body.find("receipt_max_messages"), std::string::npos);
  EXPECT_GE(metric_value(node->port(), "roomcast_receipts_refused_total"), 1);
}

// A user counts as expected when one of its sessions matches the filter; only such sessions get
// the message again.
TEST(classroom_single, redelivery_applies_the_filter_to_each_session) {
  auto node = start_node({});
  auto pc = join(node->port(), "f", "STU", "d", "pc");
  auto phone = join(node->port(), "f", "STU", "d", "ios");
  poll_json(node->port(), "/api/rooms/f", [](const boost::json::value& v) { return json_int(v, "sessions") == 2; });
  auto r = http_post_json(node->port(), "/api/publish",
                          R"({"room":"f","id":"pc-only","data":1,"receipts":true,"platforms":["pc"]})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(json_int(boost::json::parse(r.body), "receipts.expected"), 1);
  EXPECT_TRUE(read_id(pc, "pc-only"));
  EXPECT_FALSE(read_id(phone, "pc-only", 500ms)) << "the filter let the phone in";
  pc->drop();
  phone->drop();
  auto phone2 = join(node->port(), "f", "STU", "d", "ios");
  EXPECT_FALSE(read_id(phone2, "pc-only", 1s)) << "sent again to a session outside the filter";
  auto pc2 = join(node->port(), "f", "STU", "d", "pc");
  EXPECT_TRUE(read_id(pc2, "pc-only")) << "not sent again to the session the filter names";
}

class classroom_cluster : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<redis_server>();
    cluster_options o{unique_prefix(), amqp_uri(), redis_->address(), {"--history", "quiz* 3 10m, * 300 10m"}};
    for (int i = 0; i < 3; ++i) nodes_.push_back(start_cluster_node("c" + std::to_string(i), o));
    for (auto& n : nodes_) ASSERT_EQ(wait_ready(n.port()).status, 200u) << n.id;
  }
  void TearDown() override {
    nodes_.clear();
    redis_.reset();
  }
  std::vector<std::uint16_t> ports() const {
    std::vector<std::uint16_t> p;
    for (const auto& n : nodes_) p.push_back(n.port());
    return p;
  }
  std::unique_ptr<redis_server> redis_;
  std::vector<cluster_node> nodes_;
};

TEST_F(classroom_cluster, receipts_follow_users_across_nodes) { receipts_scenario(ports()); }

TEST_F(classroom_cluster, kick_and_mute_reach_every_node) { moderation_scenario(ports()); }

}  // namespace
}  // namespace roomcast::itest::cluster
