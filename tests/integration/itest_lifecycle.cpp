// Session lifecycle: slow consumers, ping timeouts, kicks, SIGTERM drain, and a
// leak check over thousands of sessions ending in every possible way.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <csignal>
#include <sstream>

#include "support/itest.hpp"

namespace roomcast::itest {
namespace {

namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

std::int64_t stat(std::uint16_t port, std::string_view path) { return json_int(get_stats(port), path); }

void expect_pong(member& m) {
  ASSERT_TRUE(m->send_text(R"({"type":"ping"})")) << m->last_error();
  auto pong = m->read_type("pong");
  EXPECT_TRUE(pong.has_value()) << "no pong (stream: " << m->read_error() << ")";
}

bool metrics_has_line(const std::string& metrics, const std::string& line) {
  std::istringstream in(metrics);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

TEST(lifecycle, slow_consumer_is_closed_while_others_keep_up) {
  // The server may wait up to --pong-timeout for the slow peer's close reply; keep that short.
  auto node = start_node({"--max-queue-bytes", "65536", "--pong-timeout", "2s"});
  auto port = node->port();
  raw_ws_client slow(4096);  // tiny receive window, never reads
  ASSERT_EQ(slow.connect(port, ws_path("345", "STU", "slow")), 101u);
  auto fast = join(port, "345", "STU", "fast");
  ASSERT_TRUE(poll_until([&] { return json_int(get_json(port, "/api/rooms/345"), "online") == 2; }, 5s));

  const std::string pad(16 * 1024, 'x');
  for (int seq = 0; seq < 300; ++seq) {
    auto id =
        api_publish(port, R"({"room":"345","data":{"seq":)" + std::to_string(seq) + R"(,"pad":")" + pad + R"("}})");
    // Read each message before the next publish so the fast client's queue stays short.
    auto frame = fast->read_json();
    ASSERT_TRUE(frame.has_value()) << "fast client lost message " << seq << " (stream: " << fast->read_error() << ")";
    ASSERT_EQ(json_int(*frame, "data.seq"), seq) << json_string(*frame, "type");
    ASSERT_EQ(json_string(*frame, "id"), id);
  }

  json::value stats;
  bool closed = poll_until(
      [&] {
        stats = get_stats(port);
        return json_int(stats, "closes.slow_consumer") >= 1 && json_int(stats, "connections") == 1;
      },
      10s, 50ms);
  EXPECT_TRUE(closed) << json::serialize(stats);
  EXPECT_EQ(json_int(get_json(port, "/api/rooms/345"), "online"), 1);
  EXPECT_TRUE(fast->is_open());
  expect_pong(fast);

  // When the slow client finally reads, the last frame behind its backlog says why: 4008.
  const std::string bytes = slow.read_to_end(10s);
  std::size_t pos = 0;
  int last_opcode = -1;
  unsigned close_code = 0;
  while (pos + 2 <= bytes.size()) {
    const auto b0 = static_cast<unsigned char>(bytes[pos]), b1 = static_cast<unsigned char>(bytes[pos + 1]);
    std::size_t len = b1 & 0x7f, head = 2;
    if (len == 126 && pos + 4 <= bytes.size()) {
      len = (static_cast<unsigned char>(bytes[pos + 2]) << 8) | static_cast<unsigned char>(bytes[pos + 3]);
      head = 4;
    } else if (len == 127) {
      break;  // no 64-bit lengths in this test
    }
    if (pos + head + len > bytes.size()) break;
    last_opcode = b0 & 0x0f;
    if (last_opcode == 8 && len >= 2)
      close_code =
          (static_cast<unsigned char>(bytes[pos + head]) << 8) | static_cast<unsigned char>(bytes[pos + head + 1]);
    pos += head + len;
  }
  EXPECT_EQ(pos, bytes.size()) << "a frame was cut off in the " << bytes.size() << " bytes read";
  EXPECT_EQ(last_opcode, 8) << "the stream must end with a close frame";
  EXPECT_EQ(close_code, 4008u);
}

TEST(lifecycle, ping_timeout_drops_a_mute_peer) {
  auto node = start_node({"--ping-interval", "1s", "--pong-timeout", "1s"});
  auto port = node->port();
  raw_ws_client mute;  // completed the upgrade, never answers a ping
  ASSERT_EQ(mute.connect(port, ws_path("345", "STU", "mute")), 101u);
  auto alive = join(port, "345", "STU", "alive");

  // Pump the live client (it answers pings) while waiting for the mute one to be dropped.
  json::value stats;
  auto deadline = clock_type::now() + 6s;
  bool dropped = false;
  while (!dropped && clock_type::now() < deadline) {
    alive->pump(50ms);
    stats = get_stats(port);
    dropped = json_int(stats, "closes.ping_timeout") >= 1 && json_int(stats, "connections") == 1;
  }
  EXPECT_TRUE(dropped) << json::serialize(stats);
  EXPECT_TRUE(poll_until([&] { return mute.peer_closed(); }, 2s)) << "mute peer's TCP connection still open";
  EXPECT_TRUE(alive->is_open()) << alive->read_error();
  expect_pong(alive);
}

TEST(lifecycle, kick_closes_every_session_of_the_user) {
  auto node = start_node();
  auto port = node->port();
  auto u1_pc = join(port, "345", "STU", "u1", "pc");
  auto u1_mobile = join(port, "346", "STU", "u1", "mobile");
  auto u2 = join(port, "345", "STU", "u2");

  auto res = http_post_json(port, "/api/disconnect", R"({"user":"u1","code":4000,"reason":"bye"})");
  ASSERT_EQ(res.status, 200u) << res.body;
  EXPECT_TRUE(json_bool(res.json(), "ok")) << res.body;
  EXPECT_EQ(json_int(res.json(), "sessions"), 2) << res.body;

  for (auto* m : {&u1_pc, &u1_mobile}) {
    auto frame = (*m)->read_json();
    ASSERT_TRUE(frame.has_value()) << (*m)->read_error();
    EXPECT_EQ(json_string(*frame, "type"), "kicked") << json::serialize(*frame);
    EXPECT_EQ(json_int(*frame, "code"), 4000) << json::serialize(*frame);
    EXPECT_EQ(json_string(*frame, "reason"), "bye") << json::serialize(*frame);
    ASSERT_TRUE((*m)->wait_closed());
    EXPECT_EQ((*m)->close_code(), std::optional<std::uint16_t>(4000)) << (*m)->read_error();
  }

  // u2 is untouched and still receives.
  auto id = api_publish(port, R"({"room":"345","data":{"still":"here"}})");
  auto frame = u2->read_json();
  ASSERT_TRUE(frame.has_value()) << u2->read_error();
  EXPECT_EQ(json_string(*frame, "id"), id);
  EXPECT_TRUE(poll_until([&] { return json_int(get_stats(port), "connections") == 1; }, 5s));
  EXPECT_EQ(get_json(port, "/api/users/u1").at("sessions").as_array().size(), 0u);
}

TEST(lifecycle, kick_one_session_with_custom_code) {
  auto node = start_node();
  auto port = node->port();
  auto pc = join(port, "345", "STU", "u1", "pc");
  auto mobile = join(port, "345", "STU", "u1", "mobile");

  auto res = http_post_json(port, "/api/disconnect", R"({"session":")" + pc.session() + R"(","code":4321})");
  ASSERT_EQ(res.status, 200u) << res.body;
  EXPECT_EQ(json_int(res.json(), "sessions"), 1) << res.body;
  auto kicked = pc->read_type("kicked");
  ASSERT_TRUE(kicked.has_value()) << pc->read_error();
  EXPECT_EQ(json_int(*kicked, "code"), 4321);
  ASSERT_TRUE(pc->wait_closed());
  EXPECT_EQ(pc->close_code(), std::optional<std::uint16_t>(4321));
  expect_pong(mobile);

  auto none = http_post_json(port, "/api/disconnect", R"({"user":"nobody"})");
  EXPECT_EQ(none.status, 200u) << none.body;
  EXPECT_EQ(json_int(none.json(), "sessions"), 0) << none.body;
}

TEST(lifecycle, sigterm_drains_with_1012_and_exits_0) {
  auto node = start_node({"--drain-window", "1s"});
  auto port = node->port();
  std::vector<member> members;
  for (int i = 0; i < 20; ++i) {
    members.push_back(join(port, "room" + std::to_string(i % 4), i % 5 == 0 ? "THE" : "STU", "u" + std::to_string(i)));
  }

  auto signalled = clock_type::now();
  node->terminate();
  // Readiness must flip to 503 while draining; a listener already gone is acceptable too.
  bool saw_503 = false;
  bool listener_gone = false;
  std::string last;
  while (!saw_503 && !listener_gone && clock_type::now() < signalled + 3s) {
    try {
      auto res = http_get(port, "/readyz", {}, 500ms);
      saw_503 = res.status == 503;
      last = std::to_string(res.status);
    } catch (const std::exception& e) {
      listener_gone = true;
      last = e.what();
    }
    if (!saw_503 && !listener_gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(saw_503 || listener_gone) << "readyz never turned 503; last answer: " << last;
  if (saw_503) {
    // While draining, new sessions are turned away (or the listener is already closed).
    auto status = upgrade_status(port, ws_path("345", "STU", "late"));
    EXPECT_TRUE(status == 503 || status == 0) << "upgrade during drain answered " << status;
  }

  for (auto& m : members) {
    ASSERT_TRUE(m->wait_closed(5s)) << "client not closed by the drain";
    EXPECT_EQ(m->close_code(), std::optional<std::uint16_t>(1012)) << m->read_error();
  }
  auto left = 5s - std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - signalled);
  auto code = node->wait_exit(std::max(left, std::chrono::milliseconds(1)));
  EXPECT_EQ(code, std::optional<int>(0)) << "did not exit 0 within 5 s of SIGTERM";
}

// Thousands of sessions over several rooms and users, each ending differently; afterwards
// every index must be empty and the process must exit cleanly (ASan reports leaks at exit).
TEST(lifecycle, no_leaks_after_thousands_of_sessions) {
  auto node = start_node(
      {"--max-queue-bytes", "65536", "--max-frame-bytes", "4096", "--ping-interval", "2s", "--pong-timeout", "2s"});
  auto port = node->port();
  int upgraded = 0;

  // Mute peers: the ping timeout reaps them while the rest runs.
  std::vector<std::unique_ptr<raw_ws_client>> mutes;
  for (int i = 0; i < 4; ++i) {
    mutes.push_back(std::make_unique<raw_ws_client>());
    ASSERT_EQ(mutes.back()->connect(port, ws_path("mute", "STU", "mute" + std::to_string(i))), 101u);
    ++upgraded;
  }

  const int target = 3000;
  const auto deadline = clock_type::now() + 30s;  // keeps the suite short on slow machines
  int round = 0;
  int slow_rounds = 0;
  while (upgraded < target && clock_type::now() < deadline) {
    ++round;
    std::vector<member> batch;
    for (int i = 0; i < 12; ++i) {
      // Pairs of sessions share a user (two devices); rooms and users repeat across rounds.
      auto room = "r" + std::to_string((round + i) % 5);
      auto user = "u" + std::to_string(round % 7) + "-" + std::to_string(i / 2);
      batch.push_back(join(port, room, i % 6 == 0 ? "THE" : "STU", user, i % 2 ? "mobile" : "pc"));
      ++upgraded;
    }
    // Extra index entries to clean up (a room joined by frame) and deliveries in flight.
    ASSERT_TRUE(batch[0]->send_text(R"({"type":"join","room":"extra)" + std::to_string(round % 3) + R"("})"));
    if (round % 10 == 0) api_publish(port, R"({"room":"r1","data":{"round":)" + std::to_string(round) + "}}");

    std::vector<member*> kicked;
    for (int i = 0; i < 12; ++i) {
      auto& m = batch[i];
      switch (i % 6) {
        case 0:
          m->close(1000);
          break;
        case 1:
          m->reset();
          break;
        case 2:
          m->drop();
          break;
        case 3:
          m->send_binary("\x01");
          EXPECT_TRUE(m->wait_closed()) << "binary frame did not close the session";
          break;
        case 4:
          m->send_text(std::string(5000, 'a'));
          EXPECT_TRUE(m->wait_closed()) << "oversized frame did not close the session";
          break;
        case 5: {
          auto res = http_post_json(port, "/api/disconnect", R"({"session":")" + m.session() + R"("})");
          EXPECT_EQ(res.status, 200u) << res.body;
          kicked.push_back(&m);
          break;
        }
      }
    }
    for (auto* m : kicked) EXPECT_TRUE((*m)->wait_closed()) << "kicked session not closed";

    // Sessions that never upgrade: a refused route and a half-sent request.
    EXPECT_EQ(upgrade_status(port, "/nope"), 404u);
    raw_ws_client half;
    if (half.connect_tcp(port)) half.send_raw("GET /demo/websocket/345/STU/u1");

    // Every 100 rounds: slow consumers that fill their queue.
    if (round % 100 == 1) {
      ++slow_rounds;
      std::vector<std::unique_ptr<raw_ws_client>> slow;
      for (int i = 0; i < 2; ++i) {
        slow.push_back(std::make_unique<raw_ws_client>(4096));
        ASSERT_EQ(slow.back()->connect(port, ws_path("slow", "STU", "slow" + std::to_string(i))), 101u);
        ++upgraded;
      }
      auto before = stat(port, "closes.slow_consumer");
      // The server's kernel send buffer autotunes up to tcp_wmem max (4 MiB by default) before
      // its own 64 KiB queue grows, so flood in 6 MiB steps; the close is counted only once it
      // completed (close reply or pong timeout), hence the poll after each step.
      const std::string pad(256 * 1024, 'y');
      bool closed = false;
      for (int step = 0; step < 3 && !closed; ++step) {
        for (int n = 0; n < 24; ++n) api_publish(port, R"({"room":"slow","data":")" + pad + R"("})");
        closed = poll_until([&] { return stat(port, "closes.slow_consumer") >= before + 2; }, 4s, 50ms);
      }
      EXPECT_TRUE(closed) << "slow consumers not closed";
    }
  }
  EXPECT_GE(upgraded, 600) << "too few sessions in the time budget to mean much";
  std::cerr << "[ leak check ] " << upgraded << " sessions in " << round << " rounds (" << slow_rounds
            << " with slow consumers)\n";

  json::value stats;
  bool empty = poll_until(
      [&] {
        stats = get_stats(port);
        return json_int(stats, "connections") == 0 && json_int(stats, "index.sessions") == 0 &&
               json_int(stats, "index.rooms") == 0 && json_int(stats, "index.users") == 0 &&
               json_int(stats, "index.node_rooms", 0) == 0;  // extra field, checked when present
      },
      10s, 50ms);
  EXPECT_TRUE(empty) << json::serialize(stats);

  // Each kind of ending was seen, and every session was closed exactly once.
  for (auto reason : {"client", "kicked", "protocol", "too_big", "slow_consumer", "ping_timeout"}) {
    EXPECT_GE(json_int(stats, std::string("closes.") + reason), 1) << reason << ": " << json::serialize(stats);
  }
  std::int64_t closes = 0;
  if (const auto* c = json_find(stats, "closes"); c != nullptr && c->is_object()) {
    for (const auto& [key, value] : c->get_object()) closes += value.is_int64() ? value.get_int64() : 0;
  }
  EXPECT_EQ(closes, upgraded) << json::serialize(stats);

  auto metrics = http_get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_TRUE(metrics_has_line(metrics.body, "roomcast_connections 0")) << metrics.body.substr(0, 4000);

  node->terminate();
  EXPECT_EQ(node->wait_exit(10s), std::optional<int>(0)) << "unclean exit (ASan leak report?)";
}

}  // namespace
}  // namespace roomcast::itest
