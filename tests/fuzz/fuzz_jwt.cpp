// Tokens come from URLs, Authorization headers and auth/refresh frames: verify_hs256 and base64url.
#include "auth/jwt.hpp"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace roomcast::auth;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  jwt_claims claims;
  const jwt_error e = verify_hs256(in, "fuzz-secret", "u1", now, std::chrono::seconds(30), &claims);
  if (e == jwt_error::none && (claims.sub != "u1" || claims.exp + 30 < 1'800'000'000)) std::abort();
  // A token signed with the secret is accepted exactly when its claims are: the signature is not
  // the only thing standing between a crafted payload and a session.
  const std::string signed_token = sign_hs256(in, "fuzz-secret");
  (void)verify_hs256(signed_token, "fuzz-secret", "u1", now, std::chrono::seconds(30), &claims);
  if (verify_hs256(signed_token, "other-secret", "u1", now, std::chrono::seconds(30)) == jwt_error::none) std::abort();
  if (const auto decoded = base64url_decode(in)) {
    const auto again = base64url_decode(base64url_encode(*decoded));
    if (!again || *again != *decoded) std::abort();
  }
  if (base64url_decode(base64url_encode(in)) != std::string(in)) std::abort();
  return 0;
}
