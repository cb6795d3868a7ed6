// roomcast-bench worker process: one epoll loop, non-blocking client sockets, RFC 6455 client framing.
#include "bench.hpp"
#include "ws_common.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <unordered_set>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace bench {

// ---- results serialisation ------------------------------------------------------------------
namespace {
void put_hist(std::string& out, const std::string& head, const hist& h) {
  out += head;
  out += ' ' + std::to_string(h.max);
  for (int i = 0; i < hist::size && !h.c.empty(); ++i)
    if (h.c[std::size_t(i)]) out += ' ' + std::to_string(i) + ':' + std::to_string(h.c[std::size_t(i)]);
  out += '\n';
}
void read_hist(std::istringstream& in, hist& h) {
  std::int64_t mx = 0;
  in >> mx;
  std::string tok;
  while (in >> tok) {
    const auto colon = tok.find(':');
    if (colon == std::string::npos) continue;
    const int i = std::stoi(tok.substr(0, colon));
    const std::uint64_t k = std::stoull(tok.substr(colon + 1));
    if (i < 0 || i >= hist::size) continue;
    h.add(hist::value(i), k);
  }
  h.max = std::max(h.max, mx);
}
}  // namespace

std::string results::serialize() const {
  std::string out;
  for (auto& [k, v] : cnt) out += "C " + k + ' ' + std::to_string(v) + '\n';
  for (auto& [k, v] : mx) out += "M " + k + ' ' + std::to_string(v) + '\n';
  for (auto& [k, v] : h) put_hist(out, "H " + k, v);
  for (auto& [s, v] : per_sec) out += "S " + std::to_string(s) + ' ' + std::to_string(v) + '\n';
  for (auto& [s, v] : per_sec_lat) put_hist(out, "P " + std::to_string(s), v);
  for (auto& [t, v] : targets)
    out += "T " + std::to_string(t) + ' ' + std::to_string(v.open) + ' ' + std::to_string(v.received) + '\n';
  for (auto ms : slow_close_ms) out += "L " + std::to_string(ms) + '\n';
  return out;
}

void results::parse_line(const std::string& line) {
  std::istringstream in(line);
  std::string kind;
  in >> kind;
  if (kind == "C") {
    std::string k;
    std::uint64_t v = 0;
    in >> k >> v;
    cnt[k] += v;
  } else if (kind == "M") {
    std::string k;
    std::int64_t v = 0;
    in >> k >> v;
    set_max(k, v);
  } else if (kind == "H") {
    std::string k;
    in >> k;
    read_hist(in, h[k]);
  } else if (kind == "S") {
    int s = 0;
    std::uint64_t v = 0;
    in >> s >> v;
    per_sec[s] += v;
  } else if (kind == "P") {
    int s = 0;
    in >> s;
    read_hist(in, per_sec_lat[s]);
  } else if (kind == "T") {
    std::uint32_t t = 0;
    std::uint64_t o = 0, r = 0;
    in >> t >> o >> r;
    targets[t].open += o;
    targets[t].received += r;
  } else if (kind == "L") {
    std::int64_t ms = 0;
    in >> ms;
    slow_close_ms.push_back(ms);
  }
}

// ---- worker ---------------------------------------------------------------------------------
namespace {

enum class st : std::uint8_t { connecting, handshake, open, slow, closing, sio_connect };

struct cconn {
  int fd = -1;
  st state = st::connecting;
  bool slow = false;
  bool want_out = false;
  bool peer_gone = false;  // slow: RDHUP/ERR seen
  std::uint8_t kind = 0;   // churn close kind
  long idx = 0;
  std::uint32_t target = 0;
  std::int64_t t_start = 0;
  std::string in, out;
  std::int64_t max_s = -1;
  std::vector<std::uint64_t> seen;
};

constexpr const char* ws_key = "dGhlIHNhbXBsZSBub25jZQ==";

struct worker {
  const config& cfg;
  z_stream zs_{};  // raw inflate for --deflate, reset per message
  bool zs_ready_ = false;
  std::string inflated_;

  // A permessage-deflate message: payload + 00 00 ff ff through raw inflate (up to 64 MiB).
  bool inflate_message(std::string_view in, std::string& out) {
    if (!zs_ready_) {
      if (inflateInit2(&zs_, -15) != Z_OK) return false;
      zs_ready_ = true;
    } else if (inflateReset(&zs_) != Z_OK) {
      return false;
    }
    std::string src(in);
    src.append("\0\0\xff\xff", 4);
    out.resize(std::max<std::size_t>(4096, in.size() * 8));
    zs_.next_in = reinterpret_cast<Bytef*>(src.data());
    zs_.avail_in = uInt(src.size());
    std::size_t produced = 0;
    for (;;) {
      zs_.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      zs_.avail_out = uInt(out.size() - produced);
      const int rc = inflate(&zs_, Z_SYNC_FLUSH);
      produced = out.size() - zs_.avail_out;
      if (rc == Z_STREAM_END || (zs_.avail_in == 0 && zs_.avail_out > 0)) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR) return false;
      if (out.size() >= (64u << 20)) return false;
      out.resize(out.size() * 2);
    }
    out.resize(produced);
    return true;
  }

  int id;
  long first, last;
  int ctl_fd, out_fd;
  int ep = -1;
  results r;
  std::string expected_accept = ws_accept(ws_key);
  std::vector<std::unique_ptr<cconn>> by_fd;
  std::unordered_set<int> pending;  // connecting or handshaking
  long next = 0;                    // next connection (or cycle) to start, relative to first
  long done_cycles = 0;
  long window = 1;
  bool stop = false;
  std::int64_t connect_phase_start = 0;

  worker(const config& c, int w, long f, long l, int ctl, int out)
      : cfg(c), id(w), first(f), last(l), ctl_fd(ctl), out_fd(out) {}

  long count() const { return last - first; }
  bool is_churn() const { return cfg.m == mode::churn; }
  bool is_slow_idx(long i) const {
    if (cfg.m != mode::slow) return false;
    return std::floor(double(i + 1) * cfg.slow_share) > std::floor(double(i) * cfg.slow_share);
  }
  const endpoint& endpoint_of(long i) const {
    if (cfg.spread_members) return cfg.targets[std::size_t(i / std::max(1L, cfg.rooms)) % cfg.targets.size()];
    return cfg.targets[std::size_t(i) % cfg.targets.size()];
  }
  std::uint32_t target_of(long i) const {
    if (cfg.m == mode::user) return std::uint32_t(i);
    return std::uint32_t(i % std::max(1L, cfg.rooms));
  }

  std::string path_for(long i) const {
    std::string p = cfg.path_template;
    auto repl = [&p](std::string_view ph, const std::string& v) {
      for (std::size_t pos; (pos = p.find(ph)) != std::string::npos;) p.replace(pos, ph.size(), v);
    };
    repl("{room}", "r" + std::to_string(i % std::max(1L, cfg.rooms)));
    repl("{user}", "u" + std::to_string(i));
    repl("{token}", cfg.token);
    repl("{role}", cfg.role);
    repl("{platform}", cfg.platform);
    return p;
  }

  void set_events(cconn* c, std::uint32_t ev) {
    epoll_event e{};
    e.events = ev;
    e.data.fd = c->fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
  }

  void drop(cconn* c, bool rst = false) {
    if (rst) {
      linger lg{1, 0};
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    pending.erase(c->fd);
    const int fd = c->fd;
    ::close(fd);
    by_fd[std::size_t(fd)].reset();
  }

  void fail(cconn* c, const std::string& why) {
    r.add("fail." + why);
    if (is_churn()) ++done_cycles;
    drop(c);
  }

  void write_or_queue(cconn* c, std::string_view data) {
    if (c->out.empty()) {
      const ssize_t n = ::send(c->fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n == ssize_t(data.size())) return;
      if (n > 0)
        data.remove_prefix(std::size_t(n));
      else if (errno != EAGAIN && errno != EWOULDBLOCK)
        return;  // the read side will see the error
    }
    c->out.append(data);
    if (!c->want_out) {
      c->want_out = true;
      set_events(c, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
    }
  }

  void start(long rel) {
    const long i = first + rel;
    auto c = std::make_unique<cconn>();
    c->idx = i;
    c->slow = is_slow_idx(i);
    c->target = target_of(i);
    c->kind = std::uint8_t(i % 3);
    c->t_start = now_ns();
    r.add("attempted");
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      r.add("fail.errno_" + std::to_string(errno));
      if (is_churn()) ++done_cycles;
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->slow) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg.slow_rcvbuf, sizeof cfg.slow_rcvbuf);
    if (!cfg.sources.empty()) {
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr = cfg.sources[std::size_t(i) % cfg.sources.size()];
      if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) < 0) {
        r.add("fail.bind_errno_" + std::to_string(errno));
        ::close(fd);
        if (is_churn()) ++done_cycles;
        return;
      }
    }
    const auto& tgt = endpoint_of(i);
    c->fd = fd;
    if (by_fd.size() <= std::size_t(fd)) by_fd.resize(std::size_t(fd) + 1024);
    cconn* cp = c.get();
    by_fd[std::size_t(fd)] = std::move(c);
    epoll_event e{};
    e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    e.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    pending.insert(fd);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&tgt.addr), sizeof tgt.addr) < 0 && errno != EINPROGRESS) {
      fail(cp, errno == ECONNREFUSED ? "refused" : "errno_" + std::to_string(errno));
      return;
    }
    cp->state = st::connecting;
    cp->want_out = true;
  }

  void on_connected(cconn* c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      fail(c, err == ECONNREFUSED ? "refused"
              : err == ETIMEDOUT  ? "timeout"
              : err == ECONNRESET ? "reset"
                                  : "errno_" + std::to_string(err));
      return;
    }
    const auto& tgt = endpoint_of(c->idx);
    std::string req = "GET " + path_for(c->idx) + " HTTP/1.1\r\nHost: " + tgt.text() +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + ws_key +
                      "\r\nSec-WebSocket-Version: 13\r\n" +
                      (cfg.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "") +
                      "\r\n";
    c->state = st::handshake;
    c->want_out = false;
    set_events(c, EPOLLIN | EPOLLRDHUP);
    write_or_queue(c, req);
  }

  static std::string header(std::string_view head, std::string_view name) {
    std::size_t pos = 0;
    while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
      pos += 2;
      if (head.size() - pos < name.size() + 1) break;
      if (strncasecmp(head.data() + pos, name.data(), name.size()) == 0 && head[pos + name.size()] == ':') {
        const std::size_t v = skip_ws(head, pos + name.size() + 1);
        std::size_t e = head.find("\r\n", v);
        if (e == std::string_view::npos) e = head.size();
        return std::string(head.substr(v, e - v));
      }
    }
    return {};
  }

  // Handshake response in c->in; returns false if c was dropped.
  bool on_handshake(cconn* c) {
    const auto he = c->in.find("\r\n\r\n");
    if (he == std::string::npos) {
      if (c->in.size() > 16384) {
        fail(c, "bad_response");
        return false;
      }
      return true;
    }
    const std::string_view head(c->in.data(), he + 2);
    int status = 0;
    if (head.size() > 12) status = std::atoi(std::string(head.substr(9, 3)).c_str());
    if (status != 101) {
      if (!header(head, "Retry-After").empty()) {
        r.add("retry_after_seen");
        r.add("retry_after_sum_s", std::uint64_t(std::atol(header(head, "Retry-After").c_str())));
      }
      fail(c, "http_" + std::to_string(status));
      return false;
    }
    if (header(head, "Sec-WebSocket-Accept") != expected_accept) {
      fail(c, "bad_accept");
      return false;
    }
    if (cfg.deflate && header(head, "Sec-WebSocket-Extensions").rfind("permessage-deflate", 0) == 0)
      r.add("deflate_negotiated");
    const std::int64_t now = now_ns();
    pending.erase(c->fd);
    c->in.erase(0, he + 4);
    if (cfg.fl == flavor::socketio) {
      // Engine.IO v4: the server sends its open packet "0{…}"; we connect to namespace "/" right
      // away ("40") and count the connection open when the server's "40{…}" (connected, room
      // joined) arrives. Slow clients never read, so they are counted open now.
      write_or_queue(c, client_frame(1, "40"));
      if (!c->slow) {
        c->state = st::sio_connect;
        return on_frames(c);
      }
    }
    return mark_open(c, now);
  }

  // The connection is usable (WebSocket upgraded; Socket.IO: namespace connected).
  bool mark_open(cconn* c, std::int64_t now) {
    pending.erase(c->fd);
    r.add("opened");
    r.h["handshake"].add((now - c->t_start) / 1000);
    r.set_max("last_open_ns", now - cfg.t0);
    if (is_churn()) return churn_close(c);
    if (c->slow) {
      r.add("slow_opened");
      c->state = st::slow;
      set_events(c, EPOLLRDHUP | EPOLLET);  // never read: only notice the end of the connection
      return true;
    }
    r.targets[c->target].open++;
    c->state = st::open;
    return on_frames(c);
  }

  // Socket.IO text frame (Engine.IO packet type first). Returns false if c was dropped.
  bool on_sio_packet(cconn* c, std::string_view p, std::int64_t now) {
    if (p.size() == 1 && p[0] == '2') {  // ping -> pong
      r.add("pings");
      write_or_queue(c, client_frame(1, "3"));
      return true;
    }
    if (p.size() >= 2 && p[0] == '4' && p[1] == '2') {  // event 42["message",{…}]
      if (c->state == st::open)
        on_message(c, p, now);
      else
        r.add("other_frames");
      return true;
    }
    if (p.size() >= 2 && p[0] == '4' && p[1] == '4') {  // connect_error
      fail(c, "sio_connect_error");
      return false;
    }
    if (p.size() >= 1 && p[0] == '1') {  // close
      r.add(c->state == st::open ? "close.sio_close" : "fail.sio_close");
      if (c->state == st::open && !stop) r.set_max("last_close_ns", now - cfg.t0);
      drop(c);
      return false;
    }
    if (p.empty() || p[0] != '0') r.add("other_frames");  // "0{…}" open packet: nothing to do
    return true;
  }

  bool churn_close(cconn* c) {
    switch (c->kind) {
      case 0:  // close frame, wait for the echo
        c->state = st::closing;
        c->t_start = now_ns();
        pending.insert(c->fd);
        write_or_queue(c, client_frame(8, std::string_view("\x03\xe8", 2)));
        return on_frames(c);
      case 1:
        r.add("churn.fin");
        ++done_cycles;
        drop(c);
        return false;
      default:
        r.add("churn.rst");
        ++done_cycles;
        drop(c, true);
        return false;
    }
  }

  void on_message(cconn* c, std::string_view p, std::int64_t now) {
    std::int64_t t = 0, s = 0;
    if (!find_int(p, "\"t\":", t)) {
      r.add("other_frames");
      return;
    }
    if (!find_int(p, "\"s\":", s) || s < 0 || s > (1 << 26)) {
      r.add("bad_messages");
      return;
    }
    const std::size_t w = std::size_t(s) >> 6;
    if (c->seen.size() <= w) c->seen.resize(w + 1);
    const std::uint64_t bit = std::uint64_t(1) << (s & 63);
    if (c->seen[w] & bit) {
      r.add("duplicates");
      return;
    }
    c->seen[w] |= bit;
    if (s < c->max_s)
      r.add("reordered");
    else
      c->max_s = s;
    const std::int64_t lat = (now - t) / 1000;
    r.add("received");
    r.targets[c->target].received++;
    r.h["latency"].add(lat);
    const int sec = int((now - cfg.t0) / 1'000'000'000);
    r.per_sec[sec]++;
    r.per_sec_lat[sec].add(lat);
  }

  // Parses server frames in c->in; returns false if c was dropped.
  bool on_frames(cconn* c, bool count_only = false) {
    std::size_t pos = 0;
    const std::int64_t now = now_ns();
    while (true) {
      frame_view f;
      const std::string_view buf(c->in.data() + pos, c->in.size() - pos);
      if (!parse_frame_header(buf, f)) break;
      if (f.masked || f.len > (64u << 20)) {
        r.add("protocol_errors");
        drop(c);
        return false;
      }
      if (buf.size() < f.header + f.len) break;
      std::string_view p = buf.substr(f.header, f.len);
      pos += f.header + f.len;
      if (f.rsv1) {  // permessage-deflate: one message at a time (server_no_context_takeover)
        if (!inflate_message(p, inflated_)) {
          r.add("protocol_errors");
          drop(c);
          return false;
        }
        r.add("frames_inflated");
        p = inflated_;
      }
      if (f.opcode == 1 || f.opcode == 0) {
        if (!f.fin || f.opcode == 0) r.add("fragments");
        if (cfg.fl == flavor::socketio && !count_only) {
          if (c->state == st::sio_connect && p.size() >= 2 && p[0] == '4' && p[1] == '0') {
            c->in.erase(0, pos);  // namespace connected; mark_open() parses the rest of the buffer
            return mark_open(c, now);
          }
          if (!on_sio_packet(c, p, now)) return false;
          continue;
        }
        if (count_only) {
          std::int64_t t = 0;
          if (find_int(p, "\"t\":", t)) {
            r.add("slow_received");
            c->max_s = t;  // slow clients: publish time of the last message read
          } else {
            r.add("slow_other_frames");
          }
        } else {
          on_message(c, p, now);
        }
      } else if (f.opcode == 8) {
        const int code =
            p.size() >= 2 ? (static_cast<unsigned char>(p[0]) << 8) | static_cast<unsigned char>(p[1]) : 1005;
        if (c->state == st::closing) {
          if (is_churn()) {
            r.add("churn.closeframe");
            ++done_cycles;
          } else {
            r.add("end.closeframe_echoed");
          }
        } else {
          r.add(std::string(c->slow ? "slowclose." : "close.") + std::to_string(code));
          // a slow client learns of the close only when it reads: date it by the last message before it
          if (c->slow && !c->peer_gone && c->max_s > 0) r.slow_close_ms.push_back((c->max_s - cfg.t0) / 1'000'000);
          if (!c->slow && !stop) r.set_max("last_close_ns", now - cfg.t0);
          const std::string reply = client_frame(8, p.substr(0, std::min<std::size_t>(p.size(), 2)));
          [[maybe_unused]] auto n = ::send(c->fd, reply.data(), reply.size(), MSG_NOSIGNAL);
        }
        drop(c);
        return false;
      } else if (f.opcode == 9) {
        r.add("pings");
        write_or_queue(c, client_frame(10, p));
      }
    }
    c->in.erase(0, pos);
    return true;
  }

  void on_gone(cconn* c, bool reset) {
    if (c->state == st::closing) {
      r.add(is_churn() ? "churn.closeframe_noecho" : "end.closeframe_noecho");
      ++done_cycles;
    } else if (c->state == st::open) {
      r.add(reset ? "close.reset" : "close.eof");
      if (!stop) r.set_max("last_close_ns", now_ns() - cfg.t0);
    } else {
      fail(c, reset ? "reset" : "eof");
      return;
    }
    drop(c);
  }

  void on_event(int fd, std::uint32_t ev) {
    if (std::size_t(fd) >= by_fd.size() || !by_fd[std::size_t(fd)]) return;
    cconn* c = by_fd[std::size_t(fd)].get();
    if (c->state == st::slow) {
      if (!c->peer_gone && (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        c->peer_gone = true;
        r.slow_close_ms.push_back((now_ns() - cfg.t0) / 1'000'000);
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
      }
      return;
    }
    if (c->state == st::connecting) {
      if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
      return;
    }
    if ((ev & EPOLLOUT) && !c->out.empty()) {
      const ssize_t n = ::send(fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
      if (n > 0) c->out.erase(0, std::size_t(n));
      if (c->out.empty() && c->want_out) {
        c->want_out = false;
        set_events(c, EPOLLIN | EPOLLRDHUP);
      }
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      char buf[65536];
      for (int rounds = 0; rounds < 8; ++rounds) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) return on_gone(c, false);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EINTR) continue;
          return on_gone(c, true);
        }
        c->in.append(buf, std::size_t(n));
        if (c->state != st::handshake) r.add("wire_bytes", std::uint64_t(n));
        if (c->state == st::handshake) {
          if (!on_handshake(c)) return;
        } else if (!on_frames(c)) {
          return;
        }
        if (std::size_t(n) < sizeof buf) break;
      }
    }
  }

  // After the run: read what the slow clients got, to see how their connection ended.
  void drain_slow() {
    for (auto& up : by_fd) {
      if (!up || up->state != st::slow) continue;
      cconn* c = up.get();
      int fl = fcntl(c->fd, F_GETFL);
      fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
      std::string how = "open";
      char buf[65536];
      std::size_t total = 0;
      while (total < (32u << 20)) {
        const ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
        if (n == 0) {
          how = "eof";
          break;
        }
        if (n < 0) {
          how = errno == EAGAIN || errno == EWOULDBLOCK ? "open" : "reset";
          break;
        }
        total += std::size_t(n);
        c->in.append(buf, std::size_t(n));
        if (!on_frames(c, true)) {
          how.clear();  // a close frame was found and counted
          break;
        }
      }
      r.add("slow_bytes_read_after", total);
      if (!how.empty()) {
        r.add("slowclose." + how);
        if (how != "open" && !c->peer_gone && c->max_s > 0) r.slow_close_ms.push_back((c->max_s - cfg.t0) / 1'000'000);
        drop(c);
      }
    }
  }

  // End of the run: a close frame (1000) on every open connection, then up to 3 s (bounded by
  // `limit`) for the server's echo, so that the server sees ordinary client closes.
  void close_all_gracefully(std::int64_t limit) {
    const std::string frame = client_frame(8, std::string_view("\x03\xe8", 2));
    long closing = 0;
    for (auto& up : by_fd)
      if (up && up->state == st::open) {
        r.add("open_at_end");
        up->state = st::closing;
        write_or_queue(up.get(), frame);
        ++closing;
      }
    const std::int64_t end = std::min(limit, now_ns() + std::int64_t(3'000'000'000));
    std::vector<epoll_event> evs(1024);
    while (closing > 0 && now_ns() < end) {
      const int n = epoll_wait(ep, evs.data(), int(evs.size()), 50);
      for (int i = 0; i < n; ++i)
        if (evs[std::size_t(i)].data.fd != ctl_fd) on_event(evs[std::size_t(i)].data.fd, evs[std::size_t(i)].events);
      closing = 0;
      for (auto& up : by_fd)
        if (up && up->state == st::closing) ++closing;
    }
    if (closing) r.add("end.closeframe_timeout", std::uint64_t(closing));
  }

  void send_line(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::write(out_fd, s.data() + off, s.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      off += std::size_t(n);
    }
  }

  int run() {
    ep = epoll_create1(EPOLL_CLOEXEC);
    by_fd.resize(4096);
    {
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.fd = ctl_fd;
      epoll_ctl(ep, EPOLL_CTL_ADD, ctl_fd, &e);
    }
    window = std::max(1L, cfg.concurrency / std::max(1, cfg.workers));
    const std::int64_t deadline = cfg.t0 + std::int64_t((cfg.timeout - 2) * 1e9);
    const double rate_w = cfg.m == mode::hold && cfg.rate > 0 ? cfg.rate / cfg.workers : 0;
    connect_phase_start = now_ns();
    bool ready_sent = false;
    std::int64_t last_scan = 0;
    std::vector<epoll_event> evs(1024);
    const std::int64_t timeout_ns = std::int64_t(cfg.connect_timeout * 1e9);
    while (!stop) {
      std::int64_t now = now_ns();
      if (now >= deadline) {
        r.add("worker_deadline_hit");
        break;
      }
      // start connections (or churn cycles) within the window and the rate
      while (next < count() && long(pending.size()) < window) {
        if (rate_w > 0 && now < connect_phase_start + std::int64_t(double(next) / rate_w * 1e9)) break;
        start(next++);
      }
      if (now - last_scan > 100'000'000) {
        last_scan = now;
        std::vector<int> late;
        for (int fd : pending)
          if (by_fd[std::size_t(fd)] && now - by_fd[std::size_t(fd)]->t_start > timeout_ns) late.push_back(fd);
        for (int fd : late) {
          cconn* c = by_fd[std::size_t(fd)].get();
          if (c->state == st::closing) {
            r.add("churn.close_timeout");
            ++done_cycles;
            drop(c);
          } else {
            fail(c, c->state == st::connecting ? "timeout" : "handshake_timeout");
          }
        }
      }
      if (!ready_sent && next >= count() && pending.empty()) {
        ready_sent = true;
        r.set_max("connect_phase_ns", now_ns() - connect_phase_start);
        send_line(is_churn() ? "DONE\n" : "READY\n");
        if (is_churn()) break;
      }
      const int wait_ms = next < count() ? 1 : 100;
      const int n = epoll_wait(ep, evs.data(), int(evs.size()), wait_ms);
      for (int i = 0; i < n; ++i) {
        if (evs[std::size_t(i)].data.fd == ctl_fd) {
          char b[16];
          const ssize_t k = ::read(ctl_fd, b, sizeof b);
          if (k <= 0 || std::memchr(b, 'S', std::size_t(k))) stop = true;
          continue;
        }
        on_event(evs[std::size_t(i)].data.fd, evs[std::size_t(i)].events);
      }
    }
    if (cfg.m == mode::slow) drain_slow();
    close_all_gracefully(deadline + 1'500'000'000);
    for (auto& up : by_fd)
      if (up) {
        ::close(up->fd);
        up.reset();
      }
    send_line("RESULT\n" + r.serialize() + "END\n");
    return 0;
  }
};

}  // namespace

int run_worker(const config& cfg, int w, long first, long last, int ctl_fd, int out_fd) {
  worker wk(cfg, w, first, last, ctl_fd, out_fd);
  return wk.run();
}

}  // namespace bench
