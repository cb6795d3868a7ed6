// Presence: GET /api/rooms/{room} (sessions, unique users, by role and platform, paged members)
// and presence frames (config presence_events), on one node and on three nodes (RabbitMQ bus,
// Redis registry): counts right after join surges, leaves and a node crash, and no N² frames.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <iostream>

#include "support/cluster.hpp"
#include "support/servers.hpp"

namespace roomcast::itest::cluster {
namespace {

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new broker_environment);

// Students connected on one ws_loop (driven by the test thread): one socket each, no thread.
struct crowd {
  ws_loop loop;
  std::vector<std::unique_ptr<ws_client>> clients;

  void join(std::uint16_t port, const std::string& room, const std::string& prefix, int n,
            const std::string& platform = "pc") {
    const std::size_t first = clients.size();
    for (int i = 0; i < n; ++i) {
      clients.push_back(std::make_unique<ws_client>(loop));
      ASSERT_TRUE(
          clients.back()->connect_async(port, ws_path(room, "STU", prefix + std::to_string(i), "tok", platform)));
    }
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    auto open = [&] {
      for (std::size_t i = first; i < clients.size(); ++i)
        if (!clients[i]->is_open()) return false;
      return true;
    };
    while (!open() && std::chrono::steady_clock::now() < deadline) loop.run_for(20ms);
    ASSERT_TRUE(open()) << "students did not all connect";
  }
  void drop(std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) clients[i]->drop();
    loop.run_for(50ms);
  }
};

// The presence frames a member got within `window`, and the last one.
struct presence_seen {
  std::vector<boost::json::value> frames;
  std::int64_t users() const { return frames.empty() ? -1 : json_int(frames.back(), "online.users"); }
};

presence_seen read_presence(member& m, std::chrono::milliseconds window) {
  presence_seen s;
  for (auto& f : collect(m, window))
    if (json_string(f, "type") == "presence") s.frames.push_back(std::move(f));
  return s;
}

// Reads presence frames until one says `users` users are online (and, when given, `sessions`
// sessions: a user's second device adds a session, not a user), or `timeout`; returns how long.
std::optional<std::chrono::milliseconds> wait_users(member& m, std::int64_t users, std::chrono::milliseconds timeout,
                                                    boost::json::value* last = nullptr, std::int64_t sessions = -1) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < timeout) {
    auto f = m->read_type("presence", 200ms);
    if (!f) continue;
    if (last) *last = *f;
    if (json_int(*f, "online.users") == users && (sessions < 0 || json_int(*f, "online.sessions") == sessions))
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  }
  return std::nullopt;
}

TEST(presence_single, join_surge_counts_pages_and_bounded_frames) {
  auto node = start_node({"--presence-events", "class-* 500ms", "--presence-names", "THE"});
  const std::string room = "class-" + random_token(6);
  auto teacher = join(node->port(), room, "THE", "anna");
  crowd students;
  const auto t0 = std::chrono::steady_clock::now();
  students.join(node->port(), room, "s", 300);
  // One of them on a second device: two sessions, one user.
  students.join(node->port(), room, "s", 1, "ios");
  const auto surge = std::chrono::steady_clock::now() - t0;
  boost::json::value last;
  // 301 users can show before the second device's session does (seen under TSan): wait for both.
  const auto took = wait_users(teacher, 301, 3s, &last, 302);
  ASSERT_TRUE(took) << "last presence: " << boost::json::serialize(last);
  EXPECT_EQ(json_int(last, "online.sessions"), 302);
  EXPECT_EQ(json_int(last, "online.by_role.STU"), 301);
  EXPECT_EQ(json_int(last, "online.by_role.THE"), 1);
  EXPECT_EQ(boost::json::serialize(last.at("names")), R"({"THE":["anna"]})");
  // At most one frame per interval: the surge took `surge`, and its frames were batched.
  const double frames = metric_value(node->port(), "roomcast_presence_frames_total");
  const double bound = 2.0 + std::chrono::duration<double>(surge + *took).count() / 0.5;
  EXPECT_LE(frames, bound) << "frames " << frames << " for a surge of " << std::chrono::duration<double>(surge).count()
                           << " s";
  // Each frame went to every member once: a few per student, not one per join.
  EXPECT_LE(metric_value(node->port(), "roomcast_messages_out_total"), bound * 302);

  // The API: cluster-wide counts (one node here) and members in pages.
  auto v = get_json(node->port(), "/api/rooms/" + room + "?limit=100");
  EXPECT_EQ(json_int(v, "sessions"), 302);
  EXPECT_EQ(json_int(v, "unique_users"), 301);
  EXPECT_EQ(json_int(v, "by_platform.ios"), 1);
  EXPECT_EQ(json_int(v, "by_platform.pc"), 301);
  std::set<std::string> seen;
  for (int page = 0; page < 10; ++page) {
    for (const auto& m : v.at("members").as_array()) seen.insert(std::string(m.at("user").as_string()));
    if (!v.as_object().contains("next_cursor")) break;
    v = get_json(node->port(), "/api/rooms/" + room + "?limit=100&cursor=" + json_string(v, "next_cursor"));
  }
  EXPECT_EQ(seen.size(), 301u);
  EXPECT_EQ(get_json(node->port(), "/api/rooms/" + room + "?cursor=s0&limit=1").at("members").at(0).at("sessions"), 1);

  // 100 sessions leave (s0's phone stays): the teacher knows within 2 s.
  students.drop(0, 100);
  EXPECT_TRUE(wait_users(teacher, 202, 2s, &last)) << boost::json::serialize(last);
  EXPECT_EQ(json_int(last, "online.sessions"), 202);
  // A bad page size is refused.
  EXPECT_EQ(http_get(node->port(), "/api/rooms/" + room + "?limit=0").status, 400u);
}

TEST(presence_single, rooms_without_a_rule_get_no_frames) {
  auto node = start_node({"--presence-events", "class-* 1s"});
  auto a = join(node->port(), "lobby", "STU", "a");
  auto b = join(node->port(), "lobby", "STU", "b");
  EXPECT_TRUE(read_presence(a, 1500ms).frames.empty());
  auto c = join(node->port(), "class-x", "STU", "c");
  EXPECT_EQ(read_presence(c, 1500ms).users(), 1);
}

class presence_cluster : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<redis_server>();
    cluster_options o{unique_prefix(), amqp_uri(), redis_->address(), {"--presence-events", "* 500ms"}};
    for (int i = 0; i < 3; ++i) nodes_.push_back(start_cluster_node("p" + std::to_string(i), o));
    for (auto& n : nodes_) ASSERT_EQ(wait_ready(n.port()).status, 200u) << n.id;
  }
  void TearDown() override {
    nodes_.clear();
    redis_.reset();
  }
  std::unique_ptr<redis_server> redis_;
  std::vector<cluster_node> nodes_;
};

TEST_F(presence_cluster, counts_are_cluster_wide_after_surges_leaves_and_a_crash) {
  const std::string room = "pc" + random_token(6);
  auto teacher = join(nodes_[0].port(), room, "THE", "t");
  ASSERT_TRUE(wait_room_binds(nodes_[0].port(), 1));
  crowd on1, on2;
  on1.join(nodes_[1].port(), room, "a", 150);
  on2.join(nodes_[2].port(), room, "b", 150);
  for (auto& n : nodes_) ASSERT_TRUE(wait_room_binds(n.port(), 1)) << n.id;
  boost::json::value last;
  auto took = wait_users(teacher, 301, 2500ms, &last);
  ASSERT_TRUE(took) << "after the surge, node p0 says: " << boost::json::serialize(last);
  std::cerr << "surge of 300 on two other nodes seen on p0 after " << took->count() << " ms\n";
  // The API answers the same from any node.
  for (auto& n : nodes_) EXPECT_EQ(json_int(get_json(n.port(), "/api/rooms/" + room), "unique_users"), 301) << n.id;

  // 50 leave on p1: within 2 s.
  on1.drop(0, 50);
  took = wait_users(teacher, 251, 2s, &last);
  EXPECT_TRUE(took) << boost::json::serialize(last);

  // A student on p2 is kicked out of the room through p1: within 2 s.
  auto r = http_post_json(nodes_[1].port(), "/api/rooms/" + room + "/kick", R"({"user":"b0"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  took = wait_users(teacher, 250, 2s, &last);
  EXPECT_TRUE(took) << "after the kick: " << boost::json::serialize(last);

  // p2 dies with its 149 students: within registry_node_ttl (2 s in cluster_args) + one heartbeat
  // (500 ms) + 2 s.
  nodes_[2].proc->signal(SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  took = wait_users(teacher, 101, 4500ms, &last);
  ASSERT_TRUE(took) << "after p2's crash: " << boost::json::serialize(last);
  std::cerr << "p2's crash seen on p0 after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  EXPECT_GE(metric_value(nodes_[0].port(), "roomcast_presence_pings_received_total"), 1);
}

}  // namespace
}  // namespace roomcast::itest::cluster
