#pragma once
// Builds HS256 JSON Web Tokens for the auth tests.

#include <string>
#include <string_view>

namespace roomcast::itest {

std::string base64url(std::string_view bytes);  // no padding

// header.payload.signature with HMAC-SHA256 over the first two parts.
std::string make_jwt_hs256(std::string_view payload_json, std::string_view secret,
                           std::string_view header_json = R"({"alg":"HS256","typ":"JWT"})");

}  // namespace roomcast::itest
