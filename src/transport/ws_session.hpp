#pragma once
// One WebSocket connection after the upgrade. Lives on its shard for life, owned by the shard.
//
// Idle cost: no read buffer (the shard's scratch buffer is used for every read), no timer (the
// shard's sweep handles ping, pong and close deadlines), an empty queue.
// Writes: frames are queued by reference and written with one gathering write when the socket
// takes them; on EAGAIN the session waits for writability. The queue is bounded in bytes.
#include "hub/client_commands.hpp"
#include "hub/member.hpp"
#include "history/history.hpp"
#include "hub/token_bucket.hpp"
#include "metrics/counters.hpp"
#include "protocol/codec.hpp"
#include "protocol/ws_frame.hpp"
#include "transport/send_queue.hpp"
#include "transport/session.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace roomcast::transport {

class shard_context;

class ws_session final : public session {
 public:
  // tls: the connection's TLS state when the port speaks TLS (null: plain TCP).
  ws_session(shard_context& ctx, boost::asio::ip::tcp::socket socket, hub::identity id, std::string url_room,
             ssl_ptr tls = nullptr);
  ~ws_session() override;

  // Joins the URL room, sends welcome (after the room's history position is known, and what the
  // client missed when it asked to recover), processes bytes that came with the upgrade, reads.
  // handshake: the HTTP 101 response, sent in the same write as the welcome.
  // auth_frame: the URL's token was "-": the 101 goes out alone and nothing else happens (no room,
  // no welcome) until a {"type":"auth"} frame with a good token, within handshake_timeout.
  // token_exp: the URL's or header's token expires then (Unix s; 0: no token to watch).
  void start(recovery_request recovery, std::string initial_bytes, const std::string& handshake,
             bool auth_frame = false, std::int64_t token_exp = 0);

  void deliver(const hub::frame_ref& f) override;
  void kick(std::uint16_t code, std::string_view reason) override;
  void drain() override;                      // close with 1012
  void tick(clock::time_point now) override;  // liveness sweep: ping, pong and close deadlines
  void flush() override;                      // called by the shard's flush handler
  void send_text(std::string_view payload) override;

  bool open() const noexcept override { return state_ == state::open; }
  // permessage-deflate was negotiated in the upgrade (before start()).
  void use_deflate() noexcept;

 private:
  enum class state : std::uint8_t { open, closing, closed };

  // Open, or closing by our side and waiting for the peer's close reply.
  // The 101 is still at the head of the queue (not written, or only in part).
  bool handshake_first() const noexcept { return handshake_ && queue_.front() == handshake_.get(); }
  websocket_bytes out() const noexcept { return {deflate_}; }  // what this session sends of a frame
  bool wants_read() const noexcept {
    return state_ == state::open || (state_ == state::closing && !close_after_flush_);
  }
  void arm_read();
  void on_readable(const boost::system::error_code& ec);
  bool process(std::size_t n);
  bool on_event(const protocol::ws_event& ev);
  void on_text(std::string_view text);
  // A compressed text message: inflated into the shard's buffer (bounded by max_frame_bytes), then
  // as on_text. False when the session closes.
  bool on_compressed_text(std::string_view payload);
  // The first frame of a session waiting for its token: accepted, it starts as start() would.
  void on_auth_frame(std::string_view text);
  void begin(recovery_request recovery);  // add to the tables, join the URL room, welcome
  void refresh(const std::string& token);
  void publish(hub::client_command c);
  void queue_welcome(std::string_view payload, const protocol::room_position& pos) override;
  void queue_recovered(hub::frame_ref f, std::uint64_t seq, std::string_view epoch) override;
  // id/room: the client frame this answers (echoed so the client can match it), empty if none.
  void send_error(std::string_view code, std::string_view message, std::string_view id = {},
                  std::string_view room = {});

  void enqueue(hub::frame_ref f);
  void wait_writable();

  void begin_close(std::uint16_t code, std::string_view reason, metrics::close_reason why, bool drop_queue);
  void terminate(metrics::close_reason why);
  void op_done();

  std::string url_room_;
  send_queue<websocket_bytes> queue_;
  std::string inbuf_;  // bytes of an incomplete frame, kept for the next read
  protocol::ws_reader reader_;
  hub::token_bucket publish_bucket_;
  hub::token_bucket join_bucket_;  // 12 bytes: join_rate
  clock::time_point last_seen_;
  clock::time_point deadline_;    // pong or close-reply deadline
  std::uint8_t pending_ops_ = 0;  // async waits and scheduled flushes that reference this
  state state_ = state::open;
  metrics::close_reason close_reason_ = metrics::close_reason::error;
  bool flush_scheduled_ = false;
  bool write_waiting_ = false;
  bool awaiting_pong_ = false;
  bool close_after_flush_ = false;
  bool read_waiting_ = false;
  bool reason_counted_ = false;  // begin_close counted the reason already
  bool deflate_ = false;         // permessage-deflate: compressed frames are sent where there are some
  bool welcomed_ = false;        // nothing is written before welcome (it waits for the history read)
  hub::frame_ref handshake_;     // the queued 101 until the welcome is queued behind it
  // Waiting for {"type":"auth"} (until deadline_): the recovery the URL asked for.
  std::unique_ptr<recovery_request> awaiting_auth_;
  // auth = jwt: the token's exp (Unix s); past it plus jwt_leeway without a refresh: 4402.
  std::int64_t token_exp_ = 0;
};

}  // namespace roomcast::transport
