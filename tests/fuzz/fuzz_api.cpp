// The HTTP API bodies and targets: one node (tests/unit/api_node.hpp: local bus, history, registry
// and receipts, the shard inline) per input, so that every input starts clean.
// First byte: the route; the rest: the body (POST) or the query string (GET).
#include "../unit/api_node.hpp"

#include <boost/json/parse.hpp>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

using namespace roomcast;

namespace {

constexpr const char* post_routes[] = {"/api/publish", "/api/disconnect", "/api/rooms/r1/kick", "/api/rooms/r1/mute"};
constexpr const char* get_routes[] = {"/api/rooms", "/api/rooms/r1", "/api/stats", "/api/messages/m1/receipts"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const unsigned pick = data[0] % 8;
  test::api_node n;
  n.cfg.filter_max_users = 16;
  api::request req;
  if (pick < 4) {
    req.method = "POST";
    req.target = post_routes[pick];
    req.body = rest;
  } else {
    req.method = "GET";
    req.target = std::string(get_routes[pick - 4]) + "?" + rest;
  }
  req.content_type = "application/json";
  std::optional<api::response> out;
  n.api->handle(req, [&](api::response r) { out = std::move(r); });
  if (!out) std::abort();  // the local backends answer at once
  if (out->status < 200 || out->status > 599) std::abort();
  if (out->content_type == "application/json") {
    boost::system::error_code ec;
    (void)boost::json::parse(out->body, ec);
    if (ec) std::abort();  // every answer is JSON, errors included
  }
  return 0;
}
