#pragma once
// Which rooms keep history, and how much: the `history` config rules (sans-io, unit-tested).
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::history {

// How a room keeps history (from the `history` config rules).
struct policy {
  std::size_t max_messages = 300;          // 0 = no history (no seq)
  std::chrono::milliseconds ttl{600'000};  // history is dropped after this long without a message
  bool keeps() const noexcept { return max_messages > 0; }
};

// First matching rule wins: "pattern size ttl", e.g. "lobby-* 0 0s", "* 300 10m".
// Patterns: '*' matches any run of characters, everything else literally.
class rules {
 public:
  // Parses rule strings; on error returns false with a message.
  bool parse(const std::vector<std::string>& specs, std::string& error);
  policy for_room(std::string_view room) const;
  bool any_keeps() const noexcept {
    for (const auto& r : rules_)
      if (r.p.keeps()) return true;
    return false;
  }
  static bool glob_match(std::string_view pattern, std::string_view s) noexcept;

 private:
  struct rule {
    std::string pattern;
    policy p;
  };
  std::vector<rule> rules_;
};

}  // namespace roomcast::history
