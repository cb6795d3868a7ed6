#pragma once
// One builder per backend: typed options from the config, then the implementation. The only
// place that maps config keys to a backend's options.
#include "bus/bus.hpp"
#include "config/config.hpp"
#include "history/history.hpp"
#include "receipts/store.hpp"
#include "hub/router.hpp"
#include "registry/registry.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace roomcast::app {

std::unique_ptr<bus::bus> make_bus(const config::config& cfg);
std::unique_ptr<history::history> make_history(const config::config& cfg);
// Receipts live where the history does: Redis in a cluster, memory on one node.
std::unique_ptr<receipts::store> make_receipts(const config::config& cfg);

// node_summary(): the node's state as JSON (heartbeat value); snapshot(): this node's sessions,
// gathered from the shards (the redis registry's resync).
using snapshot_fn = std::function<void(std::function<void(std::vector<registry::session_record>)>)>;
std::unique_ptr<registry::registry> make_registry(const config::config& cfg, hub::router& router,
                                                  std::function<std::string()> node_summary, snapshot_fn snapshot);

}  // namespace roomcast::app
