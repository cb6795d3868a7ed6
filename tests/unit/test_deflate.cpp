// permessage-deflate (RFC 7692): negotiation, compress/inflate, the bounded inflate, and the
// reader's RSV1 rules.
#include "protocol/deflate.hpp"
#include "protocol/ws_frame.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <string>

using namespace roomcast::protocol;

namespace {
constexpr std::string_view answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

// What a client's own zlib would send: raw deflate, sync flush, 00 00 ff ff removed. final: BFINAL.
std::string client_deflate(std::string_view in, bool final = false) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_NE(deflate(&zs, final ? Z_FINISH : Z_SYNC_FLUSH), Z_STREAM_ERROR);
  out.resize(out.size() - zs.avail_out);
  deflateEnd(&zs);
  if (!final) {
    EXPECT_EQ(out.substr(out.size() - 4), std::string("\0\0\xff\xff", 4));
    out.resize(out.size() - 4);
  }
  return out;
}

std::string inflate_all(std::string_view compressed) {
  inflater inf;
  std::string out;
  EXPECT_EQ(inf.inflate(compressed, out, 1 << 24), inflater::result::ok);
  return out;
}

std::string masked(std::string_view payload, std::uint8_t b0) {
  std::string f;
  f.push_back(static_cast<char>(b0));
  EXPECT_LT(payload.size(), 126u);
  f.push_back(static_cast<char>(0x80 | payload.size()));
  const char mask[4] = {1, 2, 3, 4};
  f.append(mask, 4);
  for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return f;
}
}  // namespace

TEST(deflate_negotiation, accepts_what_browsers_offer) {
  EXPECT_EQ(negotiate_deflate("permessage-deflate; client_max_window_bits"), answer);  // Chromium, Firefox
  EXPECT_EQ(negotiate_deflate("permessage-deflate"), answer);
  EXPECT_EQ(negotiate_deflate("permessage-deflate; server_no_context_takeover; client_no_context_takeover"), answer);
  EXPECT_EQ(negotiate_deflate("Permessage-Deflate ; Client_Max_Window_Bits=10"), answer);
  EXPECT_EQ(negotiate_deflate("permessage-deflate; server_max_window_bits=15"), answer);
  EXPECT_EQ(negotiate_deflate("permessage-deflate; client_max_window_bits=\"12\""), answer);
}

TEST(deflate_negotiation, declines_bad_offers_and_takes_the_next_one) {
  EXPECT_EQ(negotiate_deflate(""), "");
  EXPECT_EQ(negotiate_deflate("x-webkit-deflate-frame"), "");
  EXPECT_EQ(negotiate_deflate("permessage-deflate; unknown_param"), "");
  EXPECT_EQ(negotiate_deflate("permessage-deflate; server_no_context_takeover=1"), "");
  EXPECT_EQ(negotiate_deflate("permessage-deflate; client_no_context_takeover; client_no_context_takeover"), "");
  EXPECT_EQ(negotiate_deflate("permessage-deflate; client_max_window_bits=16"), "");
  EXPECT_EQ(negotiate_deflate("permessage-deflate; client_max_window_bits=7"), "");
  EXPECT_EQ(negotiate_deflate("permessage-deflate; client_max_window_bits=010"), "");
  EXPECT_EQ(negotiate_deflate("permessage-deflate; server_max_window_bits"), "");
  // A smaller server window can't be honoured by one frame shared by every recipient...
  EXPECT_EQ(negotiate_deflate("permessage-deflate; server_max_window_bits=10"), "");
  // ... but a client that offers a fallback gets it.
  EXPECT_EQ(negotiate_deflate("permessage-deflate; server_max_window_bits=10, permessage-deflate"), answer);
  EXPECT_EQ(negotiate_deflate("foo, permessage-deflate; client_max_window_bits"), answer);
}

TEST(deflate, round_trips_through_a_clients_inflater_and_ours) {
  deflater d(1);
  std::mt19937 rng(7);
  for (std::size_t n : {0u, 1u, 100u, 512u, 1024u, 70000u}) {
    std::string msg;
    for (std::size_t i = 0; i < n; ++i) msg.push_back("{\"type\":\"message\",\"data\":"[rng() % 24]);
    std::string out = "prefix";
    ASSERT_TRUE(d.compress(msg, out)) << n;
    ASSERT_EQ(out.substr(0, 6), "prefix");
    EXPECT_EQ(inflate_all(std::string_view(out).substr(6)), msg) << n;
  }
}

TEST(deflate, each_message_stands_alone) {
  // server_no_context_takeover: the second message must inflate without the first.
  deflater d(6);
  const std::string a(2000, 'a');
  std::string ca, cb;
  ASSERT_TRUE(d.compress(a, ca));
  ASSERT_TRUE(d.compress(a, cb));
  EXPECT_EQ(ca, cb);
  EXPECT_LT(ca.size(), 100u);
  EXPECT_EQ(inflate_all(cb), a);
}

TEST(inflater, reads_what_clients_send_final_block_or_not) {
  const std::string msg = R"({"type":"publish","room":"r","data":{"text":")" + std::string(3000, 'z') + "\"}}";
  EXPECT_EQ(inflate_all(client_deflate(msg)), msg);
  EXPECT_EQ(inflate_all(client_deflate(msg, true)), msg);
  // Reused for the next message, as a shard does.
  inflater inf;
  std::string out;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(inf.inflate(client_deflate(msg), out, 1 << 20), inflater::result::ok);
    EXPECT_EQ(out, msg);
  }
}

TEST(inflater, stops_a_bomb_at_the_limit) {
  // 16 MiB of zeros compress to ~16 KiB; the limit is 64 KiB: refused after 64 KiB + 1 of output.
  const std::string zeros(std::size_t{16} << 20, '\0');
  const auto bomb = client_deflate(zeros);
  ASSERT_LT(bomb.size(), std::size_t{20} << 10);
  inflater inf;
  std::string out;
  EXPECT_EQ(inf.inflate(bomb, out, 64 << 10), inflater::result::too_big);
  EXPECT_LE(out.capacity(), std::size_t{1} << 20);
  // Exactly at the limit is fine; one byte over is not.
  const std::string exact(1000, 'q');
  EXPECT_EQ(inf.inflate(client_deflate(exact), out, 1000), inflater::result::ok);
  EXPECT_EQ(out, exact);
  EXPECT_EQ(inf.inflate(client_deflate(exact), out, 999), inflater::result::too_big);
}

TEST(inflater, refuses_garbage_and_data_after_the_final_block) {
  inflater inf;
  std::string out;
  EXPECT_EQ(inf.inflate("\xff\xff\xff\xff garbage", out, 1 << 20), inflater::result::corrupt);
  auto fin = client_deflate("hello", true);
  EXPECT_EQ(inf.inflate(fin + "trailing", out, 1 << 20), inflater::result::corrupt);
  // And it still works afterwards.
  EXPECT_EQ(inf.inflate(client_deflate("hello"), out, 1 << 20), inflater::result::ok);
  EXPECT_EQ(out, "hello");
}

TEST(encoded_frame, carries_a_compressed_twin_with_rsv1) {
  auto f = std::make_shared<encoded_frame>();
  f->payload_buffer().append(std::string(600, 'm'));
  f->finish(ws_opcode::text);
  EXPECT_FALSE(f->has_deflated());
  EXPECT_EQ(f->bytes(true), f->bytes());
  deflater d;
  std::string c;
  ASSERT_TRUE(d.compress(f->payload(), c));
  f->set_deflated(c, ws_opcode::text);
  const auto z = f->bytes(true);
  ASSERT_EQ(z.size(), 2 + c.size());
  EXPECT_EQ(static_cast<unsigned char>(z[0]), 0xC1);  // FIN, RSV1, text
  EXPECT_EQ(static_cast<unsigned char>(z[1]), c.size());
  EXPECT_EQ(inflate_all(z.substr(2)), std::string(600, 'm'));
  EXPECT_EQ(f->bytes(false), f->bytes());
}

TEST(ws_reader, rsv1_only_after_negotiation_and_only_on_a_message_start) {
  const auto payload = client_deflate("{\"type\":\"ping\"}");
  {
    ws_reader r(1 << 16);  // not negotiated: RSV1 is a protocol error
    auto bytes = masked(payload, 0xC1);
    const auto res = r.feed(std::span<char>(bytes.data(), bytes.size()), [](const ws_event&) { return true; });
    EXPECT_EQ(res.error, ws_error::protocol);
  }
  {
    ws_reader r(1 << 16);
    r.accept_compressed(true);
    auto bytes = masked(payload, 0xC1);
    bool compressed = false;
    std::string got;
    const auto res = r.feed(std::span<char>(bytes.data(), bytes.size()), [&](const ws_event& ev) {
      compressed = ev.compressed;
      got = ev.payload;
      return true;
    });
    EXPECT_EQ(res.error, ws_error::none);
    EXPECT_TRUE(compressed);
    EXPECT_EQ(inflate_all(got), "{\"type\":\"ping\"}");
  }
  {
    // Fragmented: RSV1 on the first frame only; the message comes out whole and compressed.
    ws_reader r(1 << 16);
    r.accept_compressed(true);
    const auto half = payload.size() / 2;
    auto bytes =
        masked(std::string_view(payload).substr(0, half), 0x41) + masked(std::string_view(payload).substr(half), 0x80);
    std::string got;
    bool compressed = false;
    const auto res = r.feed(std::span<char>(bytes.data(), bytes.size()), [&](const ws_event& ev) {
      compressed = ev.compressed;
      got = ev.payload;
      return true;
    });
    EXPECT_EQ(res.error, ws_error::none);
    EXPECT_TRUE(compressed);
    EXPECT_EQ(inflate_all(got), "{\"type\":\"ping\"}");
  }
  for (const std::uint8_t bad :
       {std::uint8_t{0xC9} /* ping with RSV1 */, std::uint8_t{0xA1} /* RSV2 */, std::uint8_t{0x91} /* RSV3 */}) {
    ws_reader r(1 << 16);
    r.accept_compressed(true);
    auto bytes = masked("x", bad);
    const auto res = r.feed(std::span<char>(bytes.data(), bytes.size()), [](const ws_event&) { return true; });
    EXPECT_EQ(res.error, ws_error::protocol) << int(bad);
  }
  {
    ws_reader r(1 << 16);  // RSV1 on a continuation frame
    r.accept_compressed(true);
    auto bytes = masked("ab", 0x01) + masked("cd", 0xC0);
    const auto res = r.feed(std::span<char>(bytes.data(), bytes.size()), [](const ws_event&) { return true; });
    EXPECT_EQ(res.error, ws_error::protocol);
  }
  {
    // Compressed bytes are not UTF-8: the reader leaves that check to after inflating.
    ws_reader r(1 << 16);
    r.accept_compressed(true);
    auto bytes = masked("\xff\xfe", 0xC1);
    const auto res = r.feed(std::span<char>(bytes.data(), bytes.size()), [](const ws_event&) { return true; });
    EXPECT_EQ(res.error, ws_error::none);
  }
}
