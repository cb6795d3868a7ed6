#pragma once
// Token bucket, sans-io: the caller passes "now". Used for client publish and API rate limits.
#include <algorithm>
#include <chrono>
#include <cstdint>

namespace roomcast::hub {

class token_bucket {
 public:
  using clock = std::chrono::steady_clock;

  token_bucket() = default;

  // Takes n tokens if available (all or none).
  bool try_take(double rate_per_s, double burst, clock::time_point now, float n = 1.0f) noexcept {
    if (rate_per_s <= 0) return true;  // unlimited
    const auto now_ms = static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
    if (!started_) {
      started_ = true;
      tokens_ = static_cast<float>(burst);
    } else {
      const std::uint32_t elapsed = now_ms - last_ms_;  // wraps safely
      tokens_ = static_cast<float>(std::min(burst, tokens_ + elapsed * rate_per_s / 1000.0));
    }
    last_ms_ = now_ms;
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }

 private:
  // Rate and burst are passed in rather than stored: a session keeps 9 bytes, not 25.
  float tokens_ = 0;
  std::uint32_t last_ms_ = 0;
  bool started_ = false;
};

}  // namespace roomcast::hub
