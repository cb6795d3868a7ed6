#pragma once
// RFC 6455 framing, sans-io: a server-side reader for client frames and encoders for server frames.
//
// Why our own framing and not beast::websocket::stream: a stock Beast stream holds ~5-7 KB per idle
// connection (a 1.5 KiB inline read buffer, timers, per-op state) and frames every message per
// recipient. Here a server frame (header + payload) is built once and the same bytes are written to
// every recipient; an idle session holds no read buffer at all (the shard's scratch buffer is used).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace roomcast::protocol {

enum class ws_opcode : std::uint8_t { cont = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

// WebSocket close codes used by roomcast (docs/protocol.md has the table).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy = 1008;
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;  // drain: reconnect elsewhere
inline constexpr std::uint16_t kicked = 4000;           // default for /api/disconnect
inline constexpr std::uint16_t token_expired = 4402;    // the session's token expired (+ jwt_leeway) without a refresh
inline constexpr std::uint16_t unauthorized = 4401;     // no, a bad or a late {"type":"auth"} (token "-" in the URL)
inline constexpr std::uint16_t slow_consumer = 4008;
}  // namespace close_code

// One complete event out of the reader. `payload` is unmasked and valid until the next feed().
struct ws_event {
  ws_opcode opcode;  // text, binary, close, ping or pong (never cont)
  std::string_view payload;
  std::uint16_t close_code = 0;  // for close: the peer's code, or no_status
  // text/binary: the payload is compressed (permessage-deflate) and not checked yet: the caller
  // inflates it (bounded) and checks UTF-8.
  bool compressed = false;
};

// What went wrong in the peer's byte stream; maps to the close code we answer with.
enum class ws_error : std::uint8_t { none, protocol, too_big, bad_utf8 };
std::uint16_t close_code_for(ws_error e) noexcept;

// Reads client->server frames. Unmasks in place, so the input must be mutable.
// Holds only the state of a fragmented message (rare: browsers send whole frames).
class ws_reader {
 public:
  explicit ws_reader(std::size_t max_message_bytes) noexcept : max_message_(max_message_bytes) {}

  struct result {
    // Bytes of complete frames; the rest must be fed again with more. After too_big: up to the end
    // of the oversized frame (what follows it may be fed again).
    std::size_t consumed = 0;
    ws_error error = ws_error::none;
  };

  // Calls on_event(const ws_event&) for every complete message and control frame in `data`.
  // on_event returns false to stop early (for example after a close frame).
  template <class OnEvent>
  result feed(std::span<char> data, OnEvent&& on_event);

  // How many bytes the frame at the front of `data` needs in total, 0 if the header is incomplete.
  // Lets the caller reject an oversized frame before buffering it.
  std::size_t pending_frame_size(std::span<const char> data) const noexcept;

  std::size_t max_message() const noexcept { return max_message_; }
  // permessage-deflate was negotiated: RSV1 on a message's first frame marks it compressed.
  void accept_compressed(bool on) noexcept { inflate_ = on; }
  // Bytes of an oversized frame still to come: the next feeds drop them before reading frames
  // again, so the peer's close reply after our 1009 is still seen.
  std::uint64_t discarding() const noexcept { return skip_; }

 private:
  struct header {
    bool fin;
    bool masked;
    std::uint8_t rsv;
    ws_opcode opcode;
    std::size_t header_len;
    std::uint64_t payload_len;
    std::uint8_t mask[4];
  };
  // 0 = incomplete, otherwise parsed into h.
  static bool parse_header(std::span<const char> data, header& h) noexcept;
  ws_error handle_frame(const header& h, std::span<char> payload, ws_event& out, bool& have_event);

  std::size_t max_message_;
  std::string fragments_;  // payload of an unfinished fragmented message
  ws_opcode fragment_opcode_ = ws_opcode::cont;
  std::uint64_t skip_ = 0;  // rest of an oversized frame, dropped as it arrives
  bool dropping_ = false;   // the continuations of a message that grew over the limit
  bool inflate_ = false;    // permessage-deflate negotiated
  bool fragment_compressed_ = false;
  static constexpr std::uint8_t rsv1 = 0x4;  // header::rsv holds RSV1..RSV3 as bits 2..0
};

bool valid_utf8(std::string_view s) noexcept;

// A close code a peer may send (RFC 6455 7.4, IANA registry): 1000-1003, 1007-1014, 3000-4999.
// Anything else (below 1000, 1004-1006, 1015, 1016-2999, 5000 and up) is a protocol error (1002).
constexpr bool valid_close_code(std::uint16_t c) noexcept {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

// A server frame: header + payload in one buffer, built once and shared by every recipient.
// The payload is written first after a 10-byte gap; the header is then placed right before it.
class encoded_frame {
 public:
  static constexpr std::size_t max_header = 10;

  encoded_frame() { buf_.resize(max_header); }
  std::string& payload_buffer() noexcept { return buf_; }  // append payload bytes after construction
  void finish(ws_opcode op) noexcept;                      // writes the header; call once
  void finish_raw() noexcept { offset_ = max_header; }     // no header: the bytes go out as they are
  std::string_view bytes() const noexcept { return {buf_.data() + offset_, buf_.size() - offset_}; }
  std::string_view payload() const noexcept { return {buf_.data() + max_header, buf_.size() - max_header}; }

  // permessage-deflate: the same message compressed, as a frame with RSV1 set. Built once (before
  // the frame is shared); sessions that negotiated the extension send it instead of bytes().
  void set_deflated(std::string_view compressed_payload, ws_opcode op);
  bool has_deflated() const noexcept { return !deflated_.empty(); }
  std::string_view bytes(bool deflated) const noexcept {
    return deflated && !deflated_.empty() ? std::string_view(deflated_) : bytes();
  }

 private:
  std::string buf_;
  std::string deflated_;
  std::uint32_t offset_ = 0;
};

using shared_frame = std::shared_ptr<const encoded_frame>;

// Convenience: a whole frame for a payload (welcome, error, pong, ...).
shared_frame make_frame(ws_opcode op, std::string_view payload);
shared_frame make_close_frame(std::uint16_t code, std::string_view reason);
// Bytes that are not a frame (the HTTP 101 response), queued like one so they share its write.
shared_frame make_raw(std::string_view bytes);

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (SHA-1 + base64, RFC 6455 4.2.2).
std::string websocket_accept_key(std::string_view client_key);

// ---- implementation of the template ----

template <class OnEvent>
ws_reader::result ws_reader::feed(std::span<char> data, OnEvent&& on_event) {
  result r;
  if (skip_ > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(skip_, data.size()));
    skip_ -= n;
    r.consumed = n;
  }
  while (r.consumed < data.size()) {
    auto rest = data.subspan(r.consumed);
    header h{};
    if (!parse_header(rest, h)) {
      // Header incomplete: still reject a declared length over the limit right away.
      break;
    }
    if (h.payload_len > max_message_) {
      // Dropped, not buffered: what of it is here now, and the rest as it comes.
      const std::uint64_t total = h.header_len + h.payload_len;
      const auto here = static_cast<std::size_t>(std::min<std::uint64_t>(total, rest.size()));
      r.consumed += here;
      skip_ = total - here;
      fragments_.clear();
      fragment_opcode_ = ws_opcode::cont;
      r.error = ws_error::too_big;
      return r;
    }
    const std::size_t total = h.header_len + static_cast<std::size_t>(h.payload_len);
    if (rest.size() < total) break;
    ws_event ev{};
    bool have_event = false;
    r.error = handle_frame(h, rest.subspan(h.header_len, static_cast<std::size_t>(h.payload_len)), ev, have_event);
    if (r.error == ws_error::too_big) r.consumed += total;  // the frame is read: what follows may be fed again
    if (r.error != ws_error::none) return r;
    r.consumed += total;
    if (have_event && !on_event(static_cast<const ws_event&>(ev))) return r;
  }
  return r;
}

}  // namespace roomcast::protocol
