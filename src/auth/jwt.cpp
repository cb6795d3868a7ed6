#include "auth/jwt.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace roomcast::auth {

std::string_view to_string(jwt_error e) noexcept {
  switch (e) {
    case jwt_error::none:
      return "ok";
    case jwt_error::malformed:
      return "malformed token";
    case jwt_error::bad_algorithm:
      return "token algorithm is not HS256";
    case jwt_error::bad_signature:
      return "bad token signature";
    case jwt_error::missing_exp:
      return "token has no exp";
    case jwt_error::expired:
      return "token expired";
    case jwt_error::not_yet_valid:
      return "token not valid yet";
    case jwt_error::wrong_subject:
      return "token subject does not match the user";
  }
  return "unknown";
}

namespace {
constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int decode_char(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// A NumericDate claim, clamped to +-10^15 s (31 million years) so that adding the leeway can't
// overflow: 1e132 or 2^64-1 in a signed token is "never expires", not undefined behaviour (found
// by tests/fuzz/fuzz_jwt.cpp).
constexpr std::int64_t nan_claim = INT64_MIN;  // a claim that is no number at all: the token is malformed

std::optional<std::int64_t> int_claim(const boost::json::object& o, std::string_view name) {
  constexpr std::int64_t bound = 1'000'000'000'000'000;
  const auto* v = o.if_contains(name);
  if (!v) return std::nullopt;
  if (v->is_int64()) return std::clamp(v->get_int64(), -bound, bound);
  if (v->is_uint64()) return bound;  // only numbers over INT64_MAX are uint64
  if (v->is_double()) {
    const double d = v->get_double();
    if (std::isnan(d)) return nan_claim;  // Boost.JSON reads 0e9012 as 0 * inf (found by the fuzzer)
    if (d >= static_cast<double>(bound)) return bound;
    if (d <= -static_cast<double>(bound)) return -bound;
    return static_cast<std::int64_t>(d);
  }
  return std::nullopt;
}
}  // namespace

std::optional<std::string> base64url_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;  // tolerate padding
    const int v = decode_char(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(alphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(alphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

bool secure_equals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

jwt_error verify_hs256(std::string_view token, std::string_view secret, std::string_view expected_sub,
                       std::chrono::system_clock::time_point now, std::chrono::seconds leeway, jwt_claims* claims) {
  const auto d1 = token.find('.');
  if (d1 == std::string_view::npos) return jwt_error::malformed;
  const auto d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) return jwt_error::malformed;
  const auto header = base64url_decode(token.substr(0, d1));
  const auto payload = base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  const auto sig = base64url_decode(token.substr(d2 + 1));
  if (!header || !payload || !sig) return jwt_error::malformed;

  boost::json::error_code ec;
  const auto h = boost::json::parse(*header, ec);
  if (ec || !h.is_object()) return jwt_error::malformed;
  const auto* alg = h.get_object().if_contains("alg");
  if (!alg || !alg->is_string() || alg->get_string() != "HS256") return jwt_error::bad_algorithm;

  // Signature before claims: nothing in an unauthenticated payload is trusted.
  const auto expected = hmac_sha256(secret, token.substr(0, d2));
  if (!secure_equals(expected, *sig)) return jwt_error::bad_signature;

  const auto p = boost::json::parse(*payload, ec);
  if (ec || !p.is_object()) return jwt_error::malformed;
  const auto& o = p.get_object();
  const auto exp = int_claim(o, "exp");
  const auto nbf = int_claim(o, "nbf");
  if (exp == nan_claim || nbf == nan_claim) return jwt_error::malformed;
  if (!exp) return jwt_error::missing_exp;
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (now_s > *exp + leeway.count()) return jwt_error::expired;
  if (nbf && now_s + leeway.count() < *nbf) return jwt_error::not_yet_valid;
  const auto* sub = o.if_contains("sub");
  if (!sub || !sub->is_string() || sub->get_string() != expected_sub) return jwt_error::wrong_subject;
  if (claims) {
    claims->sub = std::string(sub->get_string());
    claims->exp = *exp;
  }
  return jwt_error::none;
}

std::string sign_hs256(std::string_view payload_json, std::string_view secret) {
  std::string t = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  t.push_back('.');
  t += base64url_encode(payload_json);
  const auto sig = hmac_sha256(secret, t);
  t.push_back('.');
  t += base64url_encode(sig);
  return t;
}

}  // namespace roomcast::auth
