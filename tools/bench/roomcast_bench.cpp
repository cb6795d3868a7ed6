// roomcast-bench: load generator for roomcast (and limit-server).
//
//   roomcast-bench MODE [flags]      MODE = surge | hold | fanout | churn | slow | user
//
// The parent forks --workers processes that open the WebSocket connections (one epoll loop each),
// publishes through POST /api/publish itself (fanout, slow, user), samples the server's CPU and
// RSS from /proc, merges the workers' results and prints a table (and --json, --plot).
#include "bench.hpp"
#include "ws_common.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace bench;

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "roomcast-bench: %s\n", msg.c_str());
  std::exit(2);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const auto p = s.find(sep);
    out.emplace_back(s.substr(0, p));
    if (p == std::string_view::npos) break;
    s.remove_prefix(p + 1);
  }
  return out;
}

endpoint parse_endpoint(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) die("bad host:port '" + s + "'");
  endpoint e;
  e.host = s.substr(0, colon);
  e.port = std::uint16_t(std::atoi(s.c_str() + colon + 1));
  e.addr.sin_family = AF_INET;
  e.addr.sin_port = htons(e.port);
  if (inet_pton(AF_INET, e.host == "localhost" ? "127.0.0.1" : e.host.c_str(), &e.addr.sin_addr) != 1)
    die("target must be an IPv4 address: '" + s + "'");
  return e;
}

const char* usage =
    "usage: roomcast-bench MODE [flags]\n"
    "  MODE: surge | hold | fanout | churn | slow | user\n"
    "  --target H:P[,H:P…]   WebSocket targets (round-robin)      --api H:P   publish target (default first target)\n"
    "  --connections N       surge/hold                            --concurrency N  connects in flight (default 1000)\n"
    "  --hold S              surge: hold time (10)                 --rate R    hold: connects/s; fanout/slow: msgs/s "
    "per room; user: msgs/s\n"
    "  --duration S          hold: hold time; fanout/slow/user: publish time (10)\n"
    "  --rooms R --members M fanout/slow (members per room)        --users U   user mode\n"
    "  --cycles N            churn                                  --slow-share F (0.1)  --slow-rcvbuf B (4096)\n"
    "  --payload B           padding bytes in each message's data   --grace S   wait for deliveries after publishing "
    "(3)\n"
    "  --payload-text 1      the padding is English-like words (compresses ~2-3x, like real text), not 'x'\n"
    "  --deflate 1           clients offer permessage-deflate; compressed frames are inflated to be checked\n"
    "  --flavor F            roomcast (default; also limit-server) | socketio (Engine.IO v4 over WebSocket,\n"
    "                        tools/bench/socketio) | nchan (nginx + Nchan, tools/bench/nchan): URL, handshake and "
    "publish request\n"
    "  --path-template T     default /demo/websocket/{room}/STU/{user}/{token}/pc  ({role} {platform} also replaced);\n"
    "                        socketio: /socket.io/?EIO=4&transport=websocket&room={room}; nchan: /sub/{room}\n"
    "  --target-spread S     index (default: connection i -> target i % T) | members (i -> (i / rooms) % T:\n"
    "                        every room's members spread over all targets)\n"
    "  --token T  --role R  --platform P  --api-key K  --api-conns N (4)\n"
    "  --api-batch N (1: one message per request; N > 1: messages due on a busy connection wait and\n"
    "               go out together, up to N per request, as a JSON array body)\n"
    "  --filter-every N  --filter-role R (THE)  every Nth message of a room carries \"roles\":[R]: members\n"
    "               of other roles skip it, and it is not expected at them (the cost of filtering)\n"
    "  --sources A,B,…       source addresses (127.0.0.x)           --workers W (each < 19000 sockets)\n"
    "  --server-pid P[,P…]   sample CPU/RSS from /proc              --json FILE  --plot FILE.svg\n"
    "  --connect-timeout S (10)  --timeout S (hard cap, 120)  --seed N\n";

config parse_args(int argc, char** argv) {
  if (argc < 2) die(std::string("missing mode\n") + usage);
  config c;
  c.mode_name = argv[1];
  if (c.mode_name == "-h" || c.mode_name == "--help") {
    std::fputs(usage, stdout);
    std::exit(0);
  }
  static const std::map<std::string, mode> modes = {{"surge", mode::surge},   {"hold", mode::hold},
                                                    {"fanout", mode::fanout}, {"churn", mode::churn},
                                                    {"slow", mode::slow},     {"user", mode::user}};
  auto it = modes.find(c.mode_name);
  if (it == modes.end()) die("unknown mode '" + c.mode_name + "'\n" + usage);
  c.m = it->second;
  std::string api;
  bool path_given = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) die(a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--target") {
      for (auto& t : split(v, ',')) c.targets.push_back(parse_endpoint(t));
    } else if (a == "--api")
      api = v;
    else if (a == "--path-template") {
      c.path_template = v;
      path_given = true;
    } else if (a == "--flavor") {
      c.flavor_name = v;
      if (v == "roomcast")
        c.fl = flavor::roomcast;
      else if (v == "socketio")
        c.fl = flavor::socketio;
      else if (v == "nchan")
        c.fl = flavor::nchan;
      else
        die("unknown flavor '" + v + "' (roomcast | socketio | nchan)");
    } else if (a == "--target-spread") {
      if (v == "members")
        c.spread_members = true;
      else if (v != "index")
        die("--target-spread: index | members");
    } else if (a == "--token")
      c.token = v;
    else if (a == "--role")
      c.role = v;
    else if (a == "--platform")
      c.platform = v;
    else if (a == "--api-key")
      c.api_key = v;
    else if (a == "--sources") {
      for (auto& s : split(v, ',')) {
        in_addr ad{};
        if (inet_pton(AF_INET, s.c_str(), &ad) != 1) die("bad source address " + s);
        c.sources.push_back(ad);
      }
    } else if (a == "--workers")
      c.workers = std::max(1, std::atoi(v.c_str()));
    else if (a == "--server-pid") {
      for (auto& p : split(v, ',')) c.server_pids.push_back(std::atoi(p.c_str()));
    } else if (a == "--json")
      c.json_file = v;
    else if (a == "--plot")
      c.plot_file = v;
    else if (a == "--timeout")
      c.timeout = std::atof(v.c_str());
    else if (a == "--connections" || a == "-n")
      c.connections = std::atol(v.c_str());
    else if (a == "--concurrency")
      c.concurrency = std::max(1L, std::atol(v.c_str()));
    else if (a == "--hold")
      c.hold = std::atof(v.c_str());
    else if (a == "--rate")
      c.rate = std::atof(v.c_str());
    else if (a == "--duration")
      c.duration = std::atof(v.c_str());
    else if (a == "--rooms")
      c.rooms = std::max(1L, std::atol(v.c_str()));
    else if (a == "--members")
      c.members = std::atol(v.c_str());
    else if (a == "--users")
      c.users = std::atol(v.c_str());
    else if (a == "--cycles")
      c.cycles = std::atol(v.c_str());
    else if (a == "--slow-share")
      c.slow_share = std::atof(v.c_str());
    else if (a == "--slow-rcvbuf")
      c.slow_rcvbuf = std::atoi(v.c_str());
    else if (a == "--payload")
      c.payload = std::max(0, std::atoi(v.c_str()));
    else if (a == "--payload-text")
      c.payload_text = v == "1" || v == "true" || v == "on";
    else if (a == "--deflate")
      c.deflate = v == "1" || v == "true" || v == "on";
    else if (a == "--connect-timeout")
      c.connect_timeout = std::atof(v.c_str());
    else if (a == "--grace")
      c.grace = std::atof(v.c_str());
    else if (a == "--api-conns")
      c.api_conns = std::max(1, std::atoi(v.c_str()));
    else if (a == "--api-batch")
      c.api_batch = std::max(1, std::atoi(v.c_str()));
    else if (a == "--filter-every")
      c.filter_every = std::max(0, std::atoi(v.c_str()));
    else if (a == "--filter-role")
      c.filter_role = v;
    else if (a == "--seed")
      c.seed = std::strtoull(v.c_str(), nullptr, 10);
    else
      die("unknown flag " + a + "\n" + usage);
  }
  if (c.targets.empty()) die("--target is required");
  if (!path_given && c.fl == flavor::socketio) c.path_template = "/socket.io/?EIO=4&transport=websocket&room={room}";
  if (!path_given && c.fl == flavor::nchan) c.path_template = "/sub/{room}";
  if (c.fl == flavor::nchan && c.api_batch > 1) die("--api-batch > 1 is not supported with --flavor nchan");
  if (c.fl == flavor::nchan && c.m == mode::user) die("user mode is not supported with --flavor nchan");
  c.api = api.empty() ? c.targets.front() : parse_endpoint(api);
  if (c.m == mode::fanout || c.m == mode::slow) c.connections = c.rooms * c.members;
  if (c.m == mode::user) c.connections = c.users;
  if (c.m == mode::churn) c.connections = c.cycles;
  if ((c.m == mode::fanout || c.m == mode::slow || c.m == mode::user) && c.rate <= 0) die("--rate is required");
  if (c.m != mode::churn && (c.connections + c.workers - 1) / c.workers >= 19000)
    die("more than 19000 sockets per worker: raise --workers");
  if (c.timeout <= 5) die("--timeout must be > 5 s");
  return c;
}

// ---- server sampling (/proc) ------------------------------------------------------------------
struct server_sample {
  double cpu_s = 0;
  long rss_kib = 0;
  bool ok = false;
};

server_sample sample_servers(const std::vector<int>& pids) {
  server_sample s;
  if (pids.empty()) return s;
  s.ok = true;
  static const double tck = double(sysconf(_SC_CLK_TCK));
  for (int pid : pids) {
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(st)), {});
    const auto rp = all.rfind(')');
    if (rp == std::string::npos) {
      s.ok = false;
      continue;
    }
    std::istringstream in(all.substr(rp + 2));
    std::vector<std::string> f;
    for (std::string x; in >> x;) f.push_back(x);
    if (f.size() > 12) s.cpu_s += (std::stod(f[11]) + std::stod(f[12])) / tck;
    std::ifstream ss("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(ss, line);)
      if (line.rfind("VmRSS:", 0) == 0) s.rss_kib += std::atol(line.c_str() + 6);
  }
  return s;
}

// ---- parent -----------------------------------------------------------------------------------
struct child {
  pid_t pid = -1;
  int ctl = -1, out = -1;
  std::string buf;
  bool ready = false, done = false, result_started = false;
};

struct api_conn {
  int fd = -1;
  bool busy = false;
  std::string in, out;
  std::int64_t sent_ns = 0;
  std::vector<std::uint32_t> targets;  // in the request in flight
  std::string pending;                 // batch mode: items waiting for the connection
  std::vector<std::uint32_t> pending_targets;
};

struct parent {
  config& cfg;
  results agg;
  std::vector<child> kids;
  int ep = -1;
  std::int64_t next_sample = 0;
  server_sample s_start, s_open, s_pub_start, s_pub_end, s_end;
  long rss_peak = 0;
  std::vector<std::pair<double, long>> rss_series;  // (s since t0, KiB)
  // publisher state
  std::vector<api_conn> api;
  std::map<std::uint32_t, std::uint64_t> seq, published_ok, published_filtered_ok;
  // In api_conn::targets, a message that the members are filtered out of (--filter-every).
  static constexpr std::uint32_t filtered_bit = 0x80000000u;
  std::map<int, std::uint64_t> publish_status;
  std::uint64_t published_sent = 0, publish_lag_max_us = 0, publish_dropped = 0, api_errors = 0;
  std::int64_t pub_start = 0, pub_end = 0, all_open_ns = 0;
  std::mt19937_64 rng;

  explicit parent(config& c) : cfg(c), rng(c.seed) {}

  void sample() {
    const auto s = sample_servers(cfg.server_pids);
    if (!s.ok) return;
    rss_peak = std::max(rss_peak, s.rss_kib);
    rss_series.emplace_back(double(now_ns() - cfg.t0) / 1e9, s.rss_kib);
  }

  void spawn() {
    const long n = cfg.connections;
    for (int w = 0; w < cfg.workers; ++w) {
      int ctl[2], out[2];
      if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) die("pipe failed");
      const long first = n * w / cfg.workers, last = n * (w + 1) / cfg.workers;
      const pid_t pid = fork();
      if (pid < 0) die("fork failed");
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(unsigned(cfg.timeout) + 15);  // a worker never outlives the run
        ::close(ctl[1]);
        ::close(out[0]);
        for (auto& k : kids) {
          ::close(k.ctl);
          ::close(k.out);
        }
        std::_Exit(run_worker(cfg, w, first, last, ctl[0], out[1]));
      }
      ::close(ctl[0]);
      ::close(out[1]);
      child k;
      k.pid = pid;
      k.ctl = ctl[1];
      k.out = out[0];
      fcntl(k.out, F_SETFL, O_NONBLOCK);
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u64 = std::uint64_t(kids.size());
      epoll_ctl(ep, EPOLL_CTL_ADD, k.out, &e);
      kids.push_back(std::move(k));
    }
  }

  void on_child(child& k) {
    char b[65536];
    bool eof = false;
    while (true) {
      const ssize_t n = ::read(k.out, b, sizeof b);
      if (n > 0) {
        k.buf.append(b, std::size_t(n));
        continue;
      }
      if (n == 0) eof = true;
      break;
    }
    std::size_t pos = 0, nl;
    while ((nl = k.buf.find('\n', pos)) != std::string::npos) {
      const std::string line = k.buf.substr(pos, nl - pos);
      pos = nl + 1;
      if (line == "READY" || line == "DONE")
        k.ready = true;
      else if (line == "RESULT")
        k.result_started = true;
      else if (line == "END")
        k.done = true;
      else if (k.result_started && !k.done)
        agg.parse_line(line);
    }
    k.buf.erase(0, pos);
    if (eof) {
      if (!k.done) agg.add("workers_lost");
      k.done = true;
      epoll_ctl(ep, EPOLL_CTL_DEL, k.out, nullptr);
    }
  }

  // ---- publisher ----
  void api_connect() {
    for (int i = 0; i < cfg.api_conns; ++i) {
      api_conn a;
      a.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(a.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      timeval tv{5, 0};
      setsockopt(a.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (::connect(a.fd, reinterpret_cast<const sockaddr*>(&cfg.api.addr), sizeof cfg.api.addr) < 0) {
        std::fprintf(stderr, "roomcast-bench: cannot connect to API %s: %s\n", cfg.api.text().c_str(),
                     std::strerror(errno));
        ::close(a.fd);
        continue;
      }
      fcntl(a.fd, F_SETFL, O_NONBLOCK);
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u64 = (std::uint64_t(1) << 32) | api.size();
      epoll_ctl(ep, EPOLL_CTL_ADD, a.fd, &e);
      api.push_back(std::move(a));
    }
  }

  std::string padding() {
    if (cfg.payload <= 0) return "";
    if (!cfg.payload_text) return R"(,"p":")" + std::string(std::size_t(cfg.payload), 'x') + '"';
    // Words drawn from a small vocabulary, different in every message: compresses about as much as
    // the text of real classroom messages (repeated keys and words, little else).
    static constexpr const char* words[] = {
        "the",     "students", "answer", "question", "teacher", "lesson", "page",  "chapter",  "read",
        "write",   "example",  "number", "prime",    "divide",  "sum",    "table", "homework", "next",
        "minutes", "please",   "open",   "your",     "book",    "class",  "today", "exercise", "check"};
    std::string p = R"(,"p":")";
    while (p.size() < std::size_t(cfg.payload) + 6) {
      p += words[rng() % (sizeof words / sizeof *words)];
      p += rng() % 7 == 0 ? ". " : " ";
    }
    p.resize(std::size_t(cfg.payload) + 6);
    return p + '"';
  }

  // Target of the next publish; each target is pinned to one API connection (target % conns) so
  // that a target's messages are sent one after the other and any reordering is the server's.
  std::uint32_t next_target() {
    if (cfg.m == mode::user) return std::uint32_t(rng() % std::uint64_t(std::max(1L, cfg.users)));
    return std::uint32_t(published_sent % std::uint64_t(cfg.rooms));
  }

  void publish_one(api_conn& a, std::uint32_t target, std::int64_t scheduled) {
    const std::uint64_t s = seq[target]++;
    const std::int64_t now = now_ns();
    publish_lag_max_us =
        std::max<std::uint64_t>(publish_lag_max_us, std::uint64_t(std::max<std::int64_t>(0, now - scheduled) / 1000));
    static const std::string pad = padding();
    if (cfg.fl == flavor::nchan) {  // POST /pub/<room>, the data object is the body
      ++published_sent;
      a.targets.assign(1, target);
      send_request(a, R"({"t":)" + std::to_string(now) + R"(,"s":)" + std::to_string(s) + pad + "}",
                   "/pub/r" + std::to_string(target));
      return;
    }
    std::string body = cfg.m == mode::user ? R"({"user":"u)" : R"({"room":"r)";
    body +=
        std::to_string(target) + R"(","data":{"t":)" + std::to_string(now) + R"(,"s":)" + std::to_string(s) + pad + "}";
    if (cfg.filter_every > 0 && cfg.m != mode::user && s % std::uint64_t(cfg.filter_every) == 0 &&
        cfg.filter_role != cfg.role) {
      body += R"(,"roles":[")" + cfg.filter_role + R"("])";
      target |= filtered_bit;
    }
    body += "}";
    ++published_sent;
    if (cfg.api_batch == 1) {
      a.targets.assign(1, target);
      send_request(a, body);
      return;
    }
    a.pending += a.pending.empty() ? "[" : ",";
    a.pending += body;
    a.pending_targets.push_back(target);
    if (!a.busy) flush_batch(a);
  }

  void flush_batch(api_conn& a) {
    if (a.pending_targets.empty() || a.busy) return;
    // Up to api_batch items go now; the rest stay pending for the next answer.
    std::size_t take = std::min<std::size_t>(std::size_t(cfg.api_batch), a.pending_targets.size());
    std::string body;
    if (take == a.pending_targets.size()) {
      body = std::move(a.pending);
      body += "]";
      a.pending.clear();
      a.targets = std::move(a.pending_targets);
      a.pending_targets.clear();
    } else {
      // The end of item `take`: items are the bench's own objects (no braces inside strings).
      std::size_t pos = 1, depth = 0, items = 0;
      for (; pos < a.pending.size() && items < take; ++pos) {
        if (a.pending[pos] == '{')
          ++depth;
        else if (a.pending[pos] == '}' && --depth == 0)
          ++items;
      }
      body = a.pending.substr(0, pos) + "]";
      a.pending = "[" + a.pending.substr(pos + 1);
      a.targets.assign(a.pending_targets.begin(), a.pending_targets.begin() + std::ptrdiff_t(take));
      a.pending_targets.erase(a.pending_targets.begin(), a.pending_targets.begin() + std::ptrdiff_t(take));
    }
    send_request(a, body);
  }

  void send_request(api_conn& a, const std::string& body, const std::string& path = "/api/publish") {
    std::string req = "POST " + path + " HTTP/1.1\r\nHost: " + cfg.api.text() +
                      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    if (!cfg.api_key.empty()) req += "X-API-Key: " + cfg.api_key + "\r\n";
    req += "\r\n" + body;
    a.busy = true;
    a.sent_ns = now_ns();
    // blocking-ish write: the socket buffer is empty (one request in flight per connection)
    std::size_t off = 0;
    for (int tries = 0; off < req.size() && tries < 1000; ++tries) {
      const ssize_t n = ::send(a.fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n > 0)
        off += std::size_t(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        break;
      else
        usleep(100);
    }
    if (off < req.size()) {
      ++api_errors;
      a.busy = false;
    }
  }

  void on_api(api_conn& a) {
    char b[16384];
    while (true) {
      const ssize_t n = ::recv(a.fd, b, sizeof b, 0);
      if (n > 0) {
        a.in.append(b, std::size_t(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        ++api_errors;
        epoll_ctl(ep, EPOLL_CTL_DEL, a.fd, nullptr);
        ::close(a.fd);
        a.fd = -1;
        a.busy = true;  // unusable
        return;
      }
      break;
    }
    while (true) {
      const auto he = a.in.find("\r\n\r\n");
      if (he == std::string::npos) return;
      std::size_t cl = 0;
      {
        const std::string head = a.in.substr(0, he + 2);
        std::string lower = head;
        for (auto& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        const auto p = lower.find("\r\ncontent-length:");
        if (p != std::string::npos) cl = std::strtoul(head.c_str() + p + 17, nullptr, 10);
      }
      if (a.in.size() < he + 4 + cl) return;
      const int status = a.in.size() > 12 ? std::atoi(a.in.substr(9, 3).c_str()) : 0;
      publish_status[status] += a.targets.size();
      if (status == 200 || status == 202 || (status == 201 && cfg.fl == flavor::nchan))
        for (auto t : a.targets) {
          if (t & filtered_bit)
            published_filtered_ok[t & ~filtered_bit]++;
          else
            published_ok[t]++;
        }
      a.in.erase(0, he + 4 + cl);
      a.busy = false;
      a.targets.clear();
      flush_batch(a);
    }
  }

  // Runs the event loop until pred() or the deadline; `tick` (if set) runs every iteration and
  // returns the wanted epoll timeout in ms.
  void loop(const std::function<bool()>& pred, std::int64_t deadline, const std::function<int()>& tick = {}) {
    std::vector<epoll_event> evs(64);
    while (!pred() && now_ns() < deadline) {
      const std::int64_t now = now_ns();
      if (now >= next_sample) {
        sample();
        next_sample = now + 500'000'000;
      }
      int wait_ms = int(std::min<std::int64_t>((next_sample - now) / 1'000'000 + 1, 100));
      if (tick) wait_ms = std::min(wait_ms, tick());
      const int n = epoll_wait(ep, evs.data(), int(evs.size()), std::max(0, wait_ms));
      for (int i = 0; i < n; ++i) {
        const std::uint64_t u = evs[std::size_t(i)].data.u64;
        if (u >> 32)
          on_api(api[std::size_t(u & 0xffffffff)]);
        else
          on_child(kids[std::size_t(u)]);
      }
    }
  }

  void publish_phase() {
    api_connect();
    if (api.empty()) return;
    const double total_rate = cfg.m == mode::user ? cfg.rate : cfg.rate * double(cfg.rooms);
    const double interval = 1e9 / total_rate;
    const std::uint64_t total = std::uint64_t(total_rate * cfg.duration);
    s_pub_start = sample_servers(cfg.server_pids);
    pub_start = now_ns();
    const std::int64_t end = pub_start + std::int64_t(cfg.duration * 1e9);
    std::uint64_t k = 0;
    std::uint32_t target = 0;
    bool have_target = false;
    auto tick = [&]() -> int {
      const std::int64_t now = now_ns();
      while (k < total) {
        const std::int64_t due = pub_start + std::int64_t(double(k) * interval);
        // Sleep at least 1 ms and then send everything that came due: rounding down to 0 ms made
        // epoll_wait return at once, and above 1,000 msgs/s the load generator spun on a core of
        // the machine it measures. Each message carries its send time, so the burst adds no
        // latency to what is measured.
        if (now < due) return int((due - now + 999'999) / 1'000'000);
        if (!have_target) {
          target = next_target();
          have_target = true;
        }
        api_conn& a = api[target % api.size()];
        // Backlog bound: one request in flight, and in batch mode up to 4 batches waiting.
        if (cfg.api_batch == 1 ? a.busy : a.pending_targets.size() >= std::size_t(cfg.api_batch) * 4) return 1;
        publish_one(a, target, due);
        have_target = false;
        ++k;
      }
      return 100;
    };
    loop([&] { return k >= total; }, end + 1'000'000'000, tick);
    publish_dropped = total - k;
    // wait for outstanding responses, then for the deliveries
    loop(
        [&] {
          for (auto& a : api)
            if ((a.busy || !a.pending_targets.empty()) && a.fd >= 0) return false;
          return true;
        },
        now_ns() + std::int64_t(5'000'000'000));
    pub_end = now_ns();
    loop([] { return false; }, pub_end + std::int64_t(cfg.grace * 1e9));
    s_pub_end = sample_servers(cfg.server_pids);
    for (auto& a : api)
      if (a.fd >= 0) ::close(a.fd);
  }

  int run() {
    ep = epoll_create1(EPOLL_CLOEXEC);
    const std::int64_t deadline = cfg.t0 + std::int64_t(cfg.timeout * 1e9);
    s_start = sample_servers(cfg.server_pids);
    sample();
    spawn();
    auto all = [&](auto f) {
      return [this, f] {
        for (auto& k : kids)
          if (!(k.*f) && !k.done) return false;
        return true;
      };
    };
    loop(all(&child::ready), deadline - std::int64_t(3'000'000'000));
    all_open_ns = now_ns() - cfg.t0;
    s_open = sample_servers(cfg.server_pids);
    sample();
    if (cfg.m == mode::surge)
      loop([] { return false; },
           std::min(now_ns() + std::int64_t(cfg.hold * 1e9), deadline - std::int64_t(3'000'000'000)));
    if (cfg.m == mode::hold)
      loop([] { return false; },
           std::min(now_ns() + std::int64_t(cfg.duration * 1e9), deadline - std::int64_t(3'000'000'000)));
    if (cfg.m == mode::fanout || cfg.m == mode::slow || cfg.m == mode::user) publish_phase();
    for (auto& k : kids) {
      [[maybe_unused]] auto n = ::write(k.ctl, "S", 1);
    }
    loop(all(&child::done), std::max(deadline, now_ns() + std::int64_t(2'000'000'000)));
    for (auto& k : kids) {
      if (!k.done) {
        agg.add("workers_killed");
        ::kill(k.pid, SIGKILL);
      }
      int st = 0;
      waitpid(k.pid, &st, 0);
    }
    if (!cfg.server_pids.empty()) {
      // let the server notice the closes before the last sample
      loop([] { return false; }, now_ns() + std::int64_t(1'500'000'000));
      s_end = sample_servers(cfg.server_pids);
      sample();
    }
    return report();
  }

  // ---- report ----
  struct kv {
    std::string key, json, text;
  };
  std::vector<kv> rows;
  static std::string num(double v, int prec = 0) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
  }
  void put(const std::string& k, double v, int prec = 0) { rows.push_back({k, num(v, prec), num(v, prec)}); }
  void put_raw(const std::string& k, const std::string& json, const std::string& text) {
    rows.push_back({k, json, text});
  }

  int report() {
    const auto& c = agg.cnt;
    auto g = [&](const std::string& k) { return agg.get(k); };
    put_raw("mode", '"' + cfg.mode_name + '"', cfg.mode_name);
    if (cfg.fl != flavor::roomcast) put_raw("flavor", '"' + cfg.flavor_name + '"', cfg.flavor_name);
    std::string tg;
    for (auto& t : cfg.targets) tg += (tg.empty() ? "" : ",") + t.text();
    put_raw("targets", '"' + tg + '"', tg);
    put("workers", cfg.workers);
    put("connections_attempted", double(g("attempted")));
    put("connections_opened", double(g("opened")));
    std::string fj, ft;
    std::uint64_t fails = 0;
    for (auto& [k, v] : c)
      if (k.rfind("fail.", 0) == 0) {
        fj += (fj.empty() ? "" : ",") + ("\"" + k.substr(5) + "\":" + std::to_string(v));
        ft += (ft.empty() ? "" : " ") + k.substr(5) + "=" + std::to_string(v);
        fails += v;
      }
    put_raw("connect_failures", "{" + fj + "}", ft.empty() ? "0" : ft);
    put("connect_failures_total", double(fails));
    if (g("retry_after_seen")) {
      put("retry_after_seen", double(g("retry_after_seen")));
      put("retry_after_mean_s", double(g("retry_after_sum_s")) / double(g("retry_after_seen")), 2);
    }
    auto mx = [&](const std::string& k) { return agg.mx.count(k) ? agg.mx.at(k) : 0; };
    put("time_to_all_open_s", double(mx("last_open_ns")) / 1e9, 3);
    put("connect_phase_s", double(all_open_ns) / 1e9, 3);
    const hist& hs = agg.h["handshake"];
    put("handshake_p50_us", double(hs.pct(0.5)));
    put("handshake_p99_us", double(hs.pct(0.99)));
    put("handshake_max_us", double(hs.max));
    if (cfg.m == mode::churn) {
      const double secs = double(all_open_ns) / 1e9;
      put("churn_cycles", double(cfg.cycles));
      put("churn_closeframe", double(g("churn.closeframe")));
      put("churn_closeframe_noecho", double(g("churn.closeframe_noecho")));
      put("churn_close_timeout", double(g("churn.close_timeout")));
      put("churn_fin", double(g("churn.fin")));
      put("churn_rst", double(g("churn.rst")));
      put("churn_cycles_per_s", double(g("opened")) / std::max(secs, 1e-9), 0);
    }
    const bool pub = cfg.m == mode::fanout || cfg.m == mode::slow || cfg.m == mode::user;
    std::uint64_t expected = 0;
    if (pub) {
      std::uint64_t ok = 0;
      for (auto& [t, n] : published_ok) {
        ok += n;
        auto it = agg.targets.find(t);
        if (it != agg.targets.end()) expected += n * it->second.open;
      }
      const std::uint64_t received = g("received");
      put("messages_published", double(published_sent));
      put("messages_published_ok", double(ok));
      std::uint64_t filtered = 0;
      for (auto& [t, n] : published_filtered_ok) filtered += n;
      if (cfg.filter_every > 0) put("messages_published_filtered_away", double(filtered));
      std::string sj, st;
      for (auto& [s, n] : publish_status) {
        sj += (sj.empty() ? "" : ",") + ("\"" + std::to_string(s) + "\":" + std::to_string(n));
        st += (st.empty() ? "" : " ") + std::to_string(s) + "=" + std::to_string(n);
      }
      put_raw("publish_status", "{" + sj + "}", st);
      put("publish_errors", double(api_errors));
      put("publish_dropped_backlog", double(publish_dropped));
      put("publish_lag_max_us", double(publish_lag_max_us));
      put("deliveries_expected", double(expected));
      put("deliveries_received", double(received));
      const double loss = expected > received ? double(expected - received) : 0;
      put("loss", loss);
      put("loss_pct", expected ? 100.0 * loss / double(expected) : 0, 3);
      put("duplicates", double(g("duplicates")));
      put("reordered", double(g("reordered")));
      std::uint64_t peak = 0;
      for (auto& [s, n] : agg.per_sec) peak = std::max(peak, n);
      const double pub_s = double(pub_end - pub_start) / 1e9;
      put("deliveries_per_s_peak", double(peak));
      put("deliveries_per_s_avg", pub_s > 0 ? double(received) / pub_s : 0);
      const hist& hl = agg.h["latency"];
      put("latency_p50_us", double(hl.pct(0.5)));
      put("latency_p90_us", double(hl.pct(0.9)));
      put("latency_p99_us", double(hl.pct(0.99)));
      put("latency_p999_us", double(hl.pct(0.999)));
      put("latency_max_us", double(hl.max));
      if (cfg.m == mode::fanout && cfg.rooms <= 100) {
        std::string rj, rt;
        for (long r = 0; r < cfg.rooms; ++r) {
          const auto t = std::uint32_t(r);
          const std::uint64_t mem = agg.targets.count(t) ? agg.targets[t].open : 0;
          const std::uint64_t rec = agg.targets.count(t) ? agg.targets[t].received : 0;
          const std::uint64_t exp = (published_ok.count(t) ? published_ok[t] : 0) * mem;
          rj += (rj.empty() ? "" : ",") +
                ("{\"room\":\"r" + std::to_string(r) + "\",\"members\":" + std::to_string(mem) +
                 ",\"expected\":" + std::to_string(exp) + ",\"received\":" + std::to_string(rec) + "}");
          if (exp != rec)
            rt += (rt.empty() ? "" : " ") +
                  ("r" + std::to_string(r) + ":" + std::to_string(rec) + "/" + std::to_string(exp));
        }
        put_raw("rooms", "[" + rj + "]", rt.empty() ? "all rooms complete" : rt);
      }
    }
    std::string cj, ct;
    for (auto& [k, v] : c)
      if (k.rfind("close.", 0) == 0) {
        cj += (cj.empty() ? "" : ",") + ("\"" + k.substr(6) + "\":" + std::to_string(v));
        ct += (ct.empty() ? "" : " ") + k.substr(6) + "=" + std::to_string(v);
      }
    put_raw("server_closes_during_run", "{" + cj + "}", ct.empty() ? "0" : ct);
    put("open_at_end", double(g("open_at_end")));
    for (auto k : {"end.closeframe_echoed", "end.closeframe_noecho", "end.closeframe_timeout"})
      if (g(k)) put(k, double(g(k)));
    if (g("pings")) put("pings_answered", double(g("pings")));
    if (cfg.m == mode::slow) {
      put("slow_clients", double(g("slow_opened")));
      std::string sj, st;
      for (auto& [k, v] : c)
        if (k.rfind("slowclose.", 0) == 0) {
          sj += (sj.empty() ? "" : ",") + ("\"" + k.substr(10) + "\":" + std::to_string(v));
          st += (st.empty() ? "" : " ") + k.substr(10) + "=" + std::to_string(v);
        }
      put_raw("slow_end_state", "{" + sj + "}", st);
      auto v = agg.slow_close_ms;
      std::sort(v.begin(), v.end());
      const double ps = double(pub_start - cfg.t0) / 1e6;
      put("slow_end_times_known", double(v.size()));  // RDHUP/reset seen live, else: publish time of the last message
                                                      // the slow client got before its end
      if (!v.empty()) {
        put("slow_end_first_s_after_publish_start", (double(v.front()) - ps) / 1e3, 2);
        put("slow_end_median_s_after_publish_start", (double(v[v.size() / 2]) - ps) / 1e3, 2);
        put("slow_end_last_s_after_publish_start", (double(v.back()) - ps) / 1e3, 2);
      }
      put("slow_frames_read_after", double(g("slow_received") + g("slow_other_frames")));
    }
    for (auto k : {"other_frames", "bad_messages", "fragments", "protocol_errors", "workers_lost", "workers_killed",
                   "worker_deadline_hit"})
      if (g(k)) put(k, double(g(k)));
    if (s_start.ok) {
      const auto& end = s_end.ok ? s_end : s_open;
      put("server_cpu_s_total", end.cpu_s - s_start.cpu_s, 2);
      put("server_cpu_s_connect", s_open.cpu_s - s_start.cpu_s, 2);
      if (pub && s_pub_end.ok) {
        const double cpu = s_pub_end.cpu_s - s_pub_start.cpu_s;
        put("server_cpu_s_publish", cpu, 2);
        put("deliveries_per_server_cpu_s", cpu > 0 ? double(g("received")) / cpu : 0);
      }
      put("server_rss_start_kib", double(s_start.rss_kib));
      put("server_rss_open_kib", double(s_open.rss_kib));
      put("server_rss_peak_kib", double(rss_peak));
      put("server_rss_end_kib", double(end.rss_kib));
      const std::uint64_t opened = g("opened") - g("slow_opened") * 0;
      if (cfg.m != mode::churn && opened)
        put("server_bytes_per_connection", double(s_open.rss_kib - s_start.rss_kib) * 1024.0 / double(opened));
    }
    if (g("wire_bytes")) {
      put("wire_bytes_received", double(g("wire_bytes")));
      if (g("received")) put("wire_bytes_per_delivery", double(g("wire_bytes")) / double(g("received")), 1);
    }
    if (cfg.deflate) {
      put("deflate_negotiated", double(g("deflate_negotiated")));
      put("frames_inflated", double(g("frames_inflated")));
    }
    // table
    std::printf("roomcast-bench %s\n", cfg.mode_name.c_str());
    for (auto& r : rows) std::printf("  %-42s %s\n", r.key.c_str(), r.text.c_str());
    std::fflush(stdout);
    if (!cfg.json_file.empty()) write_json();
    if (!cfg.plot_file.empty()) write_plot();
    return 0;
  }

  void write_json() {
    std::string j = "{\n";
    for (std::size_t i = 0; i < rows.size(); ++i)
      j += "  \"" + rows[i].key + "\": " + rows[i].json + (i + 1 < rows.size() ? ",\n" : ",\n");
    const double ps = double(pub_start - cfg.t0) / 1e9;
    j += "  \"per_second\": [";
    bool first = true;
    for (auto& [s, n] : agg.per_sec) {
      const hist& h = agg.per_sec_lat[s];
      j += std::string(first ? "" : ",") + "\n    {\"t\":" + num(double(s) - ps, 0) +
           ",\"deliveries\":" + std::to_string(n) + ",\"p50_us\":" + std::to_string(h.pct(0.5)) +
           ",\"p99_us\":" + std::to_string(h.pct(0.99)) + "}";
      first = false;
    }
    j += "],\n  \"server_rss_series\": [";
    first = true;
    for (auto& [t, kib] : rss_series) {
      j += std::string(first ? "" : ",") + "[" + num(t, 1) + "," + std::to_string(kib) + "]";
      first = false;
    }
    j += "]\n}\n";
    std::ofstream(cfg.json_file) << j;
  }

  // Latency p50/p99 per 1 s bucket (log y axis), hand-written SVG.
  void write_plot() {
    const double ps = double(pub_start - cfg.t0) / 1e9;
    std::vector<std::tuple<double, double, double>> pts;
    for (auto& [s, h] : agg.per_sec_lat)
      if (h.n)
        pts.emplace_back(double(s) - ps, double(std::max<std::int64_t>(1, h.pct(0.5))),
                         double(std::max<std::int64_t>(1, h.pct(0.99))));
    const double W = 800, H = 400, L = 70, R = 20, T = 30, B = 50;
    double xmin = 0, xmax = 1, ymin = 1e9, ymax = 10;
    for (auto& [x, a, b] : pts) {
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x + 1);
      ymin = std::min(ymin, a);
      ymax = std::max(ymax, b);
    }
    const double lmin = std::floor(std::log10(std::min(ymin, ymax))), lmax = std::ceil(std::log10(ymax));
    auto X = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (W - L - R); };
    auto Y = [&](double y) { return H - B - (std::log10(y) - lmin) / std::max(1.0, lmax - lmin) * (H - T - B); };
    std::string s =
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"400\" font-family=\"sans-serif\" "
        "font-size=\"12\">\n"
        "<rect width=\"800\" height=\"400\" fill=\"white\"/>\n";
    s += "<text x=\"400\" y=\"18\" text-anchor=\"middle\">roomcast-bench " + cfg.mode_name +
         ": end-to-end latency per second (µs, log scale)</text>\n";
    for (double l = lmin; l <= lmax; l += 1) {
      const double y = Y(std::pow(10, l));
      s += "<line x1=\"" + num(L) + "\" x2=\"" + num(W - R) + "\" y1=\"" + num(y, 1) + "\" y2=\"" + num(y, 1) +
           "\" stroke=\"#ddd\"/>";
      s += "<text x=\"" + num(L - 5) + "\" y=\"" + num(y + 4, 1) + "\" text-anchor=\"end\">" + num(std::pow(10, l)) +
           "</text>\n";
    }
    const double step = std::max(1.0, std::ceil((xmax - xmin) / 10));
    for (double x = std::ceil(xmin); x <= xmax; x += step)
      s += "<text x=\"" + num(X(x), 1) + "\" y=\"" + num(H - B + 18) + "\" text-anchor=\"middle\">" + num(x) +
           "</text>\n";
    s += "<text x=\"400\" y=\"" + num(H - 10) + "\" text-anchor=\"middle\">seconds since publishing started</text>\n";
    s += "<line x1=\"" + num(L) + "\" x2=\"" + num(L) + "\" y1=\"" + num(T) + "\" y2=\"" + num(H - B) +
         "\" stroke=\"black\"/>";
    s += "<line x1=\"" + num(L) + "\" x2=\"" + num(W - R) + "\" y1=\"" + num(H - B) + "\" y2=\"" + num(H - B) +
         "\" stroke=\"black\"/>\n";
    for (int which = 0; which < 2; ++which) {
      s += std::string("<polyline fill=\"none\" stroke=\"") + (which ? "#d62728" : "#1f77b4") +
           "\" stroke-width=\"2\" points=\"";
      for (auto& [x, a, b] : pts) s += num(X(x + 0.5), 1) + "," + num(Y(which ? b : a), 1) + " ";
      s += "\"/>\n";
    }
    s += "<text x=\"" + num(W - R - 100) + "\" y=\"45\" fill=\"#1f77b4\">p50</text><text x=\"" + num(W - R - 60) +
         "\" y=\"45\" fill=\"#d62728\">p99</text>\n</svg>\n";
    std::ofstream(cfg.plot_file) << s;
  }
};

}  // namespace

int main(int argc, char** argv) {
  config cfg = parse_args(argc, argv);
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  std::signal(SIGPIPE, SIG_IGN);
  cfg.t0 = now_ns();
  alarm(unsigned(cfg.timeout) + 20);  // the parent never outlives its hard cap either
  parent p(cfg);
  return p.run();
}
