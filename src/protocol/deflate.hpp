#pragma once
// permessage-deflate (RFC 7692), sans-io: the handshake's offer and answer, and one message
// compressed or inflated at a time.
//
// roomcast always answers with server_no_context_takeover and client_no_context_takeover. Every
// message is then compressed on its own, in both directions:
// - out: one compressed frame serves every recipient that negotiated the extension (the node
//   compresses a message once, not once per delivery);
// - in: inflating a client message needs nothing from the previous one, so an idle connection
//   holds no zlib state; each shard owns one inflater, reset per message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

// zlib's stream type, kept out of every includer.
struct z_stream_s;

namespace roomcast::protocol {

struct deflate_options {
  bool enabled = false;         // config compression: negotiate when the client offers
  std::size_t min_bytes = 512;  // config compression_min_bytes: smaller messages go out as they are
  int level = 1;                // config compression_level (zlib 1-9): 1 is fastest
};

// The Sec-WebSocket-Extensions answer for a client's offers (every Sec-WebSocket-Extensions value
// joined with ", "), or empty when no permessage-deflate offer can be accepted: then the session
// runs without the extension. An offer is declined when it has an unknown or repeated parameter,
// a bad value, or asks server_max_window_bits below 15 (one shared compressed frame can't honour
// a smaller window per client).
std::string negotiate_deflate(std::string_view offers);

// Compresses one message: raw DEFLATE, flushed with Z_SYNC_FLUSH, without the final
// 00 00 ff ff (RFC 7692 7.2.1). Not thread-safe: one per thread.
class deflater {
 public:
  explicit deflater(int level = 1);
  ~deflater();
  deflater(const deflater&) = delete;
  deflater& operator=(const deflater&) = delete;

  // Appends the compressed payload to out. False if zlib failed (out is then left as it was).
  bool compress(std::string_view in, std::string& out);

 private:
  z_stream_s* zs_ = nullptr;
};

// Inflates one client message (its payload, the 00 00 ff ff added back) into at most `max` bytes.
// The output bound is what makes an inflate bomb cheap: zlib stops at max + 1 bytes of output
// whatever the input claims. Not thread-safe: one per shard.
class inflater {
 public:
  enum class result : std::uint8_t { ok, too_big, corrupt };

  inflater() = default;
  ~inflater();
  inflater(const inflater&) = delete;
  inflater& operator=(const inflater&) = delete;

  // Replaces out with the inflated message.
  result inflate(std::string_view in, std::string& out, std::size_t max);

 private:
  z_stream_s* zs_ = nullptr;  // created at first use: a shard without compressed input pays nothing
};

}  // namespace roomcast::protocol
