// The HTTP API bodies and targets: one node (local bus, history, registry and receipts, the
// shard inline, as tests/unit/test_api.cpp builds it) per input, so that every input starts clean.
// First byte: the route; the rest: the body (POST) or the query string (GET).
#include "api/api_handler.hpp"
#include "bus/local_bus.hpp"
#include "history/local_history.hpp"
#include "receipts/local_store.hpp"
#include "registry/local_registry.hpp"

#include <boost/json/parse.hpp>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

using namespace roomcast;

namespace {

struct node {
  config::config cfg;
  bus::local_bus the_bus;
  hub::router router{"n1", the_bus};
  history::local_history store{std::chrono::minutes(5)};
  history::rules rules;
  receipts::local_store receipts{receipts::limits{}};
  metrics::shard_counters counters;
  hub::shard tables{0, counters};
  registry::local_registry reg{router, [] { return std::string(R"({"connections":0})"); }};
  api::node_state state;
  std::optional<api::handler> api;

  node() {
    cfg.filter_max_users = 16;
    std::string err;
    rules.parse(cfg.history, err);
    router.set_history(&store, &rules, false);
    router.add_shard({&tables, [](hub::router::task t) { t(); }});
    the_bus.start([this](const bus::envelope& e, bus::delivery_done done) { router.dispatch(e, std::move(done)); });
    api.emplace(cfg, router, reg, state);
    api->set_counters({&counters});
    api->set_receipts(&receipts);
  }
};

constexpr const char* post_routes[] = {"/api/publish", "/api/disconnect", "/api/rooms/r1/kick", "/api/rooms/r1/mute"};
constexpr const char* get_routes[] = {"/api/rooms", "/api/rooms/r1", "/api/stats", "/api/messages/m1/receipts"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const unsigned pick = data[0] % 8;
  node n;
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
