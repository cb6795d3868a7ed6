// Composition root: reads the config, builds one node's pieces, wires them, runs the shards,
// and drains on SIGTERM/SIGINT. The only place that knows every folder.
#include "api/api_handler.hpp"
#include "bus/local_bus.hpp"
#include "bus/rabbitmq_bus.hpp"
#include "bus/redis_bus.hpp"
#include "history/local_history.hpp"
#include "history/redis_history.hpp"
#include "registry/local_registry.hpp"
#include "registry/redis_registry.hpp"
#include "config/config.hpp"
#include "hub/router.hpp"
#include "protocol/route_template.hpp"
#include "transport/shard_context.hpp"

#include <pthread.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace roomcast;

namespace {

std::unique_ptr<bus::bus> make_bus(const config::config& cfg) {
  switch (cfg.bus) {
    case config::bus_kind::local: return std::make_unique<bus::local_bus>();
    case config::bus_kind::rabbitmq: {
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
      return std::make_unique<bus::rabbitmq_bus>(std::move(o));
    }
    case config::bus_kind::redis: {
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
      if (const char* v = std::getenv("ROOMCAST_TEST_HOOK_DROP_EVERY_NTH")) o.drop_every_nth_received = std::strtoull(v, nullptr, 10);
#endif
      return std::make_unique<bus::redis_bus>(std::move(o));
    }
  }
  return nullptr;
}

registry::session_record record_of(const hub::member& m) {
  return {hub::format_session_id(m.id().session_id), m.id().user, m.id().role, m.id().platform, m.room_names()};
}

// Feeds the shards' membership changes to the registry (a no-op for the local registry).
class registry_feed final : public hub::membership_listener {
 public:
  explicit registry_feed(registry::registry& r) : r_(r) {}
  void on_open(const hub::member& m) override { r_.session_opened(record_of(m)); }
  void on_join(const hub::member& m, const std::string& room) override { r_.room_joined(record_of(m), room); }
  void on_leave(const hub::member& m, const std::string& room) override { r_.room_left(record_of(m), room); }
  void on_close(const hub::member& m) override { r_.session_closed(record_of(m)); }

 private:
  registry::registry& r_;
};

}  // namespace

int main(int argc, char** argv) {
  auto parsed = config::parse(argc, argv);
  if (!parsed.cfg) {
    if (parsed.exit_code == 0) {
      std::cout << parsed.message;
      return 0;
    }
    std::cerr << parsed.message << "\n";
    return parsed.exit_code;
  }
  const config::config cfg = std::move(*parsed.cfg);
  // hiredis and rabbitmq-c write to sockets the peer may have closed: an error, not a signal.
  std::signal(SIGPIPE, SIG_IGN);

  auto logger = spdlog::stderr_color_mt("roomcast");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  std::string route_error;
  const auto route = protocol::route_template::parse(cfg.route, route_error);  // validated by config

  boost::system::error_code ec;
  const auto address = asio::ip::make_address(cfg.listen_address, ec);
  if (ec) {
    std::cerr << "config: key 'listen_address': not an IP address: '" << cfg.listen_address << "'\n";
    return 2;
  }
  if (cfg.api_key.empty()) spdlog::warn("api_key is empty: /api/* accepts anyone (demo mode)");
  if (cfg.auth == config::auth_mode::none) spdlog::warn("auth = none: tokens are not checked (demo mode)");

  auto the_bus = make_bus(cfg);
  hub::router router(cfg.node_id, *the_bus);

  // History: per-room seq, recent messages, publish idempotency.
  history::rules history_rules;
  history_rules.parse(cfg.history, route_error);  // validated by config
  std::unique_ptr<history::history> the_history;
  const std::string& redis_host = cfg.redis_host;
  const std::uint16_t redis_port = cfg.redis_port;
  if (cfg.history_store == config::history_kind::redis) {
    history::redis_history_options o;
    o.host = redis_host;
    o.port = redis_port;
    o.timeout = cfg.redis_timeout;
    o.id_window = cfg.idempotency_window;
    // bus, history and registry share redis_address: the append script can publish on the bus's
    // room channel itself (the channel names are the redis bus's, see redis_bus.hpp).
    if (cfg.bus == config::bus_kind::redis && cfg.redis_script_publish)
      o.publish_prefix = cfg.redis_prefix + ":room:";
    the_history = std::make_unique<history::redis_history>(std::move(o));
  } else {
    the_history = std::make_unique<history::local_history>(cfg.idempotency_window);
  }
  router.set_history(the_history.get(), &history_rules, cfg.history_reject_when_down);
  api::node_state state;

  // Shards first (their counters are what the API reads), then the API, then the wiring.
  std::vector<std::unique_ptr<transport::shard_context>> shards;
  std::vector<metrics::shard_counters*> counters;
  // The API reads the shards' counters and the shards call the API: build the handler first and
  // hand it the counters once the shards exist (before any traffic).
  // The registry reports this node's summary (GET /api/nodes); the API handler builds it and is
  // built after the registry, so the registry reaches it through this pointer (set before start).
  api::handler* summary_source = nullptr;
  auto node_summary = [&summary_source] { return summary_source ? summary_source->node_summary() : std::string("{}"); };
  std::unique_ptr<registry::registry> the_registry;
  if (cfg.registry == config::registry_kind::redis) {
    registry::redis_options o;
    o.host = redis_host;
    o.port = redis_port;
    o.node_id = cfg.node_id;
    o.heartbeat = cfg.registry_heartbeat;
    o.node_ttl = cfg.registry_node_ttl;
    o.timeout = cfg.redis_timeout;
    auto snapshot = [&router](std::function<void(std::vector<registry::session_record>)> done) {
      router.gather<std::vector<registry::session_record>>(
          [](hub::shard& s) {
            std::vector<registry::session_record> out;
            for (const auto* m : s.members()) out.push_back(record_of(*m));
            return out;
          },
          [done = std::move(done)](std::vector<std::vector<registry::session_record>> parts) {
            std::vector<registry::session_record> all;
            for (auto& p : parts) all.insert(all.end(), std::make_move_iterator(p.begin()), std::make_move_iterator(p.end()));
            done(std::move(all));
          });
    };
    the_registry = std::make_unique<registry::redis_registry>(std::move(o), snapshot, node_summary);
  } else {
    the_registry = std::make_unique<registry::local_registry>(router, node_summary);
  }
  registry_feed feed(*the_registry);

  api::handler api_handler(cfg, router, *the_registry, state);
  const hub::client_rights rights{cfg.publish_roles, cfg.client_join, cfg.dev_kill, cfg.publish_rate, cfg.publish_burst};
  transport::services svc{cfg, *route, router, api_handler, state, the_history.get(), rights};
  for (unsigned i = 0; i < cfg.threads; ++i) {
    shards.push_back(std::make_unique<transport::shard_context>(i, svc));
    counters.push_back(&shards.back()->counters());
    if (the_registry->wants_writes()) shards.back()->tables().set_listener(&feed);
  }
  api_handler.set_counters(counters);
  summary_source = &api_handler;
  for (auto& s : shards) {
    auto* io = &s->io();
    router.add_shard({&s->tables(), [io](hub::router::task t) { asio::post(*io, std::move(t)); }});
  }
  the_bus->on_room_bound([&router](const std::string& room) { router.room_bound(room); });
  the_bus->start([&router](const bus::envelope& e, bus::delivery_done done) { router.dispatch(e, std::move(done)); });
  the_registry->start();
  the_history->start();

  try {
    for (auto& s : shards) s->listen({address, cfg.port});
  } catch (const boost::system::system_error& e) {
    std::cerr << "listen " << cfg.listen_address << ":" << cfg.port << ": " << e.what() << "\n";
    return 1;
  }
  for (auto& s : shards) s->start();

  // Signals are handled on shard 0's io_context; the drain then runs on every shard.
  asio::signal_set signals(shards[0]->io(), SIGTERM, SIGINT);
  std::atomic<std::size_t> shards_empty{0};
  std::atomic<bool> stopping{false};
  auto stop_all = [&] {
    for (auto& s : shards) {
      auto* sp = s.get();
      asio::post(sp->io(), [sp] {
        sp->stop_accepting();
        sp->io().stop();
      });
    }
  };
  signals.async_wait([&](const boost::system::error_code& sec, int sig) {
    if (sec) return;
    spdlog::info("signal {}: draining {} sessions over {} ms", sig,
                 state.ws_sessions.load(), cfg.drain_window.count());
    state.draining = true;
    for (auto& s : shards) {
      auto* sp = s.get();
      asio::post(sp->io(), [&, sp] {
        sp->begin_drain(cfg.drain_window, [&] {
          if (shards_empty.fetch_add(1) + 1 == shards.size() && !stopping.exchange(true)) stop_all();
        });
      });
    }
    // Bounded: peers that never answer our close are dropped by the sweep after pong_timeout.
    auto deadline = std::make_shared<asio::steady_timer>(shards[0]->io(),
                                                         cfg.drain_window + cfg.pong_timeout + std::chrono::seconds(1));
    deadline->async_wait([&, deadline](const boost::system::error_code& tec) {
      if (!tec && !stopping.exchange(true)) {
        spdlog::warn("drain deadline passed with {} sessions left", state.ws_sessions.load());
        stop_all();
      }
    });
  });

  spdlog::info("roomcast node {} listening on {}:{} with {} shard(s), bus {}, registry {}, history {}, auth {}, route {}",
               cfg.node_id, cfg.listen_address, cfg.port, shards.size(), the_bus->name(), the_registry->name(),
               the_history->name(),
               cfg.auth == config::auth_mode::jwt ? "jwt" : "none", cfg.route);

  std::vector<std::thread> threads;
  // Shard threads are named rc-shard-N (top -H, perf). The main thread runs shard 0 and keeps the
  // process name, which ps, pgrep and killall go by.
  for (std::size_t i = 1; i < shards.size(); ++i)
    threads.emplace_back([&, i] {
      const std::string name = "rc-shard-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      shards[i]->io().run();
    });
  shards[0]->io().run();
  for (auto& t : threads) t.join();
  the_bus->stop();
  the_registry->stop();
  the_history->stop();
  spdlog::info("stopped");
  return 0;
}
