#pragma once
// The text of config rules ("<room pattern> <messages> <ttl>", "<room pattern> [interval]"):
// their words, and durations such as "500ms", "10s", "2m", "1h".
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::common {

// The rule's words, split at whitespace.
inline std::vector<std::string> rule_words(const std::string& spec) {
  std::istringstream in(spec);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept {
  std::uint64_t v = 0;
  auto [tp, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || tp == text.data()) return std::nullopt;
  const std::string_view unit(tp, static_cast<std::size_t>(text.data() + text.size() - tp));
  std::uint64_t mul = 0;
  if (unit == "ms")
    mul = 1;
  else if (unit == "s")
    mul = 1000;
  else if (unit == "m")
    mul = 60'000;
  else if (unit == "h")
    mul = 3'600'000;
  if (mul == 0 || v > (std::uint64_t{1} << 40)) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(v * mul));
}

}  // namespace roomcast::common
