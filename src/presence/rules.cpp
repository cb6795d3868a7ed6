#include "presence/rules.hpp"

#include "common/rule_text.hpp"
#include "history/rules.hpp"  // glob_match

namespace roomcast::presence {

bool rules::parse(const std::vector<std::string>& specs, std::string& error) {
  rules_.clear();
  for (const auto& spec : specs) {
    auto tok = common::rule_words(spec);
    if (tok.size() == 1) tok.emplace_back("1s");  // the pattern alone: the default interval
    if (tok.size() != 2) {
      error = "rule '" + spec + "': expected \"<room pattern> [interval]\", like \"class-* 1s\" or \"lobby-* off\"";
      return false;
    }
    rule r{tok[0], std::nullopt};
    if (tok[1] != "off") {
      const auto d = common::parse_duration(tok[1]);
      if (!d || *d < std::chrono::milliseconds(100) || *d > std::chrono::minutes(10)) {
        error = "rule '" + spec + "': interval must be 100ms..10m (or off)";
        return false;
      }
      r.interval = *d;
    }
    rules_.push_back(std::move(r));
  }
  return true;
}

std::optional<std::chrono::milliseconds> rules::interval_for(std::string_view room) const {
  for (const auto& r : rules_)
    if (history::rules::glob_match(r.pattern, room)) return r.interval;
  return std::nullopt;
}

}  // namespace roomcast::presence
