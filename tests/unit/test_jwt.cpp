#include "auth/jwt.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace roomcast::auth;
using namespace std::chrono;

namespace {
const auto now = system_clock::time_point(seconds(1'700'000'000));
}

TEST(jwt, accepts_a_valid_token) {
  const auto t = sign_hs256(R"({"sub":"452784","exp":1700000600})", "s3cret");
  jwt_claims c;
  EXPECT_EQ(verify_hs256(t, "s3cret", "452784", now, seconds(0), &c), jwt_error::none);
  EXPECT_EQ(c.sub, "452784");
  EXPECT_EQ(c.exp, 1700000600);
}

TEST(jwt, rejects_what_it_must) {
  const auto good = sign_hs256(R"({"sub":"u","exp":1700000600})", "k");
  EXPECT_EQ(verify_hs256(good, "other", "u", now, seconds(0)), jwt_error::bad_signature);
  EXPECT_EQ(verify_hs256(good, "k", "v", now, seconds(0)), jwt_error::wrong_subject);
  EXPECT_EQ(verify_hs256(good, "k", "u", now + seconds(601), seconds(0)), jwt_error::expired);
  EXPECT_EQ(verify_hs256(good, "k", "u", now + seconds(601), seconds(30)), jwt_error::none);  // leeway
  EXPECT_EQ(verify_hs256(sign_hs256(R"({"sub":"u"})", "k"), "k", "u", now, seconds(0)), jwt_error::missing_exp);
  EXPECT_EQ(
      verify_hs256(sign_hs256(R"({"sub":"u","exp":1700000600,"nbf":1700000100})", "k"), "k", "u", now, seconds(0)),
      jwt_error::not_yet_valid);
  EXPECT_EQ(verify_hs256("abc", "k", "u", now, seconds(0)), jwt_error::malformed);
  EXPECT_EQ(verify_hs256("a.b.c.d", "k", "u", now, seconds(0)), jwt_error::malformed);
  // alg "none" with an empty signature must never pass.
  const auto none =
      base64url_encode(R"({"alg":"none"})") + "." + base64url_encode(R"({"sub":"u","exp":1700000600})") + ".";
  EXPECT_EQ(verify_hs256(none, "k", "u", now, seconds(0)), jwt_error::bad_algorithm);
  // A tampered payload with the old signature.
  auto dot2 = good.rfind('.');
  const auto forged =
      good.substr(0, good.find('.') + 1) + base64url_encode(R"({"sub":"u","exp":9999999999})") + good.substr(dot2);
  EXPECT_EQ(verify_hs256(forged, "k", "u", now, seconds(0)), jwt_error::bad_signature);
}

// Found by fuzz_jwt (UBSan): a huge exp or nbf in a signed token is clamped, not undefined behaviour.
TEST(jwt, huge_numeric_dates_are_far_future_or_far_past_not_undefined) {
  for (const char* exp : {"1e132", "18446744073709551615", "9223372036854775807", "1e999"}) {
    jwt_claims c;
    const auto t = sign_hs256(std::string(R"({"sub":"u","exp":)") + exp + "}", "k");
    EXPECT_EQ(verify_hs256(t, "k", "u", now, seconds(30), &c), jwt_error::none) << exp;
    EXPECT_EQ(c.exp, 1'000'000'000'000'000) << exp;
  }
  for (const char* exp : {"-1e132", "-9223372036854775808"})
    EXPECT_EQ(
        verify_hs256(sign_hs256(std::string(R"({"sub":"u","exp":)") + exp + "}", "k"), "k", "u", now, seconds(30)),
        jwt_error::expired)
        << exp;
  EXPECT_EQ(verify_hs256(sign_hs256(R"({"sub":"u","exp":1700000600,"nbf":1e300})", "k"), "k", "u", now, seconds(30)),
            jwt_error::not_yet_valid);
  // Boost.JSON reads 0e9012 as NaN: no usable date, so the token is malformed, not "no nbf".
  EXPECT_EQ(verify_hs256(sign_hs256(R"({"sub":"u","exp":0e9012})", "k"), "k", "u", now, seconds(30)),
            jwt_error::malformed);
  EXPECT_EQ(verify_hs256(sign_hs256(R"({"sub":"u","exp":1700000600,"nbf":0e9012})", "k"), "k", "u", now, seconds(30)),
            jwt_error::malformed);
}

TEST(jwt, base64url_round_trip) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00\x01"}) {
    EXPECT_EQ(base64url_decode(base64url_encode(s)).value(), s);
  }
  EXPECT_FALSE(base64url_decode("a+b"));
  EXPECT_TRUE(secure_equals("abc", "abc"));
  EXPECT_FALSE(secure_equals("abc", "abd"));
  EXPECT_FALSE(secure_equals("abc", "ab"));
}
