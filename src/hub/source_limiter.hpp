#pragma once
// New connections per source address, sans-io: a token bucket per address, in a table bounded in
// size. One per shard (no lock on the accept path). An address whose bucket has refilled is the
// same as one never seen, so it is forgotten (expire); when the table is full anyway (many
// addresses at once), the address seen least recently is forgotten first. The seed's leak was a
// map nobody cleaned: this one is cleaned on every sweep and never grows past max_sources.
#include "hub/token_bucket.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace roomcast::hub {

class source_limiter {
 public:
  using clock = std::chrono::steady_clock;
  using address = std::array<std::uint8_t, 16>;  // IPv6, or IPv4 mapped (::ffff:a.b.c.d)

  // rate <= 0: unlimited (nothing is tracked).
  source_limiter(double rate_per_s, double burst, std::size_t max_sources) noexcept;

  // a (as v4/v6 key it) is never limited nor tracked: a proxy in front carries every client's connections.
  void exempt(const address& a) { exempt_.push_back(a); }

  // Takes one token of a's bucket; false = refuse this connection.
  bool allow(const address& a, clock::time_point now);
  // Forgets the addresses whose bucket is full again; returns how many.
  std::size_t expire(clock::time_point now);

  std::size_t size() const noexcept { return index_.size(); }
  std::uint64_t evictions() const noexcept { return evictions_; }

  static address v4(std::uint32_t host_order) noexcept;
  // An IPv6 address counts by its /64 (one host usually owns a whole /64); IPv4-mapped ones by
  // their IPv4 address.
  static address v6(const std::array<unsigned char, 16>& bytes) noexcept;

 private:
  struct entry {
    address addr;
    token_bucket bucket;
    clock::time_point last;
  };
  struct address_hash {
    std::size_t operator()(const address& a) const noexcept;
  };
  using lru_list = std::list<entry>;  // least recently seen first

  double rate_;
  double burst_;
  std::size_t max_sources_;
  clock::duration refill_;  // an idle bucket is full again after this
  lru_list lru_;
  std::unordered_map<address, lru_list::iterator, address_hash> index_;
  std::uint64_t evictions_ = 0;
  std::vector<address> exempt_;  // a few: scanned
};

}  // namespace roomcast::hub
