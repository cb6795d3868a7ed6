#include "support/json_util.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <stdexcept>

namespace roomcast::itest {

namespace json = boost::json;

boost::json::value parse_json(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) throw std::runtime_error("not JSON (" + ec.message() + "): " + std::string(text.substr(0, 512)));
  return v;
}

std::optional<boost::json::value> try_parse_json(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) return std::nullopt;
  return v;
}

const boost::json::value* json_find(const boost::json::value& v, std::string_view dotted_path) {
  const json::value* cur = &v;
  while (!dotted_path.empty()) {
    auto dot = dotted_path.find('.');
    auto key = dotted_path.substr(0, dot);
    dotted_path = dot == std::string_view::npos ? std::string_view() : dotted_path.substr(dot + 1);
    const auto* obj = cur->if_object();
    if (obj == nullptr) return nullptr;
    cur = obj->if_contains(json::string_view(key.data(), key.size()));
    if (cur == nullptr) return nullptr;
  }
  return cur;
}

std::string json_string(const boost::json::value& v, std::string_view dotted_path, std::string fallback) {
  const auto* found = json_find(v, dotted_path);
  if (found == nullptr || !found->is_string()) return fallback;
  return std::string(found->get_string().c_str(), found->get_string().size());
}

std::int64_t json_int(const boost::json::value& v, std::string_view dotted_path, std::int64_t fallback) {
  const auto* found = json_find(v, dotted_path);
  if (found == nullptr) return fallback;
  if (found->is_int64()) return found->get_int64();
  if (found->is_uint64()) return static_cast<std::int64_t>(found->get_uint64());
  return fallback;
}

bool json_bool(const boost::json::value& v, std::string_view dotted_path, bool fallback) {
  const auto* found = json_find(v, dotted_path);
  if (found == nullptr || !found->is_bool()) return fallback;
  return found->get_bool();
}

std::string json_quote(std::string_view s) {
  return json::serialize(json::value(json::string_view(s.data(), s.size())));
}

}  // namespace roomcast::itest
