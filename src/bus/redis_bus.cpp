#include "bus/redis_bus.hpp"

#include "bus/dedupe_window.hpp"
#include "bus/errors.hpp"
#include "bus/outage_buffer.hpp"
#include "bus/pending_publish.hpp"
#include "bus/room_bindings.hpp"
#include "metrics/prometheus.hpp"
#include "redis/connection.hpp"
#include "redis/hiredis.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <future>

namespace roomcast::bus {

namespace {

using clock = std::chrono::steady_clock;

// PUBLISHes in flight at once: enough to keep the pipeline full, few enough that the subscriber
// (the same thread) is served between their replies.
constexpr std::size_t max_in_flight = 1024;

using redis::view;

struct wire_message {
  std::string channel;
  std::string body;
  std::shared_ptr<pending_publish> owner;
};

struct metrics_block {
  std::atomic<std::uint64_t> published{0}, publish_errors{0}, buffered{0}, rejected_full{0}, resent{0}, received{0},
      duplicates{0}, decode_errors{0}, reconnects{0}, fallback_all{0}, room_subscribes{0}, room_unsubscribes{0},
      test_dropped{0}, read_batches{0};
  void inc(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
};

redis::connection_options connection_options_of(const redis_bus_options& o, const char* name, bool subscriber) {
  redis::connection_options c;
  c.host = o.host;
  c.port = o.port;
  c.name = name;
  c.timeout = o.timeout;
  c.reconnect_min = o.reconnect_min;
  c.reconnect_max = o.reconnect_max;
  c.max_queue = max_in_flight + 1024;  // the subscriber's (UN)SUBSCRIBEs waiting for confirmation
  c.subscriber = subscriber;
  c.while_down = "Publishes wait in the outage buffer meanwhile";
  return c;
}

}  // namespace

// Everything below runs on the Redis thread; public methods post there. Shared with what is
// posted, so a late post finds it alive.
struct redis_bus::impl : std::enable_shared_from_this<impl> {
  impl(redis::loop& l, redis_bus_options o)
      : opts(std::move(o)),
        lp(l),
        room_prefix(opts.prefix + ":room:"),
        node_channel(opts.prefix + ":node:" + opts.node_id),
        all_channel(opts.prefix + ":all"),
        sub(l, connection_options_of(opts, "redis bus subscriber", true)),
        pub(l, connection_options_of(opts, "redis bus publisher", false)),
        queue(opts.outage_max_messages, opts.outage_max_bytes),
        rooms(opts.unbind_grace),
        seen(opts.dedupe_window) {}

  redis_bus_options opts;
  redis::loop& lp;
  std::string room_prefix, node_channel, all_channel;
  message_handler handler;
  std::function<void(const std::string&)> on_bound;  // a room's SUBSCRIBE was confirmed
  redis::connection sub;                             // SUBSCRIBE/UNSUBSCRIBE, pushed messages
  redis::connection pub;                             // PUBLISH, pipelined

  // Read by any thread.
  std::atomic<bool> connected{false};  // both connections up and the node's channels subscribed
  std::atomic<bool> stop_called{false};
  std::atomic<std::size_t> queued_count{0};
  metrics_block m;

  // Redis thread only.
  bool stopping = false;
  bool listening = false;             // the node's channels are confirmed on the subscriber
  outage_buffer<wire_message> queue;  // not confirmed yet, in order; the first `in_flight` are sent
  std::size_t in_flight = 0;
  room_bindings rooms;  // wanted rooms and those SUBSCRIBEd on the current subscriber connection
  bool release_scheduled = false;
  dedupe_window seen;
  std::uint64_t room_messages_seen = 0;  // for the test-only drop hook

  std::string room_channel(const std::string& room) const { return room_prefix + room; }

  void post(std::function<void(impl&)> f) {
    lp.post([self = shared_from_this(), f = std::move(f)] { f(*self); });
  }

  void on_sub_connected();
  void on_pub_lost();
  void update_connected();
  void publish(std::vector<wire_message>& msgs, const std::shared_ptr<pending_publish>& owner);
  void pump();
  void on_publish_reply(const redisReply* r, std::error_code ec);
  void subscribe(const std::string& room);
  void schedule_releases();
  void apply_releases();
  void on_push(const redisReply* r);
  void on_message(std::string_view payload);
  void stop();
};

redis_bus::redis_bus(redis_bus_options opts)
    : loop_(redis::loop::shared()), impl_(std::make_shared<impl>(*loop_, std::move(opts))) {}

redis_bus::~redis_bus() { stop(); }

void redis_bus::start(message_handler on_message) {
  auto& me = *impl_;
  me.handler = std::move(on_message);
  // The two connections fail and come back independently: a lost publisher must not make the
  // subscriber miss messages, and the other way round.
  me.sub.on_connected([&me] { me.on_sub_connected(); });
  me.sub.on_disconnected([&me](std::error_code) {
    me.listening = false;
    me.rooms.connection_lost(false);  // subscriptions die with their connection
    me.update_connected();
  });
  me.sub.on_push([&me](const redisReply* r) { me.on_push(r); });
  me.sub.on_read([&me] { me.m.inc(me.m.read_batches); });
  me.pub.on_connected([&me] { me.update_connected(); });
  me.pub.on_disconnected([&me](std::error_code) { me.on_pub_lost(); });
  // Subscriber first: publishes (the outage buffer first) go out only once this node listens.
  me.sub.start();
  me.pub.start();
}

void redis_bus::stop() {
  if (impl_->stop_called.exchange(true)) return;
  std::promise<void> done;
  impl_->post([&done](impl& me) {
    me.stop();
    done.set_value();
  });
  done.get_future().wait();
}

bool redis_bus::healthy() const { return impl_->connected.load(std::memory_order_relaxed); }

void redis_bus::publish(envelope e, publish_callback done) {
  auto owner = std::make_shared<pending_publish>();
  owner->done = std::move(done);
  const std::string body = encode_envelope(e);
  std::vector<wire_message> msgs;
  switch (e.kind) {
    case protocol::target_kind::room:
      msgs.push_back({impl_->room_channel(e.target), body, owner});
      break;
    case protocol::target_kind::all:
      msgs.push_back({impl_->all_channel, body, owner});
      break;
    case protocol::target_kind::user:
      if (e.nodes.empty()) {
        // The registry doesn't know (or is down): every node checks its own sessions.
        impl_->m.inc(impl_->m.fallback_all);
        msgs.push_back({impl_->all_channel, body, owner});
      } else {
        for (const auto& n : e.nodes) msgs.push_back({impl_->opts.prefix + ":node:" + n, body, owner});
      }
      break;
  }
  owner->remaining = msgs.size();
  impl_->post([msgs = std::move(msgs), owner](impl& me) mutable { me.publish(msgs, owner); });
}

void redis_bus::on_room_bound(std::function<void(const std::string&)> f) { impl_->on_bound = std::move(f); }

void redis_bus::subscribe_room(const std::string& room) {
  impl_->post([room](impl& me) { me.subscribe(room); });
}

void redis_bus::unsubscribe_room(const std::string& room) {
  impl_->post([room](impl& me) {
    me.rooms.unwant(room, clock::now());
    me.schedule_releases();
  });
}

void redis_bus::append_metrics(std::string& o) const {
  auto& m = impl_->m;
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  line("roomcast_bus_up", "gauge", "1 while both Redis connections are up and subscribed.", healthy() ? 1 : 0);
  line("roomcast_bus_published_total", "counter", "PUBLISHes Redis replied to.", ld(m.published));
  line("roomcast_bus_publish_errors_total", "counter", "PUBLISHes Redis answered with an error.", ld(m.publish_errors));
  line("roomcast_bus_buffered_total", "counter", "Publishes that waited in the outage buffer.", ld(m.buffered));
  line("roomcast_bus_buffer_full_total", "counter", "Publishes refused because the outage buffer was full.",
       ld(m.rejected_full));
  line("roomcast_bus_outage_buffer_messages", "gauge", "Messages waiting to be sent to Redis.",
       impl_->queued_count.load());
  line("roomcast_bus_resent_total", "counter", "PUBLISHes re-sent after a reconnect (no reply came).", ld(m.resent));
  line("roomcast_bus_received_total", "counter", "Messages received from subscribed channels.", ld(m.received));
  line("roomcast_bus_duplicates_total", "counter", "Received messages dropped as already delivered.", ld(m.duplicates));
  line("roomcast_bus_decode_errors_total", "counter", "Received messages that were not roomcast envelopes.",
       ld(m.decode_errors));
  line("roomcast_bus_read_batches_total", "counter", "Socket reads of the subscriber connection.", ld(m.read_batches));
  line("roomcast_bus_reconnects_total", "counter", "Connections made to Redis.", ld(m.reconnects));
  line("roomcast_bus_user_fallback_all_total", "counter",
       "User messages sent to every node (registry could not answer).", ld(m.fallback_all));
  line("roomcast_bus_room_subscribes_total", "counter", "Room channels subscribed.", ld(m.room_subscribes));
  line("roomcast_bus_room_unsubscribes_total", "counter", "Room channels unsubscribed.", ld(m.room_unsubscribes));
  line("roomcast_bus_test_dropped_total", "counter",
       "Room messages dropped on purpose (test-only option drop_every_nth_received).", ld(m.test_dropped));
}

void redis_bus::append_stats(std::string& o) const {
  auto& m = impl_->m;
  o += ",\"bus_up\":" + std::string(healthy() ? "true" : "false");
  o += ",\"bus_received\":" + std::to_string(m.received.load());
  o += ",\"bus_duplicates\":" + std::to_string(m.duplicates.load());
  o += ",\"bus_published\":" + std::to_string(m.published.load());
  o += ",\"bus_outage_buffer\":" + std::to_string(impl_->queued_count.load());
  o += ",\"bus_fallback_all\":" + std::to_string(m.fallback_all.load());
}

// ---------------- Redis thread ----------------

void redis_bus::impl::on_sub_connected() {
  // The node's channels and every wanted room in one command; the node listens once Redis
  // confirmed them all (the connection drops itself if that takes longer than the timeout).
  redis::command args{"SUBSCRIBE", node_channel, all_channel};
  for (const auto& r : rooms.wanted()) {
    args.push_back(room_channel(r));
    rooms.bound(r);
  }
  m.inc(m.room_subscribes, rooms.wanted().size());
  sub.send(args, [this](const redisReply*, std::error_code ec) {
    if (ec) return;  // the connection is gone and comes back
    listening = true;
    update_connected();
  });
}

void redis_bus::impl::update_connected() {
  const bool now = !stopping && listening && sub.up() && pub.up();
  if (now == connected.load()) return;
  connected = now;
  if (!now) return;
  m.inc(m.reconnects);
  spdlog::info("redis bus: connected to {}:{} as node {} ({} rooms subscribed, {} buffered)", opts.host, opts.port,
               opts.node_id, rooms.bound_rooms().size(), queue.size());
  pump();
}

void redis_bus::impl::on_pub_lost() {
  // The PUBLISHes whose reply never came stay at the front of the queue and are sent again after
  // the reconnect (receivers drop duplicates by id); their publishers learn that the message is
  // buffered rather than wait for Redis.
  m.inc(m.resent, in_flight);
  in_flight = 0;
  for (auto& w : queue)
    if (w.owner) w.owner->complete({}, publish_result{true});
  update_connected();
}

void redis_bus::impl::publish(std::vector<wire_message>& msgs, const std::shared_ptr<pending_publish>& owner) {
  if (stopping) return owner->complete(make_error(errc::stopped), {});
  std::size_t bytes = 0;
  for (auto& w : msgs) bytes += w.body.size();
  // Bounded whether Redis is away or just behind.
  if (!queue.fits(msgs.size(), bytes)) {
    m.inc(m.rejected_full);
    return owner->complete(make_error(errc::buffer_full), {});
  }
  if (!connected) {
    m.inc(m.buffered);
    owner->complete({}, publish_result{true});
  }
  for (auto& w : msgs) queue.push_back(std::move(w));
  queued_count = queue.size();
  pump();
}

void redis_bus::impl::pump() {
  // In order, from the first message not sent yet; a window of them in flight.
  while (connected && in_flight < queue.size() && in_flight < max_in_flight) {
    const auto& w = *(queue.begin() + static_cast<std::ptrdiff_t>(in_flight));
    ++in_flight;
    pub.send({"PUBLISH", w.channel, w.body},
             [this](const redisReply* r, std::error_code ec) { on_publish_reply(r, ec); });
  }
}

void redis_bus::impl::on_publish_reply(const redisReply* r, std::error_code ec) {
  // No reply (connection lost, timed out, stopped): on_pub_lost()/stop() deal with the message.
  if (ec && ec != redis::make_error(redis::errc::error_reply)) return;
  wire_message w = queue.pop_front();
  --in_flight;
  queued_count = queue.size();
  if (ec) {
    m.inc(m.publish_errors);
    spdlog::warn("redis bus: PUBLISH {} refused: {}", w.channel, view(r));
    if (w.owner) w.owner->complete(make_error(errc::refused), {});
  } else {
    m.inc(m.published);
    if (w.owner) w.owner->confirmed();
  }
  pump();
}

void redis_bus::impl::subscribe(const std::string& room) {
  if (!rooms.want(room) || !sub.up()) return;  // bound already, or subscribed on the next connect
  sub.send({"SUBSCRIBE", room_channel(room)}, nullptr);
  rooms.bound(room);
  m.inc(m.room_subscribes);
}

void redis_bus::impl::schedule_releases() {
  if (release_scheduled || !rooms.releases_pending()) return;
  release_scheduled = true;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(rooms.next_release() - clock::now());
  lp.post_after(std::max(left, std::chrono::milliseconds(1)), [self = shared_from_this()] {
    self->release_scheduled = false;
    if (!self->stopping) self->apply_releases();
  });
}

void redis_bus::impl::apply_releases() {
  if (sub.up()) {
    redis::command args{"UNSUBSCRIBE"};
    for (const auto& r : rooms.take_due(clock::now())) {
      args.push_back(room_channel(r));
      rooms.released(r);  // UNSUBSCRIBE can't fail but with the connection, which ends them all
    }
    if (args.size() > 1) {
      m.inc(m.room_unsubscribes, args.size() - 1);
      sub.send(args, nullptr);
    }
  }
  schedule_releases();
}

void redis_bus::impl::on_push(const redisReply* r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
  const auto kind = view(r->element[0]);
  if (kind == "message") return on_message(view(r->element[2]));
  if (kind == "subscribe") {
    // A room channel is live from here on: the node catches up on what was published before.
    const auto channel = view(r->element[1]);
    if (on_bound && channel.substr(0, room_prefix.size()) == room_prefix)
      on_bound(std::string(channel.substr(room_prefix.size())));
  }
  // unsubscribe confirmations: nothing to do
}

void redis_bus::impl::stop() {
  stopping = true;
  sub.stop();
  pub.stop();
  connected = false;
  // Whatever never reached Redis is reported, not dropped silently.
  for (auto& w : queue)
    if (w.owner) w.owner->complete(make_error(errc::stopped), {});
  queue.clear();
  in_flight = 0;
  queued_count = 0;
}

void redis_bus::impl::on_message(std::string_view payload) {
  m.inc(m.received);
  envelope e;
  if (!decode_envelope(payload, e)) {
    // Bounded logging: someone else publishing on our channels must not flood the log.
    const auto n = m.decode_errors.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n <= 10 || n % 10000 == 0)
      spdlog::warn("redis bus: dropping a message that is not a roomcast envelope ({} bytes, {} so far)",
                   payload.size(), n);
    return;
  }
  if (opts.drop_every_nth_received > 0 && e.kind == protocol::target_kind::room &&
      ++room_messages_seen % opts.drop_every_nth_received == 0) {
    m.inc(m.test_dropped);  // test-only: a hole for the history to fill
    return;
  }
  if (!seen.insert(e.id)) {
    m.inc(m.duplicates);
    return;
  }
  // Pub/Sub has no acks: nothing to do once the shards took it.
  handler(e, [] {});
}

}  // namespace roomcast::bus
