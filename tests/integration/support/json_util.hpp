#pragma once
// Small Boost.JSON helpers for reading server frames and API answers.

#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace roomcast::itest {

boost::json::value parse_json(std::string_view text);  // throws std::runtime_error with the text
std::optional<boost::json::value> try_parse_json(std::string_view text);

// Looks up a dotted path ("closes.slow_consumer"); nullptr when any step is missing.
const boost::json::value* json_find(const boost::json::value& v, std::string_view dotted_path);
// Value at the path as a string / integer / bool, or the fallback when absent or of another kind.
std::string json_string(const boost::json::value& v, std::string_view dotted_path, std::string fallback = {});
std::int64_t json_int(const boost::json::value& v, std::string_view dotted_path, std::int64_t fallback = -1);
bool json_bool(const boost::json::value& v, std::string_view dotted_path, bool fallback = false);

// A JSON string literal for `s` (quoted and escaped).
std::string json_quote(std::string_view s);

}  // namespace roomcast::itest
