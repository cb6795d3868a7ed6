#include "bus/rabbitmq_bus.hpp"
#include "common/backoff.hpp"
#include "bus/confirm_window.hpp"
#include "bus/errors.hpp"
#include "bus/outage_buffer.hpp"
#include "bus/pending_publish.hpp"
#include "bus/room_bindings.hpp"
#include "metrics/prometheus.hpp"

#include "bus/dedupe_window.hpp"
#include "bus/inbox.hpp"

#include <pthread.h>
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <unordered_map>

namespace roomcast::bus {

namespace {

using clock = std::chrono::steady_clock;
constexpr amqp_channel_t channel = 1;

amqp_bytes_t bytes_of(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }

bool reply_ok(const amqp_rpc_reply_t& r, const char* what, std::string& err);

bool rpc_ok(amqp_connection_state_t c, const char* what, std::string& err) {
  return reply_ok(amqp_get_rpc_reply(c), what, err);
}

bool reply_ok(const amqp_rpc_reply_t& r, const char* what, std::string& err) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    err = std::string(what) + ": " + amqp_error_string2(r.library_error);
  } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
    err = std::string(what) + ": server exception " + std::to_string(r.reply.id);
    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      err += " " + std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
    } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      const auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
      err += " " + std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
    }
  } else {
    err = std::string(what) + ": no reply";
  }
  return false;
}

struct wire_message {
  std::string exchange;
  std::string routing_key;
  std::string body;
  std::shared_ptr<pending_publish> owner;
};

struct metrics_block {
  std::atomic<std::uint64_t> published{0}, confirmed{0}, nacked{0}, buffered{0}, rejected_full{0}, received{0},
      duplicates{0}, acked{0}, reconnects{0}, resent{0}, decode_errors{0}, fallback_all{0}, binds{0}, unbinds{0},
      node_id_in_use{0};
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

  // ---- shared with other threads (under mu) ----
  struct op {
    enum kind_t { publish, subscribe, unsubscribe, ack } kind;
    std::string room;
    std::vector<wire_message> msgs;
    std::shared_ptr<pending_publish> owner;
    std::uint64_t tag = 0;
    std::uint64_t generation = 0;
  };
  roomcast::bus::inbox<op> box;
  void post(op o) { box.post(std::move(o)); }

  rabbitmq_options opts;
  std::string queue_name;
  std::string rooms_exchange, nodes_exchange, all_exchange;
  message_handler handler;
  std::function<void(const std::string&)> on_bound;
  std::atomic<bool> connected{false};
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> outage_count{0};
  std::atomic<std::size_t> in_flight_count{0};
  metrics_block m;
  std::thread thread;

  // ---- bus thread only ----
  amqp_connection_state_t conn = nullptr;
  std::uint64_t generation = 0;         // bumps on every connection, so stale acks are ignored
  outage_buffer<wire_message> outage;   // waiting for the broker, in publish order
  confirm_window<wire_message> flight;  // published, waiting for confirms, in tag order
  room_bindings rooms;                  // wanted rooms and what the broker has bound (bindings survive reconnects)
  bool first_connect = true;
  dedupe_window seen{100'000};
  // Deliveries are acked with one multiple-ack for the longest finished prefix of delivery tags
  // (1, 2, 3… per channel) instead of one ack each: the shards finish them nearly in order.
  std::uint64_t ack_floor = 0;   // every tag <= ack_floor is acked (or about to be, by flush_acks)
  std::uint64_t acked_sent = 0;  // the last tag sent in an ack
  std::deque<bool> ack_done;     // ack_done[i]: tag ack_floor + 1 + i is finished
  std::size_t uri_index = 0;
  common::backoff retry;

  void run();
  bool connect(std::string& err);
  void disconnect(const std::string& why);
  bool declare_topology(std::string& err);
  bool bind_room(const std::string& room, bool bind, std::string& err);
  void drain_inbox();
  void handle_op(op& o);
  void enqueue(wire_message w);
  bool send_pending(std::string& err);
  bool read_frames(std::string& err);
  void on_confirm(std::uint64_t tag, bool multiple, bool ack);
  void on_delivery(amqp_envelope_t& env);
  void finished(std::uint64_t tag);
  void flush_acks();
  void check_timeouts();
  bool apply_unbinds(std::string& err);
  void wait_backoff(const std::string& why);
};

rabbitmq_bus::rabbitmq_bus(rabbitmq_options opts) : impl_(std::make_unique<impl>(std::move(opts))) {
  impl_->seen = dedupe_window(impl_->opts.dedupe_window);
}

rabbitmq_bus::~rabbitmq_bus() { stop(); }

void rabbitmq_bus::on_room_bound(std::function<void(const std::string&)> f) { impl_->on_bound = std::move(f); }

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
  const std::string body = encode_envelope(e);
  impl::op o{impl::op::publish, {}, {}, owner};
  switch (e.kind) {
    case protocol::target_kind::room:
      o.msgs.push_back({impl_->rooms_exchange, e.target, body, owner});
      break;
    case protocol::target_kind::all:
      o.msgs.push_back({impl_->all_exchange, "", body, owner});
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

void rabbitmq_bus::subscribe_room(const std::string& room) { impl_->post({impl::op::subscribe, room}); }
void rabbitmq_bus::unsubscribe_room(const std::string& room) { impl_->post({impl::op::unsubscribe, room}); }

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
    if (!conn) {
      drain_inbox();  // publishes go to the outage buffer, subscriptions are remembered
      if (stopping) break;
      if (!connect(err)) {
        wait_backoff(err);
        continue;
      }
    }
    drain_inbox();
    flush_acks();  // before read_frames may wait in poll()
    if (!apply_unbinds(err) || !send_pending(err) || !read_frames(err)) {
      disconnect(err);
      continue;
    }
    flush_acks();
    check_timeouts();
  }
  if (conn) disconnect("stopping");
  // Whatever never reached the broker is reported, not dropped silently.
  for (auto& w : outage)
    if (w.owner) w.owner->complete(make_error(errc::stopped), {});
  std::vector<op> left;
  { left = box.take(); }
  for (auto& o : left)
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
  std::string uri = opts.uris[uri_index++ % opts.uris.size()];
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  std::vector<char> buf(uri.begin(), uri.end());
  buf.push_back('\0');
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) {
    err = "bad broker URI";
    return false;
  }
  // "amqp://host:port/" names the empty vhost by the letter of the URI spec; nobody means that.
  if (info.vhost == nullptr || info.vhost[0] == '\0') info.vhost = const_cast<char*>("/");
  conn = amqp_new_connection();
  amqp_socket_t* sock = amqp_tcp_socket_new(conn);
  timeval tv{2, 0};
  if (!sock || amqp_socket_open_noblock(sock, info.host, info.port, &tv) != AMQP_STATUS_OK) {
    err = std::string("connect ") + info.host + ":" + std::to_string(info.port) + " failed";
    amqp_destroy_connection(conn);
    conn = nullptr;
    return false;
  }
  const auto login = amqp_login(conn, info.vhost, 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  const std::string where =
      std::string(info.host) + ":" + std::to_string(info.port) + " vhost " + info.vhost + " as " + info.user;
  if (!reply_ok(login, ("login to " + where + " failed").c_str(), err)) {
    // Wrong credentials show as ACCESS_REFUSED in the broker's close reason.
    amqp_destroy_connection(conn);
    conn = nullptr;
    return false;
  }
  amqp_channel_open(conn, channel);
  if (!rpc_ok(conn, "channel.open", err) || !declare_topology(err)) {
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    conn = nullptr;
    return false;
  }
  ++generation;
  ack_floor = acked_sent = 0;  // a new channel numbers its deliveries from 1 again
  ack_done.clear();
  retry.reset();
  m.inc(m.reconnects);
  connected = true;
  spdlog::info("rabbitmq: connected to {}:{} as queue {} ({} rooms bound, {} buffered)", info.host, info.port,
               queue_name, rooms.bound_rooms().size(), outage.size());
  return true;
}

bool rabbitmq_bus::impl::declare_topology(std::string& err) {
  amqp_exchange_declare(conn, channel, bytes_of(rooms_exchange), amqp_cstring_bytes("direct"), 0, 1, 0, 0,
                        amqp_empty_table);
  if (!rpc_ok(conn, "exchange.declare rooms", err)) return false;
  amqp_exchange_declare(conn, channel, bytes_of(nodes_exchange), amqp_cstring_bytes("direct"), 0, 1, 0, 0,
                        amqp_empty_table);
  if (!rpc_ok(conn, "exchange.declare nodes", err)) return false;
  amqp_exchange_declare(conn, channel, bytes_of(all_exchange), amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
                        amqp_empty_table);
  if (!rpc_ok(conn, "exchange.declare all", err)) return false;

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
    amqp_queue_delete(conn, channel, bytes_of(queue_name), 1, 0);
    const amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
        static_cast<const amqp_channel_close_t*>(r.reply.decoded)->reply_code == AMQP_PRECONDITION_FAILED) {
      m.inc(m.node_id_in_use);
      err = "node_id '" + opts.node_id + "' is in use: queue " + queue_name +
            " has a consumer (another running node with the same node_id?); waiting for it to go";
      return false;
    }
    if (!reply_ok(r, "queue.delete", err)) return false;
  }
  amqp_queue_declare(conn, channel, bytes_of(queue_name), 0, 1, 0, 0, args);
  if (!rpc_ok(conn, "queue.declare", err)) return false;
  amqp_queue_bind(conn, channel, bytes_of(queue_name), bytes_of(nodes_exchange), bytes_of(opts.node_id),
                  amqp_empty_table);
  if (!rpc_ok(conn, "queue.bind node", err)) return false;
  amqp_queue_bind(conn, channel, bytes_of(queue_name), bytes_of(all_exchange), amqp_cstring_bytes(""),
                  amqp_empty_table);
  if (!rpc_ok(conn, "queue.bind all", err)) return false;
  // Rooms left while the broker was away are still bound on it: unbind them, then bind the rooms
  // wanted now (both idempotent on the broker).
  const auto plan = rooms.reconcile();
  for (const auto& r : plan.release)
    if (!bind_room(r, false, err)) return false;
  for (const auto& r : plan.bind)
    if (!bind_room(r, true, err)) return false;
  first_connect = false;

  amqp_confirm_select(conn, channel);
  if (!rpc_ok(conn, "confirm.select", err)) return false;
  amqp_basic_qos(conn, channel, 0, opts.prefetch, 0);
  if (!rpc_ok(conn, "basic.qos", err)) return false;
  amqp_basic_consume(conn, channel, bytes_of(queue_name), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  return rpc_ok(conn, "basic.consume", err);
}

bool rabbitmq_bus::impl::bind_room(const std::string& room, bool bind, std::string& err) {
  if (bind) {
    amqp_queue_bind(conn, channel, bytes_of(queue_name), bytes_of(rooms_exchange), bytes_of(room), amqp_empty_table);
    if (!rpc_ok(conn, "queue.bind room", err)) return false;
    rooms.bound(room);
    m.inc(m.binds);
    // Messages published before this bind reached no queue of this node: let the node catch up.
    if (on_bound) on_bound(room);
  } else {
    amqp_queue_unbind(conn, channel, bytes_of(queue_name), bytes_of(rooms_exchange), bytes_of(room), amqp_empty_table);
    if (!rpc_ok(conn, "queue.unbind room", err)) return false;
    rooms.released(room);
    m.inc(m.unbinds);
  }
  return true;
}

void rabbitmq_bus::impl::disconnect(const std::string& why) {
  if (!stopping) spdlog::warn("rabbitmq: connection lost: {}", why);
  connected = false;
  if (conn) {
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    conn = nullptr;
  }
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
  std::vector<op> ops;
  { ops = box.take(); }
  for (auto& o : ops) handle_op(o);
}

void rabbitmq_bus::impl::handle_op(op& o) {
  switch (o.kind) {
    case op::publish: {
      std::size_t bytes = 0;
      for (auto& w : o.msgs) bytes += w.body.size();
      if (!conn || !outage.empty()) {
        // Broker away (or older messages still waiting): keep order, within bounds.
        if (!outage.fits(o.msgs.size(), bytes)) {
          m.inc(m.rejected_full);
          o.owner->complete(make_error(errc::buffer_full), {});
          return;
        }
        m.inc(m.buffered);
        if (!conn) o.owner->complete({}, publish_result{true});
      }
      for (auto& w : o.msgs) enqueue(std::move(w));
      return;
    }
    case op::subscribe:
      if (rooms.want(o.room) && conn) {
        std::string err;
        if (!bind_room(o.room, true, err)) disconnect(err);
      }
      return;
    case op::unsubscribe:
      rooms.unwant(o.room, clock::now());
      return;
    case op::ack:
      if (conn && o.generation == generation) finished(o.tag);
      return;
  }
}

void rabbitmq_bus::impl::enqueue(wire_message w) {
  outage.push_back(std::move(w));
  outage_count = outage.size();
}

bool rabbitmq_bus::impl::apply_unbinds(std::string& err) {
  for (const auto& r : rooms.take_due(clock::now()))
    if (!bind_room(r, false, err)) return false;
  return true;
}

bool rabbitmq_bus::impl::send_pending(std::string& err) {
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
  props.delivery_mode = opts.persistent ? 2 : 1;
  props.content_type = amqp_cstring_bytes("application/json");
  while (!outage.empty() && !flight.full()) {
    wire_message& w = outage.front();
    const int rc = amqp_basic_publish(conn, channel, bytes_of(w.exchange), bytes_of(w.routing_key), 0, 0, &props,
                                      bytes_of(w.body));
    if (rc != AMQP_STATUS_OK) {
      err = std::string("basic.publish: ") + amqp_error_string2(rc);
      return false;
    }
    m.inc(m.published);
    flight.sent(outage.pop_front(), clock::now() + opts.publish_timeout);
  }
  outage_count = outage.size();
  in_flight_count = flight.size();
  return true;
}

bool rabbitmq_bus::impl::read_frames(std::string& err) {
  // Wait for the broker or the inbox; rabbitmq-c may already hold frames in its buffers.
  if (!amqp_frames_enqueued(conn) && !amqp_data_in_buffer(conn)) {
    pollfd p[2] = {{amqp_get_sockfd(conn), POLLIN, 0}, {box.fd(), POLLIN, 0}};
    const int timeout = !rooms.releases_pending() && flight.empty() ? 200 : 20;
    ::poll(p, 2, timeout);
    if (p[1].revents & POLLIN) {
      box.clear();
    }
    if (!(p[0].revents & (POLLIN | POLLERR | POLLHUP))) return true;
  }
  for (int i = 0; i < 256; ++i) {  // bounded, so the inbox is served between bursts
    amqp_envelope_t env;
    timeval zero{0, 0};
    amqp_maybe_release_buffers(conn);
    const auto r = amqp_consume_message(conn, &env, &zero, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      on_delivery(env);
      amqp_destroy_envelope(&env);
      continue;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) return true;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      amqp_frame_t frame;
      if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) {
        err = "reading a frame failed";
        return false;
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          const auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          on_confirm(a->delivery_tag, a->multiple, true);
          break;
        }
        case AMQP_BASIC_NACK_METHOD: {
          const auto* n = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          on_confirm(n->delivery_tag, n->multiple, false);
          break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
          amqp_message_t msg;
          if (amqp_read_message(conn, frame.channel, &msg, 0).reply_type != AMQP_RESPONSE_NORMAL) {
            err = "reading a returned message failed";
            return false;
          }
          amqp_destroy_message(&msg);
          break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD:
          err = "broker closed the channel";
          return false;
        case AMQP_CONNECTION_CLOSE_METHOD:
          err = "broker closed the connection";
          return false;
        default:
          break;
      }
      continue;
    }
    err = r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
              ? std::string("consume: ") + amqp_error_string2(r.library_error)
              : std::string("consume failed");
    return false;
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

void rabbitmq_bus::impl::finished(std::uint64_t tag) {
  if (tag <= ack_floor) return;
  const std::size_t i = tag - ack_floor - 1;
  if (ack_done.size() <= i) ack_done.resize(i + 1, false);
  ack_done[i] = true;
  while (!ack_done.empty() && ack_done.front()) {
    ack_done.pop_front();
    ++ack_floor;
  }
}

void rabbitmq_bus::impl::flush_acks() {
  if (!conn || ack_floor == acked_sent) return;
  amqp_basic_ack(conn, channel, ack_floor, 1);
  m.inc(m.acked, ack_floor - acked_sent);
  acked_sent = ack_floor;
}

void rabbitmq_bus::impl::check_timeouts() {
  // A confirm that is late does not fail the publish: the message stays in flight (and is re-sent
  // after a reconnect), so the publisher is told it is queued rather than kept waiting.
  flight.overdue(clock::now(), [](wire_message& w) {
    if (w.owner) w.owner->complete({}, publish_result{true});
  });
}

void rabbitmq_bus::impl::on_delivery(amqp_envelope_t& env) {
  m.inc(m.received);
  const std::uint64_t tag = env.delivery_tag;
  const std::string_view body(static_cast<const char*>(env.message.body.bytes), env.message.body.len);
  envelope e;
  if (!decode_envelope(body, e)) {
    m.inc(m.decode_errors);
    spdlog::warn("rabbitmq: dropping a message that is not a roomcast envelope ({} bytes)", body.size());
    finished(tag);
    return;
  }
  if (!seen.insert(e.id)) {
    // Redelivered (or re-sent after a reconnect) and already delivered here: ack, don't deliver.
    m.inc(m.duplicates);
    finished(tag);
    return;
  }
  const std::uint64_t gen = generation;
  handler(e, [this, tag, gen] { post({op::ack, {}, {}, {}, tag, gen}); });
}

}  // namespace roomcast::bus
