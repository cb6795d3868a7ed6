// permessage-deflate (RFC 7692) against a real node: negotiation with Beast's client and with raw
// bytes, one compression per message whatever the number of recipients, compressed client frames,
// an inflate bomb, corrupt data, and RSV1 without negotiation.

#include <gtest/gtest.h>
#include <zlib.h>

#include <boost/json.hpp>

#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/itest.hpp"

namespace roomcast::itest {
namespace {

constexpr std::string_view offer_header = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
constexpr std::string_view answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

std::string inflate_raw(std::string_view in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, -15), Z_OK);
  std::string src(in);
  src.append("\0\0\xff\xff", 4);
  std::string out(1 << 20, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(src.data());
  zs.avail_in = static_cast<uInt>(src.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_SYNC_FLUSH);
  EXPECT_TRUE(rc == Z_OK || rc == Z_STREAM_END) << rc;
  out.resize(out.size() - zs.avail_out);
  inflateEnd(&zs);
  return out;
}

std::string deflate_raw(std::string_view in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
  out.resize(out.size() - zs.avail_out - 4);  // without 00 00 ff ff
  deflateEnd(&zs);
  return out;
}

// A masked client frame with the given first byte (0xC1: FIN + RSV1 + text).
std::string client_frame(std::uint8_t b0, std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>(b0));
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
  const char mask[4] = {0x21, 0x43, 0x65, 0x07};
  f.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return f;
}

std::uint16_t close_code_of(std::string_view payload) {
  if (payload.size() < 2) return 0;
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(payload[0]) << 8) |
                                    static_cast<std::uint8_t>(payload[1]));
}

// Reads raw frames until one with `opcode` (low 4 bits); returns its first byte and payload.
bool read_until(raw_ws_client& c, std::uint8_t opcode, std::uint8_t& b0, std::string& payload) {
  for (int i = 0; i < 50; ++i) {
    if (!c.read_frame(b0, payload, 5s)) return false;
    if ((b0 & 0x0f) == opcode) return true;
  }
  return false;
}

std::string big_data(int i) {
  // ~1 KiB of classroom-like JSON: compresses well, as real messages do.
  std::string items;
  for (int k = 0; k < 12; ++k) {
    if (k) items += ',';
    items += R"({"question":)" + std::to_string(k) +
             R"(,"text":"Which of these is a prime number?","options":["4","6","7","9"]})";
  }
  return R"({"n":)" + std::to_string(i) + R"(,"quiz":[)" + items + "]}";
}

class compression_test : public ::testing::Test {
 protected:
  void SetUp() override { node_ = start_node({"--compression", "true", "--max-frame-bytes", "16384"}); }
  std::uint16_t port() const { return node_->port(); }
  std::unique_ptr<node_process> node_;
};

TEST_F(compression_test, negotiated_only_when_offered_and_each_message_compressed_once) {
  ws_options deflate;
  deflate.deflate = true;
  std::vector<member> zipped;
  for (int i = 0; i < 3; ++i) {
    zipped.push_back(join(port(), "345", "STU", "z" + std::to_string(i), "pc", "tok", deflate));
    EXPECT_EQ(zipped.back()->handshake_header("Sec-WebSocket-Extensions"), answer);
  }
  auto plain = join(port(), "345", "STU", "plain");
  EXPECT_EQ(plain->handshake_header("Sec-WebSocket-Extensions"), "");
  raw_ws_client raw;
  ASSERT_EQ(raw.connect(port(), ws_path("345", "STU", "raw"), 5s, std::string(offer_header)), 101u);
  EXPECT_NE(raw.response_head().find(std::string("Sec-WebSocket-Extensions: ") + std::string(answer)),
            std::string::npos)
      << raw.response_head();
  std::uint8_t b0 = 0;
  std::string payload;
  ASSERT_TRUE(read_until(raw, 0x1, b0, payload));  // welcome: small, so not compressed
  EXPECT_EQ(b0 & 0x40, 0);
  EXPECT_NE(payload.find("\"welcome\""), std::string::npos);

  const double before = metric_value(port(), "roomcast_compressions_total");
  constexpr int messages = 5;
  for (int i = 0; i < messages; ++i) api_publish(port(), R"({"room":"345","data":)" + big_data(i) + "}");
  api_publish(port(), R"({"room":"345","data":{"small":true}})");

  for (auto* m : {&zipped[0], &zipped[1], &zipped[2], &plain}) {
    for (int i = 0; i < messages; ++i) {
      auto f = (*m)->read_type("message");
      ASSERT_TRUE(f.has_value()) << (*m)->why();
      EXPECT_EQ(json_int(*f, "data.n"), i);
      EXPECT_EQ(json::serialize(f->at("data")), json::serialize(json::parse(big_data(i))));
    }
    auto small = (*m)->read_type("message");
    ASSERT_TRUE(small.has_value());
    EXPECT_TRUE(json_bool(*small, "data.small"));
  }
  // On the wire: RSV1 set and the payload deflated for the big ones; the small one as it is.
  std::size_t wire = 0, plain_bytes = 0;
  for (int i = 0; i < messages; ++i) {
    ASSERT_TRUE(read_until(raw, 0x1, b0, payload));
    EXPECT_EQ(b0, 0xC1) << i;
    const auto text = inflate_raw(payload);
    auto v = json::parse(text);
    EXPECT_EQ(json_int(v, "data.n"), i) << text;
    wire += payload.size();
    plain_bytes += text.size();
  }
  EXPECT_LT(wire * 4, plain_bytes) << "compressed " << plain_bytes << " to " << wire;
  ASSERT_TRUE(read_until(raw, 0x1, b0, payload));
  EXPECT_EQ(b0, 0x81);
  EXPECT_NE(payload.find("\"small\":true"), std::string::npos);

  // Four sessions took the compressed bytes, five messages were compressed: once each.
  EXPECT_EQ(metric_value(port(), "roomcast_compressions_total") - before, messages);
  EXPECT_EQ(metric_value(port(), "roomcast_deflate_sessions_total"), 4);
  EXPECT_GT(metric_value(port(), "roomcast_compression_bytes_in_total"),
            4 * metric_value(port(), "roomcast_compression_bytes_out_total"));
}

TEST_F(compression_test, compressed_client_frames_are_read) {
  ws_options deflate;
  deflate.deflate = true;
  auto teacher = join(port(), "345", "THE", "t1", "pc", "tok", deflate);
  auto student = join(port(), "345", "STU", "s1");
  // Beast compresses every frame it sends (threshold 0): a publish and a plain-text chat line.
  const std::string data = big_data(7);
  ASSERT_TRUE(teacher->send_text(R"({"type":"publish","room":"345","data":)" + data + "}"));
  auto m = student->read_type("message");
  ASSERT_TRUE(m.has_value()) << student->why();
  EXPECT_EQ(json_int(*m, "data.n"), 7);
  ASSERT_TRUE(teacher->send_text(R"({"type":"ping"})"));
  EXPECT_TRUE(teacher->read_type("pong").has_value()) << teacher->why();
  EXPECT_GE(metric_value(port(), "roomcast_messages_inflated_total"), 2);

  // The same by hand, fragmented: RSV1 on the first frame only.
  raw_ws_client raw;
  ASSERT_EQ(raw.connect(port(), ws_path("345", "THE", "t2"), 5s, std::string(offer_header)), 101u);
  const auto z = deflate_raw(R"({"type":"publish","room":"345","data":{"by":"raw"}})");
  const auto half = z.size() / 2;
  ASSERT_TRUE(raw.send_raw(client_frame(0x41, z.substr(0, half)) + client_frame(0x80, z.substr(half))));
  auto m2 = student->read_type("message");
  ASSERT_TRUE(m2.has_value()) << student->why();
  EXPECT_EQ(json_string(*m2, "data.by"), "raw");
}

TEST_F(compression_test, an_inflate_bomb_gets_1009_and_costs_nothing) {
  raw_ws_client raw;
  ASSERT_EQ(raw.connect(port(), ws_path("345", "THE", "bomber"), 5s, std::string(offer_header)), 101u);
  // 8 MiB of spaces inside a JSON string: ~8 KiB compressed (under max_frame_bytes = 16 KiB),
  // 512 times the limit once inflated.
  const std::string inflated = R"({"type":"publish","room":"345","data":{"x":")" + std::string(8u << 20, ' ') + "\"}}";
  const auto bomb = deflate_raw(inflated);
  ASSERT_LT(bomb.size(), 16384u);
  ASSERT_TRUE(raw.send_raw(client_frame(0xC1, bomb)));
  std::uint8_t b0 = 0;
  std::string payload;
  ASSERT_TRUE(read_until(raw, 0x8, b0, payload));
  EXPECT_EQ(close_code_of(payload), 1009);
  ASSERT_TRUE(raw.send_raw(client_frame(0x88, std::string{'\x03', '\xe8'})));  // our close reply
  EXPECT_EQ(metric_value(port(), "roomcast_closes_total{reason=\"too_big\"}"), 1);
  // The node is fine, and its RSS did not take the 8 MiB.
  auto s = join(port(), "345", "STU", "after");
  ASSERT_TRUE(s->send_text(R"({"type":"ping"})"));
  EXPECT_TRUE(s->read_type("pong").has_value());
}

TEST_F(compression_test, corrupt_data_gets_1007_and_rsv1_without_negotiation_1002) {
  {
    raw_ws_client raw;
    ASSERT_EQ(raw.connect(port(), ws_path("345", "STU", "c1"), 5s, std::string(offer_header)), 101u);
    ASSERT_TRUE(raw.send_raw(client_frame(0xC1, "\xff\xff\xff\xff not deflate")));
    std::uint8_t b0 = 0;
    std::string payload;
    ASSERT_TRUE(read_until(raw, 0x8, b0, payload));
    EXPECT_EQ(close_code_of(payload), 1007);
  }
  {
    raw_ws_client raw;  // inflates to bytes that are not UTF-8
    ASSERT_EQ(raw.connect(port(), ws_path("345", "STU", "c2"), 5s, std::string(offer_header)), 101u);
    ASSERT_TRUE(raw.send_raw(client_frame(0xC1, deflate_raw("\xc3\x28 bad utf-8"))));
    std::uint8_t b0 = 0;
    std::string payload;
    ASSERT_TRUE(read_until(raw, 0x8, b0, payload));
    EXPECT_EQ(close_code_of(payload), 1007);
  }
  {
    raw_ws_client raw;  // no offer: RSV1 is a protocol error
    ASSERT_EQ(raw.connect(port(), ws_path("345", "STU", "c3")), 101u);
    EXPECT_EQ(raw.response_head().find("Sec-WebSocket-Extensions"), std::string::npos);
    ASSERT_TRUE(raw.send_raw(client_frame(0xC1, deflate_raw(R"({"type":"ping"})"))));
    std::uint8_t b0 = 0;
    std::string payload;
    ASSERT_TRUE(read_until(raw, 0x8, b0, payload));
    EXPECT_EQ(close_code_of(payload), 1002);
  }
}

TEST(compression_off, the_offer_is_declined_and_frames_stay_plain) {
  auto node = start_node();  // compression = false (the default)
  raw_ws_client raw;
  ASSERT_EQ(raw.connect(node->port(), ws_path("345", "STU", "r"), 5s, std::string(offer_header)), 101u);
  EXPECT_EQ(raw.response_head().find("Sec-WebSocket-Extensions"), std::string::npos) << raw.response_head();
  std::uint8_t b0 = 0;
  std::string payload;
  ASSERT_TRUE(read_until(raw, 0x1, b0, payload));  // welcome
  api_publish(node->port(), R"({"room":"345","data":)" + big_data(1) + "}");
  ASSERT_TRUE(read_until(raw, 0x1, b0, payload));
  EXPECT_EQ(b0, 0x81);
  EXPECT_EQ(json_int(json::parse(payload), "data.n"), 1);
  EXPECT_EQ(metric_value(node->port(), "roomcast_compressions_total"), 0);
}

}  // namespace
}  // namespace roomcast::itest
