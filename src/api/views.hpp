#pragma once
// The JSON bodies of the registry's answers (docs/api.md). Pure functions: the registry returns
// typed results, and only api/ decides how they look on the wire.
#include "receipts/store.hpp"
#include "registry/registry.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace roomcast::api {

// GET /api/users/{user}
std::string user_json(std::string_view user, const std::vector<registry::located_session>& sessions);
// GET /api/rooms/{room}: the counts, and a page of at most `limit` members (distinct users) whose
// ids sort after `after` (the previous page's next_cursor; "" for the first page).
std::string room_json(std::string_view room, const registry::room_members& members, std::string_view after = {},
                      std::size_t limit = 100);
// GET /api/messages/{id}/receipts
std::string receipts_json(std::string_view id, const receipts::status& s);
// GET /api/nodes: each entry is {"node":<id>, ...the members of its summary object}.
std::string nodes_json(const std::vector<registry::node_entry>& nodes);
// GET /api/rooms: a page that started at `offset` (next_cursor is where the next one starts).
std::string rooms_json(const registry::room_page& page, std::size_t offset);

}  // namespace roomcast::api
