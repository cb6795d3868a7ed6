#pragma once
// HS256 JSON Web Tokens, sans-io: verification takes the token, the secret and "now".
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace roomcast::auth {

enum class jwt_error : std::uint8_t {
  none,
  malformed,      // not three base64url parts of JSON
  bad_algorithm,  // header alg is not HS256 (alg "none" is refused)
  bad_signature,
  missing_exp,
  expired,
  not_yet_valid,  // nbf in the future
  wrong_subject,  // sub differs from the user in the URL
};
std::string_view to_string(jwt_error e) noexcept;

struct jwt_claims {
  std::string sub;
  std::int64_t exp = 0;
};

// Verifies signature, exp (required) and nbf (optional) with `leeway` of clock skew, and that
// `sub` equals expected_sub.
jwt_error verify_hs256(std::string_view token, std::string_view secret, std::string_view expected_sub,
                       std::chrono::system_clock::time_point now, std::chrono::seconds leeway,
                       jwt_claims* claims = nullptr);

// Builds a token (for tests, tools and the demo page's backend snippet).
std::string sign_hs256(std::string_view payload_json, std::string_view secret);

std::optional<std::string> base64url_decode(std::string_view in);
std::string base64url_encode(std::string_view in);

// Constant-time comparison for secrets such as API keys.
bool secure_equals(std::string_view a, std::string_view b) noexcept;

}  // namespace roomcast::auth
