// amqp_bare: the broker's own ceiling, measured with a bare rabbitmq-c client (no roomcast).
//
// One process, two connections to one broker: a publisher (this thread) and a consumer (its own
// thread). It declares a durable queue, publishes fixed-size messages to it through the default
// exchange and drains it; every body starts with the publish time (steady clock, same process), so
// the consumer measures publish->consume latency. Reports msgs/s at the consumer, latency
// p50/p99/max and the publisher's own figures.
//
//   amqp_bare --uri amqp://guest:guest@127.0.0.1:5673/ [flags]
//     --messages N        messages to publish (default 200000)
//     --seconds S         publish for at most S seconds (default 20); the consumer then gets
//                         --drain seconds more (default 10). Hard bound on runtime: S + drain + 5.
//     --size B            body bytes (default 200, >= 16)
//     --persistent 0|1    delivery mode 2 (persistent) or 1 (default 0)
//     --confirm none|window|each   publisher confirms: none; at most --window unconfirmed
//                         (pipelined); or wait for each confirm before the next publish (none)
//     --window W          (default 1000)
//     --rate R            paced publishing at R msgs/s (default 0 = as fast as possible)
//     --ack manual|none   consumer acks each message (prefetch --prefetch) or consumes no-ack
//     --prefetch P        (default 256)
//     --queue NAME        (default amqp_bare.<pid>; deleted at the end)
//     --warmup S          leave the first S seconds of publishes out of the latency (default 1
//                         when --rate is set, else 0)
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using sclock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(sclock::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "amqp_bare: %s\n", m.c_str());
  std::exit(2);
}

void check_rpc(amqp_connection_state_t c, const char* what) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
    die(std::string(what) + ": " + amqp_error_string2(r.library_error));
  die(std::string(what) + ": server exception " + std::to_string(r.reply.id));
}

struct config {
  std::string uri = "amqp://guest:guest@127.0.0.1:5673/";
  std::uint64_t messages = 200'000;
  double seconds = 20;
  double drain = 10;
  std::size_t size = 200;
  bool persistent = false;
  enum { none, window, each } confirm = none;
  std::uint64_t window_size = 1000;
  double rate = 0;
  bool manual_ack = true;
  std::uint16_t prefetch = 256;
  std::string queue;
  double warmup = -1;
};

amqp_connection_state_t open_conn(const config& cfg) {
  std::vector<char> buf(cfg.uri.begin(), cfg.uri.end());
  buf.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) die("bad --uri");
  if (info.vhost == nullptr || info.vhost[0] == '\0') info.vhost = const_cast<char*>("/");
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t* s = amqp_tcp_socket_new(c);
  if (!s || amqp_socket_open(s, info.host, info.port) != AMQP_STATUS_OK) die("cannot connect to the broker");
  const amqp_rpc_reply_t r = amqp_login(c, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) die("login failed");
  amqp_channel_open(c, 1);
  check_rpc(c, "channel.open");
  return c;
}

struct consumer_result {
  std::uint64_t received = 0;
  std::uint64_t out_of_order = 0;
  std::int64_t first_ns = 0, last_ns = 0;
  std::vector<std::uint32_t> lat_us;  // publishes after the warm-up only
};

std::atomic<bool> consumer_ready{false};
std::atomic<std::uint64_t> publish_total{UINT64_MAX};  // set when the publisher is done
std::atomic<std::int64_t> warmup_until_ns{0};

void consume(const config& cfg, std::int64_t hard_deadline, consumer_result& res) {
  amqp_connection_state_t c = open_conn(cfg);
  if (cfg.manual_ack) {
    amqp_basic_qos(c, 1, 0, cfg.prefetch, 0);
    check_rpc(c, "basic.qos");
  }
  amqp_basic_consume(c, 1, amqp_cstring_bytes(cfg.queue.c_str()), amqp_empty_bytes, 0, cfg.manual_ack ? 0 : 1, 0,
                     amqp_empty_table);
  check_rpc(c, "basic.consume");
  res.lat_us.reserve(std::min<std::uint64_t>(cfg.messages, 20'000'000));
  consumer_ready = true;
  std::uint64_t expect_seq = 0;
  std::int64_t drain_deadline = INT64_MAX;
  while (true) {
    const std::uint64_t total = publish_total.load();
    if (res.received >= total) break;
    const std::int64_t now = now_ns();
    if (now >= hard_deadline) break;
    if (total != UINT64_MAX && drain_deadline == INT64_MAX) drain_deadline = now + std::int64_t(cfg.drain * 1e9);
    if (now >= drain_deadline) break;
    amqp_maybe_release_buffers(c);
    amqp_envelope_t env;
    timeval tv{0, 100'000};
    const amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) continue;
    if (r.reply_type != AMQP_RESPONSE_NORMAL) die("consume failed");
    const std::int64_t t = now_ns();
    if (env.message.body.len >= 16) {
      std::int64_t sent;
      std::uint64_t seq;
      std::memcpy(&seq, env.message.body.bytes, 8);
      std::memcpy(&sent, static_cast<const char*>(env.message.body.bytes) + 8, 8);
      if (seq != expect_seq) ++res.out_of_order;
      expect_seq = seq + 1;
      if (sent >= warmup_until_ns.load(std::memory_order_relaxed))
        res.lat_us.push_back(std::uint32_t(std::min<std::int64_t>((t - sent) / 1000, UINT32_MAX)));
    }
    if (res.received == 0) res.first_ns = t;
    res.last_ns = t;
    ++res.received;
    if (cfg.manual_ack && amqp_basic_ack(c, 1, env.delivery_tag, 0) != AMQP_STATUS_OK) die("basic.ack failed");
    amqp_destroy_envelope(&env);
  }
  amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
}

// Publisher-side confirm bookkeeping (delivery tags 1, 2, …).
struct confirms {
  std::vector<bool> done;  // index = tag
  std::uint64_t low = 1;   // every tag < low is confirmed
  std::uint64_t acked = 0, nacked = 0;
  void mark(std::uint64_t tag, bool multiple, bool ack) {
    auto one = [&](std::uint64_t t) {
      if (t >= done.size() || done[t]) return;
      done[t] = true;
      ++(ack ? acked : nacked);
    };
    if (multiple)
      for (std::uint64_t t = low; t <= tag; ++t) one(t);
    else
      one(tag);
    while (low < done.size() && done[low]) ++low;
  }
};

// Reads confirm frames until `deadline_ns` (0 = just what is there now). Returns false on timeout.
bool pump(amqp_connection_state_t c, confirms& cf, std::int64_t deadline_ns) {
  while (true) {
    std::int64_t left = deadline_ns - now_ns();
    if (left < 0) left = 0;
    timeval tv{time_t(left / 1'000'000'000), suseconds_t((left % 1'000'000'000) / 1000)};
    amqp_frame_t f;
    const int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) return false;
    if (rc != AMQP_STATUS_OK) die(std::string("reading confirms: ") + amqp_error_string2(rc));
    if (f.frame_type != AMQP_FRAME_METHOD) continue;
    switch (f.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* a = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
        cf.mark(a->delivery_tag, a->multiple, true);
        return true;
      }
      case AMQP_BASIC_NACK_METHOD: {
        const auto* n = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
        cf.mark(n->delivery_tag, n->multiple, false);
        return true;
      }
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD:
        die("broker closed the publisher's channel/connection");
      default:
        break;
    }
  }
}

std::uint32_t pct(const std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const std::size_t i = std::min(v.size() - 1, std::size_t(p * double(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::puts(
          "usage: amqp_bare --uri URI [--messages N] [--seconds S] [--drain S] [--size B] [--persistent 0|1]\n"
          "                 [--confirm none|window|each] [--window W] [--rate R] [--ack manual|none]\n"
          "                 [--prefetch P] [--queue NAME] [--warmup S]");
      return 0;
    }
    if (i + 1 >= argc) die("missing value for " + a);
    const std::string v = argv[++i];
    if (a == "--uri")
      cfg.uri = v;
    else if (a == "--messages")
      cfg.messages = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--seconds")
      cfg.seconds = std::atof(v.c_str());
    else if (a == "--drain")
      cfg.drain = std::atof(v.c_str());
    else if (a == "--size")
      cfg.size = std::max<std::size_t>(16, std::strtoull(v.c_str(), nullptr, 10));
    else if (a == "--persistent")
      cfg.persistent = v == "1";
    else if (a == "--confirm") {
      if (v == "none")
        cfg.confirm = config::none;
      else if (v == "window")
        cfg.confirm = config::window;
      else if (v == "each")
        cfg.confirm = config::each;
      else
        die("--confirm none|window|each");
    } else if (a == "--window")
      cfg.window_size = std::max<std::uint64_t>(1, std::strtoull(v.c_str(), nullptr, 10));
    else if (a == "--rate")
      cfg.rate = std::atof(v.c_str());
    else if (a == "--ack")
      cfg.manual_ack = v != "none";
    else if (a == "--prefetch")
      cfg.prefetch = std::uint16_t(std::atoi(v.c_str()));
    else if (a == "--queue")
      cfg.queue = v;
    else if (a == "--warmup")
      cfg.warmup = std::atof(v.c_str());
    else
      die("unknown flag " + a);
  }
  if (cfg.queue.empty()) cfg.queue = "amqp_bare." + std::to_string(::getpid());
  if (cfg.warmup < 0) cfg.warmup = cfg.rate > 0 ? 1.0 : 0.0;

  amqp_connection_state_t pub = open_conn(cfg);
  amqp_queue_declare(pub, 1, amqp_cstring_bytes(cfg.queue.c_str()), 0, /*durable*/ 1, 0, /*auto_delete*/ 0,
                     amqp_empty_table);
  check_rpc(pub, "queue.declare");
  amqp_queue_purge(pub, 1, amqp_cstring_bytes(cfg.queue.c_str()));
  check_rpc(pub, "queue.purge");
  if (cfg.confirm != config::none) {
    amqp_confirm_select(pub, 1);
    check_rpc(pub, "confirm.select");
  }

  const std::int64_t t_start_prog = now_ns();
  const std::int64_t hard_deadline = t_start_prog + std::int64_t((cfg.seconds + cfg.drain + 5) * 1e9);
  warmup_until_ns = INT64_MAX;  // no latency samples until the publisher starts
  consumer_result cres;
  std::thread cons([&] { consume(cfg, hard_deadline, cres); });
  while (!consumer_ready) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
  props.delivery_mode = cfg.persistent ? 2 : 1;
  props.content_type = amqp_cstring_bytes("application/octet-stream");
  std::string body(cfg.size, 'x');
  confirms cf;
  cf.done.assign(std::size_t(cfg.messages) + 2, false);

  const std::int64_t t0 = now_ns();
  warmup_until_ns = t0 + std::int64_t(cfg.warmup * 1e9);
  const std::int64_t pub_deadline = t0 + std::int64_t(cfg.seconds * 1e9);
  const double interval = cfg.rate > 0 ? 1e9 / cfg.rate : 0;
  std::uint64_t sent = 0;
  std::int64_t max_lag_ns = 0;
  while (sent < cfg.messages) {
    std::int64_t now = now_ns();
    if (now >= pub_deadline) break;
    if (interval > 0) {
      const std::int64_t due = t0 + std::int64_t(double(sent) * interval);
      if (now < due) {
        // Wait at least 1 ms, then send everything that came due: rabbitmq-c's wait takes whole
        // milliseconds, so a wait shorter than that returned at once and the publisher spun on
        // a core of the machine it measures. Each message carries its send time.
        const std::int64_t until = std::max(due, now + 1'500'000);
        if (cfg.confirm == config::none)
          std::this_thread::sleep_for(std::chrono::nanoseconds(until - now));
        else
          pump(pub, cf, until);  // read confirms while waiting
        continue;
      }
      max_lag_ns = std::max(max_lag_ns, now - due);
    }
    if (cfg.confirm == config::window && sent - (cf.acked + cf.nacked) >= cfg.window_size) {
      pump(pub, cf, std::min(pub_deadline, now + 100'000'000));
      continue;
    }
    const std::int64_t ts = now_ns();
    std::memcpy(body.data(), &sent, 8);
    std::memcpy(body.data() + 8, &ts, 8);
    const int rc = amqp_basic_publish(pub, 1, amqp_empty_bytes, amqp_cstring_bytes(cfg.queue.c_str()), 0, 0, &props,
                                      amqp_bytes_t{body.size(), body.data()});
    if (rc != AMQP_STATUS_OK) die(std::string("basic.publish: ") + amqp_error_string2(rc));
    ++sent;
    if (cfg.confirm == config::each) {
      while (cf.acked + cf.nacked < sent && now_ns() < hard_deadline) pump(pub, cf, hard_deadline);
    } else if (cfg.confirm == config::window) {
      while (pump(pub, cf, 0)) {
      }
    }
  }
  const std::int64_t t_sent = now_ns();
  // Wait for the outstanding confirms.
  if (cfg.confirm != config::none)
    while (cf.acked + cf.nacked < sent && now_ns() < hard_deadline) pump(pub, cf, hard_deadline);
  const std::int64_t t_confirmed = now_ns();
  publish_total = sent;
  cons.join();

  amqp_queue_delete(pub, 1, amqp_cstring_bytes(cfg.queue.c_str()), 0, 0);
  amqp_get_rpc_reply(pub);
  amqp_channel_close(pub, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(pub, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(pub);

  auto& lat = cres.lat_us;
  std::sort(lat.begin(), lat.end());
  const double pub_s = double(t_sent - t0) / 1e9;
  const double conf_s = double(t_confirmed - t0) / 1e9;
  const double e2e_s = cres.received ? double(cres.last_ns - t0) / 1e9 : 0;
  const char* cm = cfg.confirm == config::none ? "none" : cfg.confirm == config::window ? "window" : "each";
  std::printf("amqp_bare: size=%zu persistent=%d confirm=%s window=%llu rate=%.0f ack=%s prefetch=%u\n", cfg.size,
              int(cfg.persistent), cm, (unsigned long long)cfg.window_size, cfg.rate,
              cfg.manual_ack ? "manual" : "none", unsigned(cfg.prefetch));
  std::printf(
      "  published %llu in %.3f s = %.0f msgs/s (publisher side); confirmed %llu (nacked %llu) by %.3f s = %.0f "
      "msgs/s\n",
      (unsigned long long)sent, pub_s, pub_s > 0 ? double(sent) / pub_s : 0.0, (unsigned long long)cf.acked,
      (unsigned long long)cf.nacked, conf_s,
      cfg.confirm != config::none && conf_s > 0 ? double(cf.acked) / conf_s : 0.0);
  std::printf(
      "  consumed %llu (lost %lld, out of order %llu); end-to-end %.0f msgs/s (first publish -> last consume, %.3f "
      "s)\n",
      (unsigned long long)cres.received, (long long)sent - (long long)cres.received,
      (unsigned long long)cres.out_of_order, e2e_s > 0 ? double(cres.received) / e2e_s : 0.0, e2e_s);
  std::printf(
      "  latency publish->consume (%zu samples after %.1f s warm-up): p50 %u us, p99 %u us, max %u us; "
      "publisher max lag behind schedule %.1f ms\n",
      lat.size(), cfg.warmup, pct(lat, 0.50), pct(lat, 0.99), lat.empty() ? 0u : lat.back(), double(max_lag_ns) / 1e6);
  return cres.received == sent && cf.nacked == 0 ? 0 : 1;
}
