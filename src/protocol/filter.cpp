#include "protocol/filter.hpp"

#include "protocol/codec.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>

namespace roomcast::protocol {

namespace {

constexpr std::string_view filter_keys[] = {"roles", "platforms", "users"};

bool contains(const std::vector<std::string>& sorted, std::string_view v) noexcept {
  // Short lists (roles, platforms) are scanned; binary search pays off for user lists.
  if (sorted.size() <= 8) return std::find(sorted.begin(), sorted.end(), v) != sorted.end();
  return std::binary_search(sorted.begin(), sorted.end(), v, std::less<>{});
}

std::optional<std::string> parse_list(const boost::json::object& o, std::string_view key, std::size_t max_values,
                                      std::size_t max_bytes, std::vector<std::string>& out) {
  out.clear();
  const auto* v = o.if_contains(key);
  if (!v) return std::nullopt;
  const std::string k(key);
  if (!v->is_array()) return "\"" + k + "\" must be an array of strings";
  const auto& a = v->get_array();
  if (a.empty()) return "\"" + k + "\" must not be empty (leave it out to reach everyone)";
  if (a.size() > max_values)
    return "\"" + k + "\" holds " + std::to_string(a.size()) + " values; at most " + std::to_string(max_values);
  out.reserve(a.size());
  for (const auto& x : a) {
    if (!x.is_string() || x.get_string().empty() || x.get_string().size() > max_bytes)
      return "\"" + k + "\" must hold non-empty strings of at most " + std::to_string(max_bytes) + " bytes";
    out.emplace_back(x.get_string());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return std::nullopt;
}

void append_list(std::string& out, std::string_view key, const std::vector<std::string>& values) {
  if (values.empty()) return;
  out += ",\"";
  out += key;
  out += "\":[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, values[i]);
  }
  out.push_back(']');
}

}  // namespace

bool filter::matches(std::string_view role, std::string_view platform, std::string_view user) const noexcept {
  return (roles.empty() || contains(roles, role)) && (platforms.empty() || contains(platforms, platform)) &&
         (users.empty() || contains(users, user));
}

bool is_filter_key(std::string_view key) noexcept {
  return std::find(std::begin(filter_keys), std::end(filter_keys), key) != std::end(filter_keys);
}

std::optional<std::string> parse_filter(const boost::json::object& o, const filter_limits& limits, filter& out) {
  if (auto why = parse_list(o, "roles", limits.max_values, limits.max_value_bytes, out.roles)) return why;
  if (auto why = parse_list(o, "platforms", limits.max_values, limits.max_value_bytes, out.platforms)) return why;
  return parse_list(o, "users", limits.max_users, limits.max_value_bytes, out.users);
}

void append_filter_members(std::string& out, const filter& f) {
  append_list(out, "roles", f.roles);
  append_list(out, "platforms", f.platforms);
  append_list(out, "users", f.users);
}

std::string filter_json(const filter& f) {
  std::string s;
  append_filter_members(s, f);
  if (s.empty()) return s;
  s[0] = '{';  // the first member's leading comma
  s.push_back('}');
  return s;
}

bool parse_filter_json(std::string_view json, filter& out) {
  out = {};
  if (json.empty()) return true;
  boost::json::error_code ec;
  const auto v = boost::json::parse(json, ec);
  return !ec && v.is_object() && !parse_filter(v.get_object(), stored_filter_limits, out);
}

}  // namespace roomcast::protocol
