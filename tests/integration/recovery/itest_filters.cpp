// Filtered room messages (`roles`, `platforms`, `users` on POST /api/publish and on client publish
// frames) with real processes:
//   - one node, local bus: each member gets exactly the messages meant for it, with the room's
//     seqs, and never a gap; client publishes with a filter; a student may still not publish;
//   - one node: a member that reconnects (URL and join frame) with since/epoch recovers only what
//     was for it, then `recovered`, no gap (also when everything it missed was for others);
//   - three nodes, RabbitMQ bus + Redis history: kill -9 of a node mid-stream with half the
//     messages for teachers only; its clients recover on another node, every client ends with
//     exactly its seqs;
//   - bad filters over HTTP: 400 and nothing published (the room's next seq unchanged);
//   - a lossy Redis Pub/Sub bus: holes are filled from history, each message's filter applied.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>

#include "recovery_support.hpp"

namespace roomcast::itest::recovery {
namespace {

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new broker_environment);

// A frame in a few words, so that a member's frames compare as one list: "message 3 <id>",
// "ack 10 <id>", "error forbidden <id>", "recovered 2..8", "gap lost 5", "joined 8".
std::string summary(const json::value& f) {
  const auto type = json_string(f, "type");
  if (type == "message") return "message " + std::to_string(json_int(f, "seq")) + " " + json_string(f, "id");
  if (type == "ack")
    return "ack " + std::to_string(json_int(f, "seq")) + " " + json_string(f, "id") +
           (json_bool(f, "duplicate") ? " duplicate" : "");
  if (type == "error") return "error " + json_string(f, "code") + " " + json_string(f, "id");
  if (type == "recovered")
    return "recovered " + std::to_string(json_int(f, "from")) + ".." + std::to_string(json_int(f, "to"));
  if (type == "gap") return "gap " + json_string(f, "reason") + " " + std::to_string(json_int(f, "seq"));
  if (type == "joined") return "joined " + std::to_string(json_int(f, "seq"));
  return json::serialize(f);
}

std::vector<std::string> summaries(const std::vector<json::value>& frames) {
  std::vector<std::string> out;
  for (const auto& f : frames) out.push_back(summary(f));
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "\n    " + x;
  return s;
}

// ,"users":["u0",…,"u<n-1>"] (plus `also` first when given).
std::string users_member(std::size_t n, const std::string& also = {}) {
  std::string s = ",\"users\":[";
  if (!also.empty()) s += json_quote(also) + (n ? "," : "");
  for (std::size_t i = 0; i < n; ++i) s += (i ? ",\"u" : "\"u") + std::to_string(i) + "\"";
  return s + "]";
}

// ---------------------------------------------------------------- one node

class filters_single : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = start_node({"--threads", "2"});
    tok_ = random_token(6);
  }

  std::uint16_t port() const { return node_->port(); }

  // POST /api/publish of a room message with `extra` members (a filter); asserts 200 and `seq`.
  publish_answer publish(const std::string& room, const std::string& id, const std::string& extra, std::uint64_t seq) {
    auto a = try_publish(port(), room_body(room, id, "{\"id\":" + json_quote(id) + "}", extra));
    EXPECT_EQ(a.status, 200u) << id << extra << ": " << a.error << " " << json::serialize(a.body);
    EXPECT_EQ(a.seq(), seq) << id << extra << ": " << json::serialize(a.body);
    return a;
  }

  // Publishes an unfiltered marker (it must get `seq`) and checks that each member got exactly
  // want[name] before it (as summaries), then the marker, then nothing more.
  void expect_frames(std::vector<std::pair<std::string, member*>> members, const std::string& room,
                     const std::string& marker, std::uint64_t seq,
                     const std::map<std::string, std::vector<std::string>>& want) {
    publish(room, marker, "", seq);
    for (auto& [name, m] : members) {
      std::vector<json::value> before;
      auto f = read_message_id(*m, marker, &before);
      ASSERT_TRUE(f.has_value()) << name << ": no marker " << marker << "; got " << dump(before);
      EXPECT_EQ(json_int(*f, "seq"), static_cast<std::int64_t>(seq)) << name << ": " << json::serialize(*f);
      EXPECT_EQ(summaries(before), want.at(name)) << name << " got, before " << marker << ":"
                                                  << joined(summaries(before)) << "\n  want:" << joined(want.at(name));
      auto extra = collect(*m, 150ms);
      EXPECT_TRUE(extra.empty()) << name << ": frames after the marker " << dump(extra);
    }
  }

  double filtered_total() { return metric_value(port(), "roomcast_messages_filtered_total"); }

  std::unique_ptr<node_process> node_;
  std::string tok_;
};

// 1. Each member gets exactly what is for it (AND across lists, OR within one), in seq order,
//    without a gap; the filter stays with the message in history; client publishes with a filter.
TEST_F(filters_single, each_member_gets_exactly_the_messages_for_it) {
  const std::string room = "fa" + tok_;
  auto teacher = join(port(), room, "THE", "t1", "pc");
  auto pc = join(port(), room, "STU", "s1", "pc");
  auto ios = join(port(), room, "STU", "s2", "ios");
  const double filtered_before = filtered_total();
  ASSERT_GE(filtered_before, 0) << "no roomcast_messages_filtered_total in /metrics";

  struct msg {
    std::string extra;
    std::set<std::string> to;  // of teacher, pc, ios
  };
  const std::vector<msg> msgs{
      {"", {"teacher", "pc", "ios"}},
      {R"(,"roles":["THE"])", {"teacher"}},
      {R"(,"platforms":["ios"])", {"ios"}},
      {R"(,"users":["s1"])", {"pc"}},
      {R"(,"roles":["STU"],"platforms":["ios"])", {"ios"}},
      {R"(,"roles":["THE"],"platforms":["ios"])", {}},  // AND: no teacher on ios
      {R"(,"roles":["STU","THE"],"users":["s2","t1"])", {"teacher", "ios"}},
      {R"(,"users":["s1","nobody"],"platforms":["pc"],"roles":["STU"])", {"pc"}},
      {R"(,"users":["s2","s2"])", {"ios"}},  // a repeated value is one
  };
  std::map<std::string, std::vector<std::string>> want{{"teacher", {}}, {"pc", {}}, {"ios", {}}};
  std::string epoch;
  double skips = 0;
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const std::string id = "f-" + tok_ + "-" + std::to_string(i + 1);
    auto a = publish(room, id, msgs[i].extra, i + 1);
    if (i == 0) epoch = a.epoch();
    EXPECT_EQ(a.epoch(), epoch) << json::serialize(a.body);
    for (auto& [name, frames] : want)
      if (msgs[i].to.contains(name)) frames.push_back("message " + std::to_string(i + 1) + " " + id);
    skips += static_cast<double>(3 - msgs[i].to.size());
  }
  const auto marker_seq = msgs.size() + 1;
  expect_frames({{"teacher", &teacher}, {"pc", &pc}, {"ios", &ios}}, room, "mark-" + tok_, marker_seq, want);
  if (HasFatalFailure()) return;
  EXPECT_EQ(filtered_total() - filtered_before, skips)
      << "roomcast_messages_filtered_total: one per member passed over";

  // History keeps each message with its filter.
  auto h = get_json(port(), "/api/rooms/" + room + "/history");
  const auto* hm = json_find(h, "messages");
  ASSERT_TRUE(hm && hm->is_array() && hm->get_array().size() == marker_seq) << json::serialize(h);
  const auto& entries = hm->get_array();
  auto list = [&](std::size_t i, const char* key) {
    const auto* v = json_find(entries[i], key);
    return v ? json::serialize(*v) : std::string("absent");
  };
  EXPECT_EQ(list(0, "roles"), "absent") << json::serialize(entries[0]);
  EXPECT_EQ(list(1, "roles"), R"(["THE"])") << json::serialize(entries[1]);
  EXPECT_EQ(list(4, "platforms"), R"(["ios"])") << json::serialize(entries[4]);
  EXPECT_EQ(list(4, "roles"), R"(["STU"])") << json::serialize(entries[4]);
  EXPECT_EQ(list(8, "users"), R"(["s2"])") << json::serialize(entries[8]);

  // Client publishes from the teacher, with a filter: only the target gets them (not the teacher).
  const std::string c1 = "c1-" + tok_, c2 = "c2-" + tok_, c3 = "c3-" + tok_;
  const auto s = marker_seq;
  ASSERT_TRUE(teacher->send_text(R"({"type":"publish","room":")" + room + R"(","data":{"c":1},"id":")" + c1 +
                                 R"(","users":["s2"]})"));
  auto ack = teacher->read_json();
  ASSERT_TRUE(ack.has_value()) << teacher->read_error();
  EXPECT_EQ(summary(*ack), "ack " + std::to_string(s + 1) + " " + c1) << json::serialize(*ack);
  std::vector<json::value> before;
  auto got = read_message_id(ios, c1, &before);
  ASSERT_TRUE(got.has_value()) << "ios never got the teacher's publish to s2: " << dump(before);
  EXPECT_TRUE(before.empty()) << dump(before);
  EXPECT_EQ(json_int(*got, "seq"), static_cast<std::int64_t>(s + 1)) << json::serialize(*got);
  EXPECT_EQ(json_string(*got, "from"), "t1") << json::serialize(*got);
  EXPECT_EQ(json_int(*got, "data.c"), 1) << json::serialize(*got);

  ASSERT_TRUE(teacher->send_text(R"({"type":"publish","room":")" + room + R"(","data":{"c":2},"id":")" + c2 +
                                 R"(","roles":["STU"],"platforms":["pc"]})"));
  ack = teacher->read_json();
  ASSERT_TRUE(ack.has_value()) << teacher->read_error();
  EXPECT_EQ(summary(*ack), "ack " + std::to_string(s + 2) + " " + c2) << json::serialize(*ack);
  got = read_message_id(pc, c2, &before);
  ASSERT_TRUE(got.has_value()) << "pc never got the teacher's publish to STU on pc: " << dump(before);
  EXPECT_TRUE(before.empty()) << dump(before);
  EXPECT_EQ(json_int(*got, "seq"), static_cast<std::int64_t>(s + 2)) << json::serialize(*got);

  // A student still may not publish, filter or not: refused, and it takes no seq.
  ASSERT_TRUE(pc->send_text(R"({"type":"publish","room":")" + room + R"(","data":{"c":3},"id":")" + c3 +
                            R"(","roles":["THE"]})"));
  auto err = pc->read_json();
  ASSERT_TRUE(err.has_value()) << pc->read_error();
  EXPECT_EQ(summary(*err), "error forbidden " + c3) << json::serialize(*err);

  expect_frames({{"teacher", &teacher}, {"pc", &pc}, {"ios", &ios}}, room, "mark2-" + tok_, s + 3,
                {{"teacher", {}}, {"pc", {}}, {"ios", {}}});
  EXPECT_EQ(filtered_total() - filtered_before, skips + 4) << "the two client publishes skip two members each";
}

// 2. A member that was away recovers only what was for it (URL and join frame), with a
//    `recovered` frame and no gap; also when all it missed was for others.
TEST_F(filters_single, recovery_replays_only_the_members_messages) {
  const std::string room = "fr" + tok_;
  auto teacher = join(port(), room, "THE", "t1", "pc");
  auto ios = join(port(), room, "STU", "s2", "ios");
  auto pc = join(port(), room, "STU", "s1", "pc");
  const auto epoch = publish(room, "r-" + tok_ + "-1", "", 1).epoch();
  ASSERT_FALSE(epoch.empty());
  ASSERT_TRUE(read_message_id(pc, "r-" + tok_ + "-1").has_value());
  pc->close();

  const std::vector<std::pair<std::string, bool>> away{
      // filter, for s1 (STU on pc)
      {R"(,"roles":["THE"])", false},
      {R"(,"users":["s1"])", true},
      {R"(,"platforms":["ios"])", false},
      {"", true},
      {R"(,"roles":["STU"],"platforms":["pc"])", true},
      {R"(,"users":["s2"])", false},
      {R"(,"roles":["THE"])", false},
  };
  std::vector<std::string> want;
  std::uint64_t seq = 1;
  for (const auto& [extra, mine] : away) {
    const std::string id = "r-" + tok_ + "-" + std::to_string(++seq);
    publish(room, id, extra, seq);
    if (mine) want.push_back("message " + std::to_string(seq) + " " + id);
  }
  want.push_back("recovered 2.." + std::to_string(seq));

  // Through the URL.
  {
    auto back = join_path(port(), recovery_path(room, "STU", "s1", 1, epoch, "pc"));
    auto pos = welcome_room(back.welcome, room);
    EXPECT_EQ(json_int(pos, "seq"), static_cast<std::int64_t>(seq)) << json::serialize(back.welcome);
    EXPECT_EQ(json_string(pos, "epoch"), epoch) << json::serialize(back.welcome);
    std::vector<json::value> frames;
    auto rec = read_type_keeping(back, "recovered", &frames);
    ASSERT_TRUE(rec.has_value()) << "no recovered frame; got " << dump(frames);
    frames.push_back(*rec);
    EXPECT_EQ(summaries(frames), want) << "got:" << joined(summaries(frames)) << "\n  want:" << joined(want);
    // Live again: one not for it, one for it.
    publish(room, "r-" + tok_ + "-live1", R"(,"roles":["THE"])", seq + 1);
    publish(room, "r-" + tok_ + "-live2", R"(,"platforms":["pc"])", seq + 2);
    frames.clear();
    ASSERT_TRUE(read_message_id(back, "r-" + tok_ + "-live2", &frames).has_value()) << dump(frames);
    EXPECT_TRUE(frames.empty()) << "before the live message for it: " << dump(frames);
    seq += 2;
    back->close();
  }

  // Everything it missed is for others: only the recovered frame (no gap, no message).
  for (int i = 0; i < 3; ++i) publish(room, "r-" + tok_ + "-t" + std::to_string(i), R"(,"roles":["THE"])", ++seq);
  {
    auto back = join_path(port(), recovery_path(room, "STU", "s1", seq - 3, epoch, "pc"));
    std::vector<json::value> frames;
    auto rec = read_type_keeping(back, "recovered", &frames);
    ASSERT_TRUE(rec.has_value()) << "no recovered frame; got " << dump(frames);
    EXPECT_TRUE(frames.empty()) << dump(frames);
    EXPECT_EQ(summary(*rec), "recovered " + std::to_string(seq - 2) + ".." + std::to_string(seq));
    publish(room, "r-" + tok_ + "-after", "", ++seq);
    frames.clear();
    ASSERT_TRUE(read_message_id(back, "r-" + tok_ + "-after", &frames).has_value()) << dump(frames);
    EXPECT_TRUE(frames.empty()) << dump(frames);
    back->close();
  }

  // Through a join frame: s1 is in a home room, leaves `room`'s stream behind and comes back.
  const std::string home = "fh" + tok_;
  auto other = join(port(), home, "STU", "s1", "pc");
  const auto since = seq;
  std::vector<std::string> want_join;
  const std::vector<std::pair<std::string, bool>> away2{
      {R"(,"platforms":["ios"])", false}, {R"(,"users":["s1","s2"])", true}, {R"(,"roles":["THE"])", false}};
  for (const auto& [extra, mine] : away2) {
    const std::string id = "r-" + tok_ + "-j" + std::to_string(++seq);
    publish(room, id, extra, seq);
    if (mine) want_join.push_back("message " + std::to_string(seq) + " " + id);
  }
  want_join.insert(want_join.begin(), "joined " + std::to_string(seq));
  want_join.push_back("recovered " + std::to_string(since + 1) + ".." + std::to_string(seq));
  ASSERT_TRUE(other->send_text(R"({"type":"join","room":")" + room + R"(","since":)" + std::to_string(since) +
                               R"(,"epoch":")" + epoch + R"("})"));
  std::vector<json::value> frames;
  auto rec = read_type_keeping(other, "recovered", &frames);
  ASSERT_TRUE(rec.has_value()) << "no recovered frame after the join; got " << dump(frames);
  frames.push_back(*rec);
  EXPECT_EQ(summaries(frames), want_join) << "got:" << joined(summaries(frames)) << "\n  want:" << joined(want_join);
  publish(room, "r-" + tok_ + "-end", "", ++seq);
  frames.clear();
  ASSERT_TRUE(read_message_id(other, "r-" + tok_ + "-end", &frames).has_value()) << dump(frames);
  EXPECT_TRUE(frames.empty()) << dump(frames);
  EXPECT_TRUE(collect(other, 150ms).empty());

  // The members that stayed never saw a gap either.
  for (auto* m : {&teacher, &ios}) {
    std::vector<json::value> all;
    ASSERT_TRUE(read_message_id(*m, "r-" + tok_ + "-end", &all).has_value()) << dump(all);
    for (const auto& f : all) EXPECT_NE(json_string(f, "type"), "gap") << json::serialize(f);
  }
  EXPECT_EQ(json_int(get_stats(port()), "recovery_gaps"), 0) << json::serialize(get_stats(port()));
}

// 4. A users list over filter_max_users: 400 with a clear message, nothing published.
TEST_F(filters_single, too_many_users_is_refused_and_publishes_nothing) {
  const std::string room = "fb" + tok_;
  auto teacher = join(port(), room, "THE", "t1", "pc");
  auto stu = join(port(), room, "STU", "s1", "pc");
  publish(room, "b-" + tok_ + "-1", "", 1);

  auto refused = [&](const std::string& body, const std::string& what, const std::string& needle) {
    auto res = http_post_json(port(), "/api/publish", body, {}, 10s);
    EXPECT_EQ(res.status, 400u) << what << ": " << res.body.substr(0, 300);
    auto v = try_parse_json(res.body);
    ASSERT_TRUE(v.has_value()) << what << ": " << res.body.substr(0, 300);
    EXPECT_EQ(json_string(*v, "error.code"), "bad_request") << what << ": " << res.body;
    const auto message = json_string(*v, "error.message");
    EXPECT_TRUE(contains_ci(message, "users") && contains_ci(message, needle) && contains_ci(message, "1000"))
        << what << ": the message should name \"users\", the count and the limit: " << message;
  };
  // 9,001 ids: over filter_max_users but under json_max_members (10000), so the filter names them.
  const std::string big = room_body(room, "b-" + tok_ + "-big", "{\"big\":true}", users_member(9'000, "s1"));
  refused(big, "9,000 users", "9001");
  refused(room_body(room, "b-" + tok_ + "-1001", "{}", users_member(1000, "s1")), "1001 users", "1001");
  refused("[" + room_body(room, "b-" + tok_ + "-ok", "{}") + "," + big + "]", "a batch with one bad message", "9001");

  // Nothing was published: the room's next seq is 2, the refused ids are free, nobody got anything.
  publish(room, "b-" + tok_ + "-big", R"(,"users":["s1"])", 2);  // the refused id, now valid
  publish(room, "b-" + tok_ + "-ok", "", 3);
  // Exactly at the limit is accepted.
  publish(room, "b-" + tok_ + "-1000", users_member(999, "s1"), 4);
  auto h = get_json(port(), "/api/rooms/" + room + "/history");
  EXPECT_EQ(json_int(h, "seq"), 4) << json::serialize(h).substr(0, 300);

  // A client publish frame over the limit: an error frame, no seq.
  ASSERT_TRUE(teacher->send_text(R"({"type":"publish","room":")" + room + R"(","data":{},"id":"b-)" + tok_ +
                                 R"(-frame")" + users_member(1000, "s1") + "}"));
  std::vector<json::value> frames;
  auto err = read_type_keeping(teacher, "error", &frames);
  ASSERT_TRUE(err.has_value()) << "no error frame for a client publish with 1001 users: " << dump(frames);
  EXPECT_EQ(json_string(*err, "code"), "bad_request") << json::serialize(*err);
  EXPECT_TRUE(contains_ci(json_string(*err, "message"), "users")) << json::serialize(*err);

  const std::map<std::string, std::vector<std::string>> want{
      {"teacher",
       {"message 1 b-" + tok_ + "-1", "message 3 b-" + tok_ + "-ok", "error bad_request b-" + tok_ + "-frame"}},
      {"stu",
       {"message 1 b-" + tok_ + "-1", "message 2 b-" + tok_ + "-big", "message 3 b-" + tok_ + "-ok",
        "message 4 b-" + tok_ + "-1000"}}};
  // The teacher's frames before the error were read above; check them with the rest.
  std::vector<json::value> teacher_frames = frames;
  teacher_frames.push_back(*err);
  publish(room, "b-" + tok_ + "-end", "", 5);
  std::vector<json::value> rest;
  ASSERT_TRUE(read_message_id(teacher, "b-" + tok_ + "-end", &rest).has_value()) << dump(rest);
  teacher_frames.insert(teacher_frames.end(), rest.begin(), rest.end());
  EXPECT_EQ(summaries(teacher_frames), want.at("teacher")) << "teacher got:" << joined(summaries(teacher_frames));
  rest.clear();
  ASSERT_TRUE(read_message_id(stu, "b-" + tok_ + "-end", &rest).has_value()) << dump(rest);
  EXPECT_EQ(summaries(rest), want.at("stu")) << "student got:" << joined(summaries(rest));
}

// ---------------------------------------------------------------- three nodes

// Message n of the stream: even = teachers only, n % 4 == 3 = ios only, n % 4 == 1 = everyone.
std::string stream_filter(std::uint64_t n) {
  if (n % 2 == 0) return R"(,"roles":["THE"])";
  if (n % 4 == 3) return R"(,"platforms":["ios"])";
  return "";
}

bool stream_for(std::uint64_t n, const std::string& role, const std::string& platform) {
  if (n % 2 == 0) return role == "THE";
  if (n % 4 == 3) return platform == "ios";
  return true;
}

const std::vector<std::pair<std::string, std::string>> k_kinds{
    {"THE", "pc"}, {"STU", "pc"}, {"STU", "ios"}, {"THE", "ios"}};  // role, platform

// One client of each kind in `room`, tracking a filtered stream.
void add_kinds(client_pool& pool, std::uint16_t port, const std::string& room, const std::string& user_prefix) {
  for (std::size_t k = 0; k < k_kinds.size(); ++k) {
    auto& c = pool.add(port, room, user_prefix + "-" + std::to_string(k));
    c.role = k_kinds[k].first;
    c.platform = k_kinds[k].second;
    c.t.filtered = true;
  }
}

// "" when the client got exactly `want` (each once, in order), no gap frame and no anomaly.
std::string verdict(const pooled_client& c, const std::vector<std::uint64_t>& want) {
  std::string why = check_seqs(c.t.seqs, want);
  if (!c.t.anomalies.empty()) why += " anomaly: " + c.t.anomalies.front();
  if (!c.t.gaps.empty()) why += " gap frames: " + dump(c.t.gaps);
  return why;
}

// Param: the stream is published to the node that is killed (then, as a backend would, to a
// survivor, with the same ids): seqs the dead node numbered but never put on the bus are holes for
// the survivors, filled from history.
class filters_cluster : public ::testing::TestWithParam<bool> {
 protected:
  void TearDown() override {
    if (HasFailure()) {
      for (auto& n : nodes_)
        if (n.proc) std::cerr << "--- node " << n.id << " (port " << n.port() << ") ---\n" << n.proc->output_tail(30);
    }
    pool_.reset();
    nodes_.clear();
  }

  std::vector<cluster_node> nodes_;
  std::unique_ptr<client_pool> pool_ = std::make_unique<client_pool>();
};

// 3. kill -9 of a node mid-stream; half the stream is for teachers only.
TEST_P(filters_cluster, kill9_mid_filtered_stream_every_client_gets_exactly_its_seqs) {
  const bool publish_to_victim = GetParam();
  redis_server redis;
  cluster_options o{unique_prefix(), amqp_uri(), redis.address(), {}};
  for (int i = 0; i < 3; ++i) nodes_.push_back(start_cluster_node("n" + std::to_string(i), o));
  for (auto& n : nodes_) ASSERT_EQ(wait_ready(n.port()).status, 200u) << n.id << " not ready";

  const std::string tok = random_token(5);
  const std::vector<std::string> rooms{"fk" + tok + "a", "fk" + tok + "b"};
  for (std::size_t node = 0; node < nodes_.size(); ++node)
    for (const auto& room : rooms) add_kinds(*pool_, nodes_[node].port(), room, "u" + tok + std::to_string(node));
  for (const auto& r : rooms) {  // so that welcomes carry the epoch
    auto a = try_publish(nodes_[0].port(), room_body(r, "seed-" + r, "{}"));
    ASSERT_EQ(a.status, 200u) << a.error << json::serialize(a.body);
  }
  auto why = pool_->connect_all(30s);
  ASSERT_TRUE(why.empty()) << why;
  pool_->start();
  ASSERT_TRUE(pool_->wait_all([](const pooled_client& c) { return c.ever_welcomed; }, 20s));
  for (auto& n : nodes_) ASSERT_TRUE(wait_room_binds(n.port(), 2)) << n.id << " never bound both rooms";

  // n2 is killed, its clients come back on n0 and n1; the stream goes to n0 (or to n2, then n0).
  const std::string victim = nodes_[2].id;
  stream_publisher pub(nodes_[publish_to_victim ? 2 : 0].port(), rooms, 20, "k" + tok);
  pub.members_of = [](const std::string&, std::uint64_t n) { return stream_filter(n); };
  pub.start_batched();
  std::this_thread::sleep_for(1500ms);
  std::size_t moved = 0;
  pool_->inspect([&](auto& cs) {
    for (auto& c : cs)
      if (c->port == nodes_[2].port()) c->port = nodes_[moved++ % 2].port();  // the next attempt goes there
    return 0;
  });
  nodes_[2].proc->signal(SIGKILL);
  ASSERT_TRUE(nodes_[2].proc->wait_exit(5s).has_value()) << victim << " survived SIGKILL";
  pub.set_port(nodes_[0].port());
  const auto killed_at = std::chrono::steady_clock::now();
  const bool back = pool_->wait_all(
      [&](const pooled_client& c) { return c.is_open() && c.welcomed && c.nodes.back() != victim; }, 10s);
  EXPECT_TRUE(back) << "not every client of " << victim << " is back on another node";
  std::this_thread::sleep_until(killed_at + 2s);
  pub.stop();
  pub.publish_once_each();
  EXPECT_TRUE(pub.given_up().empty()) << pub.given_up().front();

  // What each kind of client must have: the stream's seqs meant for it (n from the message id).
  std::map<std::string, std::vector<std::uint64_t>> want;  // room/role/platform
  std::map<std::string, std::uint64_t> heads;
  for (const auto& r : rooms) {
    const auto st = pub.state(r);
    ASSERT_EQ(st.epochs.size(), 1u) << r;
    const auto head = st.max_seq.at(st.epochs[0]);
    heads[r] = head;
    for (std::uint64_t s = 2; s <= head; ++s) {
      auto it = st.ids.find(s);
      ASSERT_NE(it, st.ids.end()) << r << ": no publish answer had seq " << s;
      const auto n = std::stoull(it->second.substr(it->second.rfind('-') + 1));
      for (const auto& [role, platform] : k_kinds)
        if (stream_for(n, role, platform)) want[r + "/" + role + "/" + platform].push_back(s);
    }
  }
  auto wanted = [&](const pooled_client& c) -> const std::vector<std::uint64_t>& {
    return want[c.room + "/" + c.role + "/" + c.platform];
  };
  const bool caught_up = pool_->wait_all(
      [&](const pooled_client& c) { return !c.closed() && (wanted(c).empty() || c.t.last >= wanted(c).back()); }, 20s);
  std::this_thread::sleep_for(300ms);  // duplicates would arrive now
  pool_->stop();
  EXPECT_TRUE(caught_up) << "not every client got its last seq";

  std::size_t bad = 0, recovered = 0;
  pool_->inspect([&](auto& cs) {
    for (auto& c : cs) {
      EXPECT_EQ(c->start, 1u) << c->describe();
      std::string diff = verdict(*c, wanted(*c));
      if (c->nodes.front() == victim) {
        if (c->connects < 2 || c->nodes.back() == victim) diff += " did not move off " + victim;
        if (c->t.recovered.empty()) diff += " reconnected without a recovered frame";
        recovered += c->t.recovered.size();
      }
      if (!diff.empty() && ++bad <= 6)
        ADD_FAILURE() << c->role << "/" << c->platform << " " << c->describe() << ": " << diff
                      << "\n  recent frames:" << c->t.context();
    }
    return 0;
  });
  EXPECT_EQ(bad, 0u) << "clients without exactly their seqs, in order, once each, and no gap";
  EXPECT_EQ(moved, 8u);
  std::cout << "[ INFO     ] " << pub.total_accepted() << " messages accepted (heads " << heads[rooms[0]] << ", "
            << heads[rooms[1]] << "), " << pub.stats.retries << " publish retries; " << moved << " clients moved off "
            << victim << ", " << recovered << " recovered frames; teacher/pc in " << rooms[0] << " wants "
            << want[rooms[0] + "/THE/pc"].size() << " seqs, student/pc " << want[rooms[0] + "/STU/pc"].size() << "\n";
  std::cout << "[ INFO     ] " << pub.stats.duplicates << " retries answered as duplicates; gap fills:";
  for (std::size_t i = 0; i < 2; ++i)
    std::cout << " " << nodes_[i].id << "=" << metric_value(nodes_[i].port(), "roomcast_gap_fills_total");
  std::cout << "\n";
}

INSTANTIATE_TEST_SUITE_P(stream_to, filters_cluster, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "killed_node" : "survivor"; });

// 5. A lossy bus (Redis Pub/Sub, the test hook drops every 7th room message a node receives):
//    holes are filled from history with each message's filter.
TEST(filters_redis_bus, holes_are_filled_with_the_filter_applied) {
  redis_server redis;
  const std::string prefix = unique_prefix(), tok = random_token(5), room = "fl" + tok;
  std::vector<std::unique_ptr<node_process>> nodes;
  ::setenv("ROOMCAST_TEST_HOOK_DROP_EVERY_NTH", "7", 1);  // the nodes inherit it (test builds read it)
  for (int i = 0; i < 2; ++i)
    nodes.push_back(start_node(redis_bus_args("n" + std::to_string(i), redis.address(), prefix)));
  ::unsetenv("ROOMCAST_TEST_HOOK_DROP_EVERY_NTH");
  for (auto& n : nodes) ASSERT_EQ(wait_ready(n->port()).status, 200u);

  client_pool pool;
  for (std::size_t i = 0; i < nodes.size(); ++i) add_kinds(pool, nodes[i]->port(), room, "u" + tok + std::to_string(i));
  std::vector<std::uint16_t> ports;
  for (auto& n : nodes) ports.push_back(n->port());
  const auto why = start_and_wait_subscribed(pool, ports);
  ASSERT_TRUE(why.empty()) << why;

  constexpr std::uint64_t total = 150;  // not a multiple of 7: the last one is not dropped
  retry_stats st;
  std::map<std::string, std::vector<std::uint64_t>> want;  // role/platform
  for (std::uint64_t i = 1; i <= total; ++i) {
    auto a = publish_retrying(
        nodes[i % 2]->port(),
        room_body(room, "l-" + tok + "-" + std::to_string(i), "{\"n\":" + std::to_string(i) + "}", stream_filter(i)),
        st, 10s);
    ASSERT_EQ(a.status, 200u) << a.error << json::serialize(a.body);
    ASSERT_EQ(a.seq(), i) << json::serialize(a.body);
    for (const auto& [role, platform] : k_kinds)
      if (stream_for(i, role, platform)) want[role + "/" + platform].push_back(i);
  }
  auto wanted = [&](const pooled_client& c) -> const std::vector<std::uint64_t>& {
    return want[c.role + "/" + c.platform];
  };
  const bool caught_up = pool.wait_all([&](const pooled_client& c) { return c.t.last >= wanted(c).back(); }, 20s);
  std::this_thread::sleep_for(300ms);  // duplicates would show up now
  pool.stop();
  EXPECT_TRUE(caught_up) << "not every member got its last seq";
  pool.inspect([&](auto& cs) {
    for (auto& c : cs)
      EXPECT_EQ(verdict(*c, wanted(*c)), "")
          << c->role << "/" << c->platform << " " << c->describe() << "\n  recent frames:" << c->t.context();
    return 0;
  });
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto port = nodes[i]->port();
    EXPECT_GT(metric_value(port, "roomcast_bus_test_dropped_total"), 0) << "the test hook dropped nothing on n" << i;
    EXPECT_GT(metric_value(port, "roomcast_gap_fills_total"), 0) << "n" << i << " filled no hole";
    EXPECT_EQ(metric_value(port, "roomcast_gaps_unfilled_total"), 0) << "n" << i;
    EXPECT_GT(metric_value(port, "roomcast_messages_filtered_total"), 0) << "n" << i;
  }
}

}  // namespace
}  // namespace roomcast::itest::recovery
