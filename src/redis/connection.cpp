#include "redis/connection.hpp"

#include "common/backoff.hpp"
#include "metrics/prometheus.hpp"
#include "redis/hiredis.hpp"
#include "redis/loop_impl.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <charconv>
#include <future>
#include <optional>

namespace roomcast::redis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock = command_queue::clock;

namespace {

// RESP: *<n>\r\n then $<len>\r\n<bytes>\r\n per argument (what redisFormatCommandArgv makes,
// written straight into the output buffer).
void append_number(std::string& out, char tag, std::size_t n) {
  char buf[24];
  buf[0] = tag;
  auto [end, ec] = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  (void)ec;
  *end++ = '\r';
  *end++ = '\n';
  out.append(buf, end);
}

void encode(std::string& out, const std::vector<std::string_view>& argv) {
  append_number(out, '*', argv.size());
  for (auto a : argv) {
    append_number(out, '$', a.size());
    out.append(a);
    out += "\r\n";
  }
}

// A subscribe-mode confirmation: ["subscribe"|"unsubscribe", channel, count].
bool is_confirmation(const redisReply* r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return false;
  const auto k = view(r->element[0]);
  return k == "subscribe" || k == "unsubscribe";
}

}  // namespace

struct connection::state : std::enable_shared_from_this<state> {
  state(loop& l, connection_options o)
      : io(l.get().io),
        opts(std::move(o)),
        sock(io),
        connect_timer(io),
        deadline_timer(io),
        retry_timer(io),
        retry(opts.reconnect_min, opts.reconnect_max),
        pending(opts.max_queue) {}

  enum class phase { idle, connecting, handshake, up, stopped };

  asio::io_context& io;
  connection_options opts;
  tcp::socket sock;
  asio::steady_timer connect_timer, deadline_timer, retry_timer;
  common::backoff retry;
  command_queue pending;
  script_set scripts;
  redisReader* reader = nullptr;
  std::string out;  // encoded commands not handed to the socket yet
  bool writing = false;
  bool deadline_armed = false;
  bool reported_down = false;
  phase ph = phase::idle;
  std::uint64_t gen = 0;                         // one per connection attempt: handlers of an older socket do nothing
  std::array<char, std::size_t{16} << 10> rbuf;  // one socket read
  std::vector<std::string_view> argv;

  std::function<void()> connected_cb, read_cb;
  std::function<void(std::error_code)> disconnected_cb;
  std::function<void(const redisReply*)> push_cb;

  // Read by any thread (metrics, health).
  std::atomic<bool> up_flag{false}, stopped_flag{false};
  std::atomic<std::uint64_t> commands{0}, batches{0}, errors{0}, reconnects{0};
  std::atomic<std::size_t> depth{0};

  ~state() {
    if (reader) redisReaderFree(reader);
  }

  std::string where() const { return opts.host + ":" + std::to_string(opts.port); }

  void do_connect();
  void on_connect(const boost::system::error_code& ec);
  void became_up();
  void do_read();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void dispatch(const redisReply* r);
  // Sends `argv` (encoded before `done` is made: it may own what argv points into).
  void enqueue(reply_handler done, std::uint32_t replies);
  void track(reply_handler done, std::uint32_t replies);
  void do_write();
  void arm_deadline();
  void drop(std::error_code ec, const std::string& why);
  void close_socket();
  void stop();
  void send_eval(script_set::id id, command args, reply_handler done, bool retried);
  void send_now(const command& args, reply_handler done);

  // A command made while the connection is being made waits for it (the first connect of a
  // backend that starts and is used at once, or a reconnect under way); while it is down between
  // attempts, the command fails at once.
  struct deferred {
    command args;
    reply_handler done;
    std::optional<script_set::id> script;
  };
  std::vector<deferred> waiting;
  void not_up(deferred d);
  void fail_waiting(std::error_code ec);
};

void connection::state::do_connect() {
  ph = phase::connecting;
  const auto g = ++gen;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(opts.host, ec);
  if (ec) {
    // A host name: resolved here, blocking (once per attempt; Redis addresses are usually IPs).
    tcp::resolver resolver(io);
    const auto found = resolver.resolve(opts.host, std::to_string(opts.port), ec);
    if (ec || found.empty()) return drop(make_error(errc::not_connected), "resolve " + opts.host + ": " + ec.message());
    address = found.begin()->endpoint().address();
  }
  sock = tcp::socket(io);
  auto self = shared_from_this();
  sock.async_connect({address, opts.port}, [self, g](const boost::system::error_code& e) {
    if (g == self->gen && self->ph == phase::connecting) self->on_connect(e);
  });
  connect_timer.expires_after(opts.timeout);
  connect_timer.async_wait([self, g](const boost::system::error_code& e) {
    if (!e && g == self->gen && self->ph == phase::connecting)
      self->drop(make_error(errc::timeout), "connect timed out");
  });
}

void connection::state::on_connect(const boost::system::error_code& ec) {
  connect_timer.cancel();
  if (ec) return drop(make_error(errc::not_connected), "connect: " + ec.message());
  boost::system::error_code ig;
  sock.set_option(tcp::no_delay(true), ig);
  // A Redis that vanished without a FIN (host gone) is noticed even on an idle connection.
  sock.set_option(asio::socket_base::keep_alive(true), ig);
  reader = make_reader();
  ph = phase::handshake;
  do_read();
  // One round trip before the connection counts as up: a Redis that accepts and then refuses
  // (maxclients, loading) goes through the backoff, not a reconnect loop. The scripts' loads are
  // that round trip when there are scripts.
  const auto loads = scripts.load_commands();
  if (loads.empty()) {
    argv = {"PING"};
    enqueue(
        [this](const redisReply* r, std::error_code e) {
          if (!r) return;  // no reply: the connection is being dropped already
          if (e) return drop(e, "handshake: " + std::string(view(r)));
          became_up();
        },
        1);
    return;
  }
  for (script_set::id i = 0; i < loads.size(); ++i) {
    argv.assign(loads[i].begin(), loads[i].end());
    enqueue(
        [this, i](const redisReply* r, std::error_code e) {
          if (!r) return;  // no reply: the connection is being dropped already
          if (!e && r->type != REDIS_REPLY_STRING) e = make_error(errc::bad_reply);
          if (e) return drop(e, "SCRIPT LOAD: " + std::string(view(r)));
          scripts.on_loaded(i, view(r));
          if (scripts.all_loaded()) became_up();
        },
        1);
  }
}

void connection::state::became_up() {
  ph = phase::up;
  up_flag = true;
  retry.reset();
  reconnects.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("{}: connected to redis {}", opts.name, where());
  reported_down = false;
  std::vector<deferred> ready;
  ready.swap(waiting);
  const auto g = gen;
  for (auto& d : ready) {
    if (g != gen || ph != phase::up) {
      // A handler dropped or stopped the connection meanwhile.
      if (d.done) d.done(nullptr, make_error(ph == phase::stopped ? errc::stopped : errc::not_connected));
      continue;
    }
    if (d.script)
      send_eval(*d.script, std::move(d.args), std::move(d.done), false);
    else
      send_now(d.args, std::move(d.done));
  }
  if (g == gen && ph == phase::up && connected_cb) connected_cb();
}

void connection::state::not_up(deferred d) {
  if (ph == phase::connecting || ph == phase::handshake) {
    if (waiting.size() + pending.size() < opts.max_queue) {
      waiting.push_back(std::move(d));
      return;
    }
    errors.fetch_add(1, std::memory_order_relaxed);
    if (d.done) d.done(nullptr, make_error(errc::queue_full));
    return;
  }
  errors.fetch_add(1, std::memory_order_relaxed);
  if (d.done) d.done(nullptr, make_error(ph == phase::stopped ? errc::stopped : errc::not_connected));
}

void connection::state::fail_waiting(std::error_code ec) {
  std::vector<deferred> left;
  left.swap(waiting);
  errors.fetch_add(left.size(), std::memory_order_relaxed);
  for (auto& d : left)
    if (d.done) d.done(nullptr, ec);
}

void connection::state::send_now(const command& args, reply_handler done) {
  argv.assign(args.begin(), args.end());
  std::uint32_t replies = 1;
  if (opts.subscriber && !args.empty() && (args[0] == "SUBSCRIBE" || args[0] == "UNSUBSCRIBE"))
    replies = static_cast<std::uint32_t>(args.size() - 1);
  enqueue(std::move(done), replies);
}

void connection::state::do_read() {
  auto self = shared_from_this();
  sock.async_read_some(asio::buffer(rbuf), [self, g = gen](const boost::system::error_code& ec, std::size_t n) {
    if (g == self->gen && self->ph != phase::stopped) self->on_read(ec, n);
  });
}

void connection::state::on_read(const boost::system::error_code& ec, std::size_t n) {
  if (ec)
    return drop(make_error(errc::disconnected),
                ec == asio::error::eof ? std::string("connection closed by redis") : "read: " + ec.message());
  redisReaderFeed(reader, rbuf.data(), n);
  const auto g = gen;
  while (true) {
    void* r = nullptr;
    if (redisReaderGetReply(reader, &r) != REDIS_OK)
      return drop(make_error(errc::bad_reply), std::string("protocol error: ") + reader->errstr);
    if (!r) break;
    reply_ptr reply(static_cast<redisReply*>(r));
    dispatch(reply.get());
    if (g != gen || ph == phase::stopped) return;  // a handler dropped or stopped the connection
  }
  if (read_cb && ph == phase::up) {
    read_cb();
    if (g != gen || ph == phase::stopped) return;
  }
  arm_deadline();
  do_read();
}

void connection::state::dispatch(const redisReply* r) {
  const bool error = r->type == REDIS_REPLY_ERROR;
  if (error) errors.fetch_add(1, std::memory_order_relaxed);
  if (opts.subscriber && ph == phase::up && !error) {
    // Confirmations complete the (UN)SUBSCRIBE that waits for them; every reply is a push.
    if (is_confirmation(r)) {
      bool unexpected = false;
      auto e = pending.on_reply(unexpected);
      depth = pending.size();
      if (e && e->done) e->done(r, {});
    }
    if (push_cb) push_cb(r);
    return;
  }
  bool unexpected = false;
  auto e = pending.on_reply(unexpected);
  depth = pending.size();
  if (unexpected) {
    // Redis speaks first only to refuse (maxclients) before it closes: say why.
    return drop(make_error(errc::bad_reply),
                error ? "redis: " + std::string(view(r)) : std::string("a reply nobody waited for"));
  }
  if (e && e->done) e->done(r, error ? make_error(errc::error_reply) : std::error_code());
}

void connection::state::enqueue(reply_handler done, std::uint32_t replies) {
  if (pending.full()) {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (done) done(nullptr, make_error(errc::queue_full));
    return;
  }
  encode(out, argv);
  track(std::move(done), replies);
}

void connection::state::track(reply_handler done, std::uint32_t replies) {
  pending.push(std::move(done), clock::now() + opts.timeout, replies);
  depth = pending.size();
  commands.fetch_add(1, std::memory_order_relaxed);
  arm_deadline();
  do_write();
}

void connection::state::do_write() {
  if (writing || out.empty()) return;
  // Everything appended since the last write goes in one write: the pipeline.
  auto buf = std::make_shared<std::string>();
  buf->swap(out);
  writing = true;
  batches.fetch_add(1, std::memory_order_relaxed);
  auto self = shared_from_this();
  asio::async_write(sock, asio::buffer(*buf), [self, buf, g = gen](const boost::system::error_code& ec, std::size_t) {
    if (g != self->gen || self->ph == phase::stopped) return;
    self->writing = false;
    if (ec) return self->drop(make_error(errc::disconnected), "write: " + ec.message());
    self->do_write();
  });
}

void connection::state::arm_deadline() {
  // One timer for the oldest waiting command (replies come in order, so it is the first due).
  if (deadline_armed) return;
  const auto due = pending.next_deadline();
  if (!due) return;
  deadline_armed = true;
  deadline_timer.expires_at(*due);
  auto self = shared_from_this();
  deadline_timer.async_wait([self, g = gen](const boost::system::error_code& ec) {
    if (g != self->gen || self->ph == phase::stopped) return;
    self->deadline_armed = false;
    if (ec) return;
    if (self->pending.overdue(clock::now()))
      return self->drop(make_error(errc::timeout),
                        "no reply within " + std::to_string(self->opts.timeout.count()) + " ms");
    self->arm_deadline();
  });
}

void connection::state::close_socket() {
  ++gen;
  boost::system::error_code ig;
  sock.close(ig);
  connect_timer.cancel();
  deadline_timer.cancel();
  retry_timer.cancel();
  deadline_armed = false;
  writing = false;
  out.clear();
  if (reader) redisReaderFree(reader);
  reader = nullptr;
  up_flag = false;
  scripts.connection_lost();
}

void connection::state::drop(std::error_code ec, const std::string& why) {
  if (ph == phase::stopped) return;
  const bool was_up = ph == phase::up;
  close_socket();
  ph = phase::idle;
  const auto g = gen;
  // Logged once per outage, not once per retry.
  if (!reported_down) {
    spdlog::warn("{}: redis {} unreachable ({}); retrying{}{}", opts.name, where(), why,
                 opts.while_down.empty() ? "" : ". ", opts.while_down);
    reported_down = true;
  } else {
    spdlog::debug("{}: redis {}: {}", opts.name, where(), why);
  }
  errors.fetch_add(pending.fail_all(ec), std::memory_order_relaxed);
  depth = 0;
  if (g == gen) fail_waiting(make_error(errc::not_connected));
  if (was_up && g == gen && disconnected_cb) disconnected_cb(ec);
  if (g != gen || ph != phase::idle) return;  // a handler stopped (or restarted) it
  auto self = shared_from_this();
  retry_timer.expires_after(retry.next());
  retry_timer.async_wait([self, g](const boost::system::error_code& e) {
    if (!e && g == self->gen && self->ph == phase::idle) self->do_connect();
  });
}

void connection::state::stop() {
  if (ph == phase::stopped) return;
  close_socket();
  ph = phase::stopped;
  stopped_flag = true;
  pending.fail_all(make_error(errc::stopped));
  fail_waiting(make_error(errc::stopped));
  depth = 0;
  // Nothing runs after stop(): release what the handlers hold.
  connected_cb = nullptr;
  read_cb = nullptr;
  disconnected_cb = nullptr;
  push_cb = nullptr;
}

void connection::state::send_eval(script_set::id id, command args, reply_handler done, bool retried) {
  if (pending.full()) {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (done) done(nullptr, make_error(errc::queue_full));
    return;
  }
  // Encoded first: the handler below takes `args` over (a resend after NOSCRIPT needs them).
  scripts.append_call(id, args, argv);
  encode(out, argv);
  track(
      [this, id, args = std::move(args), done = std::move(done), retried](const redisReply* r,
                                                                          std::error_code ec) mutable {
        if (ec == make_error(errc::error_reply) && !retried && script_set::is_noscript(view(r)) && ph == phase::up) {
          // Redis lost its script cache (SCRIPT FLUSH, a restart behind a proxy): load it once,
          // ahead of the resent call.
          if (scripts.on_noscript(id)) {
            argv = {"SCRIPT", "LOAD", scripts.body(id)};
            enqueue(
                [this, id](const redisReply* lr, std::error_code le) {
                  if (!le && lr->type == REDIS_REPLY_STRING) scripts.on_loaded(id, view(lr));
                },
                1);
          }
          return send_eval(id, std::move(args), std::move(done), true);
        }
        if (done) done(r, ec);
      },
      1);
}

// ---------------- connection ----------------

connection::connection(loop& l, connection_options o) : loop_(l), s_(std::make_shared<state>(l, std::move(o))) {}

connection::~connection() {
  if (!s_->stopped_flag.load()) stop_and_wait();
}

script_set::id connection::add_script(std::string body) { return s_->scripts.add(std::move(body)); }
void connection::on_connected(std::function<void()> f) { s_->connected_cb = std::move(f); }
void connection::on_disconnected(std::function<void(std::error_code)> f) { s_->disconnected_cb = std::move(f); }
void connection::on_push(std::function<void(const redisReply*)> f) { s_->push_cb = std::move(f); }
void connection::on_read(std::function<void()> f) { s_->read_cb = std::move(f); }

void connection::start() {
  loop_.post([s = s_] {
    if (s->ph == state::phase::idle) s->do_connect();
  });
}

void connection::send(const command& args, reply_handler done) {
  auto& s = *s_;
  if (s.ph != state::phase::up) return s.not_up({args, std::move(done), std::nullopt});
  s.send_now(args, std::move(done));
}

void connection::eval(script_set::id id, command args, reply_handler done) {
  auto& s = *s_;
  if (s.ph != state::phase::up) return s.not_up({std::move(args), std::move(done), id});
  s.send_eval(id, std::move(args), std::move(done), false);
}

bool connection::up() const noexcept { return s_->ph == state::phase::up; }
std::size_t connection::queued() const noexcept { return s_->pending.size(); }
void connection::stop() { s_->stop(); }

void connection::stop_and_wait() {
  if (loop_.in_loop_thread()) return s_->stop();
  std::promise<void> done;
  loop_.post([s = s_, &done] {
    s->stop();
    done.set_value();
  });
  done.get_future().wait();
}

bool connection::is_up() const noexcept { return s_->up_flag.load(std::memory_order_relaxed); }
std::uint64_t connection::reconnects() const noexcept { return s_->reconnects.load(std::memory_order_relaxed); }

void connection::append_metrics(std::string& out, const char* prefix, unsigned lines) const {
  const auto& s = *s_;
  auto line = [&](unsigned bit, const char* what, const char* type, const char* help, std::uint64_t v) {
    if (!(lines & bit)) return;
    const std::string name = std::string(prefix) + "_" + what;
    metrics::append_metric(out, name.c_str(), type, help, v);
  };
  auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  line(metric_up, "up", "gauge", "1 while connected to Redis.", is_up() ? 1 : 0);
  line(metric_batches, "batches_total", "counter", "Pipelines (socket writes) sent to Redis.", ld(s.batches));
  line(metric_commands, "commands_total", "counter", "Commands sent to Redis.", ld(s.commands));
  line(metric_errors, "errors_total", "counter", "Redis commands that failed or got an error reply.", ld(s.errors));
  line(metric_reconnects, "reconnects_total", "counter", "Connections made to Redis.", ld(s.reconnects));
  line(metric_queue, "queue", "gauge", "Redis commands waiting for their reply.", s.depth.load());
}

}  // namespace roomcast::redis
