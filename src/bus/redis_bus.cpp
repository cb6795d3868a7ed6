#include "bus/redis_bus.hpp"
#include "redis/hiredis.hpp"
#include "common/backoff.hpp"
#include "bus/errors.hpp"
#include "bus/outage_buffer.hpp"
#include "bus/pending_publish.hpp"
#include "bus/room_bindings.hpp"
#include "metrics/prometheus.hpp"

#include "bus/dedupe_window.hpp"
#include "bus/inbox.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace roomcast::bus {

namespace {

using clock = std::chrono::steady_clock;

// One pipeline round stays bounded, so the subscriber is served between rounds.
constexpr std::size_t max_batch_messages = 1024;
constexpr std::size_t max_batch_bytes = 1u << 20;

using redis::reply_ptr;
std::string_view str(const redisReply* r) noexcept { return redis::view(r); }

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

// What a pushed reply on the subscriber connection was.
enum class push_kind { message, subscribed, other };

}  // namespace

struct redis_bus::impl {
  explicit impl(redis_bus_options o)
      : opts(std::move(o)),
        room_prefix(opts.prefix + ":room:"),
        node_channel(opts.prefix + ":node:" + opts.node_id),
        all_channel(opts.prefix + ":all"),
        queue(opts.outage_max_messages, opts.outage_max_bytes),
        rooms(opts.unbind_grace),
        seen(opts.dedupe_window),
        retry(opts.reconnect_min, opts.reconnect_max) {}

  // ---- shared with other threads (under mu) ----
  struct op {
    enum kind_t { publish, subscribe, unsubscribe } kind;
    std::string room;
    std::vector<wire_message> msgs;
    std::shared_ptr<pending_publish> owner;
  };
  roomcast::bus::inbox<op> box;
  void post(op o) { box.post(std::move(o)); }

  redis_bus_options opts;
  std::string room_prefix, node_channel, all_channel;
  message_handler handler;
  std::function<void(const std::string&)> on_bound;  // a room's SUBSCRIBE was confirmed
  std::atomic<bool> connected{false};                // both connections up and the node's channels subscribed
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> queued_count{0};
  metrics_block m;
  std::thread thread;

  // ---- bus thread only ----
  redisContext* sub = nullptr;        // SUBSCRIBE/UNSUBSCRIBE, pushed messages
  redisContext* pub = nullptr;        // PUBLISH
  outage_buffer<wire_message> queue;  // waiting to be sent (the outage buffer while Redis is away), in order
  room_bindings rooms;                // wanted rooms and those SUBSCRIBEd on the current subscriber connection
  dedupe_window seen;
  std::uint64_t room_messages_seen = 0;  // for the test-only drop hook
  common::backoff retry;
  bool reported_down = false;

  std::string room_channel(const std::string& room) const { return room_prefix + room; }

  void run();
  bool connect(std::string& err);
  bool connect_subscriber(std::string& err);
  void close_contexts();
  void drop_subscriber(const std::string& why);
  void drop_publisher(const std::string& why);
  void drain_inbox();
  void handle_op(op& o);
  bool send_command(redisContext* c, const std::vector<std::string>& args, std::string& err);
  void apply_unsubscribes();
  void send_pending();
  void wait_and_read();
  void read_subscriber();
  bool drain_reader(std::string& err);
  push_kind on_push(const redisReply* r);
  void on_message(std::string_view payload);
  void wait_backoff(const std::string& why);
};

redis_bus::redis_bus(redis_bus_options opts) : impl_(std::make_unique<impl>(std::move(opts))) {}

redis_bus::~redis_bus() { stop(); }

void redis_bus::start(message_handler on_message) {
  impl_->handler = std::move(on_message);
  impl_->thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "rc-bus-redis");  // top -H, perf
    impl_->run();
  });
}

void redis_bus::stop() {
  if (!impl_->thread.joinable()) return;
  impl_->stopping = true;
  impl_->box.wake();
  impl_->thread.join();
}

bool redis_bus::healthy() const { return impl_->connected.load(std::memory_order_relaxed); }

void redis_bus::publish(envelope e, publish_callback done) {
  auto owner = std::make_shared<pending_publish>();
  owner->done = std::move(done);
  const std::string body = encode_envelope(e);
  impl::op o{impl::op::publish, {}, {}, owner};
  switch (e.kind) {
    case protocol::target_kind::room:
      o.msgs.push_back({impl_->room_channel(e.target), body, owner});
      break;
    case protocol::target_kind::all:
      o.msgs.push_back({impl_->all_channel, body, owner});
      break;
    case protocol::target_kind::user:
      if (e.nodes.empty()) {
        // The registry doesn't know (or is down): every node checks its own sessions.
        impl_->m.inc(impl_->m.fallback_all);
        o.msgs.push_back({impl_->all_channel, body, owner});
      } else {
        for (const auto& n : e.nodes) o.msgs.push_back({impl_->opts.prefix + ":node:" + n, body, owner});
      }
      break;
  }
  owner->remaining = o.msgs.size();
  impl_->post(std::move(o));
}

void redis_bus::on_room_bound(std::function<void(const std::string&)> f) { impl_->on_bound = std::move(f); }

void redis_bus::subscribe_room(const std::string& room) { impl_->post({impl::op::subscribe, room}); }
void redis_bus::unsubscribe_room(const std::string& room) { impl_->post({impl::op::unsubscribe, room}); }

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

// ---------------- bus thread ----------------

void redis_bus::impl::run() {
  // hiredis write()s to its sockets: a write to a connection Redis closed would raise SIGPIPE and
  // kill the process. Blocked on this thread, the write fails with EPIPE instead.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);

  // The two connections fail and come back independently: a lost publisher must not make the
  // subscriber miss messages, and the other way round. Each step below drops the connection it
  // found broken.
  std::string err;
  while (!stopping) {
    if (!sub || !pub) {
      drain_inbox();  // publishes go to the outage buffer, subscriptions are remembered
      if (stopping) break;
      if (!connect(err)) {
        wait_backoff(err);
        continue;
      }
    }
    drain_inbox();
    if (sub && pub) apply_unsubscribes();
    if (sub && pub) send_pending();
    if (sub && pub) wait_and_read();
  }
  close_contexts();
  connected = false;
  // Whatever never reached Redis is reported, not dropped silently.
  for (auto& w : queue)
    if (w.owner) w.owner->complete(make_error(errc::stopped), {});
  queue.clear();
  queued_count = 0;
  std::vector<op> left;
  { left = box.take(); }
  for (auto& o : left)
    if (o.owner) o.owner->complete(make_error(errc::stopped), {});
}

void redis_bus::impl::wait_backoff(const std::string& why) {
  // Exponential backoff with full jitter, woken early by stop(); the inbox is served meanwhile.
  const auto ms = retry.next().count();
  // Logged once per outage, not once per retry.
  if (!reported_down) {
    spdlog::warn("redis bus: {} (retrying; publishes wait in the outage buffer)", why);
    reported_down = true;
  } else {
    spdlog::debug("redis bus: {} (retry in {} ms)", why, ms);
  }
  const auto until = clock::now() + std::chrono::milliseconds(ms);
  while (!stopping && clock::now() < until) {
    // A subscriber still up (only the publisher is away) keeps delivering meanwhile.
    pollfd p[2] = {{box.fd(), POLLIN, 0}, {sub ? sub->fd : -1, POLLIN, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now()).count();
    ::poll(p, 2, static_cast<int>(std::max<long long>(1, left)));
    box.clear();
    drain_inbox();
    if (sub && (p[1].revents & (POLLIN | POLLERR | POLLHUP))) read_subscriber();
  }
}

bool redis_bus::impl::connect(std::string& err) {
  const std::string where = opts.host + ":" + std::to_string(opts.port);
  auto open = [&](const char* role) -> redisContext* {
    // The timeout bounds every blocking read/write on the connection (PUBLISH replies, flushes).
    std::string why;
    redisContext* c = redis::connect(opts.host, opts.port, opts.timeout, why);
    if (!c) err = std::string(role) + " connect " + where + ": " + why;
    return c;
  };
  // Subscriber first: publishes (the outage buffer first) go out only once this node listens.
  if (!sub) {
    sub = open("subscriber");
    if (!sub || !connect_subscriber(err)) return false;
  }
  if (!pub) {
    pub = open("publisher");
    if (!pub) return false;
    // One round trip before the connection counts as up: a Redis that accepts and then refuses
    // (maxclients, loading) must go through the backoff, not a reconnect loop.
    reply_ptr pong(static_cast<redisReply*>(redisCommand(pub, "PING")));
    if (!pong || pong->type == REDIS_REPLY_ERROR) {
      err = "publisher: " + (pong ? std::string(str(pong.get())) : std::string(pub->errstr));
      redisFree(pub);
      pub = nullptr;
      return false;
    }
  }
  retry.reset();
  reported_down = false;
  m.inc(m.reconnects);
  connected = true;
  spdlog::info("redis bus: connected to {} as node {} ({} rooms subscribed, {} buffered)", where, opts.node_id,
               rooms.bound_rooms().size(), queue.size());
  return true;
}

bool redis_bus::impl::connect_subscriber(std::string& err) {
  auto fail = [&](std::string why) {
    err = std::move(why);
    redisFree(sub);
    sub = nullptr;
    rooms.connection_lost(false);
    return false;
  };
  // The node's channels and every wanted room in one command; then wait for every confirmation.
  std::vector<std::string> args{"SUBSCRIBE", node_channel, all_channel};
  for (const auto& r : rooms.wanted()) args.push_back(room_channel(r));
  if (!send_command(sub, args, err)) return fail(err);
  for (const auto& r : rooms.wanted()) rooms.bound(r);
  m.inc(m.room_subscribes, rooms.wanted().size());
  std::size_t waiting = args.size() - 1;
  const auto deadline = clock::now() + opts.timeout;
  while (waiting > 0) {
    void* r = nullptr;
    if (redisGetReply(sub, &r) != REDIS_OK || !r)
      return fail(std::string("subscribe: ") + (sub->errstr[0] ? sub->errstr : "no reply"));
    reply_ptr p(static_cast<redisReply*>(r));
    if (p->type == REDIS_REPLY_ERROR) return fail("subscribe: " + std::string(str(p.get())));
    // Messages on the channels confirmed first may already arrive in between.
    if (on_push(p.get()) == push_kind::subscribed) --waiting;
    if (waiting > 0 && clock::now() > deadline) return fail("subscribe: confirmations timed out");
  }
  // The last read may have brought messages past the confirmations: hand them over now rather
  // than when the next bytes arrive.
  if (!drain_reader(err)) return fail(err);
  return true;
}

void redis_bus::impl::close_contexts() {
  if (sub) redisFree(sub);
  if (pub) redisFree(pub);
  sub = pub = nullptr;
}

void redis_bus::impl::drop_subscriber(const std::string& why) {
  if (!stopping) spdlog::warn("redis bus: subscriber connection lost: {}", why);
  connected = false;
  if (sub) redisFree(sub);
  sub = nullptr;
  rooms.connection_lost(false);  // subscriptions die with their connection
}

void redis_bus::impl::drop_publisher(const std::string& why) {
  if (!stopping) spdlog::warn("redis bus: publisher connection lost: {}", why);
  connected = false;
  if (pub) redisFree(pub);
  pub = nullptr;
  // Publishers still waiting learn that their message is buffered rather than wait for Redis.
  for (auto& w : queue)
    if (w.owner) w.owner->complete({}, publish_result{true});
}

bool redis_bus::impl::send_command(redisContext* c, const std::vector<std::string>& args, std::string& err) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
  int done = 0;
  while (!done) {
    if (redisBufferWrite(c, &done) != REDIS_OK) {
      err = std::string("write: ") + (c->errstr[0] ? c->errstr : "failed");
      return false;
    }
  }
  return true;
}

void redis_bus::impl::drain_inbox() {
  std::vector<op> ops;
  { ops = box.take(); }
  for (auto& o : ops) handle_op(o);
}

void redis_bus::impl::handle_op(op& o) {
  switch (o.kind) {
    case op::publish: {
      std::size_t bytes = 0;
      for (auto& w : o.msgs) bytes += w.body.size();
      // Bounded whether Redis is away or just behind.
      if (!queue.fits(o.msgs.size(), bytes)) {
        m.inc(m.rejected_full);
        o.owner->complete(make_error(errc::buffer_full), {});
        return;
      }
      if (!connected) {
        m.inc(m.buffered);
        o.owner->complete({}, publish_result{true});
      }
      for (auto& w : o.msgs) queue.push_back(std::move(w));
      queued_count = queue.size();
      return;
    }
    case op::subscribe:
      if (rooms.want(o.room) && sub) {
        std::string err;
        if (!send_command(sub, {"SUBSCRIBE", room_channel(o.room)}, err)) {
          drop_subscriber(err);
          return;
        }
        rooms.bound(o.room);
        m.inc(m.room_subscribes);
      }
      return;
    case op::unsubscribe:
      rooms.unwant(o.room, clock::now());
      return;
  }
}

void redis_bus::impl::apply_unsubscribes() {
  if (!rooms.releases_pending()) return;
  std::vector<std::string> args{"UNSUBSCRIBE"};
  for (const auto& r : rooms.take_due(clock::now())) {
    args.push_back(room_channel(r));
    rooms.released(r);  // UNSUBSCRIBE can't fail but with the connection, which ends them all
  }
  if (args.size() == 1) return;
  m.inc(m.room_unsubscribes, args.size() - 1);
  std::string err;
  if (!send_command(sub, args, err)) drop_subscriber(err);
}

void redis_bus::impl::send_pending() {
  if (queue.empty()) return;
  // Pipeline: append a bounded batch of PUBLISHes, then read their replies in order.
  std::size_t n = 0, bytes = 0;
  for (auto it = queue.begin(); it != queue.end() && n < max_batch_messages && bytes < max_batch_bytes; ++it, ++n) {
    const char* argv[3] = {"PUBLISH", it->channel.data(), it->body.data()};
    const std::size_t lens[3] = {7, it->channel.size(), it->body.size()};
    redisAppendCommandArgv(pub, 3, argv, lens);
    bytes += it->body.size();
  }
  for (std::size_t i = 0; i < n; ++i) {
    void* r = nullptr;
    if (redisGetReply(pub, &r) != REDIS_OK || !r) {
      // No reply: unknown whether Redis got them. They stay at the front of the queue and are
      // re-sent after the reconnect (receivers drop duplicates by id); drop_publisher() tells
      // their publishers that the message is queued.
      m.inc(m.resent, n - i);
      queued_count = queue.size();
      drop_publisher(std::string("publish: ") + (pub->errstr[0] ? pub->errstr : "no reply"));
      return;
    }
    reply_ptr p(static_cast<redisReply*>(r));
    wire_message w = queue.pop_front();
    if (p->type == REDIS_REPLY_ERROR) {
      m.inc(m.publish_errors);
      spdlog::warn("redis bus: PUBLISH {} refused: {}", w.channel, str(p.get()));
      if (w.owner) w.owner->complete(make_error(errc::refused), {});
      continue;
    }
    m.inc(m.published);
    if (w.owner) w.owner->confirmed();
  }
  queued_count = queue.size();
}

void redis_bus::impl::wait_and_read() {
  // Wait for pushed messages or the inbox; don't wait at all while publishes are queued.
  int timeout = 200;
  if (!queue.empty()) {
    timeout = 0;
  } else if (rooms.releases_pending()) {
    const auto first = rooms.next_release();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(first - clock::now()).count();
    timeout = static_cast<int>(std::clamp<long long>(left + 1, 0, 200));
  }
  pollfd p[3] = {{sub->fd, POLLIN, 0}, {pub->fd, POLLIN, 0}, {box.fd(), POLLIN, 0}};
  if (::poll(p, 3, timeout) < 0) {
    if (errno != EINTR) spdlog::warn("redis bus: poll: {}", std::strerror(errno));
    return;
  }
  if (p[2].revents & POLLIN) {
    box.clear();
  }
  if (p[1].revents & (POLLIN | POLLERR | POLLHUP)) {
    // Nothing is outstanding on the publisher here, so Redis has nothing to say on it but EOF.
    drop_publisher(redisBufferRead(pub) != REDIS_OK ? std::string(pub->errstr) : std::string("unexpected data"));
  }
  if (p[0].revents & (POLLIN | POLLERR | POLLHUP)) read_subscriber();
}

void redis_bus::impl::read_subscriber() {
  // Batched: one read of whatever arrived, then every complete reply already in the buffer.
  if (redisBufferRead(sub) != REDIS_OK) {
    drop_subscriber(sub->errstr);
    return;
  }
  m.inc(m.read_batches);
  std::string err;
  if (!drain_reader(err)) drop_subscriber(err);
}

bool redis_bus::impl::drain_reader(std::string& err) {
  // Every complete reply already received; never touches the socket.
  while (true) {
    void* r = nullptr;
    if (redisGetReplyFromReader(sub, &r) != REDIS_OK) {
      err = std::string("subscriber: ") + sub->errstr;
      return false;
    }
    if (!r) return true;
    reply_ptr reply(static_cast<redisReply*>(r));
    on_push(reply.get());
  }
}

push_kind redis_bus::impl::on_push(const redisReply* r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return push_kind::other;
  const auto kind = str(r->element[0]);
  if (kind == "message") {
    on_message(str(r->element[2]));
    return push_kind::message;
  }
  if (kind == "subscribe") {
    // A room channel is live from here on: the node catches up on what was published before.
    const std::string channel(str(r->element[1]));
    if (on_bound && channel.rfind(room_prefix, 0) == 0) on_bound(channel.substr(room_prefix.size()));
    return push_kind::subscribed;
  }
  return push_kind::other;  // unsubscribe confirmations
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
