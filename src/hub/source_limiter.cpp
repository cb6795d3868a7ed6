#include "hub/source_limiter.hpp"

#include <algorithm>
#include <cstring>

namespace roomcast::hub {

source_limiter::source_limiter(double rate_per_s, double burst, std::size_t max_sources) noexcept
    : rate_(rate_per_s),
      burst_(burst),
      max_sources_(max_sources < 1 ? 1 : max_sources),
      refill_(rate_per_s > 0
                  ? std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(burst / rate_per_s)) +
                        std::chrono::milliseconds(1)
                  : clock::duration::zero()) {}

std::size_t source_limiter::address_hash::operator()(const address& a) const noexcept {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  std::memcpy(&hi, a.data(), 8);
  std::memcpy(&lo, a.data() + 8, 8);
  // IPv4 differs only in the low half: mix it well (splitmix64 finalizer).
  std::uint64_t x = lo ^ (hi * 0x9e3779b97f4a7c15ULL);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return static_cast<std::size_t>(x ^ (x >> 31));
}

source_limiter::address source_limiter::v4(std::uint32_t host_order) noexcept {
  address a{};
  a[10] = 0xff;
  a[11] = 0xff;
  a[12] = static_cast<std::uint8_t>(host_order >> 24);
  a[13] = static_cast<std::uint8_t>(host_order >> 16);
  a[14] = static_cast<std::uint8_t>(host_order >> 8);
  a[15] = static_cast<std::uint8_t>(host_order);
  return a;
}

source_limiter::address source_limiter::v6(const std::array<unsigned char, 16>& bytes) noexcept {
  address a{};
  std::memcpy(a.data(), bytes.data(), 16);
  const bool mapped =
      std::all_of(a.begin(), a.begin() + 10, [](std::uint8_t b) { return b == 0; }) && a[10] == 0xff && a[11] == 0xff;
  if (!mapped) std::fill(a.begin() + 8, a.end(), std::uint8_t{0});
  return a;
}

bool source_limiter::allow(const address& a, clock::time_point now) {
  if (rate_ <= 0) return true;
  for (const auto& e : exempt_)
    if (e == a) return true;
  auto it = index_.find(a);
  if (it == index_.end()) {
    if (index_.size() >= max_sources_) {
      // Full of addresses seen within the refill time: forget the least recent one. It starts
      // again with a full bucket, which is as generous as the limit ever is.
      index_.erase(lru_.front().addr);
      lru_.pop_front();
      ++evictions_;
    }
    lru_.push_back(entry{a, token_bucket{}, now});
    it = index_.emplace(a, std::prev(lru_.end())).first;
  } else {
    lru_.splice(lru_.end(), lru_, it->second);
    it->second->last = now;
  }
  return it->second->bucket.try_take(rate_, burst_, now);
}

std::size_t source_limiter::expire(clock::time_point now) {
  std::size_t n = 0;
  while (!lru_.empty() && now - lru_.front().last >= refill_) {
    index_.erase(lru_.front().addr);
    lru_.pop_front();
    ++n;
  }
  return n;
}

}  // namespace roomcast::hub
