#pragma once
// Reconnect delays for every backend (RabbitMQ, Redis bus, history, registry): exponential with
// jitter, so nodes that lost the same server don't come back to it in step. Each failure doubles
// the cap (from `min` up to `max`); the delay is drawn from [min/2, cap]. Sans-io: the caller
// sleeps (and is woken by stop()). One thread only.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace roomcast::common {

class backoff {
 public:
  using ms = std::chrono::milliseconds;

  backoff(ms min, ms max, std::uint32_t seed = std::random_device{}())
      : min_(min), max_(std::max(min, max)), rng_(seed) {}

  // The delay before the next attempt, after a failed one.
  ms next() {
    cap_ = std::min(max_, std::max(min_, cap_ * 2));
    return ms(std::uniform_int_distribution<long long>(min_.count() / 2, cap_.count())(rng_));
  }
  // A success: the next failure starts from `min` again.
  void reset() noexcept { cap_ = ms(0); }
  ms cap() const noexcept { return cap_; }

 private:
  ms min_, max_;
  ms cap_{0};
  std::minstd_rand rng_;
};

}  // namespace roomcast::common
