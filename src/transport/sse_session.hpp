#pragma once
// One Server-Sent Events stream (GET of the route with Accept: text/event-stream): the SSE
// fallback for networks that block WebSocket. The same kind of hub member as a ws_session, in the
// same shard tables, fed the same shared frames: each frame's SSE event is built once per shard
// (hub::local_frame::sse), never per recipient. Publishing goes through POST on the route
// (http_session), not through this stream.
//
// The response has no length: the stream ends when the node closes the connection, after a
// {"type":"close","code","reason"} event when it is the node's decision (drain 1012, slow consumer
// 4008, kick 4000-4999, token expired 4402). Liveness: a comment heartbeat after ping_interval
// without an event, from the shard's sweep; a stream whose queue made no progress for
// ping_interval + pong_timeout is dropped (ping_timeout). Idle cost: no read buffer, no timer.
#include "transport/send_queue.hpp"
#include "transport/session.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace roomcast::transport {

class sse_session final : public session {
 public:
  // tls: the connection's TLS state when the port speaks TLS (null: plain TCP).
  sse_session(shard_context& ctx, boost::asio::ip::tcp::socket socket, hub::identity id, std::string url_room,
              ssl_ptr tls = nullptr);
  ~sse_session() override;

  // Joins the URL room and sends the response head with the welcome once the room's history
  // position is known (and what the client missed when it asked to recover), then live events.
  // token_exp: the token's exp (Unix s; 0: no token to watch).
  void start(recovery_request recovery, std::int64_t token_exp);

  void deliver(const hub::frame_ref& f) override;
  void deliver_at(const hub::frame_ref& f, std::uint64_t seq, std::string_view epoch) override;
  void kick(std::uint16_t code, std::string_view reason) override;
  void drain() override;
  void tick(clock::time_point now) override;
  void flush() override;
  void send_text(std::string_view payload) override;
  bool open() const noexcept override { return state_ == state::open; }

 private:
  enum class state : std::uint8_t { open, closing, closed };

  void queue_welcome(std::string_view payload, const protocol::room_position& pos) override;
  void queue_recovered(hub::frame_ref f, std::uint64_t seq, std::string_view epoch) override;
  void send_gap(std::string_view payload, std::uint64_t seq, std::string_view epoch) override;

  // A shared frame whose SSE bytes `event` are built: queued, or the stream closes as a slow consumer.
  void offer(const hub::frame_ref& f, std::string_view event);
  void enqueue(hub::frame_ref f);
  void schedule_flush();
  void wait_writable();
  void arm_read();
  void on_readable(const boost::system::error_code& ec);

  // Ends the stream with a close event (its code tells the client why), after what is queued, or
  // instead of it (drop_queue: a slow consumer); the socket closes once it is written or at the
  // pong_timeout deadline.
  void end_stream(std::uint16_t code, std::string_view reason, metrics::close_reason why, bool drop_queue);
  void terminate(metrics::close_reason why);
  void op_done();

  std::string url_room_;
  send_queue<sse_bytes> queue_;
  clock::time_point last_event_;  // last time something was queued (the heartbeat's clock)
  clock::time_point last_write_;  // last time the queue moved or was empty
  clock::time_point deadline_;    // closing: the socket closes then at the latest
  std::int64_t token_exp_ = 0;    // auth = jwt: the token's exp (Unix s); past it plus jwt_leeway: 4402
  std::uint8_t pending_ops_ = 0;  // async waits and scheduled flushes that reference this
  state state_ = state::open;
  metrics::close_reason close_reason_ = metrics::close_reason::error;
  bool flush_scheduled_ = false;
  bool write_waiting_ = false;
  bool read_waiting_ = false;
  bool welcomed_ = false;  // nothing is written before the welcome (it waits for the history read)
  bool close_after_flush_ = false;
};

}  // namespace roomcast::transport
