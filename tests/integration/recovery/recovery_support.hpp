#pragma once
// Helpers for the history / recovery integration tests (header-only; on top of
// cluster/cluster_support.hpp):
//   - lite_ws: a non-blocking WebSocket client (handshake through raw_ws_client, then frames parsed
//     by hand) so that one thread can poll() hundreds of sessions;
//   - seq_tracker: follows one client's position in one room (epoch + last seq) the way a real
//     client would (from welcome / joined / gap frames and message seqs) and records every anomaly
//     (hole, duplicate, out of order, gap frame) with the frames around it;
//   - persistent_redis: a redis-server that can be stopped and started again on the same port/dir;
//   - publish helpers that retry with the same id.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <cerrno>
#include <cstring>
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
    throw std::runtime_error("upgrade of " + path + " answered " + std::to_string(status) + " (" +
                             m.ws->last_error() + ")");
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

class lite_ws {
 public:
  // Handshake (blocking, bounded), then the socket is switched to non-blocking.
  unsigned connect(std::uint16_t port, const std::string& path, std::chrono::milliseconds timeout = 5s) {
    raw_ = std::make_unique<raw_ws_client>();
    inbuf_.clear();
    message_.clear();
    closed_ = false;
    close_code_.reset();
    const unsigned st = raw_->connect(port, path, timeout);
    if (st != 101) {
      closed_ = true;
      return st;
    }
    ::fcntl(raw_->fd(), F_SETFL, ::fcntl(raw_->fd(), F_GETFL) | O_NONBLOCK);
    return st;
  }
  int fd() const { return raw_ ? raw_->fd() : -1; }
  bool closed() const { return closed_; }
  std::optional<std::uint16_t> close_code() const { return close_code_; }
  void drop() {
    if (raw_) raw_->close();
    closed_ = true;
  }

  // Reads what is readable and appends complete text messages to `out`. Answers pings.
  void pump(std::vector<std::string>& out) {
    if (closed_ || fd() < 0) return;
    char buf[65536];
    while (true) {
      ssize_t n = ::recv(fd(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        inbuf_.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      closed_ = true;  // 0 = FIN, <0 = reset
      break;
    }
    parse(out);
  }

  bool send_text(std::string_view text) { return send_frame(0x1, text); }

 private:
  void parse(std::vector<std::string>& out) {
    std::size_t pos = 0;
    while (true) {
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
        closed_ = true;
      } else if (op == 0x9) {
        send_frame(0xA, payload);
      }
    }
    inbuf_.erase(0, pos);
  }

  bool send_frame(unsigned op, std::string_view payload) {
    if (closed_ || fd() < 0 || payload.size() > 65535) return false;
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
      ssize_t n = ::send(fd(), rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        rest.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) &&
          std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd(), POLLOUT, 0};
        ::poll(&p, 1, 10);
        continue;
      }
      return false;
    }
    return true;
  }

  std::unique_ptr<raw_ws_client> raw_;
  std::string inbuf_;
  std::string message_;
  bool closed_ = true;
  std::optional<std::uint16_t> close_code_;
};

// ---------------------------------------------------------------- position tracking

// One client's view of one room, as a real client would keep it.
struct seq_tracker {
  std::string room;
  std::string epoch;      // learnt from welcome / joined / gap
  std::uint64_t last = 0;  // last seq delivered in `epoch`
  bool positioned = false;  // saw a welcome/joined position (or a message)
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
          anomalies.push_back("expected seq " + std::to_string(last + 1) + " got " + std::to_string(seq) +
                              " (epoch " + epoch + "); recent frames:" + context());
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
  bool welcomed = false;        // the current connection's welcome arrived
  bool ever_welcomed = false;
  std::uint64_t start = 0;      // seq in the first welcome: it must get start+1..head
  std::string start_epoch;
  int connects = 0;
  int failed_connects = 0;
  std::vector<std::string> nodes;  // node of each welcome
  std::vector<std::size_t> gap_at;  // seqs.size() when each gap frame arrived
  std::chrono::steady_clock::time_point next_try{};

  std::string path() const {
    if (!ever_welcomed || !t.positioned || t.epoch.empty()) return recovery_path(room, "STU", user);
    return recovery_path(room, "STU", user, t.last, t.epoch);
  }
  std::string describe() const {
    std::string s = user + " in " + room + " (connects " + std::to_string(connects) + ", nodes";
    for (const auto& n : nodes) s += " " + n;
    s += ", start " + std::to_string(start) + ", last " + std::to_string(t.last) + ", epoch " + t.epoch + ")";
    return s;
  }
};

// Connects clients, reads their frames in one poll() thread and reconnects dropped ones with
// ?since=<last seq>&epoch=<epoch> (bounded: 100 ms between attempts).
class client_pool {
 public:
  ~client_pool() { stop(); }

  pooled_client& add(std::uint16_t port, const std::string& room, const std::string& user) {
    auto c = std::make_unique<pooled_client>();
    c->port = port;
    c->room = room;
    c->user = user;
    c->t.room = room;
    clients_.push_back(std::move(c));
    return *clients_.back();
  }

  // Connects every client that isn't yet (call before start()).
  std::string connect_all() {
    for (auto& c : clients_)
      if (!try_connect(*c)) return "could not connect " + c->describe();
    return {};
  }

  void start() {
    stop_ = false;
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  // Runs fn with the pool's state locked (the poll thread is between rounds).
  template <class Fn>
  auto inspect(Fn&& fn) {
    std::lock_guard lk(mu_);
    return fn(clients_);
  }

  // Waits until pred(client) holds for every client.
  bool wait_all(const std::function<bool(const pooled_client&)>& pred, std::chrono::milliseconds timeout) {
    return poll_until(
        [&] {
          return inspect([&](auto& cs) {
            return std::all_of(cs.begin(), cs.end(), [&](const auto& c) { return pred(*c); });
          });
        },
        timeout, 50ms);
  }

  bool reconnect = true;

 private:
  bool try_connect(pooled_client& c) {
    c.welcomed = false;
    const unsigned st = c.ws.connect(c.port, c.path(), 3s);
    if (st == 101) {
      ++c.connects;
      return true;
    }
    ++c.failed_connects;
    c.next_try = std::chrono::steady_clock::now() + 100ms;
    return false;
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

  void run() {
    std::vector<pollfd> fds;
    std::vector<pooled_client*> who;
    std::vector<std::string> frames;
    while (!stop_) {
      fds.clear();
      who.clear();
      {
        std::lock_guard lk(mu_);
        for (auto& c : clients_) {
          if (c->ws.closed()) continue;
          fds.push_back({c->ws.fd(), POLLIN, 0});
          who.push_back(c.get());
        }
      }
      if (fds.empty()) std::this_thread::sleep_for(10ms);
      else ::poll(fds.data(), fds.size(), 10);
      std::lock_guard lk(mu_);
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        frames.clear();
        who[i]->ws.pump(frames);
        for (const auto& f : frames) handle(*who[i], f);
      }
      if (!reconnect) continue;
      const auto now = std::chrono::steady_clock::now();
      for (auto& c : clients_)
        if (c->ws.closed() && now >= c->next_try) try_connect(*c);
    }
  }

  std::vector<std::unique_ptr<pooled_client>> clients_;
  std::mutex mu_;
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

inline publish_answer try_publish(std::uint16_t port, const std::string& body,
                                  std::chrono::milliseconds timeout = 5s) {
  publish_answer a;
  try {
    auto res = http_post_json(port, "/api/publish", body, {}, timeout);
    a.status = res.status;
    if (auto v = try_parse_json(res.body)) a.body = std::move(*v);
    else a.body = json::string(res.body);
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

inline publish_answer publish_retrying(std::uint16_t port, const std::string& body, retry_stats& st,
                                       std::chrono::milliseconds patience = 30s,
                                       std::vector<std::string>* trail = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  publish_answer a;
  while (true) {
    a = try_publish(port, body, 3s);
    if (a.status == 200) {
      if (a.duplicate()) ++st.duplicates;
      if (json_bool(a.body, "unsequenced")) ++st.unsequenced;
      if (trail && !trail->empty()) trail->push_back("200 " + json::serialize(a.body));
      return a;
    }
    const std::string what = a.status ? std::to_string(a.status) + " " + json::serialize(a.body) : "transport: " + a.error;
    if (trail) trail->push_back(what);
    st.note(what);
    ++st.retries;
    if (std::chrono::steady_clock::now() >= deadline) return a;
    std::this_thread::sleep_for(50ms);
  }
}

// Publishes to `rooms` at `rate` messages/s per room (ids "<tag>-<room>-<n>", data {"n":n}) from
// `threads` threads until stopped; every message is retried with its id until accepted.
class stream_publisher {
 public:
  stream_publisher(std::uint16_t port, std::vector<std::string> rooms, double rate, std::string tag)
      : port_(port), rooms_(std::move(rooms)), rate_(rate), tag_(std::move(tag)) {}
  ~stream_publisher() { stop(); }

  void start(unsigned threads) {
    stop_ = false;
    for (unsigned t = 0; t < threads; ++t) {
      std::vector<std::string> mine;
      for (std::size_t i = t; i < rooms_.size(); i += threads) mine.push_back(rooms_[i]);
      threads_.emplace_back([this, mine] { run(mine); });
    }
  }
  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }
  void set_port(std::uint16_t p) { port_ = p; }

  // One more message to every room (retried until accepted); call after stop().
  void publish_once_each() {
    for (const auto& r : rooms_) publish(r);
  }

  struct room_state {
    std::vector<std::string> epochs;                  // in the order first seen
    std::map<std::string, std::uint64_t> max_seq;    // per epoch
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
    std::uint64_t n = 0;
    for (auto& [r, st] : rooms_state_) n += st.accepted;
    return n;
  }
  std::vector<std::string> given_up() {
    std::lock_guard lk(mu_);
    return given_up_;
  }
  // Every publish that needed more than one attempt, with each attempt's outcome.
  std::vector<std::string> retried() {
    std::lock_guard lk(mu_);
    return retried_;
  }
  retry_stats stats;

 private:
  void publish(const std::string& room) {
    std::uint64_t n;
    {
      std::lock_guard lk(mu_);
      n = ++counter_[room];
    }
    const std::string id = tag_ + "-" + room + "-" + std::to_string(n);
    std::vector<std::string> trail;
    auto a = publish_retrying(port_, room_body(room, id, "{\"n\":" + std::to_string(n) + "}"), stats, 20s, &trail);
    std::lock_guard lk(mu_);
    if (!trail.empty()) {
      std::string t = id + ":";
      for (auto& x : trail) t += " [" + x + "]";
      retried_.push_back(t);
    }
    if (a.status != 200) {
      given_up_.push_back(id + ": " + (a.status ? json::serialize(a.body) : a.error));
      return;
    }
    auto& st = rooms_state_[room];
    ++st.accepted;
    if (a.seq() == 0) return;
    const auto e = a.epoch();
    if (std::find(st.epochs.begin(), st.epochs.end(), e) == st.epochs.end()) st.epochs.push_back(e);
    st.max_seq[e] = std::max(st.max_seq[e], a.seq());
  }

  void run(const std::vector<std::string>& mine) {
    const auto period = std::chrono::microseconds(static_cast<std::int64_t>(1e6 / rate_));
    auto next = std::chrono::steady_clock::now();
    while (!stop_) {
      for (const auto& r : mine) {
        if (stop_) break;
        publish(r);
      }
      next += period;
      auto now = std::chrono::steady_clock::now();
      if (next > now) std::this_thread::sleep_for(next - now);
      else next = now;  // behind: don't burst to catch up
    }
  }

  std::atomic<std::uint16_t> port_;
  std::vector<std::string> rooms_;
  double rate_;
  std::string tag_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::string, std::uint64_t> counter_;
  std::map<std::string, room_state> rooms_state_;
  std::vector<std::string> given_up_;
  std::vector<std::string> retried_;
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
