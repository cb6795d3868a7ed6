// History and recovery on one node (local bus, local history store):
//   recovery through the seed URL (?since=&epoch=) and through a join frame, gap frames (epoch,
//   trimmed, expired), idempotent publishes (API and client), GET /api/rooms/{room}/history, and
//   live messages published while a client is being recovered.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <atomic>
#include <thread>

#include "recovery_support.hpp"

namespace roomcast::itest::recovery {
namespace {

// Rooms: nohist-* keep nothing, exp-* expire after 1 s, tiny-* keep 5, the rest 300 for 10 minutes.
const std::vector<std::string> k_node_args{"--threads", "2", "--history",
                                           "nohist-* 0 0s, exp-* 10 1s, tiny-* 5 10m, * 300 10m"};

class recovery_single : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = start_node(k_node_args);
    tok_ = random_token(6);
  }

  std::uint16_t port() const { return node_->port(); }

  // POST /api/publish with an id; asserts 200 and returns the answer.
  publish_answer publish(const std::string& room, const std::string& id, int n) {
    auto a = try_publish(port(), room_body(room, id, "{\"n\":" + std::to_string(n) + "}"));
    EXPECT_EQ(a.status, 200u) << a.error << " " << json::serialize(a.body);
    return a;
  }

  // Reads frames until one of `type` arrives (every frame read is appended to `seen`).
  static std::optional<json::value> read_until(member& m, const std::string& type, std::vector<json::value>& seen,
                                               std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto f = m->read_json(left);
      if (!f) return std::nullopt;
      seen.push_back(*f);
      if (json_string(*f, "type") == type) return f;
    }
  }

  // The next frame must be a room message with `seq`.
  static void expect_message(member& m, const std::string& room, std::uint64_t seq, const std::string& what) {
    auto f = m->read_json();
    ASSERT_TRUE(f.has_value()) << what << ": no frame where seq " << seq << " was expected (stream: " << m->read_error()
                               << ")";
    EXPECT_EQ(json_string(*f, "type"), "message") << what << ": " << json::serialize(*f);
    EXPECT_EQ(json_string(*f, "room"), room) << what << ": " << json::serialize(*f);
    EXPECT_EQ(json_int(*f, "seq"), static_cast<std::int64_t>(seq)) << what << ": " << json::serialize(*f);
  }

  // Nothing more arrives within `window`.
  static void expect_quiet(member& m, const std::string& what, std::chrono::milliseconds window = 300ms) {
    auto extra = collect(m, window);
    EXPECT_TRUE(extra.empty()) << what << ": unexpected frames " << dump(extra);
  }

  std::unique_ptr<node_process> node_;
  std::string tok_;
};

// (a) Receive 1..5, disconnect, 6..10 published meanwhile, reconnect with ?since=5&epoch=E.
TEST_F(recovery_single, reconnect_with_since_in_the_url_recovers_missed_messages) {
  const std::string room = "ra" + tok_;
  auto m = join_path(port(), recovery_path(room, "STU", "u1"));
  std::string epoch;
  for (int i = 1; i <= 5; ++i) {
    auto a = publish(room, "a-" + tok_ + "-" + std::to_string(i), i);
    EXPECT_EQ(a.seq(), static_cast<std::uint64_t>(i)) << json::serialize(a.body);
    if (i == 1) epoch = a.epoch();
    EXPECT_EQ(a.epoch(), epoch) << "epoch changed within a room: " << json::serialize(a.body);
  }
  ASSERT_FALSE(epoch.empty());
  for (std::uint64_t i = 1; i <= 5; ++i) expect_message(m, room, i, "first connection");
  m->close();

  std::vector<std::string> ids;
  for (int i = 6; i <= 10; ++i) {
    ids.push_back("a-" + tok_ + "-" + std::to_string(i));
    EXPECT_EQ(publish(room, ids.back(), i).seq(), static_cast<std::uint64_t>(i));
  }

  auto again = join_path(port(), recovery_path(room, "STU", "u1", 5, epoch));
  auto pos = welcome_room(again.welcome, room);
  EXPECT_EQ(json_int(pos, "seq"), 10) << json::serialize(again.welcome);
  EXPECT_EQ(json_string(pos, "epoch"), epoch) << json::serialize(again.welcome);
  for (std::uint64_t i = 6; i <= 10; ++i) {
    auto f = again->read_json();
    ASSERT_TRUE(f.has_value()) << "recovery stopped before seq " << i;
    EXPECT_EQ(json_string(*f, "type"), "message") << json::serialize(*f);
    EXPECT_EQ(json_int(*f, "seq"), static_cast<std::int64_t>(i)) << json::serialize(*f);
    EXPECT_EQ(json_string(*f, "id"), ids[i - 6]) << json::serialize(*f);
    EXPECT_EQ(json_int(*f, "data.n"), static_cast<std::int64_t>(i)) << json::serialize(*f);
    EXPECT_EQ(json_string(*f, "from"), "api") << json::serialize(*f);
  }
  auto rec = again->read_json();
  ASSERT_TRUE(rec.has_value()) << "no recovered frame";
  EXPECT_EQ(json_string(*rec, "type"), "recovered") << json::serialize(*rec);
  EXPECT_EQ(json_string(*rec, "room"), room) << json::serialize(*rec);
  EXPECT_EQ(json_int(*rec, "from"), 6) << json::serialize(*rec);
  EXPECT_EQ(json_int(*rec, "to"), 10) << json::serialize(*rec);

  EXPECT_EQ(publish(room, "a-" + tok_ + "-11", 11).seq(), 11u);
  expect_message(again, room, 11, "live after recovery");
  expect_quiet(again, "after seq 11");
  EXPECT_GE(json_int(get_stats(port()), "recoveries"), 1) << json::serialize(get_stats(port()));
}

// A client that joined a room before its first message must still be able to recover: joining a
// fresh room creates its epoch (seq 0), and welcome carries it.
TEST_F(recovery_single, client_of_a_fresh_room_learns_the_epoch_from_its_frames) {
  const std::string room = "rf" + tok_;
  auto m = join_path(port(), recovery_path(room, "STU", "u1"));
  seq_tracker t{room};
  t.on_welcome(m.welcome, true);
  EXPECT_FALSE(t.epoch.empty()) << "fresh room: welcome must carry the epoch: " << json::serialize(m.welcome);
  EXPECT_EQ(t.last, 0u) << json::serialize(m.welcome);
  for (int i = 1; i <= 3; ++i) publish(room, "f-" + tok_ + "-" + std::to_string(i), i);
  for (int i = 0; i < 3; ++i) {
    auto f = m->read_text();
    ASSERT_TRUE(f.has_value());
    t.on_frame(*f);
  }
  // A real client also looks for an epoch field on any frame it got.
  EXPECT_EQ(t.last, 3u);
  m->close();
  publish(room, "f-" + tok_ + "-4", 4);
  auto again = join_path(port(), recovery_path(room, "STU", "u1", t.last, t.epoch));
  std::vector<json::value> seen;
  auto first = again->read_json();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(json_string(*first, "type"), "message")
      << "a client that was in the room since before seq 1 cannot recover: it never received the epoch "
         "(welcome had none, message frames carry none, no gap/epoch frame was sent when the room got "
         "its first epoch). Reconnecting with since="
      << t.last << "&epoch=" << t.epoch << " got " << json::serialize(*first);
}

// (b) The same through a join frame on a second room.
TEST_F(recovery_single, join_frame_with_since_and_epoch_recovers) {
  const std::string home = "rh" + tok_, room = "rj" + tok_;
  std::string epoch;
  for (int i = 1; i <= 3; ++i) {
    auto a = publish(room, "j-" + tok_ + "-" + std::to_string(i), i);
    if (i == 1) epoch = a.epoch();
  }
  auto m = join_path(port(), recovery_path(home, "STU", "u1"));
  ASSERT_TRUE(m->send_text(R"({"type":"join","room":")" + room + R"("})"));
  auto joined = m->read_json();
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(json_string(*joined, "type"), "joined") << json::serialize(*joined);
  EXPECT_EQ(json_int(*joined, "seq"), 3) << json::serialize(*joined);
  EXPECT_EQ(json_string(*joined, "epoch"), epoch) << json::serialize(*joined);
  expect_quiet(m, "plain join must not replay history", 200ms);
  for (int i = 4; i <= 6; ++i) publish(room, "j-" + tok_ + "-" + std::to_string(i), i);
  for (std::uint64_t i = 4; i <= 6; ++i) expect_message(m, room, i, "live in the joined room");

  ASSERT_TRUE(m->send_text(R"({"type":"leave","room":")" + room + R"("})"));
  auto left = m->read_json();
  ASSERT_TRUE(left.has_value());
  EXPECT_EQ(json_string(*left, "type"), "left") << json::serialize(*left);
  for (int i = 7; i <= 9; ++i) publish(room, "j-" + tok_ + "-" + std::to_string(i), i);

  ASSERT_TRUE(m->send_text(R"({"type":"join","room":")" + room + R"(","since":6,"epoch":")" + epoch + R"("})"));
  joined = m->read_json();
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(json_string(*joined, "type"), "joined") << json::serialize(*joined);
  EXPECT_EQ(json_int(*joined, "seq"), 9) << json::serialize(*joined);
  EXPECT_EQ(json_string(*joined, "epoch"), epoch) << json::serialize(*joined);
  for (std::uint64_t i = 7; i <= 9; ++i) expect_message(m, room, i, "recovered through join");
  auto rec = m->read_json();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(json_string(*rec, "type"), "recovered") << json::serialize(*rec);
  EXPECT_EQ(json_int(*rec, "from"), 7) << json::serialize(*rec);
  EXPECT_EQ(json_int(*rec, "to"), 9) << json::serialize(*rec);
  publish(room, "j-" + tok_ + "-10", 10);
  expect_message(m, room, 10, "live after join recovery");
  expect_quiet(m, "after seq 10");
}

// (c) A wrong epoch (URL and join frame) and an expired room's history get a gap, then live messages.
TEST_F(recovery_single, wrong_epoch_or_expired_history_gets_a_gap) {
  const std::string room = "re" + tok_;
  std::string epoch;
  for (int i = 1; i <= 4; ++i) epoch = publish(room, "e-" + tok_ + "-" + std::to_string(i), i).epoch();

  auto m = join_path(port(), recovery_path(room, "STU", "u1", 2, "0123456789abcdef"));
  auto gap = m->read_json();
  ASSERT_TRUE(gap.has_value());
  EXPECT_EQ(json_string(*gap, "type"), "gap") << json::serialize(*gap);
  EXPECT_EQ(json_string(*gap, "room"), room) << json::serialize(*gap);
  EXPECT_EQ(json_string(*gap, "reason"), "epoch") << json::serialize(*gap);
  EXPECT_EQ(json_int(*gap, "seq"), 4) << json::serialize(*gap);
  EXPECT_EQ(json_string(*gap, "epoch"), epoch) << json::serialize(*gap);
  publish(room, "e-" + tok_ + "-5", 5);
  expect_message(m, room, 5, "live after an epoch gap");
  expect_quiet(m, "after the epoch gap");

  // Join frame with a wrong epoch.
  const std::string other = "re2" + tok_;
  publish(other, "e2-" + tok_ + "-1", 1);
  ASSERT_TRUE(m->send_text(R"({"type":"join","room":")" + other + R"(","since":1,"epoch":"nope"})"));
  std::vector<json::value> seen;
  auto g2 = read_until(m, "gap", seen);
  ASSERT_TRUE(g2.has_value()) << dump(seen);
  EXPECT_EQ(json_string(*g2, "reason"), "epoch") << dump(seen);
  EXPECT_EQ(json_int(*g2, "seq"), 1) << dump(seen);

  // Expired: exp-* keeps history 1 s after the last message. The reconnect finds no history, so
  // the room starts a new epoch (created by this join) and the client is told its epoch is gone.
  const std::string exp = "exp-" + tok_;
  std::string exp_epoch;
  for (int i = 1; i <= 3; ++i) exp_epoch = publish(exp, "x-" + tok_ + "-" + std::to_string(i), i).epoch();
  std::this_thread::sleep_for(1300ms);
  auto late = join_path(port(), recovery_path(exp, "STU", "u2", 3, exp_epoch));
  auto g3 = late->read_json();
  ASSERT_TRUE(g3.has_value());
  EXPECT_EQ(json_string(*g3, "type"), "gap") << json::serialize(*g3);
  EXPECT_EQ(json_string(*g3, "reason"), "epoch") << json::serialize(*g3);
  EXPECT_NE(json_string(*g3, "epoch"), exp_epoch) << json::serialize(*g3);
  auto a = publish(exp, "x-" + tok_ + "-4", 4);
  EXPECT_EQ(a.seq(), 1u) << "expired history must restart numbering: " << json::serialize(a.body);
  EXPECT_NE(a.epoch(), exp_epoch) << "expired history must start a new epoch: " << json::serialize(a.body);
  expect_message(late, exp, 1, "live after the expired gap");
  EXPECT_GE(json_int(get_stats(port()), "recovery_gaps"), 3) << json::serialize(get_stats(port()));
}

// (d) since older than what the size limit keeps -> gap trimmed; since at the edge -> recovered.
TEST_F(recovery_single, since_older_than_the_kept_history_gets_a_trimmed_gap) {
  const std::string room = "tiny-" + tok_;
  std::string epoch;
  for (int i = 1; i <= 10; ++i) epoch = publish(room, "t-" + tok_ + "-" + std::to_string(i), i).epoch();

  auto m = join_path(port(), recovery_path(room, "STU", "u1", 2, epoch));
  auto gap = m->read_json();
  ASSERT_TRUE(gap.has_value());
  EXPECT_EQ(json_string(*gap, "type"), "gap") << json::serialize(*gap);
  EXPECT_EQ(json_string(*gap, "reason"), "trimmed") << json::serialize(*gap);
  EXPECT_EQ(json_int(*gap, "seq"), 10) << json::serialize(*gap);
  EXPECT_EQ(json_string(*gap, "epoch"), epoch) << json::serialize(*gap);
  expect_quiet(m, "a trimmed gap must not replay a partial history", 200ms);
  publish(room, "t-" + tok_ + "-11", 11);
  expect_message(m, room, 11, "live after a trimmed gap");

  // The 5 kept messages are 7..11: since=6 is exactly covered.
  auto edge = join_path(port(), recovery_path(room, "STU", "u2", 6, epoch));
  for (std::uint64_t i = 7; i <= 11; ++i) expect_message(edge, room, i, "recovery at the edge of the kept history");
  auto rec = edge->read_json();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(json_string(*rec, "type"), "recovered") << json::serialize(*rec);
  EXPECT_EQ(json_int(*rec, "from"), 7) << json::serialize(*rec);
  EXPECT_EQ(json_int(*rec, "to"), 11) << json::serialize(*rec);
}

// (e) The same id twice: API and client publish frames.
TEST_F(recovery_single, a_publish_id_is_delivered_once) {
  const std::string room = "ri" + tok_;
  auto stu = join_path(port(), recovery_path(room, "STU", "s1"));
  const std::string id = "dup-" + tok_;
  auto first = publish(room, id, 1);
  auto second = publish(room, id, 2);
  EXPECT_FALSE(first.duplicate()) << json::serialize(first.body);
  EXPECT_TRUE(second.duplicate()) << json::serialize(second.body);
  EXPECT_EQ(second.seq(), first.seq()) << json::serialize(second.body);
  EXPECT_EQ(second.epoch(), first.epoch()) << json::serialize(second.body);
  EXPECT_EQ(json_string(second.body, "id"), id) << json::serialize(second.body);
  auto marker = publish(room, "marker-" + tok_, 3);
  EXPECT_EQ(marker.seq(), first.seq() + 1) << "a duplicate must not take a seq: " << json::serialize(marker.body);

  auto frames = std::vector<json::value>{};
  ASSERT_TRUE(read_message_id(stu, "marker-" + tok_, &frames).has_value()) << dump(frames);
  ASSERT_EQ(frames.size(), 1u) << "the member must see the id once, then the marker: " << dump(frames);
  EXPECT_EQ(json_string(frames[0], "id"), id);
  EXPECT_EQ(json_int(frames[0], "data.n"), 1)
      << "the second publish's data must not replace the first: " << dump(frames);

  // Client publish frames (teacher).
  auto the = join_path(port(), recovery_path(room, "THE", "t1"));
  const std::string cid = "cdup-" + tok_;
  const std::string frame = R"({"type":"publish","room":")" + room + R"(","data":{"c":1},"id":")" + cid + R"("})";
  ASSERT_TRUE(the->send_text(frame));
  std::vector<json::value> seen;
  auto ack1 = read_until(the, "ack", seen);
  ASSERT_TRUE(ack1.has_value()) << dump(seen);
  EXPECT_EQ(json_string(*ack1, "id"), cid) << json::serialize(*ack1);
  EXPECT_EQ(json_int(*ack1, "seq"), static_cast<std::int64_t>(marker.seq() + 1)) << json::serialize(*ack1);
  EXPECT_FALSE(json_bool(*ack1, "duplicate")) << json::serialize(*ack1);
  ASSERT_TRUE(the->send_text(frame));
  auto ack2 = read_until(the, "ack", seen);
  ASSERT_TRUE(ack2.has_value()) << dump(seen);
  EXPECT_TRUE(json_bool(*ack2, "duplicate")) << json::serialize(*ack2);
  EXPECT_EQ(json_int(*ack2, "seq"), json_int(*ack1, "seq")) << json::serialize(*ack2);
  publish(room, "marker2-" + tok_, 4);
  frames.clear();
  ASSERT_TRUE(read_message_id(stu, "marker2-" + tok_, &frames).has_value()) << dump(frames);
  ASSERT_EQ(frames.size(), 1u) << "client publish id delivered more than once: " << dump(frames);
  EXPECT_EQ(json_string(frames[0], "id"), cid);
  EXPECT_EQ(json_string(frames[0], "from"), "t1");
}

// (f) GET /api/rooms/{room}/history.
TEST_F(recovery_single, history_api_lists_messages_after_since) {
  const std::string room = "rq" + tok_;
  std::string epoch;
  for (int i = 1; i <= 5; ++i) epoch = publish(room, "q-" + tok_ + "-" + std::to_string(i), i).epoch();
  auto h = get_json(port(), "/api/rooms/" + room + "/history?since=3");
  EXPECT_EQ(json_string(h, "room"), room) << json::serialize(h);
  EXPECT_EQ(json_string(h, "epoch"), epoch) << json::serialize(h);
  EXPECT_EQ(json_int(h, "seq"), 5) << json::serialize(h);
  EXPECT_EQ(json_int(h, "since"), 3) << json::serialize(h);
  EXPECT_TRUE(json_bool(h, "complete")) << json::serialize(h);
  const auto* msgs = json_find(h, "messages");
  ASSERT_TRUE(msgs && msgs->is_array()) << json::serialize(h);
  ASSERT_EQ(msgs->get_array().size(), 2u) << json::serialize(h);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& e = msgs->get_array()[i];
    EXPECT_EQ(json_int(e, "seq"), static_cast<std::int64_t>(4 + i)) << json::serialize(e);
    EXPECT_EQ(json_string(e, "id"), "q-" + tok_ + "-" + std::to_string(4 + i)) << json::serialize(e);
    EXPECT_EQ(json_string(e, "from"), "api") << json::serialize(e);
    EXPECT_EQ(json_int(e, "data.n"), static_cast<std::int64_t>(4 + i)) << json::serialize(e);
  }
  auto all = get_json(port(), "/api/rooms/" + room + "/history");
  EXPECT_EQ(json_find(all, "messages")->get_array().size(), 5u) << json::serialize(all);
  EXPECT_TRUE(json_bool(all, "complete")) << json::serialize(all);
  auto limited = get_json(port(), "/api/rooms/" + room + "/history?since=1&limit=2");
  EXPECT_EQ(json_find(limited, "messages")->get_array().size(), 2u) << json::serialize(limited);
  EXPECT_FALSE(json_bool(limited, "complete", true)) << "limit cut it short: " << json::serialize(limited);
  auto head = get_json(port(), "/api/rooms/" + room + "/history?since=5");
  EXPECT_TRUE(json_find(head, "messages")->get_array().empty()) << json::serialize(head);
  EXPECT_TRUE(json_bool(head, "complete")) << json::serialize(head);

  // A room under a 0-messages rule: no seq, no history.
  const std::string none = "nohist-" + tok_;
  auto stu = join_path(port(), recovery_path(none, "STU", "s1"));
  EXPECT_EQ(json_find(welcome_room(stu.welcome, none), "epoch"), nullptr) << json::serialize(stu.welcome);
  auto a = publish(none, "n-" + tok_, 1);
  EXPECT_EQ(json_find(a.body, "seq"), nullptr) << json::serialize(a.body);
  auto f = stu->read_json();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(json_string(*f, "type"), "message") << json::serialize(*f);
  EXPECT_EQ(json_find(*f, "seq"), nullptr)
      << "a room without history must not number messages: " << json::serialize(*f);
  auto res = http_get(port(), "/api/rooms/" + none + "/history?since=0");
  EXPECT_EQ(res.status, 404u) << res.body;
  EXPECT_NE(res.body.find("no_history"), std::string::npos) << res.body;
}

// (g) Live messages published while a client recovers are neither lost nor duplicated.
TEST_F(recovery_single, live_messages_during_recovery_are_merged_by_seq) {
  const std::string room = "rl" + tok_;
  auto seed = publish(room, "l-" + tok_ + "-0", 0);  // so that the welcome carries the epoch
  ASSERT_EQ(seed.seq(), 1u);
  constexpr int total = 200;
  std::atomic<int> published{0};
  std::atomic<std::uint64_t> head{1};
  std::atomic<bool> failed{false};
  std::string fail_why;

  seq_tracker t{room};
  auto ws = std::make_unique<ws_client>();  // one per connection
  ASSERT_EQ(ws->connect(port(), recovery_path(room, "STU", "u1")), 101u);
  bool welcomed = false;
  auto pump = [&](std::chrono::milliseconds wait) {
    for (auto& f : ws->read_available(wait)) {
      auto v = try_parse_json(f);
      if (v && json_string(*v, "type") == "welcome") {
        t.on_welcome(*v, !welcomed);
        welcomed = true;
        continue;
      }
      t.on_frame(f);
    }
  };
  while (!welcomed) {
    pump(100ms);
    ASSERT_FALSE(ws->closed());
  }
  ASSERT_EQ(t.epoch, seed.epoch());

  std::thread publisher([&] {
    for (int i = 1; i <= total; ++i) {
      auto a = try_publish(port(), room_body(room, "l-" + tok_ + "-" + std::to_string(i), std::to_string(i)));
      if (a.status != 200) {
        failed = true;
        fail_why = a.error + " " + json::serialize(a.body);
        return;
      }
      head = a.seq();
      ++published;
      std::this_thread::sleep_for(2ms);
    }
  });

  // Drop and reconnect with since at three points while the publisher runs.
  int reconnects = 0;
  for (std::uint64_t at : {40u, 100u, 160u}) {
    auto deadline = std::chrono::steady_clock::now() + 15s;
    while (t.last < at && std::chrono::steady_clock::now() < deadline && !ws->closed()) pump(20ms);
    ASSERT_GE(t.last, at) << "stalled at seq " << t.last << t.context();
    ws->drop();
    std::this_thread::sleep_for(std::chrono::milliseconds(10 + 10 * reconnects));  // let some go by
    ws = std::make_unique<ws_client>();
    ASSERT_EQ(ws->connect(port(), recovery_path(room, "STU", "u1", t.last, t.epoch)), 101u);
    ++reconnects;
  }
  publisher.join();
  ASSERT_FALSE(failed) << fail_why;
  const std::uint64_t final_head = head;
  EXPECT_EQ(final_head, static_cast<std::uint64_t>(total + 1));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (t.last < final_head && std::chrono::steady_clock::now() < deadline && !ws->closed()) pump(20ms);
  pump(200ms);  // anything extra (duplicates) shows up now

  EXPECT_TRUE(t.anomalies.empty()) << t.anomalies.size() << " anomalies; first: " << t.anomalies.front();
  EXPECT_EQ(check_exact(t.seqs, 2, final_head), "");
  EXPECT_TRUE(t.gaps.empty()) << dump(t.gaps);
  EXPECT_EQ(t.recovered.size(), 3u) << dump(t.recovered);
  std::cout << "[ INFO     ] " << t.seqs.size() << " messages over " << reconnects + 1
            << " connections; recovered: " << dump(t.recovered) << "\n";
}

}  // namespace
}  // namespace roomcast::itest::recovery
