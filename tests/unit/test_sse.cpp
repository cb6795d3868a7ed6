// The SSE fallback's sans-io pieces: events, ids, the Accept check, and the per-shard SSE bytes of
// a shared frame (built once for all SSE recipients, with the room position as the event id).
#include "hub/member.hpp"
#include "hub/shard.hpp"
#include "protocol/sse.hpp"

#include <gtest/gtest.h>

using namespace roomcast;
using namespace roomcast::protocol;

TEST(sse, event_with_and_without_id) {
  EXPECT_EQ(sse_event(R"({"type":"message","seq":7})", 7, "9f00aa"),
            "id: 9f00aa:7\ndata: {\"type\":\"message\",\"seq\":7}\n\n");
  EXPECT_EQ(sse_event(R"({"type":"pong"})"), "data: {\"type\":\"pong\"}\n\n");
  EXPECT_EQ(sse_event("{}", 0, {}, "close"), "event: close\ndata: {}\n\n");
  // A room with history but no message yet: its position is seq 0 of its epoch.
  EXPECT_EQ(sse_event("{}", 0, "ep"), "id: ep:0\ndata: {}\n\n");
  EXPECT_EQ(encode_close(4008, "slow \"consumer\""), R"({"type":"close","code":4008,"reason":"slow \"consumer\""})");
}

TEST(sse, line_breaks_in_data_become_data_lines) {
  // A backend's pretty-printed JSON passes through byte for byte; EventSource joins the lines
  // with "\n", so LF survives, and CR / CRLF come back as LF (JSON whitespace either way).
  EXPECT_EQ(sse_event("{\n \"a\": 1\r\n}\r"), "data: {\ndata:  \"a\": 1\ndata: }\ndata: \n\n");
  EXPECT_EQ(sse_event(""), "data: \n\n");
}

TEST(sse, event_id_round_trip) {
  std::string epoch;
  std::uint64_t seq = 0;
  ASSERT_TRUE(parse_sse_event_id("9f00aa13c0de4411:42", epoch, seq));
  EXPECT_EQ(epoch, "9f00aa13c0de4411");
  EXPECT_EQ(seq, 42u);
  ASSERT_TRUE(parse_sse_event_id("e:0", epoch, seq));
  EXPECT_EQ(seq, 0u);
  for (std::string_view bad :
       {"", "42", ":42", "e:", "e:-1", "e:4x", "e:18446744073709551616", "e f:1", "a/b:1", "e:1 "}) {
    epoch = "kept";
    seq = 99;
    EXPECT_FALSE(parse_sse_event_id(bad, epoch, seq)) << bad;
    EXPECT_EQ(epoch, "kept") << bad;
    EXPECT_EQ(seq, 99u) << bad;
  }
  EXPECT_FALSE(parse_sse_event_id(std::string(65, 'a') + ":1", epoch, seq));
}

TEST(sse, accept_header) {
  EXPECT_TRUE(accepts_event_stream("text/event-stream"));
  EXPECT_TRUE(accepts_event_stream("text/html, text/event-stream;q=0.9"));
  EXPECT_TRUE(accepts_event_stream("text/event-stream,*/*"));
  EXPECT_FALSE(accepts_event_stream(""));
  EXPECT_FALSE(accepts_event_stream("*/*"));
  EXPECT_FALSE(accepts_event_stream("text/event-streamx"));
  EXPECT_FALSE(accepts_event_stream("application/text/event-stream"));
}

TEST(sse, response_head_streams_unbuffered_until_close) {
  const auto h = sse_response_head();
  EXPECT_TRUE(h.starts_with("HTTP/1.1 200 OK\r\n"));
  EXPECT_NE(h.find("Content-Type: text/event-stream\r\n"), std::string_view::npos);
  EXPECT_NE(h.find("X-Accel-Buffering: no\r\n"), std::string_view::npos);
  EXPECT_EQ(h.find("Content-Length"), std::string_view::npos);
  EXPECT_TRUE(h.ends_with("\r\n\r\n"));
}

namespace {
// An SSE-like member: takes the event bytes of what it gets, as the SSE session does.
struct sse_member : hub::member {
  explicit sse_member(std::uint64_t sid) : member(hub::identity{sid, "u" + std::to_string(sid), "STU", "web"}) {}
  void deliver(const hub::frame_ref& f) override { got.push_back(f->sse()); }
  void deliver_at(const hub::frame_ref& f, std::uint64_t seq, std::string_view epoch) override {
    got.push_back(f->sse(seq, epoch));
  }
  void kick(std::uint16_t, std::string_view) override {}
  std::vector<std::string_view> got;  // views into the frames' cached events
};
}  // namespace

TEST(sse, one_event_per_message_per_shard_with_the_room_position) {
  metrics::shard_counters c;
  hub::shard s(0, c);
  sse_member a(1), b(2);
  for (auto* m : {&a, &b}) {
    s.add(*m);
    s.join(*m, "r", 16);
  }
  const auto f = hub::make_local(make_frame(ws_opcode::text, R"({"type":"message","room":"r","seq":1})"));
  s.deliver_room("r", f, 1, "ep");
  ASSERT_EQ(a.got.size(), 1u);
  ASSERT_EQ(b.got.size(), 1u);
  EXPECT_EQ(a.got[0], "id: ep:1\ndata: {\"type\":\"message\",\"room\":\"r\",\"seq\":1}\n\n");
  // The same bytes, not a copy per recipient.
  EXPECT_EQ(a.got[0].data(), b.got[0].data());
  // A frame without a seq (presence, a user message) has no id.
  const auto g = hub::make_local(make_frame(ws_opcode::text, R"({"type":"presence"})"));  // held: got[] views it
  s.deliver_room("r", g);
  EXPECT_EQ(a.got[1], "data: {\"type\":\"presence\"}\n\n");
  EXPECT_EQ(a.got[1].data(), b.got[1].data());
  for (auto* m : {&a, &b}) s.remove(*m);
}

TEST(sse, sse_only_frames_go_out_as_they_are) {
  const auto f = hub::frame_ref(new hub::local_frame(hub::local_frame::sse_only{std::string(sse_heartbeat)}));
  EXPECT_EQ(f->sse(), ":\n\n");
  EXPECT_EQ(f->sse(3, "e"), ":\n\n");
}
