// common/backoff: the reconnect policy every backend uses.
#include "common/backoff.hpp"

#include <gtest/gtest.h>

using roomcast::common::backoff;
using ms = std::chrono::milliseconds;

TEST(backoff, doubles_its_cap_up_to_max_and_draws_from_half_min_to_the_cap) {
  backoff b(ms(100), ms(1000), 42);
  const ms caps[] = {ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)};
  for (const auto cap : caps) {
    const auto d = b.next();
    EXPECT_EQ(b.cap(), cap);
    EXPECT_GE(d, ms(50));
    EXPECT_LE(d, cap);
  }
  b.reset();
  b.next();
  EXPECT_EQ(b.cap(), ms(100));
}

TEST(backoff, is_jittered) {
  // Nodes that lost the same server must not retry in step: the delays at one cap differ.
  backoff a(ms(100), ms(5000), 1), b(ms(100), ms(5000), 2);
  int same = 0;
  for (int i = 0; i < 8; ++i) same += a.next() == b.next();
  EXPECT_LT(same, 8);
}
