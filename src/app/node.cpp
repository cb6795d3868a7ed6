#include "app/node.hpp"

#include "api/api_handler.hpp"
#include "app/backends.hpp"
#include "hub/router.hpp"
#include "presence/service.hpp"
#include "protocol/route_template.hpp"
#include "transport/shard_context.hpp"

#include <pthread.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <iostream>
#include <thread>
#include <vector>

namespace roomcast::app {

namespace asio = boost::asio;

namespace {

registry::session_record record_of(const hub::member& m) {
  return {hub::format_session_id(m.id().session_id), m.id().user, m.id().role, m.id().platform, m.room_names()};
}

// Feeds the shards' membership changes to the registry (a no-op for the local registry), then to
// presence (which reads the registry: it must see the change there).
class membership_feed final : public hub::membership_listener {
 public:
  membership_feed(registry::registry& r, presence::service& p) : r_(r), p_(p) {}
  void on_open(const hub::member& m) override { r_.session_opened(record_of(m)); }
  void on_join(const hub::member& m, const std::string& room) override {
    r_.room_joined(record_of(m), room);
    p_.local_change(room);
  }
  void on_leave(const hub::member& m, const std::string& room) override {
    r_.room_left(record_of(m), room);
    p_.local_change(room);
  }
  void on_close(const hub::member& m) override { r_.session_closed(record_of(m)); }

 private:
  registry::registry& r_;
  presence::service& p_;
};

// The config was validated when it was parsed: these cannot fail here.
protocol::route_template route_of(const config::config& cfg) {
  std::string ignored;
  return *protocol::route_template::parse(cfg.route, ignored);
}
history::rules rules_of(const config::config& cfg) {
  history::rules r;
  std::string ignored;
  r.parse(cfg.history, ignored);
  return r;
}
presence::rules presence_rules_of(const config::config& cfg) {
  presence::rules r;
  std::string ignored;
  r.parse(cfg.presence_events, ignored);
  return r;
}

}  // namespace

// Everything a node owns, in construction order (destroyed in reverse): what a piece refers to is
// built before it.
struct node::parts {
  explicit parts(config::config c)
      : cfg(std::move(c)),
        route(route_of(cfg)),
        history_rules(rules_of(cfg)),
        the_bus(make_bus(cfg)),
        router(cfg.node_id, *the_bus),
        the_history(make_history(cfg)),
        the_receipts(make_receipts(cfg)),
        // The registry reports this node's summary, which the API handler (built after it) writes.
        the_registry(make_registry(
            cfg, router, [this] { return api_ready.load() ? api.node_summary() : std::string("{}"); },
            [this](std::function<void(std::vector<registry::session_record>)> done) { snapshot(std::move(done)); })),
        presence_rules(presence_rules_of(cfg)),
        presence(presence_rules, cfg.presence_names, router, *the_registry),
        feed(*the_registry, presence),
        api(cfg, router, *the_registry, state),
        rights{cfg.publish_roles,
               cfg.client_join,
               cfg.dev_kill,
               cfg.publish_rate,
               cfg.publish_burst,
               protocol::filter_limits{.max_users = cfg.filter_max_users},
               protocol::json_limits{.max_depth = cfg.json_max_depth, .max_members = cfg.json_max_members},
               cfg.join_rate,
               cfg.join_burst},
        svc{cfg, route, router, api, state, the_history.get(), rights, the_receipts.get()} {
    router.set_history(the_history.get(), &history_rules, cfg.history_reject_when_down);
    // A certificate that doesn't load stops the node in run(), before it listens.
    if (!cfg.tls_cert.empty() && tls.load(cfg.tls_cert, cfg.tls_key, tls_error)) svc.tls = &tls;
    router.set_compression({cfg.compression, cfg.compression_min_bytes, static_cast<int>(cfg.compression_level)});
    // Shards first (their counters are what the API reads), then the wiring, all before traffic.
    std::vector<metrics::shard_counters*> counters;
    for (unsigned i = 0; i < cfg.threads; ++i) {
      shards.push_back(std::make_unique<transport::shard_context>(i, svc));
      counters.push_back(&shards.back()->counters());
      if (the_registry->wants_writes() || presence.enabled()) shards.back()->tables().set_listener(&feed);
    }
    api.set_counters(counters);
    api.add_metrics([this](std::string& o) { presence.append_metrics(o); });
    api.set_receipts(the_receipts.get());
    router.on_presence([this](const bus::envelope& e) { presence.on_ping(e); });
    the_registry->on_nodes_reaped([this] { presence.nodes_reaped(); });
    api_ready = true;
    for (auto& s : shards) {
      auto* io = &s->io();
      router.add_shard({&s->tables(), [io](hub::router::task t) { asio::post(*io, std::move(t)); }});
    }
  }

  // This node's sessions, from every shard (the redis registry's resync after an outage).
  void snapshot(std::function<void(std::vector<registry::session_record>)> done) {
    router.gather<std::vector<registry::session_record>>(
        [](hub::shard& s) {
          std::vector<registry::session_record> out;
          for (const auto* m : s.members()) out.push_back(record_of(*m));
          return out;
        },
        [done = std::move(done)](std::vector<std::vector<registry::session_record>> per_shard) {
          std::vector<registry::session_record> all;
          for (auto& p : per_shard)
            all.insert(all.end(), std::make_move_iterator(p.begin()), std::make_move_iterator(p.end()));
          done(std::move(all));
        });
  }

  // SIGTERM/SIGINT: not ready, 1012 closes spread over drain_window on every shard, then stop.
  void drain(int sig) {
    spdlog::info("signal {}: draining {} sessions over {} ms", sig, state.ws_sessions.load(), cfg.drain_window.count());
    state.draining = true;
    for (auto& s : shards) {
      auto* sp = s.get();
      asio::post(sp->io(), [this, sp] {
        sp->begin_drain(cfg.drain_window, [this] {
          if (shards_empty.fetch_add(1) + 1 == shards.size() && !stopping.exchange(true)) stop_shards();
        });
      });
    }
    // Bounded: peers that never answer our close are dropped by the sweep after pong_timeout.
    auto deadline = std::make_shared<asio::steady_timer>(shards[0]->io(),
                                                         cfg.drain_window + cfg.pong_timeout + std::chrono::seconds(1));
    deadline->async_wait([this, deadline](const boost::system::error_code& ec) {
      if (!ec && !stopping.exchange(true)) {
        spdlog::warn("drain deadline passed with {} sessions left", state.ws_sessions.load());
        stop_shards();
      }
    });
  }

  void stop_shards() {
    for (auto& s : shards) {
      auto* sp = s.get();
      asio::post(sp->io(), [sp] {
        sp->stop_accepting();
        sp->io().stop();
      });
    }
  }

  const config::config cfg;
  const protocol::route_template route;
  const history::rules history_rules;
  std::unique_ptr<bus::bus> the_bus;
  hub::router router;
  std::unique_ptr<history::history> the_history;
  std::unique_ptr<receipts::store> the_receipts;
  api::node_state state;
  std::atomic<bool> api_ready{false};
  std::unique_ptr<registry::registry> the_registry;
  const presence::rules presence_rules;
  presence::service presence;
  membership_feed feed;
  api::handler api;
  const hub::client_rights rights;
  transport::tls_context tls;  // loaded when tls_cert is set; SIGHUP reloads it
  std::string tls_error;       // why it did not load
  transport::services svc;
  std::vector<std::unique_ptr<transport::shard_context>> shards;
  std::atomic<std::size_t> shards_empty{0};
  std::atomic<bool> stopping{false};
};

node::node(config::config cfg) : p_(std::make_unique<parts>(std::move(cfg))) {}
node::~node() = default;

int node::run() {
  auto& p = *p_;
  const auto& cfg = p.cfg;
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(cfg.listen_address, ec);
  if (ec) {
    std::cerr << "config: key 'listen_address': not an IP address: '" << cfg.listen_address << "'\n";
    return 2;
  }
  if (!p.tls_error.empty()) {
    std::cerr << "config: TLS: " << p.tls_error << "\n";
    return 2;
  }
  p.the_bus->on_room_bound([&p](const std::string& room) { p.router.room_bound(room); });
  p.the_bus->on_burst([&p](bool begin) { begin ? p.router.begin_burst() : p.router.end_burst(); });
  p.the_bus->start([&p](const bus::envelope& e, bus::delivery_done done) { p.router.dispatch(e, std::move(done)); });
  p.the_registry->start();
  p.the_history->start();
  p.the_receipts->start();
  p.presence.start();
  auto stop_backends = [&p] {
    p.presence.stop();
    p.the_bus->stop();
    p.the_registry->stop();
    p.the_history->stop();
    p.the_receipts->stop();
  };

  try {
    for (auto& s : p.shards) s->listen({address, cfg.port});
  } catch (const boost::system::system_error& e) {
    std::cerr << "listen " << cfg.listen_address << ":" << cfg.port << ": " << e.what() << "\n";
    stop_backends();
    return 1;
  }
  for (auto& s : p.shards) s->start();

  // Signals are handled on shard 0's io_context; the drain then runs on every shard.
  auto signals = std::make_unique<asio::signal_set>(p.shards[0]->io(), SIGTERM, SIGINT);
  signals->async_wait([&p](const boost::system::error_code& sec, int sig) {
    if (!sec) p.drain(sig);
  });
  // SIGHUP: the TLS certificate and key again (renewed certificates); connections stay.
  std::unique_ptr<asio::signal_set> hup;
  std::function<void()> wait_hup;
  if (p.svc.tls) {
    hup = std::make_unique<asio::signal_set>(p.shards[0]->io(), SIGHUP);
    wait_hup = [&p, &hup, &wait_hup] {
      hup->async_wait([&p, &wait_hup](const boost::system::error_code& sec, int) {
        if (sec) return;
        if (std::string err; p.tls.reload(err))
          spdlog::info("SIGHUP: TLS certificate reloaded from {}", p.cfg.tls_cert);
        else
          spdlog::error("SIGHUP: TLS certificate not reloaded, the old one stays: {}", err);
        wait_hup();
      });
    };
    wait_hup();
  }

  spdlog::info(
      "roomcast node {} listening on {}:{} ({}) with {} shard(s), bus {}, registry {}, history {}, auth {}, route {}",
      cfg.node_id, cfg.listen_address, cfg.port, p.svc.tls ? "TLS" : "plain", p.shards.size(), p.the_bus->name(),
      p.the_registry->name(), p.the_history->name(), cfg.auth == config::auth_mode::jwt ? "jwt" : "none", cfg.route);

  std::vector<std::thread> threads;
  // Shard threads are named rc-shard-N (top -H, perf). The main thread runs shard 0 and keeps the
  // process name, which ps, pgrep and killall go by.
  for (std::size_t i = 1; i < p.shards.size(); ++i)
    threads.emplace_back([&p, i] {
      const std::string name = "rc-shard-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      p.shards[i]->io().run();
    });
  p.shards[0]->io().run();
  for (auto& t : threads) t.join();
  // Drained: a second SIGTERM (a supervisor repeating itself) must not kill the process while it
  // tears down; the exit code stays 0. (Asio puts the default action back when the set goes.)
  signals.reset();
  hup.reset();
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  stop_backends();
  spdlog::info("stopped");
  return 0;
}

}  // namespace roomcast::app
