#pragma once
// The WebSocket route template, sans-io: "/demo/websocket/{room}/{role}/{user}/{token}/{platform}".
// Literal segments must match exactly; each {name} takes one whole path segment.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::protocol {

// What a client URL carries. Fields absent from the template stay empty.
struct route_params {
  std::string room;
  std::string role;
  std::string user;
  std::string token;
  std::string platform;
};

class route_template {
 public:
  // Parses a template. On error returns nullopt and sets `error` to one line saying why.
  // Rules: starts with '/', names from {room, role, user, token, platform}, each at most once,
  // {room} and {user} required, a placeholder is a whole segment.
  static std::optional<route_template> parse(std::string_view text, std::string& error);

  enum class match_result { ok, no_match, empty_param };

  // Matches a decoded path (no query string). empty_param: the shape matched but room or user is empty.
  match_result match(const std::vector<std::string>& segments, route_params& out) const;

  const std::string& text() const noexcept { return text_; }

 private:
  enum class field { literal, room, role, user, token, platform };
  struct segment {
    field kind;
    std::string literal;
  };
  std::string text_;
  std::vector<segment> segments_;
};

// Splits the path part of a request target into percent-decoded segments.
// Returns nullopt for a malformed target. "/a//b?x=1" -> {"a", "", "b"}.
std::optional<std::vector<std::string>> split_path(std::string_view target);

// The query string of a target ("" when none), and one decoded parameter of it.
std::string_view query_of(std::string_view target) noexcept;
std::optional<std::string> query_param(std::string_view target, std::string_view name);

}  // namespace roomcast::protocol
