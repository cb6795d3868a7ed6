#pragma once
// Per-shard counters: written by their shard's thread only, read by the scraper from any thread.
// A relaxed load + store (not fetch_add) compiles to plain moves: no locked instruction on the hot
// path, and still no data race for the reader.
#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace roomcast::metrics {

class counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  void set(std::uint64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Why a session ended. Every close path names one; docs/api.md lists them.
enum class close_reason : std::uint8_t {
  client,         // the client sent a close frame
  error,          // socket error other than the peer going away
  dropped,        // the peer went away without a close frame (EOF, reset): a closed tab, a lost network
  ping_timeout,   // no pong in time
  slow_consumer,  // outbound queue over max_queue_bytes
  kicked,         // POST /api/disconnect
  drain,          // node shutting down (1012)
  protocol,       // protocol violation: bad frame, bad UTF-8, binary frame
  too_big,        // frame over max_frame_bytes (1009)
  unauthorized,   // token "-" in the URL and no good {"type":"auth"} within handshake_timeout (4401)
  token_expired,  // the token's exp (+ jwt_leeway) passed without a {"type":"refresh"} (4402)
  count_
};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(close_reason::count_)> close_reason_names{
    "client", "error",    "dropped", "ping_timeout", "slow_consumer", "kicked",
    "drain",  "protocol", "too_big", "unauthorized", "token_expired"};

// Why an HTTP upgrade was refused.
enum class handshake_failure : std::uint8_t {
  not_found,      // 404: path does not match the route
  bad_request,    // 400: empty room/user, bad upgrade headers
  unauthorized,   // 401: bad or expired token
  forbidden,      // 403: Origin not allowed
  over_capacity,  // 503: max_connections
  draining,       // 503: node is shutting down
  timeout,        // request not complete within handshake_timeout
  tls,            // TLS port: the TLS handshake failed, or the client spoke plain HTTP (400)
  count_
};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(handshake_failure::count_)>
    handshake_failure_names{"not_found",     "bad_request", "unauthorized", "forbidden",
                            "over_capacity", "draining",    "timeout",      "tls"};

struct shard_counters {
  counter connections;      // gauge: open sessions (WebSocket and SSE)
  counter sse_connections;  // gauge: open SSE streams (in connections too)
  counter index_rooms;      // gauge: rooms in this shard's index
  counter index_users;      // gauge: users in this shard's index
  counter joins;            // sessions opened
  counter room_joins;       // room memberships added (URL room + join frames)
  std::array<counter, static_cast<std::size_t>(close_reason::count_)> closes;
  std::array<counter, static_cast<std::size_t>(handshake_failure::count_)> handshake_failures;
  counter messages_in;           // client text frames received
  counter messages_inflated;     // of them, compressed (permessage-deflate)
  counter deflate_sessions;      // sessions that negotiated permessage-deflate
  counter messages_out;          // frames queued to sessions (deliveries)
  counter queued_bytes;          // gauge: bytes waiting in sessions' outbound queues
  counter messages_filtered;     // room message deliveries skipped: the member is not in its audience
  counter bytes_out;             // bytes written to WebSocket sockets
  counter publishes_api;         // POST /api/publish accepted
  counter publishes_client;      // client publishes accepted
  counter client_errors;         // error frames sent
  counter http_requests;         // HTTP requests served (API, metrics, files)
  counter duplicates_dropped;    // room messages dropped as already delivered (seq <= last)
  counter gap_fills;             // holes in a room's sequence read from history
  counter gaps_unfilled;         // holes history could not fill (clients got a gap frame)
  counter recoveries;            // joins with since that were recovered
  counter recovery_gaps;         // joins with since that got a gap frame
  counter receipts_confirmed;    // {"type":"received"} frames taken
  counter receipts_redelivered;  // unconfirmed must-arrive messages sent again on a join
  // Abuse limits (README "Limits"): what each one refused.
  counter refused_source_rate;                 // connections over source_rate (429, closed unread)
  counter refused_pending_full;                // connections over max_pending_handshakes (503, closed unread)
  counter pending_handshakes;                  // gauge: connections still in HTTP
  counter source_table_entries;                // gauge: source addresses tracked
  counter source_table_evictions;              // addresses forgotten because the table was full
  std::array<counter, 2> json_refused_client;  // [0] depth, [1] members (json_max_depth, json_max_members)
  std::array<counter, 2> json_refused_api;
  counter join_rate_limited;  // join frames over join_rate

  void close(close_reason r) noexcept { closes[static_cast<std::size_t>(r)].add(); }
  void handshake_failed(handshake_failure f) noexcept { handshake_failures[static_cast<std::size_t>(f)].add(); }
};

}  // namespace roomcast::metrics
