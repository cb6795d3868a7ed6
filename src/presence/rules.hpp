#pragma once
// Which rooms get presence frames, and how often: the `presence_events` config rules (sans-io).
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::presence {

// First matching rule wins: "<room pattern> <interval>", e.g. "class-* 1s", "lobby-* off".
// Patterns as in `history`: '*' matches any run of characters. No rule: no presence frames.
class rules {
 public:
  bool parse(const std::vector<std::string>& specs, std::string& error);
  // The interval between two frames of the room; nullopt: the room gets none.
  std::optional<std::chrono::milliseconds> interval_for(std::string_view room) const;
  bool empty() const noexcept { return rules_.empty(); }

 private:
  struct rule {
    std::string pattern;
    std::optional<std::chrono::milliseconds> interval;
  };
  std::vector<rule> rules_;
};

}  // namespace roomcast::presence
