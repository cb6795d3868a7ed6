#include "transport/sse_session.hpp"

#include "transport/shard_context.hpp"

#include <boost/asio/post.hpp>

namespace roomcast::transport {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
hub::frame_ref sse_frame(std::string event) {
  return hub::frame_ref(new hub::local_frame(hub::local_frame::sse_only{std::move(event)}));
}
// Built once per process: every stream's heartbeat is the same three bytes.
const hub::frame_ref& heartbeat() {
  static thread_local const hub::frame_ref f = sse_frame(std::string(protocol::sse_heartbeat));
  return f;
}
constexpr int max_reads_per_wakeup = 4;  // a client has nothing to send on a stream: what it sends is dropped
}  // namespace

sse_session::sse_session(shard_context& ctx, asio::ip::tcp::socket socket, hub::identity id, std::string url_room,
                         ssl_ptr tls)
    : session(ctx, std::move(id), std::move(socket), std::move(tls)),
      url_room_(std::move(url_room)),
      last_event_(ctx.now()),
      last_write_(ctx.now()) {
  ctx_.counters().sse_connections.add();
}

sse_session::~sse_session() { ctx_.counters().sse_connections.sub(); }

void sse_session::start(recovery_request recovery, std::int64_t token_exp) {
  token_exp_ = token_exp;
  error_code ec;
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  if (const auto sb = ctx_.svc().cfg.send_buffer_bytes; sb > 0)
    socket_.set_option(asio::socket_base::send_buffer_size(static_cast<int>(sb)), ec);
  // The response head waits in the queue and leaves in one write with the welcome.
  enqueue(sse_frame(std::string(protocol::sse_response_head())));
  ctx_.tables().add(*this);
  ctx_.counters().joins.add();
  join_room(url_room_, std::move(recovery), true);
  arm_read();
}

// ---- events in ----

void sse_session::deliver(const hub::frame_ref& f) {
  if (state_ != state::open) return;
  offer(f, f->sse());
}

void sse_session::deliver_at(const hub::frame_ref& f, std::uint64_t seq, std::string_view epoch) {
  if (state_ != state::open) return;
  offer(f, f->sse(seq, epoch));
}

void sse_session::offer(const hub::frame_ref& f, std::string_view event) {
  if (queue_.bytes() + event.size() > ctx_.svc().cfg.max_queue_bytes) {
    // Slow consumer: drop what it hasn't read; it reconnects and recovers from history.
    end_stream(protocol::close_code::slow_consumer, "slow consumer", metrics::close_reason::slow_consumer, true);
    return;
  }
  enqueue(f);
}

void sse_session::send_text(std::string_view payload) { enqueue(sse_frame(protocol::sse_event(payload))); }

void sse_session::send_gap(std::string_view payload, std::uint64_t seq, std::string_view epoch) {
  // The gap's id is where the room is now: a reconnect asks from there, not for the hole again.
  enqueue(sse_frame(protocol::sse_event(payload, seq, epoch)));
}

void sse_session::queue_welcome(std::string_view payload, const protocol::room_position& pos) {
  // Its id is the room's position: a client that reconnects before any message still recovers
  // what was published in between.
  // Nothing was written yet: the response head is at the front, the welcome goes right behind it.
  queue_.insert(queue_.front() ? 1 : 0, sse_frame(protocol::sse_event(payload, pos.seq, pos.epoch)), {},
                ctx_.counters().queued_bytes);
  welcomed_ = true;
  schedule_flush();
}

void sse_session::queue_recovered(hub::frame_ref f, std::uint64_t seq, std::string_view epoch) {
  f->sse(seq, epoch);  // built with its id before the queue reads it
  enqueue(std::move(f));
}

// ---- writing ----

void sse_session::enqueue(hub::frame_ref f) {
  if (state_ == state::closed) return;
  if (queue_.done()) last_write_ = ctx_.now();  // the no-progress clock starts with a non-empty queue
  last_event_ = ctx_.now();
  queue_.push(std::move(f), {}, ctx_.counters().queued_bytes);
  schedule_flush();
}

void sse_session::schedule_flush() {
  if (flush_scheduled_ || write_waiting_) return;
  flush_scheduled_ = true;
  ++pending_ops_;
  ctx_.request_flush(this);
}

void sse_session::flush() {
  // Called from the shard's flush handler, which counted this as a pending op.
  flush_scheduled_ = false;
  if (state_ != state::closed && !write_waiting_ && welcomed_) {
    error_code ec;
    const auto written = queue_.write(writer(), ec, {}, ctx_.counters().queued_bytes);
    ctx_.counters().bytes_out.add(written);
    if (written > 0) last_write_ = ctx_.now();
    if (ec == asio::error::would_block || ec == asio::error::try_again)
      wait_writable();
    else if (ec)
      terminate(state_ == state::closing ? close_reason_ : close_reason_for(ec));
    else if (close_after_flush_)
      terminate(close_reason_);
  }
  op_done();
}

void sse_session::wait_writable() {
  write_waiting_ = true;
  ++pending_ops_;
  socket_.async_wait(asio::socket_base::wait_write, [this](const error_code& ec) {
    write_waiting_ = false;
    if (ec) {
      if (state_ != state::closed) terminate(metrics::close_reason::error);
      op_done();
      return;
    }
    ++pending_ops_;  // flush() ends with op_done() for its own count
    flush();
    op_done();
  });
}

// ---- reading: only to see the client go ----

void sse_session::arm_read() {
  if (state_ == state::closed || read_waiting_) return;
  read_waiting_ = true;
  ++pending_ops_;
  // A zero-byte wait: no buffer is held while the stream is idle.
  socket_.async_wait(asio::socket_base::wait_read, [this](const error_code& ec) {
    read_waiting_ = false;
    on_readable(ec);
    op_done();
  });
}

void sse_session::on_readable(const error_code& ec) {
  if (state_ == state::closed) return;
  if (ec) return terminate(metrics::close_reason::error);
  auto buf = ctx_.read_buffer();
  for (int i = 0; i < max_reads_per_wakeup; ++i) {
    error_code rec;
    read_some(buf, rec);
    if (rec == asio::error::would_block || rec == asio::error::try_again) break;
    // EOF: the client closed the stream (EventSource.close(), a closed tab).
    if (rec) return terminate(state_ == state::closing ? close_reason_ : close_reason_for(rec));
  }
  arm_read();
}

// ---- closing ----

void sse_session::kick(std::uint16_t code, std::string_view reason) {
  if (state_ != state::open) return;
  send_text(protocol::encode_kicked(code, reason));
  end_stream(code, reason, metrics::close_reason::kicked, false);
}

void sse_session::drain() {
  end_stream(protocol::close_code::service_restart, "server restart", metrics::close_reason::drain, false);
}

void sse_session::end_stream(std::uint16_t code, std::string_view reason, metrics::close_reason why, bool drop_queue) {
  if (state_ != state::open) return;
  state_ = state::closing;
  close_reason_ = why;
  // Counted at the decision (a slow consumer that never reads holds its socket until the deadline).
  ctx_.counters().close(why);
  if (drop_queue) {
    // Keep a partly written event, and the response head if it has not gone yet.
    const std::size_t keep = queue_.front() && (queue_.front_started() || !welcomed_) ? 1 : 0;
    queue_.drop_unsent(keep, {}, ctx_.counters().queued_bytes);
  }
  welcomed_ = true;  // closing before the welcome: the head and the close event still go out
  close_after_flush_ = true;
  deadline_ = ctx_.now() + ctx_.svc().cfg.pong_timeout;
  queue_.push(sse_frame(protocol::sse_event(protocol::encode_close(code, reason))), {}, ctx_.counters().queued_bytes);
  schedule_flush();
  if (drop_queue) make_room_for_last_frame(socket_.native_handle());  // the client reads 4008, not only EOF
}

void sse_session::tick(clock::time_point now) {
  const auto& cfg = ctx_.svc().cfg;
  switch (state_) {
    case state::closed:
      return;
    case state::closing:
      if (now >= deadline_) terminate(close_reason_);  // a peer that won't read
      return;
    case state::open:
      if (token_exp_ != 0) {
        const auto wall =
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                .count();
        if (wall > token_exp_ + cfg.jwt_leeway.count())
          return end_stream(protocol::close_code::token_expired, "token expired: reconnect with a new token",
                            metrics::close_reason::token_expired, false);
      }
      // No pong on a stream: a peer that takes nothing for ping_interval + pong_timeout is gone.
      if (!queue_.done() && welcomed_ && now - last_write_ >= cfg.ping_interval + cfg.pong_timeout)
        return terminate(metrics::close_reason::ping_timeout);
      if (welcomed_ && now - last_event_ >= cfg.ping_interval) {
        enqueue(heartbeat());
      }
      return;
  }
}

void sse_session::terminate(metrics::close_reason why) {
  if (state_ == state::closed) return;
  const bool counted = state_ == state::closing;
  state_ = state::closed;
  if (!counted) ctx_.counters().close(why);
  close_socket();  // completes pending waits with operation_aborted
  queue_.clear(ctx_.counters().queued_bytes);
  // Every way out passes here, so every session leaves every index exactly once.
  ctx_.tables().remove(*this);
  ++pending_ops_;
  asio::post(ctx_.io(), [this] { op_done(); });
}

void sse_session::op_done() {
  if (--pending_ops_ == 0 && state_ == state::closed) ctx_.destroy(this);
}

}  // namespace roomcast::transport
