#include "protocol/ws_frame.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstring>

namespace roomcast::protocol {

std::uint16_t close_code_for(ws_error e) noexcept {
  switch (e) {
    case ws_error::too_big:
      return close_code::too_big;
    case ws_error::bad_utf8:
      return close_code::invalid_payload;
    case ws_error::protocol:
      return close_code::protocol_error;
    case ws_error::none:
      break;
  }
  return close_code::normal;
}

bool ws_reader::parse_header(std::span<const char> data, header& h) noexcept {
  if (data.size() < 2) return false;
  const auto b0 = static_cast<std::uint8_t>(data[0]);
  const auto b1 = static_cast<std::uint8_t>(data[1]);
  h.fin = (b0 & 0x80) != 0;
  h.rsv = static_cast<std::uint8_t>((b0 >> 4) & 0x07);
  h.opcode = static_cast<ws_opcode>(b0 & 0x0f);
  h.masked = (b1 & 0x80) != 0;
  std::uint64_t len = b1 & 0x7f;
  std::size_t pos = 2;
  if (len == 126) {
    if (data.size() < 4) return false;
    len = (std::uint64_t{static_cast<std::uint8_t>(data[2])} << 8) | static_cast<std::uint8_t>(data[3]);
    pos = 4;
  } else if (len == 127) {
    if (data.size() < 10) return false;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(data[2 + i]);
    pos = 10;
  }
  if (h.masked) {
    if (data.size() < pos + 4) return false;
    std::memcpy(h.mask, data.data() + pos, 4);
    pos += 4;
  }
  h.header_len = pos;
  h.payload_len = len;
  return true;
}

std::size_t ws_reader::pending_frame_size(std::span<const char> data) const noexcept {
  header h{};
  if (!parse_header(data, h)) return 0;
  return h.header_len + static_cast<std::size_t>(h.payload_len);
}

namespace {
void unmask(std::span<char> p, const std::uint8_t (&mask)[4]) noexcept {
  // Word-at-a-time unmasking: the payload is usually small, but a 64 KiB frame should not cost 64k
  // byte operations.
  std::uint32_t m32;
  std::memcpy(&m32, mask, 4);
  const std::uint64_t m64 = (std::uint64_t{m32} << 32) | m32;
  std::size_t i = 0;
  for (; i + 8 <= p.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p.data() + i, 8);
    w ^= m64;
    std::memcpy(p.data() + i, &w, 8);
  }
  for (; i < p.size(); ++i) p[i] = static_cast<char>(p[i] ^ mask[i & 3]);
}
}  // namespace

ws_error ws_reader::handle_frame(const header& h, std::span<char> payload, ws_event& out, bool& have_event) {
  // RFC 6455 5.1: a client must mask; 5.2: RSV bits are zero unless an extension says otherwise.
  // RFC 7692 6.1: with permessage-deflate, RSV1 marks the first frame of a compressed message.
  if (!h.masked) return ws_error::protocol;
  const bool data_start = h.opcode == ws_opcode::text || h.opcode == ws_opcode::binary;
  if (h.rsv != 0 && !(inflate_ && data_start && h.rsv == rsv1)) return ws_error::protocol;
  const bool compressed = h.rsv == rsv1;
  unmask(payload, h.mask);
  const std::string_view body{payload.data(), payload.size()};
  switch (h.opcode) {
    case ws_opcode::close: {
      if (!h.fin || payload.size() > 125 || payload.size() == 1) return ws_error::protocol;
      out.opcode = ws_opcode::close;
      out.close_code = close_code::no_status;
      if (payload.size() >= 2) {
        out.close_code = static_cast<std::uint16_t>((static_cast<std::uint8_t>(payload[0]) << 8) |
                                                    static_cast<std::uint8_t>(payload[1]));
        if (!valid_close_code(out.close_code)) return ws_error::protocol;  // answered with 1002, not echoed
        if (!valid_utf8(body.substr(2))) return ws_error::bad_utf8;
        out.payload = body.substr(2);
      }
      have_event = true;
      return ws_error::none;
    }
    case ws_opcode::ping:
    case ws_opcode::pong:
      if (!h.fin || payload.size() > 125) return ws_error::protocol;
      out.opcode = h.opcode;
      out.payload = body;
      have_event = true;
      return ws_error::none;
    case ws_opcode::text:
    case ws_opcode::binary:
      if (fragment_opcode_ != ws_opcode::cont) return ws_error::protocol;  // new message mid-message
      if (h.fin) {
        // A compressed message is checked after inflating, by the caller.
        if (h.opcode == ws_opcode::text && !compressed && !valid_utf8(body)) return ws_error::bad_utf8;
        fragments_.clear();
        fragments_.shrink_to_fit();
        out.opcode = h.opcode;
        out.payload = body;
        out.compressed = compressed;
        have_event = true;
        return ws_error::none;
      }
      fragments_.assign(body);
      fragment_opcode_ = h.opcode;
      fragment_compressed_ = compressed;
      return ws_error::none;
    case ws_opcode::cont:
      if (dropping_) {  // the rest of a message that grew over the limit: dropped up to its end
        dropping_ = !h.fin;
        return ws_error::none;
      }
      if (fragment_opcode_ == ws_opcode::cont) return ws_error::protocol;
      if (fragments_.size() + payload.size() > max_message_) {
        fragments_.clear();
        fragments_.shrink_to_fit();
        fragment_opcode_ = ws_opcode::cont;
        dropping_ = !h.fin;
        return ws_error::too_big;
      }
      fragments_.append(body);
      if (!h.fin) return ws_error::none;
      if (fragment_opcode_ == ws_opcode::text && !fragment_compressed_ && !valid_utf8(fragments_))
        return ws_error::bad_utf8;
      out.opcode = fragment_opcode_;
      out.payload = fragments_;  // cleared when the next message starts
      out.compressed = fragment_compressed_;
      fragment_opcode_ = ws_opcode::cont;
      have_event = true;
      return ws_error::none;
  }
  return ws_error::protocol;  // reserved opcode
}

bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // Fast path for ASCII, which is nearly everything in JSON.
    if (*p < 0x80) {
      ++p;
      continue;
    }
    int n;
    std::uint32_t cp;
    if ((*p & 0xe0) == 0xc0) {
      n = 1;
      cp = *p & 0x1f;
    } else if ((*p & 0xf0) == 0xe0) {
      n = 2;
      cp = *p & 0x0f;
    } else if ((*p & 0xf8) == 0xf0) {
      n = 3;
      cp = *p & 0x07;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    p += n + 1;
  }
  return true;
}

namespace {
// A server frame header (FIN set, unmasked) for `len` payload bytes; returns its length.
std::size_t write_header(unsigned char (&h)[encoded_frame::max_header], ws_opcode op, std::size_t len,
                         bool rsv1) noexcept {
  h[0] = static_cast<unsigned char>(0x80 | (rsv1 ? 0x40 : 0) | static_cast<std::uint8_t>(op));
  if (len < 126) {
    h[1] = static_cast<unsigned char>(len);
    return 2;
  }
  if (len <= 0xffff) {
    h[1] = 126;
    h[2] = static_cast<unsigned char>(len >> 8);
    h[3] = static_cast<unsigned char>(len);
    return 4;
  }
  h[1] = 127;
  for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<unsigned char>(std::uint64_t{len} >> (56 - 8 * i));
  return 10;
}
}  // namespace

void encoded_frame::finish(ws_opcode op) noexcept {
  unsigned char h[max_header];
  const std::size_t hl = write_header(h, op, buf_.size() - max_header, false);
  offset_ = static_cast<std::uint32_t>(max_header - hl);
  std::memcpy(buf_.data() + offset_, h, hl);
}

void encoded_frame::set_deflated(std::string_view compressed_payload, ws_opcode op) {
  unsigned char h[max_header];
  const std::size_t hl = write_header(h, op, compressed_payload.size(), true);
  deflated_.reserve(hl + compressed_payload.size());
  deflated_.assign(reinterpret_cast<const char*>(h), hl);
  deflated_.append(compressed_payload);
}

shared_frame make_frame(ws_opcode op, std::string_view payload) {
  auto f = std::make_shared<encoded_frame>();
  f->payload_buffer().append(payload);
  f->finish(op);
  return f;
}

shared_frame make_raw(std::string_view bytes) {
  auto f = std::make_shared<encoded_frame>();
  f->payload_buffer().append(bytes);
  f->finish_raw();
  return f;
}

shared_frame make_close_frame(std::uint16_t code, std::string_view reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xff));
  p.append(reason.substr(0, 123));
  return make_frame(ws_opcode::close, p);
}

std::string websocket_accept_key(std::string_view client_key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string in;
  in.reserve(client_key.size() + guid.size());
  in.append(client_key).append(guid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

}  // namespace roomcast::protocol
