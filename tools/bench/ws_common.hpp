// Small helpers shared by limit-server and roomcast-bench: RFC 6455 accept key, frame headers,
// monotonic clock, and a tiny JSON scanner (no JSON library on the hot path).
#pragma once

#include <openssl/sha.h>

#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

namespace bench {

inline std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline std::string base64(const unsigned char* p, std::size_t n) {
  static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (std::size_t i = 0; i < n; i += 3) {
    std::uint32_t v = std::uint32_t(p[i]) << 16;
    if (i + 1 < n) v |= std::uint32_t(p[i + 1]) << 8;
    if (i + 2 < n) v |= p[i + 2];
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    out += i + 2 < n ? tbl[v & 63] : '=';
  }
  return out;
}

// Sec-WebSocket-Accept = base64(SHA1(key + GUID)).
inline std::string ws_accept(std::string_view key) {
  std::string s(key);
  s += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), md);
  return base64(md, sizeof md);
}

// Appends a frame header (FIN set) for `len` payload bytes; with mask, appends the 4 mask bytes.
inline void append_frame_header(std::string& out, unsigned opcode, std::uint64_t len, const unsigned char* mask) {
  out += char(0x80 | opcode);
  const unsigned char m = mask ? 0x80 : 0;
  if (len < 126) {
    out += char(m | len);
  } else if (len < 65536) {
    out += char(m | 126);
    out += char(len >> 8);
    out += char(len & 0xff);
  } else {
    out += char(m | 127);
    for (int i = 7; i >= 0; --i) out += char((len >> (8 * i)) & 0xff);
  }
  if (mask) out.append(reinterpret_cast<const char*>(mask), 4);
}

// Server frame (unmasked).
inline std::string server_frame(unsigned opcode, std::string_view payload) {
  std::string f;
  f.reserve(payload.size() + 10);
  append_frame_header(f, opcode, payload.size(), nullptr);
  f += payload;
  return f;
}

// Client frame (masked, RFC 6455 5.3). The mask is fixed: a load generator needs no secrecy.
inline std::string client_frame(unsigned opcode, std::string_view payload) {
  static constexpr unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string f;
  f.reserve(payload.size() + 14);
  append_frame_header(f, opcode, payload.size(), mask);
  for (std::size_t i = 0; i < payload.size(); ++i) f += char(payload[i] ^ mask[i & 3]);
  return f;
}

struct frame_view {
  unsigned opcode = 0;
  bool fin = false;
  bool rsv1 = false;  // permessage-deflate: compressed message
  bool masked = false;
  std::size_t header = 0;  // bytes before the payload (mask included)
  std::uint64_t len = 0;
  unsigned char mask[4]{};
};

// Parses a frame header at the start of buf. Returns false while the header is incomplete.
inline bool parse_frame_header(std::string_view buf, frame_view& f) {
  if (buf.size() < 2) return false;
  const auto b0 = static_cast<unsigned char>(buf[0]), b1 = static_cast<unsigned char>(buf[1]);
  f.fin = b0 & 0x80;
  f.rsv1 = b0 & 0x40;
  f.opcode = b0 & 0x0f;
  f.masked = b1 & 0x80;
  std::uint64_t len = b1 & 0x7f;
  std::size_t h = 2;
  if (len == 126) {
    if (buf.size() < 4) return false;
    len = (std::uint64_t(static_cast<unsigned char>(buf[2])) << 8) | static_cast<unsigned char>(buf[3]);
    h = 4;
  } else if (len == 127) {
    if (buf.size() < 10) return false;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf[2 + i]);
    h = 10;
  }
  if (f.masked) {
    if (buf.size() < h + 4) return false;
    std::memcpy(f.mask, buf.data() + h, 4);
    h += 4;
  }
  f.header = h;
  f.len = len;
  return true;
}

// ---- tiny JSON scanner --------------------------------------------------------------------
inline std::size_t skip_ws(std::string_view s, std::size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  return i;
}

// s[i] == '"'; moves i past the closing quote.
inline bool skip_string(std::string_view s, std::size_t& i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      ++i;
      return true;
    }
  }
  return false;
}

// Moves i past one JSON value (object, array, string, number, literal).
inline bool skip_value(std::string_view s, std::size_t& i) {
  i = skip_ws(s, i);
  if (i >= s.size()) return false;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        if (!skip_string(s, i)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) {
          ++i;
          return true;
        }
      }
      ++i;
    }
    return false;
  }
  const std::size_t start = i;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' && s[i] != '\r' &&
         s[i] != '\t')
    ++i;
  return i > start;
}

// Calls fn(key, raw_value) for each member of the top-level object. Keys are raw (no unescaping).
template <class Fn>
inline bool scan_object(std::string_view s, Fn&& fn) {
  std::size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{') return false;
  i = skip_ws(s, i + 1);
  if (i < s.size() && s[i] == '}') return true;
  while (i < s.size()) {
    if (s[i] != '"') return false;
    const std::size_t ks = i;
    if (!skip_string(s, i)) return false;
    const std::string_view key = s.substr(ks + 1, i - ks - 2);
    i = skip_ws(s, i);
    if (i >= s.size() || s[i] != ':') return false;
    i = skip_ws(s, i + 1);
    const std::size_t vs = i;
    if (!skip_value(s, i)) return false;
    fn(key, s.substr(vs, i - vs));
    i = skip_ws(s, i);
    if (i < s.size() && s[i] == ',') {
      i = skip_ws(s, i + 1);
      continue;
    }
    return i < s.size() && s[i] == '}';
  }
  return false;
}

// Finds `"name":` in s and parses the integer after it; returns false if absent.
inline bool find_int(std::string_view s, std::string_view pattern, std::int64_t& out) {
  const auto p = s.find(pattern);
  if (p == std::string_view::npos) return false;
  std::size_t i = p + pattern.size();
  bool neg = false;
  if (i < s.size() && s[i] == '-') {
    neg = true;
    ++i;
  }
  std::int64_t v = 0;
  const std::size_t start = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
  if (i == start) return false;
  out = neg ? -v : v;
  return true;
}

}  // namespace bench
