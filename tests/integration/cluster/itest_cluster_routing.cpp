// Three nodes on one broker (own prefix) and one redis: room, user and `all` messages reach the
// right clients exactly once, RabbitMQ routes them only to the nodes that need them, and the
// registry API (/api/rooms, /api/users, /api/nodes, /api/disconnect) is cluster-wide.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "support/cluster.hpp"
#include "support/servers.hpp"

namespace roomcast::itest::cluster {
namespace {

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new broker_environment);

constexpr std::size_t node_count = 3;
constexpr auto quiet = std::chrono::milliseconds(300);  // window in which no duplicate may arrive

class cluster_routing : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      redis_ = std::make_unique<redis_server>();
      cluster_options o{unique_prefix(), amqp_uri(), redis_->address(), {}};
      for (std::size_t i = 0; i < node_count; ++i) nodes_.push_back(start_cluster_node("n" + std::to_string(i), o));
      for (auto& n : nodes_) {
        auto r = wait_ready(n.port());
        if (r.status != 200) throw std::runtime_error("node " + n.id + " not ready: " + r.body);
      }
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    nodes_.clear();
    redis_.reset();
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << "cluster did not start: " << setup_error_;
    tok_ = random_token(6);
    for (auto& n : nodes_) binds_base_.push_back(metric_value(n.port(), "roomcast_bus_room_binds_total"));
  }
  void TearDown() override {
    if (HasFailure()) {
      for (auto& n : nodes_)
        std::cerr << "--- node " << n.id << " (port " << n.port() << ") ---\n" << n.proc->output_tail(40);
    }
  }

  static std::uint16_t port(std::size_t i) { return nodes_.at(i).port(); }
  static const std::string& id(std::size_t i) { return nodes_.at(i).id; }

  member join_on(std::size_t i, const std::string& room, const std::string& role, const std::string& user,
                 const std::string& platform = "pc") {
    auto m = itest::join(port(i), room, role, user, platform);
    EXPECT_EQ(json_string(m.welcome, "node"), id(i)) << json::serialize(m.welcome);
    return m;
  }
  // Waits until node i bound `rooms` more rooms than at the start of the test.
  void expect_bound(std::size_t i, int rooms) {
    EXPECT_TRUE(wait_room_binds(port(i), binds_base_.at(i) + rooms))
        << "node " << id(i) << " did not bind " << rooms
        << " room(s); binds_total=" << metric_value(port(i), "roomcast_bus_room_binds_total")
        << " base=" << binds_base_.at(i);
  }
  // Waits until the registry lists `n` sessions of `user`.
  json::value wait_user_sessions(const std::string& user, std::size_t n, std::size_t on = 0) {
    auto v = poll_json(port(on), "/api/users/" + user, [&](const json::value& j) {
      const auto* s = json_find(j, "sessions");
      return s && s->is_array() && s->get_array().size() == n;
    });
    const auto* s = json_find(v, "sessions");
    EXPECT_TRUE(s && s->is_array() && s->get_array().size() == n)
        << "registry never listed " << n << " sessions of " << user << ": " << json::serialize(v);
    return v;
  }
  static std::int64_t received(std::size_t i) { return stat_int(port(i), "bus_received"); }

  // Expects the message `id` exactly once on `m` (and nothing else within the quiet window after it).
  static void expect_once(member& m, const std::string& id, const std::string& what) {
    std::vector<json::value> skipped;
    auto f = read_message_id(m, id, &skipped);
    ASSERT_TRUE(f.has_value()) << what << ": message " << id << " never arrived; got " << dump(skipped)
                               << " (stream: " << m->read_error() << ")";
    EXPECT_TRUE(skipped.empty()) << what << ": unexpected frames before " << id << ": " << dump(skipped);
    auto after = collect(m, quiet);
    EXPECT_TRUE(after.empty()) << what << ": frames after " << id << " (duplicates?): " << dump(after);
  }
  // Reads until every id in `ids` arrived, then for the quiet window; expects each id exactly once
  // and no other frame. Returns the frames received.
  static std::vector<json::value> expect_each_once(member& m, const std::set<std::string>& ids,
                                                   const std::string& what) {
    std::vector<json::value> frames;
    std::set<std::string> seen;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (seen.size() < ids.size()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      auto f = m->read_json(left);
      if (!f) break;
      seen.insert(json_string(*f, "id"));
      frames.push_back(std::move(*f));
    }
    auto after = collect(m, quiet);
    frames.insert(frames.end(), after.begin(), after.end());
    for (const auto& id : ids) {
      auto n = std::count_if(frames.begin(), frames.end(), [&](const json::value& f) {
        return json_string(f, "type") == "message" && json_string(f, "id") == id;
      });
      EXPECT_EQ(n, 1) << what << ": message " << id << " arrived " << n << " times; frames " << dump(frames)
                      << " (stream: " << m->read_error() << ")";
    }
    EXPECT_EQ(frames.size(), ids.size()) << what << ": unexpected frames " << dump(frames);
    return frames;
  }
  static void expect_nothing(member& m, const std::string& what) {
    auto frames = collect(m, quiet);
    EXPECT_TRUE(frames.empty()) << what << " got " << dump(frames);
  }

  inline static std::unique_ptr<redis_server> redis_;
  inline static std::vector<cluster_node> nodes_;
  inline static std::string setup_error_;
  std::string tok_;
  std::vector<double> binds_base_;
};

TEST_F(cluster_routing, room_message_reaches_members_on_every_node_once_and_only_bound_nodes) {
  const std::string A = "ra" + tok_, B = "rb" + tok_;
  auto a0 = join_on(0, A, "STU", "a0" + tok_);
  auto ta = join_on(0, A, "THE", "ta" + tok_);
  auto a1 = join_on(1, A, "STU", "a1" + tok_);
  auto b1 = join_on(1, B, "STU", "b1" + tok_);
  auto b2 = join_on(2, B, "STU", "b2" + tok_);
  expect_bound(0, 1);
  expect_bound(1, 2);
  expect_bound(2, 1);

  // Room A published on node 2, which has no member of A: its queue is not bound to A.
  const auto r0 = received(0), r1 = received(1), r2 = received(2);
  auto id1 = api_publish(port(2), R"({"room":")" + A + R"(","data":{"n":1}})");
  // ... and on node 1, which has one.
  auto id2 = api_publish(port(1), R"({"room":")" + A + R"(","data":{"n":2}})");
  for (auto* m : {&a0, &ta, &a1}) {
    auto frames = expect_each_once(*m, {id1, id2}, "A member " + json_string(m->welcome, "user"));
    for (const auto& f : frames) {
      EXPECT_EQ(json_string(f, "room"), A) << json::serialize(f);
      EXPECT_EQ(json_int(f, "data.n"), json_string(f, "id") == id1 ? 1 : 2) << json::serialize(f);
      EXPECT_EQ(json_string(f, "from"), "api") << json::serialize(f);
      EXPECT_EQ(json_find(f, "user"), nullptr) << json::serialize(f);
      EXPECT_EQ(json_find(f, "all"), nullptr) << json::serialize(f);
    }
  }
  expect_nothing(b1, "B member on node 1 (room A traffic)");
  expect_nothing(b2, "B member on node 2 (room A traffic)");
  EXPECT_EQ(received(2), r2) << "node 2 has no member of " << A << " but received room messages from its queue";
  EXPECT_GE(received(0) - r0, 2) << "node 0 should have received both A messages";
  EXPECT_GE(received(1) - r1, 1);

  // Room B published on node 0, which has no member of B.
  const auto r0b = received(0);
  auto id3 = api_publish(port(0), R"({"room":")" + B + R"(","data":"b"})");
  expect_once(b1, id3, "B member on node 1");
  expect_once(b2, id3, "B member on node 2");
  expect_nothing(a0, "A member on node 0 (room B traffic)");
  expect_nothing(a1, "A member on node 1 (room B traffic)");
  EXPECT_EQ(received(0), r0b) << "node 0 has no member of " << B << " but received room messages";

  // Once node 2's last member of B left (and unbind_grace passed), B is no longer routed to it.
  const auto unbinds2 = metric_value(port(2), "roomcast_bus_room_unbinds_total");
  b2->close();
  EXPECT_TRUE(poll_until([&] { return metric_value(port(2), "roomcast_bus_room_unbinds_total") >= unbinds2 + 1; }, 5s))
      << "node 2 never unbound " << B;
  const auto r2b = received(2);
  auto id4 = api_publish(port(0), R"({"room":")" + B + R"(","data":"b2"})");
  expect_once(b1, id4, "B member on node 1 after b2 left");
  EXPECT_EQ(received(2), r2b) << "node 2 still receives " << B << " after its last member left";
}

// The bus writes and reads AMQP frames itself: a message larger than the connection's frame_max
// (131,072 bytes) travels as several body frames each way, and must arrive whole and once.
TEST_F(cluster_routing, messages_larger_than_one_amqp_frame_cross_nodes_whole) {
  const std::string R = "big" + tok_;
  auto m = join_on(1, R, "STU", "big" + tok_);
  expect_bound(1, 1);
  for (std::size_t size : {10u, 131'000u, 300'000u, 700'000u}) {
    const std::string data(size, static_cast<char>('a' + size % 26));
    const auto id = api_publish(port(0), R"({"room":")" + R + R"(","data":")" + data + R"("})");
    std::vector<json::value> skipped;
    auto f = read_message_id(m, id, &skipped, 10s);
    ASSERT_TRUE(f.has_value()) << size << " bytes: never arrived; got " << dump(skipped)
                               << " (stream: " << m->read_error() << ")";
    EXPECT_TRUE(skipped.empty()) << dump(skipped);
    EXPECT_EQ(json_string(*f, "data"), data) << size << " bytes: not the same bytes";
  }
  expect_nothing(m, "after the large messages");
}

TEST_F(cluster_routing, user_message_reaches_both_devices_and_only_their_nodes) {
  const std::string user = "dual" + tok_;
  auto pc = join_on(0, "c" + tok_, "STU", user, "pc");
  auto mobile = join_on(1, "d" + tok_, "STU", user, "mobile");
  auto other = join_on(2, "c" + tok_, "STU", "x" + tok_);
  wait_user_sessions(user, 2, 2);

  const auto r0 = received(0), r1 = received(1), r2 = received(2);
  auto mid = api_publish(port(2), R"({"user":")" + user + R"(","data":{"hello":"you"}})");
  for (auto* m : {&pc, &mobile}) {
    std::vector<json::value> skipped;
    auto f = read_message_id(*m, mid, &skipped);
    ASSERT_TRUE(f.has_value()) << json_string(m->welcome, "session") << " missed the user message; got "
                               << dump(skipped);
    EXPECT_EQ(json_string(*f, "user"), user) << json::serialize(*f);
    EXPECT_EQ(json_find(*f, "room"), nullptr) << json::serialize(*f);
    EXPECT_EQ(json_string(*f, "data.hello"), "you");
    auto after = collect(*m, quiet);
    EXPECT_TRUE(after.empty()) << "duplicates? " << dump(after);
  }
  expect_nothing(other, "another user on node 2");
  EXPECT_EQ(received(2), r2) << "node 2 holds no session of " << user << " but received the user message";
  EXPECT_EQ(received(0) - r0, 1) << "node 0 should have received the user message exactly once";
  EXPECT_EQ(received(1) - r1, 1) << "node 1 should have received the user message exactly once";
  for (std::size_t i = 0; i < node_count; ++i)
    EXPECT_EQ(stat_int(port(i), "bus_fallback_all"), 0) << "registry was up; no fallback expected on " << id(i);
}

TEST_F(cluster_routing, publish_all_reaches_every_client_once) {
  std::vector<member> members;
  members.push_back(join_on(0, "e" + tok_, "STU", "e0" + tok_));
  members.push_back(join_on(1, "f" + tok_, "THE", "e1" + tok_, "pc"));
  members.push_back(join_on(1, "g" + tok_, "STU", "e1" + tok_, "mobile"));
  members.push_back(join_on(2, "e" + tok_, "STU", "e2" + tok_));
  auto id = api_publish(port(1), R"({"all":true,"data":[1,2,3]})");
  for (auto& m : members) {
    std::vector<json::value> skipped;
    auto f = read_message_id(m, id, &skipped);
    ASSERT_TRUE(f.has_value()) << json_string(m.welcome, "user") << " missed the `all` message; got " << dump(skipped);
    EXPECT_TRUE(json_bool(*f, "all")) << json::serialize(*f);
    EXPECT_EQ(json::serialize(f->at("data")), "[1,2,3]");
    auto after = collect(m, quiet);
    EXPECT_TRUE(after.empty()) << "duplicates? " << dump(after);
  }
}

TEST_F(cluster_routing, registry_api_is_cluster_wide) {
  const std::string R = "reg" + tok_;
  const std::string u0 = "u0" + tok_, u1 = "u1" + tok_, u2 = "u2" + tok_, u3 = "u3" + tok_;
  auto m0 = join_on(0, R, "STU", u0);
  auto m1 = join_on(0, R, "THE", u1);
  auto m2 = join_on(1, R, "STU", u2, "pc");
  auto m3 = join_on(2, R, "STU", u3, "pc");
  auto m4 = join_on(2, R, "STU", u3, "mobile");
  auto m5 = join_on(0, "other" + tok_, "STU", u2, "mobile");  // u2 on nodes 0 and 1

  for (std::size_t i = 0; i < node_count; ++i) {
    auto v = poll_json(port(i), "/api/rooms/" + R, [](const json::value& j) { return json_int(j, "online") == 5; });
    EXPECT_EQ(json_string(v, "room"), R) << json::serialize(v);
    EXPECT_EQ(json_int(v, "online"), 5) << "via " << id(i) << ": " << json::serialize(v);
    EXPECT_EQ(json_int(v, "by_role.STU"), 4) << json::serialize(v);
    EXPECT_EQ(json_int(v, "by_role.THE"), 1) << json::serialize(v);
    EXPECT_EQ(string_set(v, "users"), (std::set<std::string>{u0, u1, u2, u3})) << json::serialize(v);
  }

  auto u = wait_user_sessions(u2, 2, 2);
  EXPECT_EQ(json_string(u, "user"), u2);
  EXPECT_TRUE(json_bool(u, "online")) << json::serialize(u);
  EXPECT_EQ(string_set(u, "sessions", "node"), (std::set<std::string>{id(0), id(1)})) << json::serialize(u);
  EXPECT_EQ(string_set(u, "sessions", "session"), (std::set<std::string>{m2.session(), m5.session()}))
      << json::serialize(u);
  for (const auto& s : u.at("sessions").get_array()) {
    const bool on1 = json_string(s, "node") == id(1);
    EXPECT_EQ(json_string(s, "platform"), on1 ? "pc" : "mobile") << json::serialize(s);
    EXPECT_EQ(json_string(s, "role"), "STU") << json::serialize(s);
    EXPECT_EQ(json::serialize(s.at("rooms")), on1 ? "[\"" + R + "\"]" : "[\"other" + tok_ + "\"]")
        << json::serialize(s);
  }

  // /api/nodes: the three live nodes, with connection counts refreshed by the heartbeat.
  json::value nodes;
  const bool counts_match = poll_until(
      [&] {
        nodes = get_json(port(1), "/api/nodes");
        if (string_set(nodes, "nodes", "node") != std::set<std::string>{id(0), id(1), id(2)}) return false;
        for (const auto& n : nodes.at("nodes").get_array()) {
          std::size_t i = std::stoul(json_string(n, "node").substr(1));
          if (json_int(n, "connections") != stat_int(port(i), "connections")) return false;
        }
        return true;
      },
      5s, 100ms);
  EXPECT_TRUE(counts_match) << "/api/nodes never matched the 3 nodes and their connection counts: "
                            << json::serialize(nodes);
  EXPECT_EQ(nodes.at("nodes").get_array().size(), node_count) << json::serialize(nodes);
  for (const auto& n : nodes.at("nodes").get_array()) {  // what the dashboard reads
    EXPECT_TRUE(json_bool(n, "ready")) << json::serialize(n);
    EXPECT_EQ(json_string(n, "registry"), "up") << json::serialize(n);
    EXPECT_GE(json_int(n, "messages_out"), 0) << json::serialize(n);
    EXPECT_GT(json_int(n, "at"), 0) << json::serialize(n);
  }

  // GET /api/rooms: the busiest rooms cluster-wide, by role (other tests' rooms may be listed too).
  for (std::size_t i = 0; i < node_count; ++i) {
    auto page = get_json(port(i), "/api/rooms?limit=1000");
    std::int64_t online_r = -1, online_other = -1, stu = -1, the = -1;
    for (const auto& r : page.at("rooms").get_array()) {
      if (json_string(r, "room") == R) {
        online_r = json_int(r, "online");
        stu = json_int(r, "by_role.STU");
        the = json_int(r, "by_role.THE");
      }
      if (json_string(r, "room") == "other" + tok_) online_other = json_int(r, "online");
    }
    EXPECT_EQ(online_r, 5) << "via " << id(i) << ": " << json::serialize(page);
    EXPECT_EQ(stu, 4) << json::serialize(page);
    EXPECT_EQ(the, 1) << json::serialize(page);
    EXPECT_EQ(online_other, 1) << json::serialize(page);
    EXPECT_GE(json_int(page, "total"), 2) << json::serialize(page);
  }

  // A session that leaves disappears from the room everywhere.
  m2->close();
  auto v = poll_json(port(0), "/api/rooms/" + R, [](const json::value& j) { return json_int(j, "online") == 4; });
  EXPECT_EQ(json_int(v, "online"), 4) << json::serialize(v);
  EXPECT_EQ(string_set(v, "users"), (std::set<std::string>{u0, u1, u3})) << json::serialize(v);
}

TEST_F(cluster_routing, disconnect_user_on_a_node_without_its_sessions_kicks_them_everywhere) {
  const std::string user = "kick" + tok_;
  auto pc = join_on(0, "k" + tok_, "STU", user, "pc");
  auto mobile = join_on(1, "k" + tok_, "STU", user, "mobile");
  auto bystander = join_on(2, "k" + tok_, "STU", "by" + tok_);
  wait_user_sessions(user, 2, 2);

  auto res = http_post_json(port(2), "/api/disconnect", R"({"user":")" + user + R"("})");
  ASSERT_EQ(res.status, 200u) << res.body;
  auto body = res.json();
  EXPECT_TRUE(json_bool(body, "ok")) << res.body;
  EXPECT_EQ(json_int(body, "sessions"), 2) << res.body;

  for (auto* m : {&pc, &mobile}) {
    auto kicked = (*m)->read_type("kicked", 5s);
    EXPECT_TRUE(kicked.has_value()) << "no kicked frame on " << m->session() << " (stream: " << (*m)->read_error()
                                    << ")";
    if (kicked) {
      EXPECT_EQ(json_int(*kicked, "code"), 4000) << json::serialize(*kicked);
    }
    EXPECT_TRUE((*m)->wait_closed(5s)) << "session " << m->session() << " not closed";
    EXPECT_EQ((*m)->close_code().value_or(0), 4000) << "close reason: " << (*m)->close_reason();
  }
  expect_nothing(bystander, "bystander on node 2");
  EXPECT_TRUE(bystander->is_open());

  auto u = poll_json(port(0), "/api/users/" + user, [](const json::value& j) { return !json_bool(j, "online", true); });
  EXPECT_FALSE(json_bool(u, "online", true)) << json::serialize(u);
}

// issue 15: a session of another node is reached over the bus, and the registry says it was there.
TEST_F(cluster_routing, disconnect_of_a_session_on_another_node_counts_it) {
  const std::string user = "ks" + tok_;
  auto far = join_on(1, "ks" + tok_, "STU", user, "pc");
  auto other = join_on(1, "ks" + tok_, "STU", user, "mobile");  // same user: only `far` is kicked
  wait_user_sessions(user, 2, 0);

  auto res = http_post_json(port(0), "/api/disconnect", R"({"session":")" + far.session() + R"(","code":4100})");
  ASSERT_EQ(res.status, 200u) << res.body;
  EXPECT_EQ(json_int(res.json(), "sessions"), 1) << res.body;
  auto kicked = far->read_type("kicked", 5s);
  EXPECT_TRUE(kicked.has_value()) << "no kicked frame (stream: " << far->read_error() << ")";
  EXPECT_TRUE(far->wait_closed(5s));
  EXPECT_EQ(far->close_code().value_or(0), 4100) << far->close_reason();
  expect_nothing(other, "the user's other session");

  // Once the registry forgot it, the same id counts 0 (on the node that had it and on another).
  wait_user_sessions(user, 1, 0);
  for (std::size_t i : {std::size_t{0}, std::size_t{1}}) {
    auto again = http_post_json(port(i), "/api/disconnect", R"({"session":")" + far.session() + R"("})");
    ASSERT_EQ(again.status, 200u) << again.body;
    EXPECT_EQ(json_int(again.json(), "sessions"), 0) << "node " << i << ": " << again.body;
  }
}

}  // namespace
}  // namespace roomcast::itest::cluster
