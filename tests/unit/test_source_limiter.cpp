// hub/source_limiter: new connections per source address, in a table bounded in size and cleaned.
#include "hub/source_limiter.hpp"

#include <gtest/gtest.h>

using roomcast::hub::source_limiter;
using namespace std::chrono_literals;

namespace {

const source_limiter::clock::time_point t0{std::chrono::seconds(1000)};

source_limiter::address ip(std::uint32_t last) { return source_limiter::v4(0x7f000000u | last); }

int allowed(source_limiter& l, const source_limiter::address& a, int tries, source_limiter::clock::time_point now) {
  int n = 0;
  for (int i = 0; i < tries; ++i) {
    if (l.allow(a, now)) ++n;
  }
  return n;
}

}  // namespace

TEST(source_limiter, an_address_gets_its_burst_then_the_rate_and_other_addresses_are_not_charged) {
  source_limiter l(100, 200, 1024);
  EXPECT_EQ(allowed(l, ip(1), 250, t0), 200);  // a class behind one NAT address: the burst at once
  EXPECT_FALSE(l.allow(ip(1), t0));
  EXPECT_TRUE(l.allow(ip(2), t0));                   // another address has its own bucket
  EXPECT_EQ(allowed(l, ip(1), 50, t0 + 100ms), 10);  // then 100/s
}

TEST(source_limiter, zero_rate_is_unlimited_and_tracks_nothing) {
  source_limiter l(0, 1, 16);
  EXPECT_EQ(allowed(l, ip(1), 10'000, t0), 10'000);
  EXPECT_EQ(l.size(), 0u);
}

TEST(source_limiter, an_address_is_forgotten_once_its_bucket_is_full_again) {
  source_limiter l(100, 200, 1024);  // full again 2 s after the last connection
  for (std::uint32_t i = 1; i <= 50; ++i) l.allow(ip(i), t0);
  l.allow(ip(7), t0 + 1s);
  EXPECT_EQ(l.size(), 50u);
  EXPECT_EQ(l.expire(t0 + 1500ms), 0u);
  EXPECT_EQ(l.expire(t0 + 2100ms), 49u);  // all but the one seen at t0 + 1 s
  EXPECT_EQ(l.size(), 1u);
  EXPECT_EQ(l.expire(t0 + 3100ms), 1u);
  EXPECT_EQ(l.size(), 0u);
  // A forgotten address starts with a full bucket: what it would have had anyway.
  EXPECT_EQ(allowed(l, ip(7), 300, t0 + 4s), 200);
}

TEST(source_limiter, the_table_never_grows_past_its_size_and_forgets_the_least_recent_address) {
  source_limiter l(1, 2, 64);
  for (std::uint32_t i = 0; i < 10'000; ++i) {
    l.allow(ip(i & 0xffffff), t0 + std::chrono::milliseconds(i % 1000));
    ASSERT_LE(l.size(), 64u);
  }
  EXPECT_EQ(l.size(), 64u);
  EXPECT_EQ(l.evictions(), 10'000u - 64u);
  // The most recent address is still tracked (its bucket stays spent); an old one starts afresh.
  source_limiter m(1, 2, 2);
  EXPECT_EQ(allowed(m, ip(1), 3, t0), 2);
  EXPECT_EQ(allowed(m, ip(2), 3, t0), 2);
  EXPECT_FALSE(m.allow(ip(1), t0));  // ip(1) is the most recent now
  EXPECT_TRUE(m.allow(ip(3), t0));   // evicts ip(2)
  EXPECT_FALSE(m.allow(ip(1), t0));
  EXPECT_EQ(m.evictions(), 1u);
}

TEST(source_limiter, ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4) {
  std::array<unsigned char, 16> a{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
  auto b = a;
  b[15] = 2;
  b[9] = 7;
  EXPECT_EQ(source_limiter::v6(a), source_limiter::v6(b));
  b[7] = 2;
  EXPECT_NE(source_limiter::v6(a), source_limiter::v6(b));
  std::array<unsigned char, 16> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 9};
  EXPECT_EQ(source_limiter::v6(mapped), ip(9));
}

TEST(source_limiter, an_exempt_address_is_neither_limited_nor_tracked) {
  source_limiter l(1, 2, 16);
  l.exempt(ip(1));  // a load balancer in front
  EXPECT_EQ(allowed(l, ip(1), 5000, t0), 5000);
  EXPECT_EQ(l.size(), 0u);
  EXPECT_EQ(allowed(l, ip(2), 5, t0), 2);
}
