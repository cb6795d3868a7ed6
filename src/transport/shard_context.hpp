#pragma once
// One shard: a thread's io_context, its acceptor, its sessions and their tables.
// Thread: everything except the constructor, stats readers and post() runs on this shard's thread.
#include "api/api_handler.hpp"
#include "config/config.hpp"
#include "hub/client_commands.hpp"
#include "hub/router.hpp"
#include "history/history.hpp"
#include "hub/shard.hpp"
#include "hub/source_limiter.hpp"
#include "metrics/counters.hpp"
#include "protocol/deflate.hpp"
#include "protocol/route_template.hpp"
#include "transport/session.hpp"
#include "transport/tls_context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace roomcast::transport {

// Node-wide services a shard uses; all outlive the shards.
struct services {
  const config::config& cfg;
  const protocol::route_template& route;
  hub::router& router;
  api::handler& api;
  api::node_state& state;
  history::history* history;         // null: no history at all
  const hub::client_rights& rights;  // what client frames may do (from cfg)
  receipts::store* receipts;         // must-arrive messages (null: none)
  const tls_context* tls = nullptr;  // the port speaks TLS (config tls_cert/tls_key); null: plain
};

class shard_context {
 public:
  using clock = std::chrono::steady_clock;

  shard_context(unsigned index, services& svc);
  ~shard_context();
  shard_context(const shard_context&) = delete;
  shard_context& operator=(const shard_context&) = delete;

  unsigned index() const noexcept { return index_; }
  boost::asio::io_context& io() noexcept { return io_; }
  hub::shard& tables() noexcept { return tables_; }
  metrics::shard_counters& counters() noexcept { return counters_; }
  services& svc() noexcept { return svc_; }
  std::span<char> read_buffer() noexcept { return read_buf_; }
  // permessage-deflate input: one inflater and one output buffer per shard, used one message at a
  // time (client_no_context_takeover: no session keeps a window between messages).
  protocol::inflater& inflater() noexcept { return inflater_; }
  std::string& inflate_buffer() noexcept { return inflated_; }
  // TLS writes: a session's queued frames are copied here into one record (16 KiB, the TLS maximum).
  std::span<char> tls_write_buffer() noexcept { return tls_write_buf_; }
  clock::time_point now() const noexcept { return now_; }
  void refresh_now() noexcept { now_ = clock::now(); }

  // Binds this shard's acceptor (SO_REUSEPORT: every shard listens on the same port).
  void listen(const boost::asio::ip::tcp::endpoint& ep);
  // Starts accepting and the liveness sweep. Then run io().run() on the shard's thread.
  void start();

  // Takes an upgraded socket; the session lives on this shard until it is destroyed.
  // auth_frame: the session waits for {"type":"auth"} before it joins anything (token "-").
  void adopt(boost::asio::ip::tcp::socket socket, hub::identity id, std::string url_room, recovery_request recovery,
             std::string initial_bytes, const std::string& handshake, bool auth_frame = false,
             std::int64_t token_exp = 0, bool deflate = false, ssl_ptr tls = nullptr);
  // Takes the socket of an SSE request (GET of the route, Accept: text/event-stream): the stream
  // lives on this shard like a WebSocket session (same tables, limits, sweep and drain).
  void adopt_sse(boost::asio::ip::tcp::socket socket, hub::identity id, std::string url_room, recovery_request recovery,
                 std::int64_t token_exp, ssl_ptr tls = nullptr);
  void destroy(session* s);  // only from a posted handler, when the session has no pending op

  // Sessions ask for a flush; one posted handler writes all of them (coalesces a burst).
  void request_flush(session* s);

  // The publish/confirm rate bucket of `user`'s SSE POSTs on this shard (a POST has no session
  // to keep one: any node behind the balancer may take it). Null when the table is full
  // (source_table_size users with a bucket still refilling): the POST is refused (429).
  hub::token_bucket* post_bucket(std::string_view user);

  // Drain: close every session with 1012, spread evenly over `window` (new upgrades get 503).
  // on_empty runs on this thread once the shard holds no session.
  void begin_drain(std::chrono::milliseconds window, std::function<void()> on_empty);
  // Stop accepting only.
  void stop_accepting();

  std::uint64_t next_session_id() noexcept;

 private:
  void do_accept();
  void arm_sweep();
  void sweep();
  void drain_step();
  void check_drained();

  // Admission of an accepted connection: source_rate, then max_pending_handshakes.
  bool admit(boost::asio::ip::tcp::socket& socket);

  unsigned index_;
  services& svc_;
  // Before io_: HTTP coroutines destroyed with io_ still give their pending_handshakes back.
  metrics::shard_counters counters_;
  boost::asio::io_context io_{1};  // one thread: lets Asio skip internal locking
  hub::shard tables_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::endpoint peer_;  // of the connection being accepted
  hub::source_limiter sources_;
  boost::asio::steady_timer sweep_timer_;
  boost::asio::steady_timer drain_timer_;
  clock::time_point now_;
  std::array<char, std::size_t{16} << 10> read_buf_;
  protocol::inflater inflater_;
  std::array<char, std::size_t{16} << 10> tls_write_buf_;
  std::string inflated_;

  using session_list = boost::intrusive::list<session, boost::intrusive::constant_time_size<true>>;
  std::unique_ptr<session_list> sessions_;

  std::vector<session*> flush_list_;
  std::vector<session*> flushing_;

  struct post_bucket_entry {
    hub::token_bucket bucket;
    clock::time_point last;
  };
  std::unordered_map<std::string, post_bucket_entry, hub::string_hash, std::equal_to<>> post_buckets_;

  bool draining_ = false;
  std::size_t drain_per_step_ = 0;
  std::chrono::milliseconds drain_step_{10};
  std::function<void()> on_drained_;
  std::uint32_t session_counter_ = 0;
  std::uint32_t nonce_;
};

}  // namespace roomcast::transport
