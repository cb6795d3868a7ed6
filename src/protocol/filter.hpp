#pragma once
// Who in a room a message is for (POST /api/publish and client publish `roles`, `platforms`,
// `users`; docs/api.md "Filters"). Sans-io: parsed once per publish, checked once per member.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace boost::json {
class object;
}

namespace roomcast::protocol {

// A member matches when every list that is given holds its value (AND across lists, OR within
// one). No list: everyone. The lists are sorted and without duplicates, so a member costs a few
// comparisons and no allocation.
struct filter {
  std::vector<std::string> roles;
  std::vector<std::string> platforms;
  std::vector<std::string> users;

  bool empty() const noexcept { return roles.empty() && platforms.empty() && users.empty(); }
  bool matches(std::string_view role, std::string_view platform, std::string_view user) const noexcept;
  friend bool operator==(const filter&, const filter&) = default;
};

// Bounds on a filter given by a client or the API (a 10,000-user list is refused, not stored and
// carried on every node).
struct filter_limits {
  std::size_t max_users = 1000;  // config filter_max_users
  std::size_t max_values = 64;   // roles, platforms
  std::size_t max_value_bytes = 256;
};

// True for the member names a filter reads: "roles", "platforms", "users".
bool is_filter_key(std::string_view key) noexcept;

// Reads the filter members of a JSON object; absent lists stay empty. Returns why it can't: a list
// that is not an array of non-empty strings, an empty list, or one over the limits.
std::optional<std::string> parse_filter(const boost::json::object& o, const filter_limits& limits, filter& out);

// Appends `,"roles":[…]` and the others that are not empty (nothing for an empty filter): the
// members of an enclosing object, in the form parse_filter reads.
void append_filter_members(std::string& out, const filter& f);

// The filter as a JSON object of its own (`{"roles":[…]}`; "" when empty), and back: how history
// stores it. parse_filter_json is lenient about sizes (the text was checked when published).
std::string filter_json(const filter& f);
bool parse_filter_json(std::string_view json, filter& out);

// Limits for a filter read back from a store or another node: only against corrupt input.
inline constexpr filter_limits stored_filter_limits{1u << 20, 1u << 12, 1u << 12};

}  // namespace roomcast::protocol
