// limit-server: the smallest epoll WebSocket fan-out server that speaks roomcast's URL and publish
// API. It is the practical limit of this machine for roomcast-bench's scenarios: no auth, no
// registry, no bus, no JSON library; one frame built per publish and written to every socket.
//
//   limit-server --port 18400 --threads 2 [--sndbuf BYTES] [--max-seconds 3600]
//
// GET /demo/websocket/{room}/{role}/{user}/{token}/{platform}   WebSocket upgrade
// POST /api/publish {"room":"…","data":…} | {"user":"…","data":…}  → 200 {"ok":true}
// GET /healthz
#include "ws_common.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

using bench::now_ns;
using frame_ptr = std::shared_ptr<const std::string>;
constexpr std::size_t max_queue = 1 << 20;
constexpr std::size_t max_input = 1 << 20;

std::atomic<bool> g_stop{false};
std::atomic<std::uint64_t> g_msg_id{0};
std::mutex g_publish_mx;
int g_sndbuf = 0;  // SO_SNDBUF for accepted sockets; 0 = kernel autotuning

struct conn {
  int fd = -1;
  bool ws = false;
  bool closing = false;  // close after the queue drains
  bool want_out = false;
  std::string in;
  std::deque<std::pair<frame_ptr, std::size_t>> q;  // frames (shared) and the offset already written
  std::size_t qbytes = 0;
  std::string room, user;
};

struct job {
  bool to_user;
  std::string key;
  frame_ptr frame;
};

struct shard;
std::vector<std::unique_ptr<shard>> g_shards;

struct shard {
  int ep = -1, lfd = -1, efd = -1;
  std::unordered_map<int, std::unique_ptr<conn>> conns;
  std::unordered_map<std::string, std::unordered_set<conn*>> rooms, users;
  std::mutex mx;
  std::vector<job> inbox;
  std::vector<int> to_close;

  void close_conn(conn* c) {
    if (!c->room.empty()) {
      auto it = rooms.find(c->room);
      if (it != rooms.end() && it->second.erase(c) && it->second.empty()) rooms.erase(it);
    }
    if (!c->user.empty()) {
      auto it = users.find(c->user);
      if (it != users.end() && it->second.erase(c) && it->second.empty()) users.erase(it);
    }
    ::close(c->fd);
    conns.erase(c->fd);  // destroys c
  }

  void set_out(conn* c, bool on) {
    if (c->want_out == on) return;
    c->want_out = on;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u);
    ev.data.fd = c->fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }

  // Writes what is queued; false = the connection is dead (caller closes it).
  bool flush(conn* c) {
    while (!c->q.empty()) {
      auto& [f, off] = c->q.front();
      const ssize_t n = ::send(c->fd, f->data() + off, f->size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          set_out(c, true);
          return true;
        }
        if (errno == EINTR) continue;
        return false;
      }
      off += std::size_t(n);
      c->qbytes -= std::size_t(n);
      if (off == f->size()) c->q.pop_front();
    }
    set_out(c, false);
    return !c->closing;  // queue empty: a closing connection is done
  }

  // Queues a frame (written at once when the queue was empty); false = drop the connection.
  bool send(conn* c, frame_ptr f) {
    const bool was_empty = c->q.empty();
    c->qbytes += f->size();
    c->q.emplace_back(std::move(f), 0);
    if (c->qbytes > max_queue) return false;  // slow consumer
    return was_empty ? flush(c) : true;
  }
  bool send(conn* c, std::string s) { return send(c, std::make_shared<const std::string>(std::move(s))); }

  void deliver(bool to_user, const std::string& key, const frame_ptr& f) {
    auto& index = to_user ? users : rooms;
    auto it = index.find(key);
    if (it == index.end()) return;
    for (conn* c : it->second)
      if (!send(c, f)) to_close.push_back(c->fd);
    reap();
  }

  void reap() {
    for (int fd : to_close) {
      auto it = conns.find(fd);
      if (it != conns.end()) close_conn(it->second.get());
    }
    to_close.clear();
  }

  void publish(bool to_user, std::string_view key, std::string_view data) {
    std::string body;
    body.reserve(data.size() + key.size() + 80);
    body += to_user ? R"({"type":"message","user":")" : R"({"type":"message","room":")";
    body += key;
    body += R"(","id":"m)";
    body += std::to_string(g_msg_id.fetch_add(1, std::memory_order_relaxed));
    body += R"(","from":"api","data":)";
    body += data;
    body += '}';
    auto f = std::make_shared<const std::string>(bench::server_frame(1, body));
    const std::string k(key);
    {
      // One global order: every shard (this one too) gets the jobs in the same sequence, so a
      // room's messages never overtake each other even when two threads publish to it at once.
      std::lock_guard order(g_publish_mx);
      for (auto& s : g_shards) {
        std::lock_guard lk(s->mx);
        s->inbox.push_back(job{to_user, k, f});
      }
    }
    for (auto& s : g_shards) {
      if (s.get() == this) continue;
      const std::uint64_t one = 1;
      [[maybe_unused]] auto r = ::write(s->efd, &one, sizeof one);
    }
    drain_inbox();
  }

  static std::string http(int status, std::string_view reason, std::string_view body, bool close = false) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                    (close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n");
    r += body;
    return r;
  }

  static std::string header(std::string_view head, std::string_view name) {
    std::size_t pos = 0;
    while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
      pos += 2;
      if (head.size() - pos < name.size() + 1) break;
      if (strncasecmp(head.data() + pos, name.data(), name.size()) == 0 && head[pos + name.size()] == ':') {
        std::size_t v = bench::skip_ws(head, pos + name.size() + 1);
        std::size_t e = head.find("\r\n", v);
        if (e == std::string_view::npos) e = head.size();
        while (e > v && head[e - 1] == ' ') --e;
        return std::string(head.substr(v, e - v));
      }
    }
    return {};
  }

  // Handles complete HTTP requests in c->in; false = close the connection.
  bool on_http(conn* c) {
    while (!c->ws) {
      const auto he = c->in.find("\r\n\r\n");
      if (he == std::string::npos) return c->in.size() < 16384;
      const std::string_view head(c->in.data(), he + 2);
      const std::size_t cl = std::strtoul(header(head, "Content-Length").c_str(), nullptr, 10);
      if (cl > max_input) return false;
      if (c->in.size() < he + 4 + cl) return true;
      const std::string_view body(c->in.data() + he + 4, cl);
      const auto sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
      if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) return false;
      const std::string_view method = head.substr(0, sp1), path = head.substr(sp1 + 1, sp2 - sp1 - 1);
      std::string resp;
      bool upgrade = false;
      if (method == "GET" && path == "/healthz") {
        resp = http(200, "OK", R"({"ok":true})");
      } else if (method == "POST" && path == "/api/publish") {
        std::string_view room, user, data;
        const bool ok = bench::scan_object(body, [&](std::string_view k, std::string_view v) {
          auto unq = [](std::string_view x) { return x.size() >= 2 && x[0] == '"' ? x.substr(1, x.size() - 2) : x; };
          if (k == "room") room = unq(v);
          if (k == "user") user = unq(v);
          if (k == "data") data = v;
        });
        if (!ok || data.empty() || room.empty() == user.empty()) {
          resp =
              http(400, "Bad Request", R"({"error":{"code":"bad_request","message":"need room or user, and data"}})");
        } else {
          publish(!user.empty(), user.empty() ? room : user, data);
          resp = http(200, "OK", R"({"ok":true})");
        }
      } else if (method == "GET" && path.starts_with("/demo/websocket/")) {
        std::vector<std::string_view> seg;
        std::string_view rest = path.substr(16);
        while (!rest.empty()) {
          const auto sl = rest.find('/');
          seg.push_back(rest.substr(0, sl));
          if (sl == std::string_view::npos) break;
          rest.remove_prefix(sl + 1);
        }
        const std::string key = header(head, "Sec-WebSocket-Key");
        if (seg.size() != 5 || seg[0].empty() || seg[2].empty() || key.empty()) {
          resp = http(400, "Bad Request", R"({"error":{"code":"bad_request","message":"bad upgrade"}})", true);
          c->closing = true;
        } else {
          resp =
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: " +
              bench::ws_accept(key) + "\r\n\r\n";
          c->room = seg[0];
          c->user = seg[2];
          resp += bench::server_frame(
              1, R"({"type":"welcome","user":")" + c->user + R"(","rooms":[{"room":")" + c->room + R"("}]})");
          upgrade = true;
        }
      } else {
        resp = http(404, "Not Found", R"({"error":{"code":"not_found","message":"no such endpoint"}})");
      }
      c->in.erase(0, he + 4 + cl);
      if (upgrade) {
        c->ws = true;
        rooms[c->room].insert(c);
        users[c->user].insert(c);
      }
      if (!send(c, std::move(resp))) return false;
      if (c->closing) return true;
    }
    return on_ws(c);
  }

  // Client frames: close → echo + close, ping → pong, the rest is ignored.
  bool on_ws(conn* c) {
    std::size_t pos = 0;
    bool ok = true;
    while (ok && !c->closing) {
      bench::frame_view f;
      const std::string_view buf(c->in.data() + pos, c->in.size() - pos);
      if (!bench::parse_frame_header(buf, f)) break;
      if (!f.masked || f.len > 65536) return false;
      if (buf.size() < f.header + f.len) break;
      std::string payload(buf.substr(f.header, f.len));
      for (std::size_t i = 0; i < payload.size(); ++i) payload[i] ^= char(f.mask[i & 3]);
      pos += f.header + f.len;
      if (f.opcode == 8) {
        c->closing = true;
        ok = send(c, bench::server_frame(8, payload.substr(0, std::min<std::size_t>(payload.size(), 2))));
      } else if (f.opcode == 9) {
        ok = send(c, bench::server_frame(10, payload));
      }
    }
    c->in.erase(0, pos);
    return ok && c->in.size() < max_input;
  }

  void on_readable(conn* c) {
    char buf[65536];
    for (int rounds = 0; rounds < 16; ++rounds) {
      const ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
      if (n == 0) return close_conn(c);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        return close_conn(c);
      }
      if (c->closing) continue;  // discard input after a close
      c->in.append(buf, std::size_t(n));
      if (!(c->ws ? on_ws(c) : on_http(c))) return close_conn(c);
      if (std::size_t(n) < sizeof buf) break;
    }
  }

  void on_inbox() {
    std::uint64_t v;
    [[maybe_unused]] auto r = ::read(efd, &v, sizeof v);
    drain_inbox();
  }

  void drain_inbox() {
    std::vector<job> jobs;
    {
      std::lock_guard lk(mx);
      jobs.swap(inbox);
    }
    for (auto& j : jobs) deliver(j.to_user, j.key, j.frame);
  }

  void run(std::int64_t deadline_ns) {
    std::vector<epoll_event> evs(1024);
    while (!g_stop.load(std::memory_order_relaxed) && now_ns() < deadline_ns) {
      const int n = epoll_wait(ep, evs.data(), int(evs.size()), 200);
      for (int i = 0; i < n; ++i) {
        const int fd = evs[i].data.fd;
        if (fd == lfd) {
          for (int k = 0; k < 256; ++k) {
            const int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (cfd < 0) break;
            int one = 1;
            setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (g_sndbuf > 0) setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &g_sndbuf, sizeof g_sndbuf);
            auto c = std::make_unique<conn>();
            c->fd = cfd;
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.fd = cfd;
            epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
            conns.emplace(cfd, std::move(c));
          }
          continue;
        }
        if (fd == efd) {
          on_inbox();
          continue;
        }
        auto it = conns.find(fd);
        if (it == conns.end()) continue;
        conn* c = it->second.get();
        if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
          close_conn(c);
          continue;
        }
        if (evs[i].events & EPOLLOUT) {
          if (!flush(c)) {
            close_conn(c);
            continue;
          }
        }
        if (evs[i].events & (EPOLLIN | EPOLLRDHUP)) on_readable(c);
      }
    }
  }
};

int listen_on(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(std::uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(fd, 4096) < 0) {
    std::perror("limit-server: bind/listen");
    std::exit(1);
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 18400, threads = 1;
  double max_seconds = 3600;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "limit-server: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port")
      port = std::atoi(next());
    else if (a == "--threads")
      threads = std::max(1, std::atoi(next()));
    else if (a == "--max-seconds")
      max_seconds = std::atof(next());
    else if (a == "--sndbuf")
      g_sndbuf = std::atoi(next());
    else {
      std::fprintf(stderr, "usage: limit-server [--port P] [--threads N] [--sndbuf BYTES] [--max-seconds S]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  for (int t = 0; t < threads; ++t) {
    auto s = std::make_unique<shard>();
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->lfd = listen_on(port);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    for (int fd : {s->lfd, s->efd}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
    }
    g_shards.push_back(std::move(s));
  }
  std::fprintf(stderr, "limit-server: port %d, %d thread(s), pid %d\n", port, threads, int(getpid()));
  const std::int64_t deadline = now_ns() + std::int64_t(max_seconds * 1e9);
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) ts.emplace_back([t, deadline] { g_shards[std::size_t(t)]->run(deadline); });
  g_shards[0]->run(deadline);
  g_stop = true;
  for (auto& t : ts) t.join();
  return 0;
}
