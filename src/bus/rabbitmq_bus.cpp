#include "bus/rabbitmq_bus.hpp"
#include "bus/ack_window.hpp"
#include "bus/amqp_link.hpp"
#include "bus/confirm_window.hpp"
#include "bus/dedupe_window.hpp"
#include "bus/errors.hpp"
#include "bus/inbox.hpp"
#include "bus/outage_buffer.hpp"
#include "bus/pending_publish.hpp"
#include "bus/room_bindings.hpp"
#include "common/backoff.hpp"
#include "metrics/prometheus.hpp"

#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <deque>

namespace roomcast::bus {

namespace {

using clock = std::chrono::steady_clock;
constexpr amqp_channel_t channel = 1;
constexpr std::chrono::seconds heartbeat{30};
constexpr std::chrono::milliseconds setup_timeout{5'000};
constexpr std::uint64_t tag_mask = (std::uint64_t{1} << 48) - 1;

struct wire_message {
  std::string exchange;
  std::string routing_key;
  std::string body;
  std::shared_ptr<pending_publish> owner;
};

struct metrics_block {
  std::atomic<std::uint64_t> published{0}, confirmed{0}, nacked{0}, buffered{0}, rejected_full{0}, received{0},
      duplicates{0}, acked{0}, reconnects{0}, resent{0}, decode_errors{0}, fallback_all{0}, binds{0}, unbinds{0},
      node_id_in_use{0}, writes{0};
  void inc(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
};

}  // namespace

struct rabbitmq_bus::impl {
  explicit impl(rabbitmq_options o)
      : opts(std::move(o)),
        queue_name(opts.prefix + ".node." + opts.node_id),
        rooms_exchange(opts.prefix + ".rooms"),
        nodes_exchange(opts.prefix + ".nodes"),
        all_exchange(opts.prefix + ".all"),
        outage(opts.outage_max_messages, opts.outage_max_bytes),
        flight(opts.max_in_flight),
        rooms(opts.unbind_grace),
        retry(opts.reconnect_min, opts.reconnect_max) {}

  // ---- shared with other threads ----
  struct op {
    enum class kind_t : std::uint8_t { publish, subscribe, unsubscribe } kind;
    std::string room;
    std::vector<wire_message> msgs;
    std::shared_ptr<pending_publish> owner;
  };
  roomcast::bus::inbox<op> box;
  void post(op o) { box.post(std::move(o)); }

  rabbitmq_options opts;
  std::string queue_name;
  std::string rooms_exchange, nodes_exchange, all_exchange;
  message_handler handler;
  std::function<void(const std::string&)> on_bound;
  std::function<void(bool)> burst;  // around each read of the consume connection
  std::atomic<bool> connected{false};
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> outage_count{0};
  std::atomic<std::size_t> in_flight_count{0};
  // The highest delivery tag every shard has taken, with the connection generation in the top 16
  // bits. Shards take deliveries in order (each runs its posts in order), so every tag up to it
  // is done: one atomic instead of a message to the bus thread per delivery.
  std::atomic<std::uint64_t> shards_done{0};
  metrics_block m;
  std::thread thread;

  // ---- bus thread only ----
  // Two connections: a broker that blocks publishers (a memory or disk alarm) must not stop this
  // node from consuming, and publishes never wait behind a consumer's frames.
  amqp_link pub;                        // confirm mode: publishes out, confirms in
  amqp_link con;                        // topology, bindings, the node queue's deliveries, acks
  std::uint64_t generation = 0;         // bumps on every connection, so stale acks are ignored
  outage_buffer<wire_message> outage;   // waiting for the broker, in publish order
  confirm_window<wire_message> flight;  // published, waiting for confirms, in tag order
  room_bindings rooms;                  // wanted rooms and what the broker has bound (bindings survive reconnects)
  struct rpc {
    enum kind_t { bind, unbind, consume } kind;
    std::string room;
  };
  std::deque<rpc> rpcs;  // sent on `con`, answered in order
  bool first_connect = true;
  dedupe_window seen{100'000};
  ack_window acks;                  // finished deliveries; one multiple-ack per loop
  std::uint64_t acked_sent = 0;     // the last tag sent in an ack
  std::uint64_t last_delivery = 0;  // the last tag received
  std::size_t uri_index = 0;
  common::backoff retry;

  void run();
  bool connect(std::string& err);
  void disconnect(const std::string& why);
  bool declare_topology(std::string& err);
  bool bind_now(const std::string& room, bool bind, std::string& err);
  void request_bind(const std::string& room, bool bind);
  void drain_inbox();
  void handle_op(op& o);
  bool send_pending(std::string& err);
  bool wait_and_read(std::string& err);
  void on_pub_event(const amqp::event& ev);
  bool on_con_event(const amqp::event& ev, std::string& err);
  void on_confirm(std::uint64_t tag, bool multiple, bool ack);
  void on_delivery(std::uint64_t tag, std::string_view body);
  void shard_done(std::uint64_t gen, std::uint64_t tag);
  void take_shard_acks();
  void flush_acks();
  void check_timeouts();
  void apply_unbinds();
  void wait_backoff(const std::string& why);
};

rabbitmq_bus::rabbitmq_bus(rabbitmq_options opts) : impl_(std::make_unique<impl>(std::move(opts))) {
  impl_->seen = dedupe_window(impl_->opts.dedupe_window);
}

rabbitmq_bus::~rabbitmq_bus() { stop(); }

void rabbitmq_bus::on_room_bound(std::function<void(const std::string&)> f) { impl_->on_bound = std::move(f); }
void rabbitmq_bus::on_burst(std::function<void(bool)> f) { impl_->burst = std::move(f); }

void rabbitmq_bus::start(message_handler on_message) {
  impl_->handler = std::move(on_message);
  impl_->thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "rc-bus-amqp");  // top -H, perf
    impl_->run();
  });
}

void rabbitmq_bus::stop() {
  if (!impl_->thread.joinable()) return;
  impl_->stopping = true;
  impl_->box.wake();
  impl_->thread.join();
}

bool rabbitmq_bus::healthy() const { return impl_->connected.load(std::memory_order_relaxed); }

void rabbitmq_bus::publish(envelope e, publish_callback done) {
  auto owner = std::make_shared<pending_publish>();
  owner->done = std::move(done);
  std::string body = encode_envelope(e);
  impl::op o{impl::op::kind_t::publish, {}, {}, owner};
  switch (e.kind) {
    case protocol::target_kind::room:
      o.msgs.push_back({impl_->rooms_exchange, e.target, std::move(body), owner});
      break;
    case protocol::target_kind::all:
      o.msgs.push_back({impl_->all_exchange, "", std::move(body), owner});
      break;
    case protocol::target_kind::user:
      if (e.nodes.empty()) {
        // The registry doesn't know (or is down): every node checks its own sessions.
        impl_->m.inc(impl_->m.fallback_all);
        o.msgs.push_back({impl_->all_exchange, "", body, owner});
      } else {
        for (const auto& n : e.nodes) o.msgs.push_back({impl_->nodes_exchange, n, body, owner});
      }
      break;
  }
  owner->remaining = o.msgs.size();
  impl_->post(std::move(o));
}

void rabbitmq_bus::subscribe_room(const std::string& room) { impl_->post({impl::op::kind_t::subscribe, room}); }
void rabbitmq_bus::unsubscribe_room(const std::string& room) { impl_->post({impl::op::kind_t::unsubscribe, room}); }

void rabbitmq_bus::append_metrics(std::string& o) const {
  auto& m = impl_->m;
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  line("roomcast_bus_up", "gauge", "1 while connected to the broker.", healthy() ? 1 : 0);
  line("roomcast_bus_published_total", "counter", "Messages sent to the broker.", ld(m.published));
  line("roomcast_bus_confirmed_total", "counter", "Publisher confirms received.", ld(m.confirmed));
  line("roomcast_bus_nacked_total", "counter", "Publishes the broker refused.", ld(m.nacked));
  line("roomcast_bus_buffered_total", "counter", "Publishes that waited in the outage buffer.", ld(m.buffered));
  line("roomcast_bus_buffer_full_total", "counter", "Publishes refused because the outage buffer was full.",
       ld(m.rejected_full));
  line("roomcast_bus_outage_buffer_messages", "gauge", "Messages in the outage buffer.", impl_->outage_count.load());
  line("roomcast_bus_in_flight", "gauge", "Published messages waiting for a confirm.", impl_->in_flight_count.load());
  line("roomcast_bus_publish_writes_total", "counter",
       "Writes to the broker's publish connection (each carries every message ready then).", ld(m.writes));
  line("roomcast_bus_resent_total", "counter", "Unconfirmed messages re-sent after a reconnect.", ld(m.resent));
  line("roomcast_bus_received_total", "counter", "Messages received from the node queue.", ld(m.received));
  line("roomcast_bus_duplicates_total", "counter", "Received messages dropped as already delivered.", ld(m.duplicates));
  line("roomcast_bus_acked_total", "counter", "Received messages acked after the shards took them.", ld(m.acked));
  line("roomcast_bus_reconnects_total", "counter", "Connections made to the broker.", ld(m.reconnects));
  line("roomcast_bus_node_id_in_use_total", "counter",
       "Starts refused because another live consumer holds this node_id's queue.", ld(m.node_id_in_use));
  line("roomcast_bus_user_fallback_all_total", "counter",
       "User messages sent to every node (registry could not answer).", ld(m.fallback_all));
  line("roomcast_bus_room_binds_total", "counter", "Room bindings added.", ld(m.binds));
  line("roomcast_bus_room_unbinds_total", "counter", "Room bindings removed.", ld(m.unbinds));
}

void rabbitmq_bus::append_stats(std::string& o) const {
  auto& m = impl_->m;
  o += ",\"bus_up\":" + std::string(healthy() ? "true" : "false");
  o += ",\"bus_received\":" + std::to_string(m.received.load());
  o += ",\"bus_duplicates\":" + std::to_string(m.duplicates.load());
  o += ",\"bus_published\":" + std::to_string(m.published.load());
  o += ",\"bus_outage_buffer\":" + std::to_string(impl_->outage_count.load());
  o += ",\"bus_fallback_all\":" + std::to_string(m.fallback_all.load());
}

// ---------------- bus thread ----------------

void rabbitmq_bus::impl::run() {
  std::string err;
  while (!stopping) {
    if (!connected) {
      drain_inbox();  // publishes go to the outage buffer, subscriptions are remembered
      if (stopping) break;
      if (!connect(err)) {
        wait_backoff(err);
        continue;
      }
    }
    drain_inbox();
    take_shard_acks();
    apply_unbinds();
    if (!send_pending(err) || !wait_and_read(err)) {
      disconnect(err);
      continue;
    }
    check_timeouts();
  }
  if (pub.is_open() || con.is_open()) {
    take_shard_acks();
    flush_acks();  // what the shards took is not redelivered to the next process
    pub.close(true);
    con.close(true);
    connected = false;
  }
  // Sent but not confirmed: probably on the broker. Never sent: reported, not dropped silently.
  flight.lost([](const wire_message& w) {
    if (w.owner) w.owner->complete({}, publish_result{true});
  });
  for (auto& w : outage)
    if (w.owner) w.owner->complete(make_error(errc::stopped), {});
  for (auto& o : box.take())
    if (o.owner) o.owner->complete(make_error(errc::stopped), {});
}

void rabbitmq_bus::impl::wait_backoff(const std::string& why) {
  // Exponential backoff with full jitter, woken early by stop().
  const auto delay = retry.next();
  spdlog::warn("rabbitmq: {} (retry in {} ms)", why, delay.count());
  const auto until = clock::now() + delay;
  while (!stopping && clock::now() < until) {
    pollfd p{box.fd(), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now()).count();
    ::poll(&p, 1, static_cast<int>(std::max<long long>(1, left)));
    box.clear();
    drain_inbox();
  }
}

bool rabbitmq_bus::impl::connect(std::string& err) {
  if (opts.uris.empty()) {
    err = "no broker URI";
    return false;
  }
  const std::string& uri = opts.uris[uri_index++ % opts.uris.size()];
  const auto fail = [&] {
    con.close(false);
    pub.close(false);
    return false;
  };
  if (!con.open(uri, "roomcast " + opts.node_id + " consume", heartbeat, setup_timeout, err) || !declare_topology(err))
    return fail();
  if (!con.stream(err) || !amqp::append_consume(con.out(), channel, queue_name)) return fail();
  rpcs.clear();
  rpcs.push_back({rpc::consume, {}});

  if (!pub.open(uri, "roomcast " + opts.node_id + " publish", heartbeat, setup_timeout, err)) return fail();
  amqp_confirm_select(pub.raw(), channel);
  if (!amqp_reply_ok(amqp_get_rpc_reply(pub.raw()), "confirm.select", err) || !pub.stream(err)) return fail();

  ++generation;
  shards_done.store((generation & 0xFFFF) << 48, std::memory_order_relaxed);
  acks.reset();  // a new channel numbers its deliveries from 1 again
  acked_sent = last_delivery = 0;
  retry.reset();
  m.inc(m.reconnects);
  connected = true;
  spdlog::info("rabbitmq: connected to {} as queue {} ({} rooms bound, {} buffered)", con.where(), queue_name,
               rooms.bound_rooms().size(), outage.size());
  return true;
}

bool rabbitmq_bus::impl::declare_topology(std::string& err) {
  amqp_connection_state_t c = con.raw();
  auto ok = [&](const char* what) { return amqp_reply_ok(amqp_get_rpc_reply(c), what, err); };
  amqp_exchange_declare(c, channel, amqp_bytes_of(rooms_exchange), amqp_cstring_bytes("direct"), 0, 1, 0, 0,
                        amqp_empty_table);
  if (!ok("exchange.declare rooms")) return false;
  amqp_exchange_declare(c, channel, amqp_bytes_of(nodes_exchange), amqp_cstring_bytes("direct"), 0, 1, 0, 0,
                        amqp_empty_table);
  if (!ok("exchange.declare nodes")) return false;
  amqp_exchange_declare(c, channel, amqp_bytes_of(all_exchange), amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
                        amqp_empty_table);
  if (!ok("exchange.declare all")) return false;

  // x-expires: a node gone for good leaves no orphan queue behind.
  amqp_table_entry_t entry;
  entry.key = amqp_cstring_bytes("x-expires");
  entry.value.kind = AMQP_FIELD_KIND_I32;
  entry.value.value.i32 = static_cast<int32_t>(opts.queue_expires.count());
  amqp_table_t args{1, &entry};
  if (first_connect) {
    // A queue left by an earlier run of this node id (a crash) carries that run's room bindings,
    // which AMQP can't list: start from an empty queue. Its messages were for sessions that are
    // gone; their clients recover from history. if_unused: a queue with a consumer belongs to a
    // live process with the same node_id (a misconfiguration, or the previous process of a
    // restart still draining); deleting it would cut that node off. Retry until it is gone.
    amqp_queue_delete(c, channel, amqp_bytes_of(queue_name), 1, 0);
    const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
        static_cast<const amqp_channel_close_t*>(r.reply.decoded)->reply_code == AMQP_PRECONDITION_FAILED) {
      m.inc(m.node_id_in_use);
      err = "node_id '" + opts.node_id + "' is in use: queue " + queue_name +
            " has a consumer (another running node with the same node_id?); waiting for it to go";
      return false;
    }
    if (!amqp_reply_ok(r, "queue.delete", err)) return false;
  }
  amqp_queue_declare(c, channel, amqp_bytes_of(queue_name), 0, 1, 0, 0, args);
  if (!ok("queue.declare")) return false;
  amqp_queue_bind(c, channel, amqp_bytes_of(queue_name), amqp_bytes_of(nodes_exchange), amqp_bytes_of(opts.node_id),
                  amqp_empty_table);
  if (!ok("queue.bind node")) return false;
  amqp_queue_bind(c, channel, amqp_bytes_of(queue_name), amqp_bytes_of(all_exchange), amqp_cstring_bytes(""),
                  amqp_empty_table);
  if (!ok("queue.bind all")) return false;
  // Rooms left while the broker was away are still bound on it: unbind them, then bind the rooms
  // wanted now (both idempotent on the broker).
  const auto plan = rooms.reconcile();
  for (const auto& r : plan.release)
    if (!bind_now(r, false, err)) return false;
  for (const auto& r : plan.bind)
    if (!bind_now(r, true, err)) return false;
  first_connect = false;
  amqp_basic_qos(c, channel, 0, opts.prefetch, 0);
  return ok("basic.qos");
}

// A blocking bind or unbind while the connection is set up.
bool rabbitmq_bus::impl::bind_now(const std::string& room, bool bind, std::string& err) {
  amqp_connection_state_t c = con.raw();
  if (bind) {
    amqp_queue_bind(c, channel, amqp_bytes_of(queue_name), amqp_bytes_of(rooms_exchange), amqp_bytes_of(room),
                    amqp_empty_table);
    if (!amqp_reply_ok(amqp_get_rpc_reply(c), "queue.bind room", err)) return false;
    rooms.bound(room);
    m.inc(m.binds);
    // Messages published before this bind reached no queue of this node: let the node catch up.
    if (on_bound) on_bound(room);
  } else {
    amqp_queue_unbind(c, channel, amqp_bytes_of(queue_name), amqp_bytes_of(rooms_exchange), amqp_bytes_of(room),
                      amqp_empty_table);
    if (!amqp_reply_ok(amqp_get_rpc_reply(c), "queue.unbind room", err)) return false;
    rooms.released(room);
    m.inc(m.unbinds);
  }
  return true;
}

// A bind or unbind while streaming: sent now, its reply comes in order with the deliveries.
void rabbitmq_bus::impl::request_bind(const std::string& room, bool bind) {
  if (!amqp::append_queue_bind(con.out(), channel, queue_name, rooms_exchange, room, bind)) {
    spdlog::error("rabbitmq: room name over 255 bytes can't be a routing key: '{}…'", room.substr(0, 64));
    return;
  }
  rpcs.push_back({bind ? rpc::bind : rpc::unbind, room});
}

void rabbitmq_bus::impl::disconnect(const std::string& why) {
  if (!stopping) spdlog::warn("rabbitmq: connection lost: {}", why);
  connected = false;
  pub.close(false);
  con.close(false);
  rpcs.clear();  // wanted rooms are bound again, released ones unbound, by the reconcile
  // Unconfirmed messages go back to the front of the outage buffer, in order: at-least-once, and
  // receivers drop the duplicates by id. Their publishers learn the message is queued.
  flight.lost([this](wire_message w) {
    if (w.owner) w.owner->complete({}, publish_result{true});
    outage.push_front(std::move(w));
    m.inc(m.resent);
  });
  in_flight_count = 0;
  outage_count = outage.size();
  // The broker keeps the queue's bindings: reconciled after the reconnect.
  rooms.connection_lost(true);
}

void rabbitmq_bus::impl::drain_inbox() {
  for (auto& o : box.take()) handle_op(o);
}

void rabbitmq_bus::impl::handle_op(op& o) {
  switch (o.kind) {
    case op::kind_t::publish: {
      std::size_t bytes = 0;
      for (auto& w : o.msgs) bytes += w.body.size();
      if (!connected || !outage.empty()) {
        // Broker away (or older messages still waiting): keep order, within bounds.
        if (!outage.fits(o.msgs.size(), bytes)) {
          m.inc(m.rejected_full);
          o.owner->complete(make_error(errc::buffer_full), {});
          return;
        }
        m.inc(m.buffered);
        if (!connected) o.owner->complete({}, publish_result{true});
      }
      for (auto& w : o.msgs) outage.push_back(std::move(w));
      outage_count = outage.size();
      return;
    }
    case op::kind_t::subscribe:
      if (rooms.want(o.room) && connected) request_bind(o.room, true);
      return;
    case op::kind_t::unsubscribe:
      rooms.unwant(o.room, clock::now());
      return;
  }
}

void rabbitmq_bus::impl::apply_unbinds() {
  // The room stays bound until unbind-ok (a member coming back meanwhile binds it again then).
  for (const auto& r : rooms.take_due(clock::now())) request_bind(r, false);
}

bool rabbitmq_bus::impl::send_pending(std::string& err) {
  // Every message that fits the confirm window goes into one buffer, written with one send().
  while (!outage.empty() && !flight.full()) {
    wire_message& w = outage.front();
    if (!amqp::append_publish(pub.out(), channel, w.exchange, w.routing_key, w.body, opts.persistent,
                              pub.frame_max())) {
      if (w.owner) w.owner->complete(make_error(errc::nacked), {});
      outage.pop_front();
      continue;
    }
    m.inc(m.published);
    flight.sent(outage.pop_front(), clock::now() + opts.publish_timeout);
  }
  outage_count = outage.size();
  in_flight_count = flight.size();
  flush_acks();
  const auto now = clock::now();
  if (!pub.tick(now, err) || !con.tick(now, err)) return false;
  if (pub.wants_write()) m.inc(m.writes);
  return pub.flush(err) && con.flush(err);
}

bool rabbitmq_bus::impl::wait_and_read(std::string& err) {
  // Deliveries out with the shards: look again soon for their acks (shards don't wake this
  // thread for each one). Confirms or releases pending: a short nap. Else the inbox wakes us.
  const int timeout = last_delivery > acks.floor() ? 2 : !flight.empty() || rooms.releases_pending() ? 20 : 200;
  pollfd p[3] = {{pub.fd(), static_cast<short>(POLLIN | (pub.wants_write() ? POLLOUT : 0)), 0},
                 {con.fd(), static_cast<short>(POLLIN | (con.wants_write() ? POLLOUT : 0)), 0},
                 {box.fd(), POLLIN, 0}};
  if (::poll(p, 3, timeout) < 0 && errno != EINTR) {
    err = std::string("poll: ") + std::strerror(errno);
    return false;
  }
  if (p[2].revents & POLLIN) box.clear();
  if ((p[0].revents & POLLOUT) && !pub.flush(err)) return false;
  if ((p[1].revents & POLLOUT) && !con.flush(err)) return false;
  if ((p[0].revents & (POLLIN | POLLERR | POLLHUP)) &&
      !pub.read(err, [this](const amqp::event& ev) { on_pub_event(ev); }))
    return false;
  if (p[1].revents & (POLLIN | POLLERR | POLLHUP)) {
    // Everything one read brings goes to the shards as one task each (the strace of a consuming
    // node showed an epoll_ctl and a futex wake per message and shard without this).
    bool ok = true;
    if (burst) burst(true);
    const bool read_ok = con.read(err, [&](const amqp::event& ev) { ok = ok && on_con_event(ev, err); });
    if (burst) burst(false);
    if (!read_ok || !ok) return false;
  }
  return true;
}

void rabbitmq_bus::impl::on_pub_event(const amqp::event& ev) {
  if (ev.kind == amqp::event::confirm) return on_confirm(ev.tag, ev.multiple, ev.ack);
  if (ev.kind == amqp::event::method && ev.id == amqp::connection_blocked)
    spdlog::warn("rabbitmq: the broker blocks publishing (a memory or disk alarm); publishes wait");
  if (ev.kind == amqp::event::method && ev.id == amqp::connection_unblocked)
    spdlog::info("rabbitmq: the broker accepts publishes again");
}

bool rabbitmq_bus::impl::on_con_event(const amqp::event& ev, std::string& err) {
  if (ev.kind == amqp::event::delivery) {
    on_delivery(ev.tag, ev.body);
    return true;
  }
  if (ev.kind != amqp::event::method) return true;
  if (ev.id == amqp::basic_cancel) {
    err = "the broker cancelled the consumer (queue " + queue_name + " deleted?)";
    return false;
  }
  if (ev.id != amqp::queue_bind_ok && ev.id != amqp::queue_unbind_ok && ev.id != amqp::basic_consume_ok) return true;
  const rpc::kind_t expected = ev.id == amqp::queue_bind_ok     ? rpc::bind
                               : ev.id == amqp::queue_unbind_ok ? rpc::unbind
                                                                : rpc::consume;
  if (rpcs.empty() || rpcs.front().kind != expected) {
    err = "unexpected reply from the broker (method " + std::to_string(ev.id) + ")";
    return false;
  }
  const rpc r = std::move(rpcs.front());
  rpcs.pop_front();
  switch (r.kind) {
    case rpc::bind:
      rooms.bind_confirmed(r.room, clock::now());
      m.inc(m.binds);
      if (on_bound) on_bound(r.room);
      break;
    case rpc::unbind:
      m.inc(m.unbinds);
      if (rooms.unbind_confirmed(r.room)) request_bind(r.room, true);
      break;
    case rpc::consume:
      break;
  }
  return true;
}

void rabbitmq_bus::impl::on_confirm(std::uint64_t tag, bool multiple, bool ack) {
  flight.confirm(tag, multiple, ack, [this](wire_message& w, bool acked) {
    m.inc(acked ? m.confirmed : m.nacked);
    if (!w.owner) return;
    if (acked)
      w.owner->confirmed();
    else
      w.owner->complete(make_error(errc::nacked), {});
  });
  in_flight_count = flight.size();
}

// Any shard thread: the last shard to take delivery `tag` of connection `gen`.
void rabbitmq_bus::impl::shard_done(std::uint64_t gen, std::uint64_t tag) {
  const std::uint64_t g = gen & 0xFFFF;
  std::uint64_t cur = shards_done.load(std::memory_order_relaxed);
  while (
      (cur >> 48) == g && (cur & tag_mask) < tag &&
      !shards_done.compare_exchange_weak(cur, (g << 48) | tag, std::memory_order_release, std::memory_order_relaxed)) {
  }
  // The bus thread looks every 2 ms while deliveries are out; at high rates a wake now and then
  // keeps the broker's prefetch window from filling before it looks.
  if ((tag & 63) == 0) box.wake();
}

void rabbitmq_bus::impl::take_shard_acks() {
  const std::uint64_t v = shards_done.load(std::memory_order_acquire);
  if ((v >> 48) == (generation & 0xFFFF)) acks.finished_through(v & tag_mask);
}

void rabbitmq_bus::impl::flush_acks() {
  if (!con.is_open() || acks.floor() == acked_sent) return;
  amqp::append_ack(con.out(), channel, acks.floor(), true);
  m.inc(m.acked, acks.floor() - acked_sent);
  acked_sent = acks.floor();
}

void rabbitmq_bus::impl::check_timeouts() {
  // A confirm that is late does not fail the publish: the message stays in flight (and is re-sent
  // after a reconnect), so the publisher is told it is queued rather than kept waiting.
  flight.overdue(clock::now(), [](wire_message& w) {
    if (w.owner) w.owner->complete({}, publish_result{true});
  });
}

void rabbitmq_bus::impl::on_delivery(std::uint64_t tag, std::string_view body) {
  m.inc(m.received);
  last_delivery = tag;
  envelope e;
  if (!decode_envelope(body, e)) {
    m.inc(m.decode_errors);
    spdlog::warn("rabbitmq: dropping a message that is not a roomcast envelope ({} bytes)", body.size());
    acks.finished(tag);
    return;
  }
  if (!seen.insert(e.id)) {
    // Redelivered (or re-sent after a reconnect) and already delivered here: ack, don't deliver.
    m.inc(m.duplicates);
    acks.finished(tag);
    return;
  }
  handler(e, [this, tag, gen = generation] { shard_done(gen, tag); });
}

}  // namespace roomcast::bus
