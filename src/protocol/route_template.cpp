#include "protocol/route_template.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/parse_path.hpp>
#include <boost/url/params_view.hpp>

namespace roomcast::protocol {

std::optional<route_template> route_template::parse(std::string_view text, std::string& error) {
  if (text.empty() || text.front() != '/') {
    error = "must start with '/'";
    return std::nullopt;
  }
  route_template t;
  t.text_ = std::string(text);
  bool seen[6] = {};
  std::string_view rest = text.substr(1);
  while (true) {
    const auto slash = rest.find('/');
    const std::string_view seg = rest.substr(0, slash);
    if (seg.empty()) {
      error = "empty segment in route";
      return std::nullopt;
    }
    if (seg.front() == '{' || seg.back() == '}') {
      if (seg.size() < 3 || seg.front() != '{' || seg.back() != '}') {
        error = "placeholder must be a whole segment like {room}";
        return std::nullopt;
      }
      const std::string_view name = seg.substr(1, seg.size() - 2);
      field f;
      if (name == "room")
        f = field::room;
      else if (name == "role")
        f = field::role;
      else if (name == "user")
        f = field::user;
      else if (name == "token")
        f = field::token;
      else if (name == "platform")
        f = field::platform;
      else {
        error = "unknown placeholder {" + std::string(name) + "} (room, role, user, token, platform)";
        return std::nullopt;
      }
      if (seen[static_cast<int>(f)]) {
        error = "placeholder {" + std::string(name) + "} appears twice";
        return std::nullopt;
      }
      seen[static_cast<int>(f)] = true;
      t.segments_.push_back({f, {}});
    } else {
      if (seg.find_first_of("{}?#%") != std::string_view::npos) {
        error = "literal segment '" + std::string(seg) + "' has a reserved character";
        return std::nullopt;
      }
      t.segments_.push_back({field::literal, std::string(seg)});
    }
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  if (!seen[static_cast<int>(field::room)] || !seen[static_cast<int>(field::user)]) {
    error = "route needs {room} and {user}";
    return std::nullopt;
  }
  return t;
}

route_template::match_result route_template::match(const std::vector<std::string>& segs, route_params& out) const {
  if (segs.size() != segments_.size()) return match_result::no_match;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const auto& s = segments_[i];
    switch (s.kind) {
      case field::literal:
        if (segs[i] != s.literal) return match_result::no_match;
        break;
      case field::room:
        out.room = segs[i];
        break;
      case field::role:
        out.role = segs[i];
        break;
      case field::user:
        out.user = segs[i];
        break;
      case field::token:
        out.token = segs[i];
        break;
      case field::platform:
        out.platform = segs[i];
        break;
    }
  }
  if (out.room.empty() || out.user.empty()) return match_result::empty_param;
  return match_result::ok;
}

std::optional<std::vector<std::string>> split_path(std::string_view target) {
  auto r = boost::urls::parse_origin_form(target);
  if (!r) return std::nullopt;
  std::vector<std::string> out;
  const auto segs = r->segments();
  out.reserve(segs.size());
  for (auto s : segs) out.push_back(s);
  return out;
}

std::string_view query_of(std::string_view target) noexcept {
  const auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  auto r = boost::urls::parse_origin_form(target);
  if (!r) return std::nullopt;
  for (auto p : r->params()) {
    if (p.key == name) return std::string(p.value);
  }
  return std::nullopt;
}

}  // namespace roomcast::protocol
