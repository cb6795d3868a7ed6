#pragma once
// Helpers for the history / recovery integration tests (header-only; on top of
// cluster/cluster_support.hpp):
//   - lite_ws: a non-blocking WebSocket client (connect, upgrade and frames parsed by hand) and
//     client_pool, one epoll thread driving thousands of them (reconnecting with since/epoch);
//   - seq_tracker: follows one client's position in one room (epoch + last seq) the way a real
//     client would (from welcome / joined / gap frames and message seqs) and records every anomaly
//     (hole, duplicate, out of order, gap frame) with the frames around it;
//   - persistent_redis: a redis-server that can be stopped and started again on the same port/dir;
//   - publish helpers that retry with the same id, and stream_publisher (threads, each on one
//     kept-alive connection) publishing to rooms at a steady rate.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cluster_support.hpp"

namespace roomcast::itest::recovery {

namespace json = boost::json;
using namespace std::chrono_literals;
using cluster::dump;
using cluster::random_token;
using cluster::run_command;
using cluster::scripts_dir;
using cluster::shell_quote;

// ---------------------------------------------------------------- paths

// The seed URL of a room, with ?since=&epoch= when asked to recover.
inline std::string recovery_path(const std::string& room, const std::string& role, const std::string& user,
                                 std::optional<std::uint64_t> since = std::nullopt, const std::string& epoch = {}) {
  std::string p = ws_path(room, role, user);
  if (since) {
    p += "?since=" + std::to_string(*since);
    if (!epoch.empty()) p += "&epoch=" + epoch;
  }
  return p;
}

// Connects a ws_client to `path` and reads the welcome; throws on failure.
inline member join_path(std::uint16_t port, const std::string& path) {
  member m{std::make_unique<ws_client>(), {}};
  auto status = m.ws->connect(port, path);
  if (status != 101)
    throw std::runtime_error("upgrade of " + path + " answered " + std::to_string(status) + " (" + m.ws->last_error() +
                             ")");
  auto welcome = m.ws->read_json();
  if (!welcome || json_string(*welcome, "type") != "welcome")
    throw std::runtime_error("no welcome frame on " + path + " (stream: " + m.ws->read_error() + ")");
  m.welcome = std::move(*welcome);
  return m;
}

// welcome.rooms[] entry of `room` (null when absent).
inline json::value welcome_room(const json::value& welcome, const std::string& room) {
  const auto* rooms = json_find(welcome, "rooms");
  if (rooms && rooms->is_array())
    for (const auto& r : rooms->get_array())
      if (json_string(r, "room") == room) return r;
  return nullptr;
}

// ---------------------------------------------------------------- non-blocking client

// A WebSocket client whose connect, upgrade and reads never block: one thread drives hundreds or
// thousands of them with epoll (client_pool). The upgrade answer is read in bulk; whatever follows
// its head (the welcome, often in the same segment) stays in the input buffer for the frame parser.
class lite_ws {
 public:
  enum class phase { closed, connecting, upgrading, open };

  lite_ws() = default;
  ~lite_ws() { close_fd(); }
  lite_ws(const lite_ws&) = delete;
  lite_ws& operator=(const lite_ws&) = delete;

  // Starts a non-blocking TCP connect and queues the upgrade request. False when that fails at
  // once (why() says why).
  bool begin(std::uint16_t port, const std::string& path) {
    close_fd();
    inbuf_.clear();
    message_.clear();
    status_ = 0;
    close_code_.reset();
    why_.clear();
    eof_ = false;
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return fail(std::string("socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    out_ = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n";
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      phase_ = phase::upgrading;
    } else if (errno == EINPROGRESS) {
      phase_ = phase::connecting;
    } else {
      return fail(std::string("connect: ") + std::strerror(errno));
    }
    return true;
  }

  // Blocking connect + upgrade, bounded by `timeout`: the HTTP status (101), or 0 on a transport
  // failure or timeout.
  unsigned connect(std::uint16_t port, const std::string& path, std::chrono::milliseconds timeout = 5s) {
    if (!begin(port, path)) return 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::string> none;
    while (phase_ == phase::connecting || phase_ == phase::upgrading) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        fail("upgrade timed out");
        return 0;
      }
      pollfd p{fd_, static_cast<short>(wants_write() ? POLLOUT : POLLIN), 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
      step(none);
    }
    return phase_ == phase::open ? 101u : status_;
  }

  int fd() const { return fd_; }
  phase state() const { return phase_; }
  bool closed() const { return phase_ == phase::closed; }
  bool is_open() const { return phase_ == phase::open; }
  bool wants_write() const { return phase_ == phase::connecting || (phase_ == phase::upgrading && !out_.empty()); }
  unsigned status() const { return status_; }      // HTTP status of the upgrade answer (0 until one was read)
  const std::string& why() const { return why_; }  // why the connection ended (empty while it lives)
  std::optional<std::uint16_t> close_code() const { return close_code_; }
  void drop() {
    if (phase_ != phase::closed) why_ = "dropped by the test";
    close_fd();
    phase_ = phase::closed;
  }

  // Advances on readiness: finishes the connect, sends the upgrade request, reads the answer's
  // head; once open, reads what is readable and appends complete text messages to `out`, answering
  // pings. The step that completes the upgrade stops there (call again to parse what followed it).
  void step(std::vector<std::string>& out) {
    if (phase_ == phase::connecting) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, 0) <= 0) return;  // still connecting
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        fail(std::string("connect: ") + std::strerror(err));
        return;
      }
      phase_ = phase::upgrading;
    }
    if (phase_ == phase::upgrading) {
      while (!out_.empty()) {
        const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          out_.erase(0, static_cast<std::size_t>(n));
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          return;
        } else {
          fail(std::string("send of the upgrade: ") + std::strerror(errno));
          return;
        }
      }
      read_available();
      const auto end = inbuf_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (inbuf_.size() > 16384)
          fail("upgrade answer head over 16 KiB");
        else if (eof_)
          fail("closed during the upgrade (" + why_ + ")");
        return;
      }
      const auto line = inbuf_.substr(0, inbuf_.find("\r\n"));
      const auto sp = line.find(' ');
      status_ = sp == std::string::npos ? 0 : static_cast<unsigned>(std::strtoul(line.c_str() + sp + 1, nullptr, 10));
      if (status_ != 101) {
        fail("upgrade answered " + line);
        return;
      }
      inbuf_.erase(0, end + 4);
      phase_ = phase::open;
      return;
    }
    if (phase_ != phase::open) return;
    read_available();
    parse(out);
    if (eof_ && phase_ == phase::open) {
      close_fd();
      phase_ = phase::closed;
    }
  }
  void pump(std::vector<std::string>& out) { step(out); }

  bool send_text(std::string_view text) { return send_frame(0x1, text); }

 private:
  bool fail(std::string why) {
    why_ = std::move(why);
    close_fd();
    phase_ = phase::closed;
    return false;
  }
  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void read_available() {
    char buf[65536];
    while (!eof_) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        inbuf_.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      eof_ = true;
      why_ = n == 0 ? "EOF" : std::string("recv: ") + std::strerror(errno);
    }
  }

  void parse(std::vector<std::string>& out) {
    std::size_t pos = 0;
    while (phase_ == phase::open) {
      if (inbuf_.size() - pos < 2) break;
      const auto b0 = static_cast<unsigned char>(inbuf_[pos]);
      const auto b1 = static_cast<unsigned char>(inbuf_[pos + 1]);
      std::size_t hdr = 2;
      std::uint64_t len = b1 & 0x7f;
      if (len == 126) {
        if (inbuf_.size() - pos < 4) break;
        len = (static_cast<std::uint64_t>(static_cast<unsigned char>(inbuf_[pos + 2])) << 8) |
              static_cast<unsigned char>(inbuf_[pos + 3]);
        hdr = 4;
      } else if (len == 127) {
        if (inbuf_.size() - pos < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(inbuf_[pos + 2 + i]);
        hdr = 10;
      }
      const bool masked = b1 & 0x80;  // servers never mask; tolerate it anyway
      if (masked) hdr += 4;
      if (inbuf_.size() - pos < hdr + len) break;
      std::string payload = inbuf_.substr(pos + hdr, len);
      if (masked)
        for (std::size_t i = 0; i < payload.size(); ++i) payload[i] ^= inbuf_[pos + hdr - 4 + (i % 4)];
      pos += hdr + len;
      const unsigned op = b0 & 0x0f;
      const bool fin = b0 & 0x80;
      if (op == 0x1 || op == 0x2 || op == 0x0) {
        message_ += payload;
        if (fin) {
          out.push_back(std::move(message_));
          message_.clear();
        }
      } else if (op == 0x8) {
        if (payload.size() >= 2)
          close_code_ = static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                                   static_cast<unsigned char>(payload[1]));
        why_ = "close frame " + (close_code_ ? std::to_string(*close_code_) : std::string("without code"));
        close_fd();
        phase_ = phase::closed;
      } else if (op == 0x9) {
        send_frame(0xA, payload);
      }
    }
    inbuf_.erase(0, pos);
  }

  bool send_frame(unsigned op, std::string_view payload) {
    if (phase_ != phase::open || payload.size() > 65535) return false;
    std::string f;
    f.push_back(static_cast<char>(0x80 | op));
    if (payload.size() < 126) {
      f.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
      f.push_back(static_cast<char>(0x80 | 126));
      f.push_back(static_cast<char>(payload.size() >> 8));
      f.push_back(static_cast<char>(payload.size() & 0xff));
    }
    const char mask[4] = {0x12, 0x34, 0x56, 0x78};
    f.append(mask, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
    std::string_view rest = f;
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!rest.empty()) {
      ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        rest.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) &&
          std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 10);
        continue;
      }
      return false;
    }
    return true;
  }

  int fd_ = -1;
  phase phase_ = phase::closed;
  std::string out_;    // the part of the upgrade request not sent yet
  std::string inbuf_;  // received, not parsed yet
  std::string message_;
  unsigned status_ = 0;
  bool eof_ = false;
  std::string why_;
  std::optional<std::uint16_t> close_code_;
};

// ---------------------------------------------------------------- position tracking

// One client's view of one room, as a real client would keep it.
struct seq_tracker {
  std::string room;
  std::string epoch;                // learnt from welcome / joined / gap
  std::uint64_t last = 0;           // last seq delivered in `epoch`
  bool positioned = false;          // saw a welcome/joined position (or a message)
  std::vector<std::uint64_t> seqs;  // every message seq, in arrival order (current epoch)
  std::vector<std::string> anomalies;
  std::vector<json::value> gaps;
  std::vector<json::value> recovered;
  std::deque<std::string> recent;  // last frames, for diagnostics
  std::size_t messages = 0;

  void remember(const std::string& text) {
    recent.push_back(text);
    if (recent.size() > 12) recent.pop_front();
  }
  std::string context() const {
    std::string s;
    for (const auto& r : recent) s += "\n      " + r;
    return s;
  }

  // Position from a welcome (first connect only: later welcomes just show the head).
  void on_welcome(const json::value& w, bool first) {
    if (!first) return;
    auto r = welcome_room(w, room);
    if (r.is_null()) return;
    epoch = json_string(r, "epoch");
    last = static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(r, "seq", 0)));
    positioned = true;
  }

  // Any frame of this room. Returns the parsed frame (null when not JSON).
  json::value on_frame(const std::string& text) {
    remember(text);
    auto v = try_parse_json(text);
    if (!v) {
      anomalies.push_back("non-JSON frame: " + text);
      return nullptr;
    }
    const auto type = json_string(*v, "type");
    if (type == "message" && json_string(*v, "room") == room) {
      ++messages;
      const auto s = json_int(*v, "seq", -1);
      if (s <= 0) {
        anomalies.push_back("message without seq: " + text);
      } else {
        const auto seq = static_cast<std::uint64_t>(s);
        if (positioned && seq != last + 1)
          anomalies.push_back("expected seq " + std::to_string(last + 1) + " got " + std::to_string(seq) + " (epoch " +
                              epoch + "); recent frames:" + context());
        last = seq;
        positioned = true;
        seqs.push_back(seq);
      }
    } else if (type == "gap" && json_string(*v, "room") == room) {
      gaps.push_back(*v);
      epoch = json_string(*v, "epoch");
      last = static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(*v, "seq", 0)));
      positioned = true;
    } else if (type == "recovered" && json_string(*v, "room") == room) {
      recovered.push_back(*v);
    } else if (type == "joined" && json_string(*v, "room") == room) {
      if (!positioned && json_find(*v, "epoch")) {
        epoch = json_string(*v, "epoch");
        last = static_cast<std::uint64_t>(json_int(*v, "seq", 0));
        positioned = true;
      }
    }
    return *v;
  }
};

// seqs must be exactly from..to, each once, in order.
inline std::string check_exact(const std::vector<std::uint64_t>& seqs, std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> want;
  for (auto s = from; s <= to; ++s) want.push_back(s);
  if (seqs == want) return {};
  std::map<std::uint64_t, int> count;
  for (auto s : seqs) ++count[s];
  std::string why;
  int shown = 0;
  for (auto s = from; s <= to && shown < 10; ++s)
    if (count[s] != 1) {
      why += " seq " + std::to_string(s) + " x" + std::to_string(count[s]) + ";";
      ++shown;
    }
  for (auto& [s, n] : count)
    if ((s < from || s > to) && shown++ < 15) why += " unexpected seq " + std::to_string(s) + ";";
  for (std::size_t i = 1; i < seqs.size() && shown < 20; ++i)
    if (seqs[i] <= seqs[i - 1]) {
      why += " out of order at #" + std::to_string(i) + " (" + std::to_string(seqs[i - 1]) + " then " +
             std::to_string(seqs[i]) + ");";
      ++shown;
    }
  return "got " + std::to_string(seqs.size()) + " seqs, want " + std::to_string(to + 1 - from) + " (" +
         std::to_string(from) + ".." + std::to_string(to) + "):" + why;
}

// ---------------------------------------------------------------- many clients, one thread

struct pooled_client {
  std::string room, user;
  std::uint16_t port = 0;  // where it connects (a node or nginx)
  lite_ws ws;
  seq_tracker t;
  bool welcomed = false;  // the current connection's welcome arrived
  bool ever_welcomed = false;
  std::uint64_t start = 0;  // seq in the first welcome: it must get start+1..head
  std::string start_epoch;
  int connects = 0;  // upgrades that succeeded
  int failed_connects = 0;
  std::vector<std::string> nodes;   // node of each welcome
  std::vector<std::size_t> gap_at;  // seqs.size() when each gap frame arrived
  std::vector<std::string> drops;   // why each connection or attempt ended, with the time (first 8)

  // Pool bookkeeping (owned by client_pool).
  std::uint32_t index = 0, gen = 0;
  std::uint32_t events = 0;  // what the socket is registered for
  bool pending = false;      // wants a connection
  std::chrono::steady_clock::time_point next_try{}, attempt_deadline{};

  std::string path() const {
    if (!ever_welcomed || !t.positioned || t.epoch.empty()) return recovery_path(room, "STU", user);
    return recovery_path(room, "STU", user, t.last, t.epoch);
  }
  std::string describe() const {
    std::string s = user + " in " + room + " (connects " + std::to_string(connects) + ", failed " +
                    std::to_string(failed_connects) + ", nodes";
    for (const auto& n : nodes) s += " " + n;
    s += ", start " + std::to_string(start) + ", last " + std::to_string(t.last) + ", epoch " + t.epoch;
    if (!drops.empty()) {
      s += ", ended:";
      for (const auto& d : drops) s += " [" + d + "]";
    }
    return s + ")";
  }
};

// Many clients driven by one epoll loop: connects and upgrades are non-blocking and run
// concurrently (at most max_in_flight at once), frames are read as they arrive, and a dropped
// client reconnects at once (then every 100-200 ms while attempts fail) with
// ?since=<last seq>&epoch=<epoch>, as a real client would. One socket per client; no thread per
// client.
class client_pool {
 public:
  client_pool() : ep_(::epoll_create1(EPOLL_CLOEXEC)), born_(std::chrono::steady_clock::now()) {
    if (ep_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  }
  ~client_pool() {
    stop();
    clients_.clear();  // closes the sockets
    ::close(ep_);
  }
  client_pool(const client_pool&) = delete;
  client_pool& operator=(const client_pool&) = delete;

  pooled_client& add(std::uint16_t port, const std::string& room, const std::string& user) {
    std::lock_guard lk(mu_);
    auto c = std::make_unique<pooled_client>();
    c->port = port;
    c->room = room;
    c->user = user;
    c->t.room = room;
    c->index = static_cast<std::uint32_t>(clients_.size());
    clients_.push_back(std::move(c));
    return *clients_.back();
  }

  // Connects (upgrades) every client that isn't connected, concurrently, before start(). Any
  // refused or failed upgrade is an error here: returns why (empty when every client is open).
  std::string connect_all(std::chrono::milliseconds timeout = 60s) {
    {
      std::lock_guard lk(mu_);
      strict_ = true;
      failure_.clear();
      for (auto& c : clients_)
        if (c->ws.closed()) c->pending = true;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string why;
    while (true) {
      run_once(10);
      std::lock_guard lk(mu_);
      if (!failure_.empty()) {
        why = failure_;
        break;
      }
      const auto open = std::count_if(clients_.begin(), clients_.end(), [](auto& c) { return c->ws.is_open(); });
      if (static_cast<std::size_t>(open) == clients_.size()) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        why = "only " + std::to_string(open) + " of " + std::to_string(clients_.size()) + " clients connected in time";
        break;
      }
    }
    std::lock_guard lk(mu_);
    strict_ = false;
    return why;
  }

  void start() {
    stop_ = false;
    thread_ = std::thread([this] {
      while (!stop_) run_once(10);
    });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  // Runs fn with the pool's state locked (the loop is between rounds; it lets a waiting caller in
  // before its next round, so a busy loop can't starve the test thread).
  template <class Fn>
  auto inspect(Fn&& fn) {
    ++waiting_;
    std::unique_lock lk(mu_);
    --waiting_;
    return fn(clients_);
  }

  // Successful upgrades: how many, their mean and longest time from connect() to the 101 (ms).
  std::string upgrade_summary() {
    return inspect([&](auto&) {
      char b[200];
      std::snprintf(b, sizeof b, "%d upgrades, %.0f ms on average, %.0f ms at most (longest loop round %.0f ms)",
                    upgrades_, upgrades_ ? upgrade_ms_total_ / upgrades_ : 0.0, upgrade_ms_max_, round_ms_max_);
      return std::string(b);
    });
  }

  // How many connections ended for each reason (timestamps and close codes' details stripped of
  // the time), over every client: e.g. {"EOF": 334}.
  std::map<std::string, int> drop_reasons() {
    return inspect([](auto& cs) {
      std::map<std::string, int> out;
      for (auto& c : cs)
        for (const auto& d : c->drops) ++out[d.substr(d.find(' ') + 1)];
      return out;
    });
  }

  // Waits until pred(client) holds for every client.
  bool wait_all(const std::function<bool(const pooled_client&)>& pred, std::chrono::milliseconds timeout) {
    return poll_until(
        [&] {
          return inspect(
              [&](auto& cs) { return std::all_of(cs.begin(), cs.end(), [&](const auto& c) { return pred(*c); }); });
        },
        timeout, 50ms);
  }

  std::atomic<bool> reconnect{true};
  std::size_t max_in_flight = 200;                 // concurrent connects/upgrades
  std::chrono::milliseconds attempt_timeout = 5s;  // connect + upgrade

 private:
  static bool in_flight(lite_ws::phase p) { return p == lite_ws::phase::connecting || p == lite_ws::phase::upgrading; }

  std::string stamp() const {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - born_).count();
    char b[32];
    std::snprintf(b, sizeof b, "t+%.3fs ", static_cast<double>(ms) / 1000.0);
    return b;
  }
  void note(pooled_client& c, const std::string& what) {
    if (c.drops.size() < 8) c.drops.push_back(stamp() + what);
  }

  // Registers (or re-registers) c's socket for what its phase needs.
  void watch(pooled_client& c) {
    const std::uint32_t want = EPOLLIN | (c.ws.wants_write() ? EPOLLOUT : 0u);
    if (c.events == want) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = (static_cast<std::uint64_t>(c.gen) << 32) | c.index;
    if (::epoll_ctl(ep_, c.events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.ws.fd(), &ev) != 0)
      note(c, std::string("epoll_ctl ") + (c.events ? "MOD" : "ADD") + " fd " + std::to_string(c.ws.fd()) + ": " +
                  std::strerror(errno));
    c.events = want;
  }

  void attempt(pooled_client& c, std::chrono::steady_clock::time_point now) {
    c.pending = false;
    c.welcomed = false;
    ++c.gen;
    c.events = 0;  // a new socket: closing the old one removed it from the epoll set
    if (!c.ws.begin(c.port, c.path())) {
      attempt_failed(c, now);
      return;
    }
    ++in_flight_;
    c.attempt_deadline = now + attempt_timeout;
    watch(c);
  }

  void attempt_failed(pooled_client& c, std::chrono::steady_clock::time_point now, const std::string& why = {}) {
    ++c.failed_connects;
    note(c, "attempt failed: " + (why.empty() ? c.ws.why() : why));
    if (strict_ && failure_.empty()) failure_ = "could not connect " + c.describe();
    c.pending = true;
    c.next_try = now + 100ms + std::chrono::milliseconds(jitter_() % 100);
  }

  // Drives c after its socket reported readiness (or its attempt timed out).
  void advance(pooled_client& c, std::chrono::steady_clock::time_point now) {
    const auto before = c.ws.state();
    frames_.clear();
    c.ws.step(frames_);
    if (in_flight(before) && c.ws.is_open()) {
      ++c.connects;
      const double ms = std::chrono::duration<double, std::milli>(now - (c.attempt_deadline - attempt_timeout)).count();
      ++upgrades_;
      upgrade_ms_total_ += ms;
      upgrade_ms_max_ = std::max(upgrade_ms_max_, ms);
      c.ws.step(frames_);  // whatever came with the 101
    }
    if (in_flight(before) && !in_flight(c.ws.state())) --in_flight_;
    for (const auto& f : frames_) handle(c, f);
    if (c.ws.closed()) {
      if (in_flight(before)) {
        attempt_failed(c, now);
      } else {
        note(c, c.ws.why());
        c.pending = reconnect.load();
        c.next_try = now;
      }
      return;
    }
    watch(c);
  }

  void run_once(int timeout_ms) {
    epoll_event evs[256];
    const int n = ::epoll_wait(ep_, evs, 256, timeout_ms);
    for (int spins = 0; waiting_.load() > 0 && spins < 100000; ++spins) std::this_thread::yield();
    std::lock_guard lk(mu_);
    const auto now = std::chrono::steady_clock::now();
    struct round_timer {
      client_pool& p;
      std::chrono::steady_clock::time_point t0;
      ~round_timer() {
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        p.round_ms_max_ = std::max(p.round_ms_max_, ms);
      }
    } timer{*this, now};
    for (int i = 0; i < n; ++i) {
      const auto idx = static_cast<std::uint32_t>(evs[i].data.u64 & 0xffffffffu);
      const auto gen = static_cast<std::uint32_t>(evs[i].data.u64 >> 32);
      if (idx >= clients_.size()) continue;
      auto& c = *clients_[idx];
      if (c.gen != gen || c.ws.closed()) continue;  // an event of a socket closed earlier in this round
      advance(c, now);
    }
    for (auto& cp : clients_) {
      auto& c = *cp;
      if (in_flight(c.ws.state()) && now >= c.attempt_deadline) {
        const std::string where = c.ws.state() == lite_ws::phase::connecting ? "TCP connect" : "upgrade";
        c.ws.drop();
        --in_flight_;
        attempt_failed(c, now, "no 101 within " + std::to_string(attempt_timeout.count()) + " ms (in " + where + ")");
      }
    }
    for (auto& cp : clients_) {
      if (in_flight_ >= max_in_flight) break;
      auto& c = *cp;
      if (c.pending && c.ws.closed() && now >= c.next_try && (strict_ || reconnect.load())) attempt(c, now);
    }
  }

  void handle(pooled_client& c, const std::string& text) {
    if (!c.welcomed) {
      auto v = try_parse_json(text);
      if (v && json_string(*v, "type") == "welcome") {
        c.welcomed = true;
        c.nodes.push_back(json_string(*v, "node"));
        if (!c.ever_welcomed) {
          c.t.on_welcome(*v, true);
          c.start = c.t.last;
          c.start_epoch = c.t.epoch;
          c.ever_welcomed = true;
        }
        c.t.remember(text);
        return;
      }
    }
    const auto gaps = c.t.gaps.size();
    c.t.on_frame(text);
    if (c.t.gaps.size() != gaps) c.gap_at.push_back(c.t.seqs.size());
  }

  int ep_;
  std::chrono::steady_clock::time_point born_;
  std::vector<std::unique_ptr<pooled_client>> clients_;
  std::vector<std::string> frames_;
  std::size_t in_flight_ = 0;
  int upgrades_ = 0;
  double upgrade_ms_total_ = 0, upgrade_ms_max_ = 0, round_ms_max_ = 0;
  bool strict_ = false;
  std::string failure_;
  std::minstd_rand jitter_{std::random_device{}()};
  std::mutex mu_;
  std::atomic<int> waiting_{0};
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// ---------------------------------------------------------------- publishing

struct publish_answer {
  unsigned status = 0;
  json::value body;
  std::string error;  // transport error
  std::uint64_t seq() const { return static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(body, "seq", 0))); }
  std::string epoch() const { return json_string(body, "epoch"); }
  bool duplicate() const { return json_bool(body, "duplicate"); }
};

// One kept-alive HTTP/1.1 connection to 127.0.0.1:<port> (a node or nginx), for a publisher that
// sends its requests one after another. Reconnects when the server closed it.
class http_keepalive {
 public:
  explicit http_keepalive(std::uint16_t port) : port_(port), stream_(ioc_) {}
  http_keepalive(const http_keepalive&) = delete;
  http_keepalive& operator=(const http_keepalive&) = delete;

  void set_port(std::uint16_t port) {
    if (port == port_) return;
    close();
    port_ = port;
  }
  std::uint16_t port() const { return port_; }
  int connections() const { return connections_; }

  // POST target with a JSON body; throws std::runtime_error on a transport error or timeout (the
  // connection is closed then). A request on a reused connection that the server had closed in
  // the meantime (EOF/reset before any answer) is sent once more on a fresh one.
  http_response post_json(const std::string& target, const std::string& body, std::chrono::milliseconds timeout) {
    namespace http = boost::beast::http;
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    for (int attempt = 0;; ++attempt) {
      const bool reused = open_;
      try {
        return exchange(req, timeout);
      } catch (const stale_connection&) {
        close();
        if (!reused || attempt > 0) throw std::runtime_error("POST " + target + ": connection closed by the server");
      } catch (...) {
        close();
        throw;
      }
    }
  }

  void close() {
    boost::beast::error_code ignored;
    stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    stream_.close();
    open_ = false;
  }

 private:
  struct stale_connection : std::runtime_error {
    stale_connection() : std::runtime_error("stale") {}
  };

  http_response exchange(boost::beast::http::request<boost::beast::http::string_body>& req,
                         std::chrono::milliseconds timeout) {
    namespace beast = boost::beast;
    namespace http = beast::http;
    namespace asio = boost::asio;
    beast::error_code result;
    std::string stage;
    if (!open_) {
      stage = "connect";
      stream_.expires_after(timeout);
      stream_.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port_),
                            [&](beast::error_code ec) { result = ec; });
      ioc_.restart();
      ioc_.run();
      if (result)
        throw std::runtime_error("POST " + std::string(req.target()) + " failed at connect: " + result.message());
      open_ = true;
      ++connections_;
      buffer_.clear();
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    stage = "write";
    stream_.expires_after(timeout);
    http::async_write(stream_, req, [&](beast::error_code ec, std::size_t) {
      if (ec) return void(result = ec);
      stage = "read";
      http::async_read(stream_, buffer_, parser, [&](beast::error_code ec2, std::size_t) { result = ec2; });
    });
    ioc_.restart();
    ioc_.run();
    if (result) {
      const bool stale = (stage == "write" || !parser.got_some()) &&
                         (result == http::error::end_of_stream || result == asio::error::eof ||
                          result == asio::error::connection_reset || result == asio::error::broken_pipe);
      if (stale) throw stale_connection();
      throw std::runtime_error("POST " + std::string(req.target()) + " failed at " + stage + ": " + result.message());
    }
    auto& res = parser.get();
    http_response out;
    out.status = res.result_int();
    for (const auto& field : res) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
      out.headers[name] = std::string(field.value());
    }
    out.body = std::move(res.body());
    if (!res.keep_alive()) close();
    return out;
  }

  std::uint16_t port_;
  boost::asio::io_context ioc_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  bool open_ = false;
  int connections_ = 0;
};

inline publish_answer parse_publish_answer(const http_response& res) {
  publish_answer a;
  a.status = res.status;
  if (auto v = try_parse_json(res.body))
    a.body = std::move(*v);
  else
    a.body = json::string(res.body);
  return a;
}

inline publish_answer try_publish(std::uint16_t port, const std::string& body, std::chrono::milliseconds timeout = 5s) {
  publish_answer a;
  try {
    a = parse_publish_answer(http_post_json(port, "/api/publish", body, {}, timeout));
  } catch (const std::exception& e) {
    a.error = e.what();
  }
  return a;
}

inline publish_answer try_publish(http_keepalive& conn, const std::string& body,
                                  std::chrono::milliseconds timeout = 5s) {
  publish_answer a;
  try {
    a = parse_publish_answer(conn.post_json("/api/publish", body, timeout));
  } catch (const std::exception& e) {
    a.error = e.what();
  }
  return a;
}

inline std::string room_body(const std::string& room, const std::string& id, const std::string& data_json) {
  return "{\"room\":" + json_quote(room) + ",\"id\":" + json_quote(id) + ",\"data\":" + data_json + "}";
}

// Publishes with `id` until a 200 arrives (503 / 502 / transport errors are retried with the same
// id, as a backend would). Returns the 200 answer, or the last failure at the deadline.
struct retry_stats {
  std::atomic<int> retries{0};
  std::atomic<int> duplicates{0};
  std::atomic<int> unsequenced{0};
  std::mutex mu;
  std::vector<std::string> failures;  // statuses/errors seen (first few)
  void note(const std::string& s) {
    std::lock_guard lk(mu);
    if (failures.size() < 20) failures.push_back(s);
  }
};

template <class Attempt>
publish_answer publish_retrying_with(Attempt&& attempt, retry_stats& st, std::chrono::milliseconds patience,
                                     std::vector<std::string>* trail) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  publish_answer a;
  while (true) {
    a = attempt();
    if (a.status == 200) {
      if (a.duplicate()) ++st.duplicates;
      if (json_bool(a.body, "unsequenced")) ++st.unsequenced;
      if (trail && !trail->empty()) trail->push_back("200 " + json::serialize(a.body));
      return a;
    }
    const std::string what =
        a.status ? std::to_string(a.status) + " " + json::serialize(a.body) : "transport: " + a.error;
    if (trail) trail->push_back(what);
    st.note(what);
    ++st.retries;
    if (std::chrono::steady_clock::now() >= deadline) return a;
    std::this_thread::sleep_for(50ms);
  }
}

inline publish_answer publish_retrying(std::uint16_t port, const std::string& body, retry_stats& st,
                                       std::chrono::milliseconds patience = 30s,
                                       std::vector<std::string>* trail = nullptr) {
  return publish_retrying_with([&] { return try_publish(port, body, 3s); }, st, patience, trail);
}

// Publishes to `rooms` at `rate` messages/s per room (ids "<tag>-<room>-<n>", data {"n":n}) from
// `threads` threads until stopped; every message is retried with its id until accepted. Each
// thread sends its rooms' messages one after another on one kept-alive connection (so a room's
// messages are published in order). A thread that falls behind its schedule catches up (at most
// one second's worth at once; older ticks are skipped and counted in skipped_ticks()).
class stream_publisher {
 public:
  stream_publisher(std::uint16_t port, std::vector<std::string> rooms, double rate, std::string tag)
      : port_(port), rooms_(std::move(rooms)), rate_(rate), tag_(std::move(tag)) {}
  ~stream_publisher() { stop(); }

  // `threads` threads (at most one per room), each publishing its rooms' messages in turn.
  void start(unsigned threads) {
    begin_run();
    for (unsigned t = 0; t < threads; ++t) {
      std::vector<std::string> mine;
      for (std::size_t i = t; i < rooms_.size(); i += threads) mine.push_back(rooms_[i]);
      threads_.emplace_back([this, mine] { run(mine, rate_, std::chrono::microseconds(0)); });
    }
  }
  // `per_room` threads for every room, each at rate/per_room (staggered): a room has up to
  // per_room publishes in flight at once, so its seqs no longer follow the order of its `n`s.
  void start_per_room(unsigned per_room) {
    begin_run();
    const auto period = std::chrono::microseconds(static_cast<std::int64_t>(1e6 / rate_));
    for (const auto& room : rooms_)
      for (unsigned k = 0; k < per_room; ++k)
        threads_.emplace_back([this, room, per_room, k, period] { run({room}, rate_ / per_room, period * k); });
  }
  // One thread (and connection) per room; every request carries all of that room's messages that
  // came due while the previous one was answered (a JSON-array batch), so the rate holds however
  // long a publish takes (a confirm on a loaded debug build takes hundreds of ms).
  void start_batched() {
    begin_run();
    for (const auto& room : rooms_) threads_.emplace_back([this, room] { run_batched(room); });
  }
  void stop() {
    stop_ = true;
    bool joined = false;
    for (auto& t : threads_)
      if (t.joinable()) {
        t.join();
        joined = true;
      }
    threads_.clear();
    if (joined) {
      std::lock_guard lk(mu_);
      stopped_at_ = std::chrono::steady_clock::now();
      accepted_in_run_ = accepted_locked() - accepted_at_start_;
    }
  }
  void set_port(std::uint16_t p) { port_ = p; }

  // One more message to every room (retried until accepted); call after stop().
  void publish_once_each() {
    http_keepalive conn(port_);
    for (const auto& r : rooms_) publish(conn, r);
  }

  struct room_state {
    std::vector<std::string> epochs;               // in the order first seen
    std::map<std::string, std::uint64_t> max_seq;  // per epoch
    std::uint64_t accepted = 0;
  };
  room_state state(const std::string& room) {
    std::lock_guard lk(mu_);
    return rooms_state_[room];
  }
  std::uint64_t head(const std::string& room) {
    std::lock_guard lk(mu_);
    auto& st = rooms_state_[room];
    return st.epochs.empty() ? 0 : st.max_seq[st.epochs.back()];
  }
  std::uint64_t total_accepted() {
    std::lock_guard lk(mu_);
    return accepted_locked();
  }
  // Messages accepted per second between start() and stop() (all rooms together).
  double achieved_rate() {
    std::lock_guard lk(mu_);
    const double secs = std::chrono::duration<double>(stopped_at_ - started_at_).count();
    return secs > 0 ? static_cast<double>(accepted_in_run_) / secs : 0;
  }
  double run_seconds() {
    std::lock_guard lk(mu_);
    return std::chrono::duration<double>(stopped_at_ - started_at_).count();
  }
  std::uint64_t skipped_ticks() const { return skipped_.load(); }
  std::vector<std::string> given_up() {
    std::lock_guard lk(mu_);
    return given_up_;
  }
  // Every publish that needed more than one attempt, with each attempt's outcome.
  std::vector<std::string> retried() {
    std::lock_guard lk(mu_);
    return retried_;
  }
  // The slowest accepted publish (all its attempts), in milliseconds.
  double slowest_publish_ms() {
    std::lock_guard lk(mu_);
    return slowest_ms_;
  }
  double mean_publish_ms() {
    std::lock_guard lk(mu_);
    const auto n = accepted_locked();
    return n ? total_ms_ / static_cast<double>(n) : 0;
  }
  retry_stats stats;

 private:
  void begin_run() {
    stop_ = false;
    std::lock_guard lk(mu_);
    started_at_ = std::chrono::steady_clock::now();
    accepted_at_start_ = accepted_locked();
  }

  std::uint64_t accepted_locked() {
    std::uint64_t n = 0;
    for (auto& [r, st] : rooms_state_) n += st.accepted;
    return n;
  }

  // Sends body until it is accepted (or 20 s pass); keeps the attempts of a request that needed
  // more than one. Returns the last answer and the time all attempts took, in ms.
  std::pair<publish_answer, double> send_retrying(http_keepalive& conn, const std::string& body,
                                                  const std::string& what) {
    std::vector<std::string> trail;
    const auto t0 = std::chrono::steady_clock::now();
    auto a = publish_retrying_with(
        [&] {
          conn.set_port(port_);
          return try_publish(conn, body, 3s);
        },
        stats, 20s, &trail);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!trail.empty()) {
      std::string t = what + ":";
      for (auto& x : trail) t += " [" + x + "]";
      std::lock_guard lk(mu_);
      retried_.push_back(t);
    }
    return {std::move(a), ms};
  }

  // One accepted message's answer ({"seq":…,"epoch":…}): the room's highest seq per epoch. Holds mu_.
  static void record_locked(room_state& st, const json::value& answer) {
    ++st.accepted;
    const auto seq = static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(answer, "seq", 0)));
    if (seq == 0) return;
    const auto e = json_string(answer, "epoch");
    if (std::find(st.epochs.begin(), st.epochs.end(), e) == st.epochs.end()) st.epochs.push_back(e);
    st.max_seq[e] = std::max(st.max_seq[e], seq);
  }

  void publish(http_keepalive& conn, const std::string& room) {
    std::uint64_t n;
    {
      std::lock_guard lk(mu_);
      n = ++counter_[room];
    }
    const std::string id = tag_ + "-" + room + "-" + std::to_string(n);
    const auto [a, ms] = send_retrying(conn, room_body(room, id, "{\"n\":" + std::to_string(n) + "}"), id);
    std::lock_guard lk(mu_);
    if (a.status != 200) {
      given_up_.push_back(id + ": " + (a.status ? json::serialize(a.body) : a.error));
      return;
    }
    slowest_ms_ = std::max(slowest_ms_, ms);
    total_ms_ += ms;
    record_locked(rooms_state_[room], a.body);
  }

  // Publishes `count` messages of `room` in one batch (retried whole, with the same ids, until
  // accepted: a repeat is answered as a duplicate with its first seq).
  void publish_batch(http_keepalive& conn, const std::string& room, std::uint64_t count) {
    std::uint64_t first;
    {
      std::lock_guard lk(mu_);
      first = counter_[room] + 1;
      counter_[room] += count;
    }
    std::string body = "[";
    for (std::uint64_t n = first; n < first + count; ++n) {
      if (n != first) body += ",";
      body += room_body(room, tag_ + "-" + room + "-" + std::to_string(n), "{\"n\":" + std::to_string(n) + "}");
    }
    body += "]";
    const std::string what = tag_ + "-" + room + "-" + std::to_string(first) + "+" + std::to_string(count);
    const auto [a, ms] = send_retrying(conn, body, what);
    std::lock_guard lk(mu_);
    const auto* results = a.body.is_object() ? a.body.as_object().if_contains("results") : nullptr;
    if (a.status != 200 || !results || !results->is_array() || results->as_array().size() != count) {
      given_up_.push_back(what + ": " + (a.status ? json::serialize(a.body) : a.error));
      return;
    }
    slowest_ms_ = std::max(slowest_ms_, ms);
    auto& st = rooms_state_[room];
    for (const auto& r : results->as_array()) {
      total_ms_ += ms;
      if (json_bool(r, "duplicate")) ++stats.duplicates;
      if (json_bool(r, "unsequenced")) ++stats.unsequenced;
      record_locked(st, r);
    }
  }

  void run_batched(const std::string& room) {
    http_keepalive conn(port_);
    const auto period = std::chrono::microseconds(static_cast<std::int64_t>(1e6 / rate_));
    auto next = std::chrono::steady_clock::now();
    while (!stop_) {
      const auto now = std::chrono::steady_clock::now();
      std::uint64_t due = 0;
      while (next <= now && due < 1000) {
        ++due;
        next += period;
      }
      if (due == 0) {
        std::this_thread::sleep_until(next);
        continue;
      }
      publish_batch(conn, room, due);
    }
  }

  void run(const std::vector<std::string>& mine, double rate, std::chrono::microseconds offset) {
    http_keepalive conn(port_);
    const auto period = std::chrono::microseconds(static_cast<std::int64_t>(1e6 / rate));
    const auto max_behind = std::chrono::microseconds(1'000'000);
    auto next = std::chrono::steady_clock::now() + offset;
    std::this_thread::sleep_until(next);
    while (!stop_) {
      for (const auto& r : mine) {
        if (stop_) break;
        publish(conn, r);
      }
      next += period;
      const auto now = std::chrono::steady_clock::now();
      if (next > now) {
        std::this_thread::sleep_for(next - now);
      } else if (now - next > max_behind) {  // too far behind: skip the oldest ticks
        const auto skip = (now - next - max_behind) / period;
        skipped_ += static_cast<std::uint64_t>(skip);
        next += skip * period;
      }
    }
  }

  std::atomic<std::uint16_t> port_;
  std::vector<std::string> rooms_;
  double rate_;
  std::string tag_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> skipped_{0};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::string, std::uint64_t> counter_;
  std::map<std::string, room_state> rooms_state_;
  std::vector<std::string> given_up_;
  std::vector<std::string> retried_;
  std::chrono::steady_clock::time_point started_at_{}, stopped_at_{};
  std::uint64_t accepted_at_start_ = 0, accepted_in_run_ = 0;
  double slowest_ms_ = 0, total_ms_ = 0;
};

// ---------------------------------------------------------------- redis with persistence

class persistent_redis {
 public:
  persistent_redis() : dir_(cluster::make_temp_dir("redis-persist")) {
    std::string why;
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = cluster::script_free_port();
      auto r = start_cmd();
      if (r.status == 0) return;
      why = r.output;
      stop();
    }
    throw std::runtime_error("redis.sh start --persist failed: " + why);
  }
  ~persistent_redis() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  persistent_redis(const persistent_redis&) = delete;
  persistent_redis& operator=(const persistent_redis&) = delete;

  cluster::command_result start_cmd() {
    return run_command(shell_quote(scripts_dir() + "/redis.sh") + " start " + shell_quote(dir_) + " " +
                       std::to_string(port_) + " --persist");
  }
  cluster::command_result stop() {
    return run_command(shell_quote(scripts_dir() + "/redis.sh") + " stop " + shell_quote(dir_));
  }
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string dir() const { return dir_; }

 private:
  std::string dir_;
  std::uint16_t port_ = 0;
};

inline cluster::command_result redis_cli(std::uint16_t port, const std::string& args) {
  return run_command("redis-cli -p " + std::to_string(port) + " " + args);
}

}  // namespace roomcast::itest::recovery
