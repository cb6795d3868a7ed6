#include "protocol/deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

namespace roomcast::protocol {

namespace {

constexpr std::string_view extension_name = "permessage-deflate";
constexpr std::string_view answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

bool is_space(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return (x | 0x20) == (y | 0x20); });
}

// Splits on `sep` outside double quotes.
std::vector<std::string_view> split_outside_quotes(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  bool quoted = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '"') quoted = !quoted;
    if (!quoted && s[i] == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

// RFC 7692 7.1.2: window bits are 8-15, a decimal integer without leading zeroes (may be quoted).
bool window_bits(std::string_view v, int& bits) noexcept {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.size() == 1 && v[0] >= '8' && v[0] <= '9') {
    bits = v[0] - '0';
    return true;
  }
  if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
    bits = 10 + (v[1] - '0');
    return true;
  }
  return false;
}

// One offer: "permessage-deflate; param[=value]; ...".
bool acceptable(std::string_view offer) {
  const auto params = split_outside_quotes(offer, ';');
  if (!iequals(trim(params[0]), extension_name)) return false;
  bool seen_server_nct = false, seen_client_nct = false, seen_server_bits = false, seen_client_bits = false;
  for (std::size_t i = 1; i < params.size(); ++i) {
    const auto p = trim(params[i]);
    const auto eq = p.find('=');
    const auto name = trim(p.substr(0, eq));
    const bool has_value = eq != std::string_view::npos;
    const auto value = has_value ? trim(p.substr(eq + 1)) : std::string_view{};
    int bits = 0;
    if (iequals(name, "server_no_context_takeover")) {
      if (has_value || std::exchange(seen_server_nct, true)) return false;
    } else if (iequals(name, "client_no_context_takeover")) {
      if (has_value || std::exchange(seen_client_nct, true)) return false;
    } else if (iequals(name, "server_max_window_bits")) {
      // One frame compressed with a 32 KiB window is shared by every recipient.
      if (!has_value || !window_bits(value, bits) || bits != 15 || std::exchange(seen_server_bits, true)) return false;
    } else if (iequals(name, "client_max_window_bits")) {
      // The shard's inflater takes any window up to 15: nothing to answer.
      if ((has_value && !window_bits(value, bits)) || std::exchange(seen_client_bits, true)) return false;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string negotiate_deflate(std::string_view offers) {
  for (const auto offer : split_outside_quotes(offers, ','))
    if (acceptable(offer)) return std::string(answer);
  return {};
}

deflater::deflater(int level) : zs_(new z_stream{}) {
  // Raw DEFLATE (negative window bits), 32 KiB window, zlib's default memory level.
  if (deflateInit2(zs_, std::clamp(level, 1, 9), Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    delete zs_;
    zs_ = nullptr;
  }
}

deflater::~deflater() {
  if (zs_) {
    deflateEnd(zs_);
    delete zs_;
  }
}

bool deflater::compress(std::string_view in, std::string& out) {
  if (!zs_ || deflateReset(zs_) != Z_OK) return false;
  const std::size_t start = out.size();
  // deflateBound covers Z_FINISH; a sync flush adds its empty stored block (5 bytes) at most.
  std::size_t room = deflateBound(zs_, static_cast<uLong>(in.size())) + 16;
  out.resize(start + room);
  zs_->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs_->avail_in = static_cast<uInt>(in.size());
  std::size_t produced = 0;
  for (;;) {
    zs_->next_out = reinterpret_cast<Bytef*>(out.data() + start + produced);
    zs_->avail_out = static_cast<uInt>(room - produced);
    const int rc = ::deflate(zs_, Z_SYNC_FLUSH);
    produced = room - zs_->avail_out;
    if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    if (zs_->avail_in == 0 && zs_->avail_out > 0) {
      // Z_SYNC_FLUSH ends with an empty stored block, 00 00 ff ff, which RFC 7692 leaves out.
      static constexpr char tail[4] = {0, 0, static_cast<char>(0xff), static_cast<char>(0xff)};
      if (produced < 4 || std::memcmp(out.data() + start + produced - 4, tail, 4) != 0) break;
      out.resize(start + produced - 4);
      return true;
    }
    room *= 2;  // not expected (the bound holds), but never truncate
    out.resize(start + room);
  }
  out.resize(start);
  return false;
}

inflater::~inflater() {
  if (zs_) {
    inflateEnd(zs_);
    delete zs_;
  }
}

inflater::result inflater::inflate(std::string_view in, std::string& out, std::size_t max) {
  if (!zs_) {
    zs_ = new z_stream{};
    if (inflateInit2(zs_, -15) != Z_OK) {
      delete zs_;
      zs_ = nullptr;
      return result::corrupt;
    }
  } else if (inflateReset(zs_) != Z_OK) {
    return result::corrupt;
  }
  static constexpr char tail[4] = {0, 0, static_cast<char>(0xff), static_cast<char>(0xff)};
  const std::string_view pieces[2] = {in, {tail, 4}};
  // Output grows as needed up to max + 1 bytes: one byte more than allowed means too big.
  const std::size_t cap = max + 1;
  out.resize(std::min(cap, std::max<std::size_t>(1024, in.size() * 4)));
  std::size_t produced = 0;
  for (const auto piece : pieces) {
    zs_->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
    zs_->avail_in = static_cast<uInt>(piece.size());
    for (;;) {
      if (produced == out.size()) {
        if (out.size() >= cap) {
          out.clear();
          return result::too_big;
        }
        out.resize(std::min(cap, out.size() * 2));
      }
      zs_->next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      zs_->avail_out = static_cast<uInt>(out.size() - produced);
      const int rc = ::inflate(zs_, Z_SYNC_FLUSH);
      produced = out.size() - zs_->avail_out;
      if (rc == Z_STREAM_END) {
        // The client ended the DEFLATE stream (BFINAL): allowed, but only our 00 00 ff ff may follow.
        if (piece.data() == in.data() && zs_->avail_in > 0) {
          out.clear();
          return result::corrupt;
        }
        out.resize(produced);
        return produced > max ? result::too_big : result::ok;
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        out.clear();
        return result::corrupt;
      }
      // Done with this piece when its input is used and zlib had output room left (nothing pending).
      if (zs_->avail_out > 0) break;
    }
    if (zs_->avail_in > 0) {  // zlib stopped with input left and room to write: can't go on
      out.clear();
      return result::corrupt;
    }
  }
  if (produced > max) {
    out.clear();
    return result::too_big;
  }
  out.resize(produced);
  return result::ok;
}

}  // namespace roomcast::protocol
