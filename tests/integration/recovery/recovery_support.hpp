#pragma once
// What only the history / recovery tests need (on top of the support library):
//   - seq_tracker: follows one client's position in one room (epoch + last seq) the way a real
//     client would (from welcome / joined / gap frames and message seqs) and records every anomaly
//     (hole, duplicate, out of order, gap frame) with the frames around it;
//   - client_pool: one thread driving hundreds or thousands of ws_clients on one ws_loop, each
//     reconnecting with since/epoch when dropped;
//   - publish helpers that retry with the same id, and stream_publisher (threads, each on one
//     kept-alive http_connection) publishing to rooms at a steady rate.

#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.hpp"
#include "support/itest.hpp"
#include "support/servers.hpp"

namespace roomcast::itest::recovery {

namespace json = boost::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- paths and flags

// The seed URL of a room, with ?since=&epoch= when asked to recover.
std::string recovery_path(const std::string& room, const std::string& role, const std::string& user,
                          std::optional<std::uint64_t> since = std::nullopt, const std::string& epoch = {},
                          const std::string& platform = "pc");

// Flags of a node on the Redis Pub/Sub bus (local registry, Redis history); `script_publish`: the
// history script PUBLISHes room messages itself (redis_script_publish).
std::vector<std::string> redis_bus_args(const std::string& node_id, const std::string& redis, const std::string& prefix,
                                        bool script_publish = true);

// welcome.rooms[] entry of `room` (null when absent).
json::value welcome_room(const json::value& welcome, const std::string& room);

// ---------------------------------------------------------------- position tracking

// One client's view of one room, as a real client would keep it.
struct seq_tracker {
  std::string room;
  std::string epoch;                // learnt from welcome / joined / gap
  std::uint64_t last = 0;           // last seq delivered in `epoch`
  bool positioned = false;          // saw a welcome/joined position (or a message)
  bool filtered = false;            // the room has filtered messages: seqs meant for others are passed over,
                                    // so a seq only has to be above the last one (not last + 1)
  std::vector<std::uint64_t> seqs;  // every message seq, in arrival order (current epoch)
  std::vector<std::string> anomalies;
  std::vector<json::value> gaps;
  std::vector<json::value> recovered;
  std::deque<std::string> recent;  // last frames, for diagnostics
  std::size_t messages = 0;

  void remember(const std::string& text);
  std::string context() const;
  // Position from a welcome (first connect only: later welcomes just show the head).
  void on_welcome(const json::value& w, bool first);
  // Any frame of this room. Returns the parsed frame (null when not JSON).
  json::value on_frame(const std::string& text);
};

// seqs must be exactly from..to, each once, in order: "" when they are, else what is wrong.
std::string check_exact(const std::vector<std::uint64_t>& seqs, std::uint64_t from, std::uint64_t to);
// The same for any ascending list of wanted seqs (a member of a room with filtered messages).
std::string check_seqs(const std::vector<std::uint64_t>& seqs, const std::vector<std::uint64_t>& want);

// ---------------------------------------------------------------- many clients, one thread

struct pooled_client {
  std::string room, user;
  std::string role = "STU", platform = "pc";  // of its URL
  std::uint16_t port = 0;                     // where it connects (a node or nginx)
  std::unique_ptr<ws_client> ws;              // the current connection or attempt (one per attempt)
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
  bool dirty = false;      // its ws_client did something since the last round
  bool in_flight = false;  // an attempt is connecting/upgrading
  bool live = false;       // the current connection was open
  bool pending = false;    // wants a connection
  std::chrono::steady_clock::time_point next_try{}, attempt_deadline{};

  bool is_open() const { return ws && ws->is_open(); }
  bool closed() const { return !ws || ws->closed(); }
  std::string path() const;
  std::string describe() const;
};

// Many clients driven by one thread: connects and upgrades run concurrently on one ws_loop (at
// most max_in_flight at once), frames are read as they arrive, and a dropped client reconnects at
// once (then every 100-200 ms while attempts fail) with ?since=<last seq>&epoch=<epoch>, as a real
// client would. One socket per client; no thread per client.
class client_pool {
 public:
  client_pool();
  ~client_pool();
  client_pool(const client_pool&) = delete;
  client_pool& operator=(const client_pool&) = delete;

  pooled_client& add(std::uint16_t port, const std::string& room, const std::string& user);

  // Connects (upgrades) every client that isn't connected, concurrently, before start(). Any
  // refused or failed upgrade is an error here: returns why (empty when every client is open).
  std::string connect_all(std::chrono::milliseconds timeout = 60s);

  void start();
  void stop();

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
  std::string upgrade_summary();

  // How many connections ended for each reason (the time stripped), over every client: e.g.
  // {"End of file": 334}.
  std::map<std::string, int> drop_reasons();

  // Waits until pred(client) holds for every client.
  bool wait_all(const std::function<bool(const pooled_client&)>& pred, std::chrono::milliseconds timeout);

  std::atomic<bool> reconnect{true};
  std::size_t max_in_flight = 200;                 // concurrent connects/upgrades
  std::chrono::milliseconds attempt_timeout = 5s;  // connect + upgrade

 private:
  std::string stamp() const;
  void note(pooled_client& c, const std::string& what);
  void attempt(pooled_client& c, std::chrono::steady_clock::time_point now);
  void attempt_failed(pooled_client& c, std::chrono::steady_clock::time_point now, const std::string& why = {});
  void advance(pooled_client& c, std::chrono::steady_clock::time_point now);
  void sweep(pooled_client& c, std::chrono::steady_clock::time_point now);
  void run_once(std::chrono::milliseconds timeout);
  void handle(pooled_client& c, const std::string& text);

  ws_loop loop_;  // before clients_: outlives them
  std::chrono::steady_clock::time_point born_;
  std::vector<std::unique_ptr<pooled_client>> clients_;
  std::vector<std::string> frames_;
  std::vector<pooled_client*> dirty_;                   // to advance this round
  std::chrono::steady_clock::time_point next_sweep_{};  // deadlines and reconnects, every 5 ms
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

// Connects every client of `pool`, starts it, waits until each was welcomed and until every node
// of `ports` subscribed the room on the Redis bus. Returns what failed ("" when all did).
std::string start_and_wait_subscribed(client_pool& pool, const std::vector<std::uint16_t>& ports);

// ---------------------------------------------------------------- publishing

struct publish_answer {
  unsigned status = 0;
  json::value body;
  std::string error;  // transport error
  std::uint64_t seq() const;
  std::string epoch() const;
  bool duplicate() const;
};

publish_answer try_publish(std::uint16_t port, const std::string& body, std::chrono::milliseconds timeout = 5s);
publish_answer try_publish(http_connection& conn, const std::string& body, std::chrono::milliseconds timeout = 5s);

// `extra_members`: more members of the object, each with its leading comma (`,"roles":["THE"]`).
std::string room_body(const std::string& room, const std::string& id, const std::string& data_json,
                      const std::string& extra_members = {});

// Publishes with `id` until a 200 arrives (503 / 502 / transport errors are retried with the same
// id, as a backend would). Returns the 200 answer, or the last failure at the deadline.
struct retry_stats {
  std::atomic<int> retries{0};
  std::atomic<int> duplicates{0};
  std::atomic<int> unsequenced{0};
  std::mutex mu;
  std::vector<std::string> failures;  // statuses/errors seen (first few)
  void note(const std::string& s);
};

publish_answer publish_retrying_with(const std::function<publish_answer()>& attempt, retry_stats& st,
                                     std::chrono::milliseconds patience, std::vector<std::string>* trail);

publish_answer publish_retrying(std::uint16_t port, const std::string& body, retry_stats& st,
                                std::chrono::milliseconds patience = 30s, std::vector<std::string>* trail = nullptr);

// Publishes to `rooms` at `rate` messages/s per room (ids "<tag>-<room>-<n>", data {"n":n}) from
// `threads` threads until stopped; every message is retried with its id until accepted. Each
// thread sends its rooms' messages one after another on one kept-alive connection (so a room's
// messages are published in order). A thread that falls behind its schedule catches up (at most
// one second's worth at once; older ticks are skipped and counted in skipped_ticks()).
class stream_publisher {
 public:
  stream_publisher(std::uint16_t port, std::vector<std::string> rooms, double rate, std::string tag);
  ~stream_publisher();
  stream_publisher(const stream_publisher&) = delete;
  stream_publisher& operator=(const stream_publisher&) = delete;

  // `threads` threads (at most one per room), each publishing its rooms' messages in turn.
  void start(unsigned threads);
  // One thread (and connection) per room; every request carries all of that room's messages that
  // came due while the previous one was answered (a JSON-array batch), so the rate holds however
  // long a publish takes (a confirm on a loaded debug build takes hundreds of ms).
  void start_batched();
  void stop();

  // One more message to every room (retried until accepted); call after stop().
  void publish_once_each();

  // Where the next attempts go (a backend moving to another node when its node died).
  void set_port(std::uint16_t port) { port_ = port; }

  // Extra members of message n of a room (a filter such as `,"roles":["THE"]`; "" for none).
  // Set before start().
  std::function<std::string(const std::string& room, std::uint64_t n)> members_of;

  struct room_state {
    std::vector<std::string> epochs;               // in the order first seen
    std::map<std::string, std::uint64_t> max_seq;  // per epoch
    std::map<std::uint64_t, std::string> ids;      // seq -> message id, in the latest epoch
    std::uint64_t accepted = 0;
  };
  room_state state(const std::string& room);
  std::uint64_t head(const std::string& room);
  std::uint64_t total_accepted();
  // Messages accepted per second between start() and stop() (all rooms together).
  double achieved_rate();
  double run_seconds();
  std::uint64_t skipped_ticks() const { return skipped_.load(); }
  std::vector<std::string> given_up();
  // Every publish that needed more than one attempt, with each attempt's outcome.
  std::vector<std::string> retried();
  // The slowest accepted publish (all its attempts), in milliseconds.
  double slowest_publish_ms();
  double mean_publish_ms();
  retry_stats stats;

 private:
  void begin_run();
  std::uint64_t accepted_locked();
  std::pair<publish_answer, double> send_retrying(http_connection& conn, const std::string& body,
                                                  const std::string& what);
  static void record_locked(room_state& st, const json::value& answer);
  void publish(http_connection& conn, const std::string& room);
  void publish_batch(http_connection& conn, const std::string& room, std::uint64_t count);
  void run_batched(const std::string& room);
  void run(const std::vector<std::string>& mine, double rate, std::chrono::microseconds offset);

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

}  // namespace roomcast::itest::recovery
