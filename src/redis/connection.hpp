#pragma once
// One connection to one Redis address, on the process's Redis thread (redis::loop): hiredis's
// reply parser on an Asio socket. Commands are pipelined (sent at once, many in flight, replies
// matched in order); the waiting ones are bounded (errc::queue_full). A reply that takes longer
// than `timeout`, a refused or broken socket, or a failed connect drops the connection: every
// waiting command fails with a redis::errc (timeout, disconnected), and it reconnects after a
// jittered backoff (common::backoff). A command made while a connect is under way waits for it;
// while the connection is down between attempts, send() fails at once (not_connected): callers
// decide whether to buffer (the bus), fail fast (history) or resync later (registry).
//
// On every connect the registered Lua scripts are loaded (SCRIPT LOAD); eval() runs them by sha
// and, when Redis answers NOSCRIPT (its script cache was flushed), loads the script again and
// resends the call. Only then is the connection up and on_connected() called: the place to
// resubscribe or resync.
//
// Subscriber mode (subscriber = true): the connection is for SUBSCRIBE/UNSUBSCRIBE only, and every
// reply after the handshake (confirmations and messages) goes to on_push(); a command still counts
// as waiting until all its confirmations came (one per channel), so a Redis that doesn't confirm
// in time drops the connection too.
//
// Why not hiredis's redisAsyncContext: 0.14 has no connect or command timeout, its pub/sub mode
// asserts on replies it does not expect and never pairs a regular command sent while subscribed,
// it write()s without MSG_NOSIGNAL (SIGPIPE), and a context may only be freed outside its own
// callbacks. hiredis's reader does the protocol here; Asio the socket (send() uses MSG_NOSIGNAL);
// our own queue the pairing and deadlines (redis/command_queue.hpp).
//
// Threads: construct, configure (add_script, on_*) and start() on any thread before the first
// use; send(), eval(), up(), queued() and stop() on the Redis thread only (loop::post there).
// Every handler runs on the Redis thread. append_metrics() and is_up() may be called anywhere.
#include "redis/command_queue.hpp"
#include "redis/errors.hpp"
#include "redis/loop.hpp"
#include "redis/scripts.hpp"

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace roomcast::redis {

struct connection_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string name = "redis";  // in logs: "history", "registry", "bus publisher", ...
  // Bounds the connect and every reply (a pipeline's replies each within it of being sent).
  std::chrono::milliseconds timeout{2'000};
  std::chrono::milliseconds reconnect_min{100};  // backoff between attempts: exponential, jittered
  std::chrono::milliseconds reconnect_max{2'000};
  std::size_t max_queue = 100'000;  // commands waiting for their reply; beyond it send() fails
  bool subscriber = false;
  std::string while_down;  // logged with the (once per outage) "unreachable" line: what happens meanwhile
};

// Which lines append_metrics() writes, each named <prefix>_<what>.
enum metric_lines : unsigned {
  metric_up = 1,           // <prefix>_up: 1 while connected
  metric_commands = 2,     // <prefix>_commands_total: commands sent
  metric_batches = 4,      // <prefix>_batches_total: socket writes (one per pipeline)
  metric_errors = 8,       // <prefix>_errors_total: error replies and failed commands
  metric_reconnects = 16,  // <prefix>_reconnects_total: connections made
  metric_queue = 32,       // <prefix>_queue: commands waiting for their reply
};

class connection {
 public:
  // `l` must outlive the connection (backends hold the loop's shared_ptr next to it).
  connection(loop& l, connection_options o);
  ~connection();  // stops it if still running (from a thread other than the Redis thread)
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // ---- before start() ----
  script_set::id add_script(std::string body);
  void on_connected(std::function<void()> f);                    // up (scripts loaded)
  void on_disconnected(std::function<void(std::error_code)> f);  // was up, now down
  void on_push(std::function<void(const redisReply*)> f);        // subscriber mode: every reply
  void on_read(std::function<void()> f);                         // subscriber mode: after each socket read
  void start();                                                  // connects (on the Redis thread)

  // ---- Redis thread only ----
  // Sends one command (pipelined behind those in flight); `done` gets its reply (an error reply
  // comes with errc::error_reply and the reply). Fails at once (done called before send returns)
  // when full, or down with no connect under way.
  void send(const command& args, reply_handler done);
  // Runs script `s` by sha; `args` = numkeys, keys..., argv... .
  void eval(script_set::id s, command args, reply_handler done);
  bool up() const noexcept;
  std::size_t queued() const noexcept;
  // Closes: every waiting command fails with errc::stopped; no handler is called after it.
  void stop();
  // stop() on the Redis thread, and waits for it (from any other thread).
  void stop_and_wait();

  // ---- any thread ----
  bool is_up() const noexcept;
  std::uint64_t reconnects() const noexcept;
  void append_metrics(std::string& out, const char* prefix, unsigned lines) const;

  struct state;

 private:
  loop& loop_;
  std::shared_ptr<state> s_;
};

}  // namespace roomcast::redis
