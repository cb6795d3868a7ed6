#pragma once
// What every client session of a shard is, WebSocket (ws_session) or SSE (sse_session): a hub
// member in its shard_context's session list (swept, flushed, drained, destroyed there), and what
// both do the same way: joining a room (the history read, then welcome or joined, the missed
// messages or a gap, then the unconfirmed must-arrive messages) and publishing a client frame.
// Thread: the owning shard's only.
#include "bus/bus.hpp"
#include "history/history.hpp"
#include "hub/client_commands.hpp"
#include "hub/member.hpp"
#include "hub/router.hpp"
#include "metrics/counters.hpp"
#include "protocol/codec.hpp"
#include "transport/tls_context.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/intrusive/list_hook.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace roomcast::transport {

class shard_context;

// What a client asked to recover: from its URL (?since=&epoch=), a join frame, or (SSE) the
// Last-Event-ID its EventSource sends back when it reconnects.
struct recovery_request {
  bool wanted = false;
  std::uint64_t since = 0;
  std::string epoch;
};

class session : public hub::member,
                public boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::normal_link>> {
 public:
  using clock = std::chrono::steady_clock;

  virtual void tick(clock::time_point now) = 0;  // the shard's sweep: liveness and deadlines
  virtual void flush() = 0;                      // the shard's flush handler (request_flush)
  virtual void drain() = 0;                      // close: the node is going away (1012)
  virtual bool open() const noexcept = 0;
  // A frame for this session only (error, ack, joined, recovered, …): its JSON.
  virtual void send_text(std::string_view payload) = 0;

  // Joins `room`; for a room with history, reads its position (and what the client missed) first.
  // initial: the URL's room, answered with welcome (which goes out before anything else).
  void join_room(const std::string& room, recovery_request recovery, bool initial);

 protected:
  // tls: the connection's TLS state when the port speaks TLS (null: plain TCP).
  session(shard_context& ctx, hub::identity id, boost::asio::ip::tcp::socket socket, ssl_ptr tls)
      : hub::member(std::move(id)), ctx_(ctx), socket_(std::move(socket)), tls_(std::move(tls)) {}

  // The socket's bytes, through TLS when there is TLS: a non-blocking read or a gathering write
  // (TLS: the buffers copied into one record of at most 16 KiB), would_block when it can't go on.
  std::size_t read_some(std::span<char> into, boost::system::error_code& ec);
  std::size_t write_some(std::span<const boost::asio::const_buffer> bufs, boost::system::error_code& ec);
  // TLS holds plaintext it read (while it had to write first, or behind the HTTP request): no
  // socket readiness will tell.
  bool tls_pending() const noexcept;
  // write_some as a callable, for send_queue::write.
  auto writer() noexcept {
    return [this](std::span<const boost::asio::const_buffer> bufs, boost::system::error_code& ec) {
      return write_some(bufs, ec);
    };
  }
  // Ends the connection: TLS close_notify (best effort), then shutdown and close of the socket
  // (pending waits complete with operation_aborted).
  void close_socket() noexcept;

  // The welcome, ahead of every frame queued while the history was read. pos: the URL room's.
  virtual void queue_welcome(std::string_view payload, const protocol::room_position& pos) = 0;
  // A message the recovery sends again, in order: at `seq` of `epoch`.
  virtual void queue_recovered(hub::frame_ref f, std::uint64_t seq, std::string_view epoch) = 0;
  // A gap of this session's recovery; seq/epoch: where the room is now (an SSE client resumes there).
  virtual void send_gap(std::string_view payload, std::uint64_t /*seq*/, std::string_view /*epoch*/) {
    send_text(payload);
  }

  shard_context& ctx_;
  boost::asio::ip::tcp::socket socket_;
  ssl_ptr tls_;  // 8 bytes; OpenSSL releases its record buffers while the connection is idle

 private:
  void on_synced(const std::string& room, const recovery_request& recovery, bool initial,
                 const history::read_result& r);
  // Sends the room's messages with receipts this user has not confirmed (after a join), except what
  // the join's recovery just sent: (since, recovered_to] of `epoch`.
  void redeliver_unconfirmed(const std::string& room, std::uint64_t since, std::uint64_t recovered_to,
                             const std::string& epoch);
};

// The bus envelope of a client's publish command (WebSocket frame or SSE POST): the room, the data,
// the filter, the id (`claim_id` when the client gave one), from the session's user.
bus::envelope client_publish_envelope(hub::router& router, unsigned shard, std::string_view user,
                                      hub::client_command&& c);

// Why a connection ended, from the socket error that ended it: a peer that went away (closed tab,
// lost network: EOF, reset, broken pipe) is `dropped`, not a server error.
metrics::close_reason close_reason_for(const boost::system::error_code& ec) noexcept;

// A client frame was refused (an error command): counts it, and the limit that refused it.
void count_refusal(metrics::shard_counters& counters, const hub::client_command& c) noexcept;

// A slow consumer's kernel send buffer is full, so a last frame would never get in and the client
// would see only EOF. Doubles the buffer once so the frame lands behind what the client has yet to
// read: when it reads, it learns why. SO_SNDBUF is capped at net.core.wmem_max; a bigger
// (autotuned) buffer grows only with SO_SNDBUFFORCE (CAP_NET_ADMIN), else the client sees EOF.
// send_buffer_bytes keeps it under the cap.
void make_room_for_last_frame(int fd) noexcept;

}  // namespace roomcast::transport
