#include "protocol/ws_frame.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace roomcast::protocol;

namespace {
// A client frame (masked), as a browser would send it.
std::string client_frame(ws_opcode op, std::string_view payload, bool fin = true, std::uint8_t rsv = 0) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | static_cast<int>(op)));
  const std::size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((std::uint64_t{n} >> (8 * i)) & 0xff));
  }
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return f;
}

struct collected {
  std::vector<std::pair<ws_opcode, std::string>> events;
  std::uint16_t close_code = 0;
};

ws_reader::result feed_all(ws_reader& r, std::string& bytes, collected& c) {
  return r.feed(std::span<char>(bytes.data(), bytes.size()), [&](const ws_event& ev) {
    c.events.emplace_back(ev.opcode, std::string(ev.payload));
    if (ev.opcode == ws_opcode::close) c.close_code = ev.close_code;
    return true;
  });
}
}  // namespace

TEST(ws_reader, reads_masked_text_frames_of_every_length_form) {
  for (std::size_t n : {0u, 5u, 125u, 126u, 65535u, 65536u, 70000u}) {
    ws_reader r(1 << 20);
    std::string payload(n, 'x');
    auto bytes = client_frame(ws_opcode::text, payload);
    collected c;
    auto res = feed_all(r, bytes, c);
    EXPECT_EQ(res.error, ws_error::none) << n;
    EXPECT_EQ(res.consumed, bytes.size()) << n;
    ASSERT_EQ(c.events.size(), 1u) << n;
    EXPECT_EQ(c.events[0].second, payload);
  }
}

TEST(ws_reader, leaves_an_incomplete_frame_for_the_next_feed) {
  ws_reader r(1024);
  auto bytes = client_frame(ws_opcode::text, "hello") + client_frame(ws_opcode::text, "world");
  std::string part = bytes.substr(0, bytes.size() - 3);
  collected c;
  auto res = feed_all(r, part, c);
  EXPECT_EQ(res.error, ws_error::none);
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].second, "hello");
  std::string rest = bytes.substr(res.consumed);
  collected c2;
  auto res2 = feed_all(r, rest, c2);
  EXPECT_EQ(res2.consumed, rest.size());
  ASSERT_EQ(c2.events.size(), 1u);
  EXPECT_EQ(c2.events[0].second, "world");
}

TEST(ws_reader, every_split_point_gives_the_same_events) {
  const auto bytes = client_frame(ws_opcode::text, std::string(300, 'a')) + client_frame(ws_opcode::ping, "p") +
                     client_frame(ws_opcode::text, "b");
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    ws_reader r(1024);
    collected c;
    std::string first = bytes.substr(0, cut);
    auto res = feed_all(r, first, c);
    ASSERT_EQ(res.error, ws_error::none);
    std::string rest = bytes.substr(res.consumed);
    res = feed_all(r, rest, c);
    ASSERT_EQ(res.consumed, rest.size()) << cut;
    ASSERT_EQ(c.events.size(), 3u) << cut;
    EXPECT_EQ(c.events[1].first, ws_opcode::ping);
    EXPECT_EQ(c.events[2].second, "b");
  }
}

TEST(ws_reader, rejects_a_frame_over_the_limit_from_its_header) {
  ws_reader r(100);
  auto bytes = client_frame(ws_opcode::text, std::string(101, 'x')).substr(0, 8);  // header only
  collected c;
  EXPECT_EQ(feed_all(r, bytes, c).error, ws_error::too_big);
  EXPECT_EQ(close_code_for(ws_error::too_big), 1009);
}

TEST(ws_reader, assembles_fragments_and_limits_their_total) {
  ws_reader r(10);
  auto bytes = client_frame(ws_opcode::text, "hel", false) + client_frame(ws_opcode::ping, "") +
               client_frame(ws_opcode::cont, "lo", false) + client_frame(ws_opcode::cont, "!", true);
  collected c;
  auto res = feed_all(r, bytes, c);
  EXPECT_EQ(res.error, ws_error::none);
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[0].first, ws_opcode::ping);  // control frames may interleave
  EXPECT_EQ(c.events[1].second, "hello!");

  ws_reader small(4);
  auto big = client_frame(ws_opcode::text, "abc", false) + client_frame(ws_opcode::cont, "de", true);
  collected c2;
  EXPECT_EQ(feed_all(small, big, c2).error, ws_error::too_big);
}

TEST(ws_reader, protocol_errors) {
  struct bad_case {
    std::string bytes;
    ws_error want;
  };
  std::string unmasked = "\x81\x02hi";
  std::vector<bad_case> cases{
      {unmasked, ws_error::protocol},
      {client_frame(ws_opcode::text, "x", true, 4), ws_error::protocol},           // RSV1 without extension
      {client_frame(ws_opcode::cont, "x"), ws_error::protocol},                    // continuation of nothing
      {client_frame(ws_opcode::ping, std::string(126, 'p')), ws_error::protocol},  // control > 125
      {client_frame(ws_opcode::ping, "p", false), ws_error::protocol},             // fragmented control
      {client_frame(static_cast<ws_opcode>(3), "x"), ws_error::protocol},          // reserved opcode
      {client_frame(ws_opcode::text, "\xc3\x28"), ws_error::bad_utf8},
      {client_frame(ws_opcode::close, "\x03"), ws_error::protocol},  // 1-byte close body
      {client_frame(ws_opcode::close, std::string("\x03\xe8", 2) + "\xc3\x28"), ws_error::bad_utf8},  // reason
  };
  // Close codes a peer must not send (RFC 6455 7.4): answered with 1002.
  for (int code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535}) {
    const std::string body{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
    cases.push_back({client_frame(ws_opcode::close, body), ws_error::protocol});
  }
  for (auto& bc : cases) {
    ws_reader r(1024);
    collected c;
    EXPECT_EQ(feed_all(r, bc.bytes, c).error, bc.want);
  }
}

// An oversized frame is dropped as it arrives, and the frames after it are read again.
TEST(ws_reader, an_oversized_frame_is_skipped_and_the_close_after_it_is_seen) {
  ws_reader r(10);
  auto big = client_frame(ws_opcode::text, std::string(100, 'b'));
  auto close = client_frame(ws_opcode::close, std::string("\x03\xe8", 2));
  std::string first = big.substr(0, 30), second = big.substr(30) + close;
  collected c;
  auto r1 = feed_all(r, first, c);
  EXPECT_EQ(r1.error, ws_error::too_big);
  EXPECT_EQ(r1.consumed, 30u);
  EXPECT_GT(r.discarding(), 0u);
  auto r2 = feed_all(r, second, c);
  EXPECT_EQ(r2.error, ws_error::none);
  EXPECT_EQ(r.discarding(), 0u);
  EXPECT_EQ(c.close_code, 1000);
  ASSERT_EQ(c.events.size(), 1u) << "nothing of the big frame may come out";
}

// A fragmented message that grows over the limit: too_big once, its other fragments dropped, the
// frames after it read (the reader never stops making progress).
TEST(ws_reader, a_fragmented_message_over_the_limit_is_dropped_to_its_end) {
  ws_reader r(10);
  auto bytes = client_frame(ws_opcode::text, std::string(8, 'a'), false) +
               client_frame(ws_opcode::cont, std::string(8, 'b'), false) +
               client_frame(ws_opcode::cont, std::string(8, 'c'), true) + client_frame(ws_opcode::text, "ok");
  collected c;
  auto r1 = feed_all(r, bytes, c);
  EXPECT_EQ(r1.error, ws_error::too_big);
  ASSERT_GT(r1.consumed, 0u);
  std::string rest = bytes.substr(r1.consumed);
  auto r2 = feed_all(r, rest, c);
  EXPECT_EQ(r2.error, ws_error::none);
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].second, "ok");
}

TEST(ws_reader, every_close_code_a_peer_may_send_is_taken) {
  for (int code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999}) {
    ws_reader r(1024);
    collected c;
    const std::string body{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
    auto bytes = client_frame(ws_opcode::close, body);
    EXPECT_EQ(feed_all(r, bytes, c).error, ws_error::none) << code;
    EXPECT_EQ(c.close_code, code);
  }
}

TEST(ws_reader, close_frame_carries_code) {
  ws_reader r(1024);
  auto bytes = client_frame(ws_opcode::close, std::string("\x03\xe8", 2) + "bye");
  collected c;
  feed_all(r, bytes, c);
  EXPECT_EQ(c.close_code, 1000);
  EXPECT_EQ(c.events.at(0).second, "bye");
  ws_reader r2(1024);
  auto empty = client_frame(ws_opcode::close, "");
  collected c2;
  feed_all(r2, empty, c2);
  EXPECT_EQ(c2.close_code, close_code::no_status);
}

TEST(utf8, validates) {
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("\xe4\xb8\xad\xe6\x96\x87"));  // 中文
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));          // emoji
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));                 // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));             // surrogate
  EXPECT_FALSE(valid_utf8("\xe4\xb8"));                 // truncated
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));         // > U+10FFFF
}

TEST(encoded_frame, header_forms) {
  for (std::size_t n : {0u, 125u, 126u, 65535u, 65536u}) {
    auto f = make_frame(ws_opcode::text, std::string(n, 'z'));
    const auto b = f->bytes();
    EXPECT_EQ(static_cast<unsigned char>(b[0]), 0x81);
    const std::size_t hl = n < 126 ? 2 : n <= 0xffff ? 4 : 10;
    EXPECT_EQ(b.size(), hl + n);
    EXPECT_EQ(f->payload(), std::string(n, 'z'));
  }
  auto c = make_close_frame(1012, "restart");
  EXPECT_EQ(c->bytes().substr(0, 4), std::string_view("\x88\x09\x03\xf4", 4));
}

TEST(handshake, accept_key_matches_rfc_example) {
  EXPECT_EQ(websocket_accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
