#pragma once
// Limits on the shape of JSON from clients and backends, sans-io. Size is bounded elsewhere
// (max_frame_bytes, max_body_bytes); these bound what a small text can cost: nesting depth (the
// parser's and every walker's recursion) and the members of one object or array (key lookups,
// per-element checks).
#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace roomcast::protocol {

struct json_limits {
  std::size_t max_depth = 32;       // config json_max_depth
  std::size_t max_members = 10000;  // config json_max_members: per object or array
};

enum class json_refusal : std::uint8_t { none, invalid, depth, members };

// Parses text into out within the limits. On a refusal, `why` says which limit (or the parse
// error) in one line for an error frame or a 400.
json_refusal parse_json(std::string_view text, const json_limits& limits, boost::json::value& out, std::string& why,
                        boost::json::storage_ptr sp = {});

// True when no object or array in v has more than max_members members.
bool within_members(const boost::json::value& v, std::size_t max_members) noexcept;

}  // namespace roomcast::protocol
