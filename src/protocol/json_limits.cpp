#include "protocol/json_limits.hpp"

#include <boost/json/error.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>

namespace roomcast::protocol {

bool within_members(const boost::json::value& v, std::size_t max_members) noexcept {
  // Recursion is bounded by the parser's max_depth.
  if (const auto* o = v.if_object()) {
    if (o->size() > max_members) return false;
    for (const auto& kv : *o)
      if (!within_members(kv.value(), max_members)) return false;
  } else if (const auto* a = v.if_array()) {
    if (a->size() > max_members) return false;
    for (const auto& e : *a)
      if (!within_members(e, max_members)) return false;
  }
  return true;
}

json_refusal parse_json(std::string_view text, const json_limits& limits, boost::json::value& out, std::string& why,
                        boost::json::storage_ptr sp) {
  boost::json::parse_options opt;
  opt.max_depth = limits.max_depth;
  boost::json::error_code ec;
  out = boost::json::parse(text, ec, std::move(sp), opt);
  if (ec == boost::json::error::too_deep) {
    why = "JSON nested deeper than " + std::to_string(limits.max_depth) + " levels (json_max_depth)";
    return json_refusal::depth;
  }
  if (ec) {
    why = "invalid JSON: " + ec.message();
    return json_refusal::invalid;
  }
  if (!within_members(out, limits.max_members)) {
    why = "a JSON object or array with more than " + std::to_string(limits.max_members) + " members (json_max_members)";
    return json_refusal::members;
  }
  return json_refusal::none;
}

}  // namespace roomcast::protocol
