#include "app/backends.hpp"

#include "bus/local_bus.hpp"
#include "bus/rabbitmq_bus.hpp"
#include "bus/redis_bus.hpp"
#include "history/local_history.hpp"
#include "history/redis_history.hpp"
#include "receipts/local_store.hpp"
#include "receipts/redis_store.hpp"
#include "registry/local_registry.hpp"
#include "registry/redis_registry.hpp"

#include <cstdlib>

namespace roomcast::app {

namespace {

bus::rabbitmq_options rabbitmq_options_of(const config::config& cfg) {
  bus::rabbitmq_options o;
  o.uris = cfg.rabbitmq_uris;
  o.node_id = cfg.node_id;
  o.prefix = cfg.rabbitmq_prefix;
  o.queue_expires = cfg.rabbitmq_queue_expires;
  o.prefetch = static_cast<std::uint16_t>(cfg.rabbitmq_prefetch);
  o.publish_timeout = cfg.publish_timeout;
  o.outage_max_messages = cfg.outage_buffer_messages;
  o.outage_max_bytes = cfg.outage_buffer_bytes;
  o.unbind_grace = cfg.unbind_grace;
  o.persistent = cfg.rabbitmq_persistent;
  o.dedupe_window = cfg.dedupe_window;
  return o;
}

bus::redis_bus_options redis_bus_options_of(const config::config& cfg) {
  bus::redis_bus_options o;
  o.host = cfg.redis_host;
  o.port = cfg.redis_port;
  o.node_id = cfg.node_id;
  o.prefix = cfg.redis_prefix;
  o.timeout = cfg.redis_timeout;
  o.dedupe_window = cfg.dedupe_window;
  o.outage_max_messages = cfg.outage_buffer_messages;
  o.outage_max_bytes = cfg.outage_buffer_bytes;
  o.unbind_grace = cfg.unbind_grace;
#ifdef ROOMCAST_TEST_HOOKS
  // Test builds only (fault tests): the bus drops every nth received room message.
  if (const char* v = std::getenv("ROOMCAST_TEST_HOOK_DROP_EVERY_NTH"))
    o.drop_every_nth_received = std::strtoull(v, nullptr, 10);
#endif
  return o;
}

history::redis_history_options redis_history_options_of(const config::config& cfg) {
  history::redis_history_options o;
  o.host = cfg.redis_host;
  o.port = cfg.redis_port;
  o.timeout = cfg.redis_timeout;
  o.id_window = cfg.idempotency_window;
  // bus, history and registry share redis_address: the append script can publish on the bus's
  // room channel itself (the channel names are the redis bus's, see redis_bus.hpp).
  if (cfg.bus == config::bus_kind::redis && cfg.redis_script_publish) o.publish_prefix = cfg.redis_prefix + ":room:";
  return o;
}

registry::redis_options redis_registry_options_of(const config::config& cfg) {
  registry::redis_options o;
  o.host = cfg.redis_host;
  o.port = cfg.redis_port;
  o.node_id = cfg.node_id;
  o.heartbeat = cfg.registry_heartbeat;
  o.node_ttl = cfg.registry_node_ttl;
  o.timeout = cfg.redis_timeout;
  return o;
}

}  // namespace

std::unique_ptr<bus::bus> make_bus(const config::config& cfg) {
  switch (cfg.bus) {
    case config::bus_kind::local:
      return std::make_unique<bus::local_bus>();
    case config::bus_kind::rabbitmq:
      return std::make_unique<bus::rabbitmq_bus>(rabbitmq_options_of(cfg));
    case config::bus_kind::redis:
      return std::make_unique<bus::redis_bus>(redis_bus_options_of(cfg));
  }
  return nullptr;
}

std::unique_ptr<history::history> make_history(const config::config& cfg) {
  if (cfg.history_store == config::history_kind::redis)
    return std::make_unique<history::redis_history>(redis_history_options_of(cfg));
  return std::make_unique<history::local_history>(cfg.idempotency_window);
}

std::unique_ptr<receipts::store> make_receipts(const config::config& cfg) {
  const receipts::limits bounds{cfg.receipt_ttl, cfg.receipt_max_messages, cfg.receipt_max_users};
  if (cfg.history_store == config::history_kind::redis) {
    receipts::redis_store_options o;
    o.host = cfg.redis_host;
    o.port = cfg.redis_port;
    o.timeout = cfg.redis_timeout;
    o.bounds = bounds;
    return std::make_unique<receipts::redis_store>(std::move(o));
  }
  return std::make_unique<receipts::local_store>(bounds);
}

std::unique_ptr<registry::registry> make_registry(const config::config& cfg, hub::router& router,
                                                  std::function<std::string()> node_summary, snapshot_fn snapshot) {
  if (cfg.registry == config::registry_kind::redis)
    return std::make_unique<registry::redis_registry>(redis_registry_options_of(cfg), std::move(snapshot),
                                                      std::move(node_summary));
  return std::make_unique<registry::local_registry>(router, std::move(node_summary));
}

}  // namespace roomcast::app
