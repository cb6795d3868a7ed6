#include "history/rules.hpp"
#include "common/rule_text.hpp"
#include "history/history.hpp"  // new_epoch

#include <charconv>
#include <random>

namespace roomcast::history {

bool rules::glob_match(std::string_view p, std::string_view s) noexcept {
  // Iterative '*' matching with backtracking to the last star: linear for typical patterns.
  std::size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && p[pi] == s[si]) {
      ++pi;
      ++si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool rules::parse(const std::vector<std::string>& specs, std::string& error) {
  rules_.clear();
  for (const auto& spec : specs) {
    auto tok = common::rule_words(spec);
    if (tok.size() != 3) {
      error = "rule '" + spec + "': expected \"<room pattern> <messages> <ttl>\", like \"* 300 10m\"";
      return false;
    }
    const std::string &pattern = tok[0], &size = tok[1], &ttl = tok[2];
    policy p;
    std::size_t n = 0;
    auto [ptr, ec] = std::from_chars(size.data(), size.data() + size.size(), n);
    if (ec != std::errc{} || ptr != size.data() + size.size() || n > 100'000) {
      error = "rule '" + spec + "': messages must be 0..100000";
      return false;
    }
    p.max_messages = n;
    const auto d = common::parse_duration(ttl);
    if (!d || *d > std::chrono::hours(7 * 24)) {
      error = "rule '" + spec + "': ttl must be a duration like 10m (at most 7 days)";
      return false;
    }
    p.ttl = *d;
    if (p.max_messages > 0 && p.ttl.count() == 0) {
      error = "rule '" + spec + "': a room with history needs a ttl above 0";
      return false;
    }
    rules_.push_back({pattern, p});
  }
  return true;
}

policy rules::for_room(std::string_view room) const {
  for (const auto& r : rules_)
    if (glob_match(r.pattern, room)) return r.p;
  return policy{0, std::chrono::milliseconds(0)};
}

std::string new_epoch() {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32)};
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t v = rng();
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = hex[v & 0xf];
  return s;
}

}  // namespace roomcast::history
