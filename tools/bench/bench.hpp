// roomcast-bench: configuration, mergeable results, histograms. Workers (forked processes) fill a
// `results`, serialise it as text lines through a pipe, and the parent merges them.
#pragma once

#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace bench {

struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  sockaddr_in addr{};
  std::string text() const { return host + ":" + std::to_string(port); }
};

enum class mode { surge, hold, fanout, churn, slow, user };

// Which server the bench talks to: the WebSocket path, the handshake/keepalive after the upgrade,
// and the publish request differ (tools/bench/socketio, tools/bench/nchan).
//   roomcast: roomcast or limit-server; frames are JSON objects; POST /api/publish {"room","data"}
//   socketio: Engine.IO v4 over WebSocket: client sends "40" after the upgrade, is open on "40{…}",
//             answers the server's ping "2" with "3", messages arrive as 42["message",{data}];
//             POST /api/publish {"room","data"} to tools/bench/socketio/server.js
//   nchan:    nginx + Nchan websocket subscriber; a frame is the published body; POST /pub/<room>
enum class flavor { roomcast, socketio, nchan };

struct config {
  mode m = mode::surge;
  std::string mode_name;
  std::vector<endpoint> targets;
  endpoint api;
  flavor fl = flavor::roomcast;
  std::string flavor_name = "roomcast";
  std::string path_template = "/demo/websocket/{room}/STU/{user}/{token}/pc";
  bool spread_members = false;  // --target-spread members: target = (i / rooms) % targets (each room on every target)
  std::string token = "x";
  std::string role = "STU", platform = "pc";
  std::string api_key;
  std::vector<in_addr> sources;
  int workers = 1;
  std::vector<int> server_pids;
  std::string json_file, plot_file;
  double timeout = 120;
  long connections = 1000;  // surge, hold; computed for fanout/slow (rooms*members) and user (users)
  long concurrency = 1000;  // connects in flight (whole run, split over workers)
  double hold = 10;         // surge: seconds to hold
  double rate = 0;          // hold: connects/s; fanout/slow: msgs/s per room; user: msgs/s total
  double duration = 10;     // hold: hold time; fanout/slow/user: publish time
  long rooms = 1;
  long members = 100;
  long users = 1000;
  long cycles = 1000;
  double slow_share = 0.1;
  int slow_rcvbuf = 4096;
  int payload = 0;            // extra bytes of padding in each published data
  bool payload_text = false;  // --payload-text: the padding is words (compresses like prose), not 'x'
  bool deflate = false;       // --deflate: offer permessage-deflate and inflate what comes compressed
  double connect_timeout = 10;
  double grace = 3;  // after the last publish, time for deliveries to arrive
  int api_conns = 4;
  int api_batch = 1;                // messages per POST /api/publish (> 1: a JSON array body)
  int filter_every = 0;             // every Nth message of a target carries "roles":[filter_role] (0: none)
  std::string filter_role = "THE";  // a role the bench's members (--role) don't have: they skip those
  std::uint64_t seed = 42;
  std::int64_t t0 = 0;  // run start (CLOCK_MONOTONIC ns), shared by all processes
};

// Log-linear histogram of non-negative integers (µs): exact below 64, then 32 buckets per power
// of two (≤ 3 % relative error).
struct hist {
  static constexpr int sub = 32, size = 64 + 44 * sub;
  std::vector<std::uint64_t> c;
  std::uint64_t n = 0;
  std::int64_t max = 0;

  static int index(std::int64_t v) {
    if (v < 64) return v < 0 ? 0 : int(v);
    const int e = 63 - __builtin_clzll(std::uint64_t(v));
    const int i = 64 + (e - 6) * sub + int((v >> (e - 5)) & (sub - 1));
    return std::min(i, size - 1);
  }
  static std::int64_t value(int i) {
    if (i < 64) return i;
    const int e = (i - 64) / sub + 6, s = (i - 64) % sub;
    return (std::int64_t(sub + s) << (e - 5)) + ((std::int64_t(1) << (e - 5)) >> 1);
  }
  void add(std::int64_t v, std::uint64_t k = 1) {
    if (c.empty()) c.assign(size, 0);
    c[std::size_t(index(v))] += k;
    n += k;
    max = std::max(max, v);
  }
  void merge(const hist& o) {
    if (o.c.empty()) return;
    if (c.empty()) c.assign(size, 0);
    for (int i = 0; i < size; ++i) c[std::size_t(i)] += o.c[std::size_t(i)];
    n += o.n;
    max = std::max(max, o.max);
  }
  std::int64_t pct(double p) const {
    if (n == 0) return 0;
    const auto want = std::uint64_t(std::ceil(p * double(n)));
    std::uint64_t acc = 0;
    for (int i = 0; i < size; ++i) {
      acc += c[std::size_t(i)];
      if (acc >= std::max<std::uint64_t>(want, 1)) return std::min(value(i), max);
    }
    return max;
  }
};

struct target_stat {
  std::uint64_t open = 0;      // normal (non-slow) members open at the end of the connect phase
  std::uint64_t received = 0;  // unique message deliveries
};

struct results {
  std::map<std::string, std::uint64_t> cnt;  // counters, summed
  std::map<std::string, std::int64_t> mx;    // maxima
  std::map<std::string, hist> h;             // "handshake", "latency"
  std::map<int, std::uint64_t> per_sec;      // deliveries per second since t0
  std::map<int, hist> per_sec_lat;           // latency per receive second since t0
  std::map<std::uint32_t, target_stat> targets;
  std::vector<std::int64_t> slow_close_ms;  // when slow clients saw their connection end (since t0)

  void add(const std::string& k, std::uint64_t v = 1) { cnt[k] += v; }
  void set_max(const std::string& k, std::int64_t v) {
    auto [it, fresh] = mx.emplace(k, v);
    if (!fresh) it->second = std::max(it->second, v);
  }
  std::uint64_t get(const std::string& k) const {
    auto it = cnt.find(k);
    return it == cnt.end() ? 0 : it->second;
  }

  std::string serialize() const;
  void parse_line(const std::string& line);  // merges one serialised line
};

// worker entry point (bench_worker.cpp): runs connections [first, last) and writes its results to out_fd.
int run_worker(const config& cfg, int worker, long first, long last, int ctl_fd, int out_fd);

}  // namespace bench
