// The RabbitMQ bus's own AMQP frames, checked against rabbitmq-c's encoder and decoder (the
// library that opens the connection), and the reader fed byte by byte, split and malformed.
#include "bus/amqp_wire.hpp"

#include <amqp.h>
#include <amqp_framing.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace roomcast::bus;

namespace {

struct frame {
  int type;
  std::uint16_t channel;
  std::string payload;
};

// Splits encoded bytes into frames, checking each frame's end octet.
std::vector<frame> frames_of(const std::string& s) {
  std::vector<frame> out;
  std::size_t i = 0;
  auto u = [&](std::size_t at) { return static_cast<unsigned char>(s.at(at)); };
  while (i < s.size()) {
    const int type = u(i);
    const auto ch = static_cast<std::uint16_t>(u(i + 1) << 8 | u(i + 2));
    const std::size_t size =
        std::size_t{u(i + 3)} << 24 | std::size_t{u(i + 4)} << 16 | std::size_t{u(i + 5)} << 8 | u(i + 6);
    EXPECT_EQ(u(i + 7 + size), 0xCE);
    out.push_back({type, ch, s.substr(i + 7, size)});
    i += size + 8;
  }
  EXPECT_EQ(i, s.size());
  return out;
}

// rabbitmq-c's decoding of one method frame payload.
struct decoded {
  amqp_pool_t pool;
  amqp_method_number_t id = 0;
  void* m = nullptr;
  explicit decoded(const std::string& payload) {
    init_amqp_pool(&pool, 4096);
    id = (static_cast<std::uint32_t>(static_cast<unsigned char>(payload[0])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(payload[1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(payload[2])) << 8) |
         static_cast<unsigned char>(payload[3]);
    amqp_bytes_t b{payload.size() - 4, const_cast<char*>(payload.data() + 4)};
    EXPECT_EQ(amqp_decode_method(id, &pool, b, &m), AMQP_STATUS_OK);
  }
  ~decoded() { empty_amqp_pool(&pool); }
};

std::string str(amqp_bytes_t b) { return {static_cast<const char*>(b.bytes), b.len}; }

std::string raw_frame(char type, std::uint16_t channel, const std::string& payload) {
  std::string f;
  f.push_back(type);
  f.push_back(static_cast<char>(channel >> 8));
  f.push_back(static_cast<char>(channel));
  for (int i = 3; i >= 0; --i) f.push_back(static_cast<char>(payload.size() >> (8 * i)));
  f += payload;
  f.push_back(static_cast<char>(0xCE));
  return f;
}

// A method frame as rabbitmq-c encodes it (the broker's side of the tests).
std::string method_frame(std::uint16_t channel, amqp_method_number_t id, void* m) {
  std::vector<char> buf(4096);
  amqp_bytes_t b{buf.size(), buf.data()};
  const int n = amqp_encode_method(id, m, b);
  EXPECT_GE(n, 0);
  std::string payload;
  for (int i = 3; i >= 0; --i) payload.push_back(static_cast<char>(id >> (8 * i)));
  payload.append(buf.data(), static_cast<std::size_t>(n));
  return raw_frame(1, channel, payload);
}

std::string header_payload(std::uint64_t body_size) {
  std::string p = {0, 60, 0, 0};
  for (int i = 7; i >= 0; --i) p.push_back(static_cast<char>(body_size >> (8 * i)));
  p += std::string("\0\0", 2);  // no properties
  return p;
}

std::string delivery(std::uint16_t channel, std::uint64_t tag, const std::string& body, std::size_t chunk = 1 << 20) {
  amqp_basic_deliver_t d{};
  d.consumer_tag = amqp_cstring_bytes("ctag");
  d.delivery_tag = tag;
  d.redelivered = tag % 2;
  d.exchange = amqp_cstring_bytes("roomcast.rooms");
  d.routing_key = amqp_cstring_bytes("r1");
  std::string s =
      method_frame(channel, AMQP_BASIC_DELIVER_METHOD, &d) + raw_frame(2, channel, header_payload(body.size()));
  for (std::size_t off = 0; off < body.size(); off += chunk) s += raw_frame(3, channel, body.substr(off, chunk));
  return s;
}

void feed(amqp::frame_reader& r, std::string_view bytes) {
  char* p = r.prepare(bytes.size());
  std::memcpy(p, bytes.data(), bytes.size());
  r.commit(bytes.size());
}

}  // namespace

TEST(amqp_wire, publish_is_what_rabbitmq_c_decodes_as_basic_publish_with_json_properties) {
  std::string out;
  ASSERT_TRUE(amqp::append_publish(out, 1, "roomcast.rooms", "room-7", R"({"x":1})", true, 131072));
  const auto f = frames_of(out);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].type, 1);
  EXPECT_EQ(f[0].channel, 1);
  decoded m(f[0].payload);
  ASSERT_EQ(m.id, AMQP_BASIC_PUBLISH_METHOD);
  auto* p = static_cast<amqp_basic_publish_t*>(m.m);
  EXPECT_EQ(str(p->exchange), "roomcast.rooms");
  EXPECT_EQ(str(p->routing_key), "room-7");
  EXPECT_FALSE(p->mandatory);
  EXPECT_FALSE(p->immediate);

  EXPECT_EQ(f[1].type, 2);
  amqp_pool_t pool;
  init_amqp_pool(&pool, 4096);
  void* props = nullptr;
  amqp_bytes_t h{f[1].payload.size() - 12, const_cast<char*>(f[1].payload.data() + 12)};
  ASSERT_EQ(amqp_decode_properties(AMQP_BASIC_CLASS, &pool, h, &props), AMQP_STATUS_OK);
  auto* bp = static_cast<amqp_basic_properties_t*>(props);
  EXPECT_EQ(bp->_flags, AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG);
  EXPECT_EQ(str(bp->content_type), "application/json");
  EXPECT_EQ(bp->delivery_mode, 2);
  empty_amqp_pool(&pool);
  EXPECT_EQ(f[1].payload.substr(4, 8), std::string("\0\0\0\0\0\0\0\7", 8));  // body size

  EXPECT_EQ(f[2].type, 3);
  EXPECT_EQ(f[2].payload, R"({"x":1})");
}

TEST(amqp_wire, a_body_over_frame_max_goes_in_several_body_frames_and_transient_is_mode_1) {
  std::string out;
  const std::string body(250, 'b');
  ASSERT_TRUE(amqp::append_publish(out, 3, "x", "k", body, false, 108));  // 100 bytes per body frame
  const auto f = frames_of(out);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[2].payload.size(), 100u);
  EXPECT_EQ(f[3].payload.size(), 100u);
  EXPECT_EQ(f[4].payload.size(), 50u);
  EXPECT_EQ(f[2].payload + f[3].payload + f[4].payload, body);
  EXPECT_EQ(f[1].payload.back(), 1);  // delivery mode 1
}

TEST(amqp_wire, an_empty_body_has_no_body_frame) {
  std::string out;
  ASSERT_TRUE(amqp::append_publish(out, 1, "x", "k", "", true, 131072));
  EXPECT_EQ(frames_of(out).size(), 2u);
}

TEST(amqp_wire, names_over_255_bytes_are_refused_and_nothing_is_appended) {
  std::string out = "keep";
  const std::string long_name(256, 'r');
  EXPECT_FALSE(amqp::append_publish(out, 1, "x", long_name, "{}", true, 131072));
  EXPECT_FALSE(amqp::append_queue_bind(out, 1, "q", "x", long_name, true));
  EXPECT_FALSE(amqp::append_consume(out, 1, long_name));
  EXPECT_EQ(out, "keep");
  EXPECT_TRUE(amqp::append_publish(out, 1, "x", std::string(255, 'r'), "{}", true, 131072));
}

TEST(amqp_wire, ack_bind_unbind_consume_and_close_decode_in_rabbitmq_c) {
  std::string out;
  amqp::append_ack(out, 1, 123456789012ull, true);
  ASSERT_TRUE(amqp::append_queue_bind(out, 1, "roomcast.node.a", "roomcast.rooms", "room-1", true));
  ASSERT_TRUE(amqp::append_queue_bind(out, 1, "roomcast.node.a", "roomcast.rooms", "room-1", false));
  ASSERT_TRUE(amqp::append_consume(out, 1, "roomcast.node.a"));
  amqp::append_connection_close(out);
  const auto f = frames_of(out);
  ASSERT_EQ(f.size(), 5u);
  {
    decoded m(f[0].payload);
    ASSERT_EQ(m.id, AMQP_BASIC_ACK_METHOD);
    auto* a = static_cast<amqp_basic_ack_t*>(m.m);
    EXPECT_EQ(a->delivery_tag, 123456789012ull);
    EXPECT_TRUE(a->multiple);
  }
  {
    decoded m(f[1].payload);
    ASSERT_EQ(m.id, AMQP_QUEUE_BIND_METHOD);
    auto* b = static_cast<amqp_queue_bind_t*>(m.m);
    EXPECT_EQ(str(b->queue), "roomcast.node.a");
    EXPECT_EQ(str(b->exchange), "roomcast.rooms");
    EXPECT_EQ(str(b->routing_key), "room-1");
    EXPECT_FALSE(b->nowait);
    EXPECT_EQ(b->arguments.num_entries, 0);
  }
  {
    decoded m(f[2].payload);
    ASSERT_EQ(m.id, AMQP_QUEUE_UNBIND_METHOD);
    auto* u = static_cast<amqp_queue_unbind_t*>(m.m);
    EXPECT_EQ(str(u->routing_key), "room-1");
  }
  {
    decoded m(f[3].payload);
    ASSERT_EQ(m.id, AMQP_BASIC_CONSUME_METHOD);
    auto* c = static_cast<amqp_basic_consume_t*>(m.m);
    EXPECT_EQ(str(c->queue), "roomcast.node.a");
    EXPECT_FALSE(c->no_ack);
    EXPECT_FALSE(c->exclusive);
  }
  {
    EXPECT_EQ(f[4].channel, 0);
    decoded m(f[4].payload);
    ASSERT_EQ(m.id, AMQP_CONNECTION_CLOSE_METHOD);
    EXPECT_EQ(static_cast<amqp_connection_close_t*>(m.m)->reply_code, 200);
  }
  std::string hb;
  amqp::append_heartbeat(hb);
  EXPECT_EQ(hb, std::string("\x08\0\0\0\0\0\0\xCE", 8));
}

TEST(amqp_wire, reader_gives_deliveries_with_their_body_fed_one_byte_at_a_time) {
  const std::string bytes = delivery(1, 7, R"({"type":"message"})") + delivery(1, 8, "second");
  amqp::frame_reader r;
  std::vector<std::pair<std::uint64_t, std::string>> got;
  amqp::event ev;
  for (char c : bytes) {
    feed(r, std::string_view(&c, 1));
    while (r.next(ev)) {
      ASSERT_EQ(ev.kind, amqp::event::delivery);
      got.emplace_back(ev.tag, std::string(ev.body));
      EXPECT_EQ(ev.redelivered, ev.tag % 2 == 1);
    }
  }
  EXPECT_TRUE(r.error().empty()) << r.error();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], (std::pair<std::uint64_t, std::string>{7, R"({"type":"message"})"}));
  EXPECT_EQ(got[1], (std::pair<std::uint64_t, std::string>{8, "second"}));
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(amqp_wire, reader_gathers_a_body_split_over_frames_and_reads_an_empty_body) {
  const std::string body(1000, 'z');
  amqp::frame_reader r;
  feed(r, delivery(2, 1, body, 300) + delivery(2, 2, ""));
  amqp::event ev;
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.body, body);
  EXPECT_EQ(ev.channel, 2);
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.tag, 2u);
  EXPECT_TRUE(ev.body.empty());
  EXPECT_FALSE(r.next(ev));
}

TEST(amqp_wire, reader_gives_confirms_heartbeats_rpc_replies_and_closes) {
  std::string bytes;
  amqp_basic_ack_t a{};
  a.delivery_tag = 41;
  a.multiple = 1;
  bytes += method_frame(1, AMQP_BASIC_ACK_METHOD, &a);
  amqp_basic_nack_t n{};
  n.delivery_tag = 42;
  n.multiple = 0;
  bytes += method_frame(1, AMQP_BASIC_NACK_METHOD, &n);
  bytes += std::string("\x08\0\0\0\0\0\0\xCE", 8);
  amqp_queue_bind_ok_t bok{};
  bytes += method_frame(1, AMQP_QUEUE_BIND_OK_METHOD, &bok);
  amqp_channel_close_t cc{};
  cc.reply_code = 404;
  cc.reply_text = amqp_cstring_bytes("NOT_FOUND - no exchange 'x'");
  bytes += method_frame(1, AMQP_CHANNEL_CLOSE_METHOD, &cc);

  amqp::frame_reader r;
  feed(r, bytes);
  amqp::event ev;
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.kind, amqp::event::confirm);
  EXPECT_TRUE(ev.ack);
  EXPECT_TRUE(ev.multiple);
  EXPECT_EQ(ev.tag, 41u);
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.kind, amqp::event::confirm);
  EXPECT_FALSE(ev.ack);
  EXPECT_FALSE(ev.multiple);
  EXPECT_EQ(ev.tag, 42u);
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.kind, amqp::event::heartbeat);
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.kind, amqp::event::method);
  EXPECT_EQ(ev.id, amqp::queue_bind_ok);
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.kind, amqp::event::closed);
  EXPECT_EQ(ev.id, amqp::channel_close);
  EXPECT_EQ(ev.reply_code, 404);
  EXPECT_EQ(ev.reply_text, "NOT_FOUND - no exchange 'x'");
  EXPECT_FALSE(r.next(ev));
  EXPECT_TRUE(r.error().empty());
}

TEST(amqp_wire, a_returned_message_is_read_and_dropped) {
  amqp_basic_return_t ret{};
  ret.reply_code = 312;
  ret.reply_text = amqp_cstring_bytes("NO_ROUTE");
  ret.exchange = amqp_cstring_bytes("x");
  ret.routing_key = amqp_cstring_bytes("k");
  const std::string bytes =
      method_frame(1, AMQP_BASIC_RETURN_METHOD, &ret) + raw_frame(2, 1, header_payload(3)) + raw_frame(3, 1, "abc");
  amqp::frame_reader r;
  feed(r, bytes + delivery(1, 5, "after"));
  amqp::event ev;
  ASSERT_TRUE(r.next(ev));
  EXPECT_EQ(ev.kind, amqp::event::delivery);
  EXPECT_EQ(ev.body, "after");
}

TEST(amqp_wire, malformed_input_is_a_protocol_error_not_a_crash) {
  const auto error_of = [](const std::string& bytes, std::uint32_t frame_max = 131072) {
    amqp::frame_reader r(frame_max);
    feed(r, bytes);
    amqp::event ev;
    while (r.next(ev)) {
    }
    return r.error();
  };
  std::string bad_end = raw_frame(8, 0, "");
  bad_end.back() = 'x';
  EXPECT_EQ(error_of(bad_end), "bad frame end");
  EXPECT_NE(error_of(raw_frame(1, 1, std::string(200, 'm')), 100).find("over frame_max"), std::string::npos);
  EXPECT_EQ(error_of(raw_frame(2, 1, header_payload(3))), "unexpected content header");
  EXPECT_EQ(error_of(raw_frame(3, 1, "abc")), "unexpected content body");
  EXPECT_EQ(error_of(raw_frame(1, 1, std::string("\0\x3c", 2))), "short method frame");
  EXPECT_EQ(error_of(raw_frame(1, 1, std::string("\0\x3c\0\x50\0\0", 6))), "short basic.ack/nack");
  EXPECT_EQ(error_of(raw_frame(7, 1, "")), "unknown frame type 7");
  // A body longer than its header said.
  amqp_basic_deliver_t d{};
  d.consumer_tag = amqp_cstring_bytes("c");
  d.exchange = amqp_cstring_bytes("x");
  d.routing_key = amqp_cstring_bytes("k");
  EXPECT_EQ(error_of(method_frame(1, AMQP_BASIC_DELIVER_METHOD, &d) + raw_frame(2, 1, header_payload(2)) +
                     raw_frame(3, 1, "abc")),
            "unexpected content body");
  // A method where the content header should be.
  EXPECT_EQ(error_of(method_frame(1, AMQP_BASIC_DELIVER_METHOD, &d) + std::string("\x08\0\0\0\0\0\0\xCE", 8) +
                     raw_frame(1, 1, std::string("\0\x3c\0\x50", 4))),
            "method frame inside a message's content");
}

TEST(amqp_wire, views_of_an_event_survive_until_the_next_prepare) {
  amqp::frame_reader r;
  feed(r, delivery(1, 1, "first-body") + delivery(1, 2, "second-body"));
  amqp::event a, b;
  ASSERT_TRUE(r.next(a));
  ASSERT_TRUE(r.next(b));
  EXPECT_EQ(a.body, "first-body");
  EXPECT_EQ(b.body, "second-body");
}
