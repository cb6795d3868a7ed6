#pragma once
// One node's API without sockets: the local bus, history, registry and receipts, and one shard
// that runs posted tasks inline. Shared by tests/unit/test_api.cpp and tests/fuzz/fuzz_api.cpp.
#include "api/api_handler.hpp"
#include "bus/local_bus.hpp"
#include "history/local_history.hpp"
#include "receipts/local_store.hpp"
#include "registry/local_registry.hpp"

#include <optional>
#include <string>

namespace roomcast::test {

struct api_node {
  config::config cfg;  // the handler keeps a reference: tests may change it after construction
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

  explicit api_node(std::string api_key = "") {
    cfg.api_key = std::move(api_key);
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

}  // namespace roomcast::test
