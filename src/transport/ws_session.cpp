#include "transport/ws_session.hpp"

#include <unistd.h>

#include "auth/jwt.hpp"
#include "hub/router.hpp"
#include "transport/shard_context.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <csignal>

namespace roomcast::transport {

namespace asio = boost::asio;
using boost::system::error_code;
using protocol::ws_opcode;

namespace {
// Frames every session may send: built once per process.
const protocol::shared_frame& ping_frame() {
  static const auto f = protocol::make_frame(ws_opcode::ping, {});
  return f;
}
const protocol::shared_frame& pong_json_frame() {
  static const auto f = protocol::make_frame(ws_opcode::text, protocol::pong_payload());
  return f;
}
constexpr int max_reads_per_wakeup = 16;  // then yield so one busy client can't starve the shard
}  // namespace

ws_session::ws_session(shard_context& ctx, asio::ip::tcp::socket socket, hub::identity id, std::string url_room,
                       ssl_ptr tls)
    : session(ctx, std::move(id), std::move(socket), std::move(tls)),
      url_room_(std::move(url_room)),
      reader_(ctx.svc().cfg.max_frame_bytes),
      last_seen_(ctx.now()) {}

ws_session::~ws_session() = default;

void ws_session::use_deflate() noexcept {
  deflate_ = true;
  reader_.accept_compressed(true);
  ctx_.counters().deflate_sessions.add();
}

void ws_session::start(recovery_request recovery, std::string initial_bytes, const std::string& handshake,
                       bool auth_frame, std::int64_t token_exp) {
  token_exp_ = token_exp;
  error_code ec;
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);  // set at accept: no syscall
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  if (!handshake.empty()) {
    // The 101 waits in the queue like a frame and leaves in one write with the welcome.
    handshake_ = hub::make_local(protocol::make_raw(handshake));
    queue_.push(handshake_, out(), ctx_.counters().queued_bytes);
  }
  if (const auto sb = ctx_.svc().cfg.send_buffer_bytes; sb > 0)
    socket_.set_option(asio::socket_base::send_buffer_size(static_cast<int>(sb)), ec);
  if (auth_frame) {
    // Only the 101 goes out; the session is in no table until its token is good.
    awaiting_auth_ = std::make_unique<recovery_request>(std::move(recovery));
    deadline_ = ctx_.now() + ctx_.svc().cfg.handshake_timeout;
    welcomed_ = true;  // lets the 101 go out now (handshake_ stays: the welcome goes behind it)
    flush_scheduled_ = true;
    ++pending_ops_;
    ctx_.request_flush(this);
  } else {
    begin(std::move(recovery));
  }

  if (!initial_bytes.empty()) {
    // Frames the client sent right behind its upgrade request: parse them as if just read.
    inbuf_ = std::move(initial_bytes);
    if (!process(0) || !wants_read()) return;
  }
  if (tls_pending()) {
    // Decrypted or buffered bytes the HTTP reader left in OpenSSL: the socket won't signal them.
    ++pending_ops_;
    asio::post(ctx_.io(), [this] {
      on_readable({});
      op_done();
    });
    return;
  }
  arm_read();
}

void ws_session::begin(recovery_request recovery) {
  ctx_.tables().add(*this);
  ctx_.counters().joins.add();
  join_room(url_room_, std::move(recovery), true);
}

void ws_session::on_auth_frame(std::string_view text) {
  const auto& cfg = ctx_.svc().cfg;
  // Late is late even before the sweep came by.
  if (ctx_.now() >= deadline_)
    return begin_close(protocol::close_code::unauthorized, "no {\"type\":\"auth\"} within handshake_timeout",
                       metrics::close_reason::unauthorized, true);
  protocol::client_frame f;
  protocol::decode_error err;
  if (!protocol::decode_client_frame(text, f, err, {}, ctx_.svc().rights.json_limits) ||
      f.type != protocol::client_frame::kind::auth)
    return begin_close(protocol::close_code::unauthorized, "send {\"type\":\"auth\",\"token\":…} first",
                       metrics::close_reason::unauthorized, true);
  auth::jwt_claims claims;
  const auto e =
      auth::verify_hs256(f.token, cfg.jwt_secret, id().user, std::chrono::system_clock::now(), cfg.jwt_leeway, &claims);
  if (e != auth::jwt_error::none)
    return begin_close(protocol::close_code::unauthorized, "unauthorized: " + std::string(auth::to_string(e)),
                       metrics::close_reason::unauthorized, true);
  auto recovery = std::move(*awaiting_auth_);
  awaiting_auth_.reset();
  token_exp_ = claims.exp;
  welcomed_ = false;  // the welcome is the next frame the client sees
  begin(std::move(recovery));
}

void ws_session::refresh(const std::string& token) {
  const auto& cfg = ctx_.svc().cfg;
  if (cfg.auth != config::auth_mode::jwt)
    return send_error(protocol::error_code::bad_request, "the node checks no tokens");
  auth::jwt_claims claims;
  const auto e =
      auth::verify_hs256(token, cfg.jwt_secret, id().user, std::chrono::system_clock::now(), cfg.jwt_leeway, &claims);
  // A bad refresh changes nothing: the session keeps its token until that one expires.
  if (e != auth::jwt_error::none)
    return send_error(protocol::error_code::unauthorized, "refresh refused: " + std::string(auth::to_string(e)));
  token_exp_ = claims.exp;
  send_text(protocol::encode_refreshed(claims.exp));
}

void ws_session::queue_welcome(std::string_view payload, const protocol::room_position&) {
  queue_.insert(handshake_first() ? 1 : 0, hub::make_local(protocol::make_frame(ws_opcode::text, payload)), out(),
                ctx_.counters().queued_bytes);
  handshake_.reset();
  welcomed_ = true;
  if (!flush_scheduled_ && !write_waiting_) {
    flush_scheduled_ = true;
    ++pending_ops_;
    ctx_.request_flush(this);
  }
}

void ws_session::queue_recovered(hub::frame_ref f, std::uint64_t, std::string_view) { enqueue(std::move(f)); }

// ---- reading ----

void ws_session::arm_read() {
  if (state_ == state::closed || read_waiting_) return;
  read_waiting_ = true;
  ++pending_ops_;
  // A zero-byte wait: no buffer is held while the client is idle.
  socket_.async_wait(asio::socket_base::wait_read, [this](const error_code& ec) {
    read_waiting_ = false;
    on_readable(ec);
    op_done();
  });
}

void ws_session::on_readable(const error_code& ec) {
  if (state_ == state::closed) return;
  if (ec) {
    terminate(metrics::close_reason::error);
    return;
  }
  ctx_.refresh_now();
  auto buf = ctx_.read_buffer();
  for (int i = 0; i < max_reads_per_wakeup; ++i) {
    error_code rec;
    const std::size_t n = read_some(buf, rec);
    if (rec == asio::error::would_block || rec == asio::error::try_again) {
      arm_read();
      return;
    }
    if (rec) {
      // After our close frame, a vanished peer still ends the close cleanly.
      terminate(state_ == state::closing ? close_reason_ : close_reason_for(rec));
      return;
    }
    if (!process(n) || !wants_read()) return;
  }
  // Still data after many reads: continue later, after the other sessions had their turn.
  ++pending_ops_;
  asio::post(ctx_.io(), [this] {
    on_readable({});
    op_done();
  });
}

// Parses n new bytes from the shard's read buffer (after any kept partial frame).
// Returns false when the session stopped reading.
bool ws_session::process(std::size_t n) {
  std::span<char> input;
  const bool use_inbuf = !inbuf_.empty();
  if (use_inbuf) {
    inbuf_.append(ctx_.read_buffer().data(), n);
    input = std::span<char>(inbuf_.data(), inbuf_.size());
  } else {
    input = ctx_.read_buffer().subspan(0, n);
  }
  auto r = reader_.feed(input, [this](const protocol::ws_event& ev) { return on_event(ev); });
  if (state_ == state::closed) return false;
  // An oversized message: 1009, but go on reading (and dropping the rest of it) so that the client
  // reads our close frame and answers it, instead of a reset from unread data (bounded by
  // pong_timeout like any close).
  while (r.error == protocol::ws_error::too_big) {
    begin_close(protocol::close_code::too_big, "message too big", metrics::close_reason::too_big, false);
    const std::size_t done = r.consumed;
    if (done >= input.size()) {
      r = {input.size(), protocol::ws_error::none};
      break;
    }
    r = reader_.feed(input.subspan(done), [this](const protocol::ws_event& ev) { return on_event(ev); });
    if (r.error == protocol::ws_error::too_big && r.consumed == 0)
      r.error = protocol::ws_error::protocol;  // no progress
    r.consumed += done;
    if (state_ == state::closed) return false;
  }
  if (r.error != protocol::ws_error::none) {
    const auto why =
        r.error == protocol::ws_error::too_big ? metrics::close_reason::too_big : metrics::close_reason::protocol;
    const char* text = r.error == protocol::ws_error::too_big    ? "message too big"
                       : r.error == protocol::ws_error::bad_utf8 ? "invalid UTF-8"
                                                                 : "protocol error";
    close_after_flush_ = true;  // a broken stream can't be read further: fail the connection
    begin_close(protocol::close_code_for(r.error), text, why, false);
    inbuf_.clear();
    return false;
  }
  const std::size_t left = input.size() - r.consumed;
  if (left == 0) {
    inbuf_.clear();
    if (inbuf_.capacity() > 4096) inbuf_.shrink_to_fit();
  } else if (use_inbuf) {
    inbuf_.erase(0, r.consumed);
  } else {
    inbuf_.assign(input.data() + r.consumed, left);
  }
  return true;
}

bool ws_session::on_event(const protocol::ws_event& ev) {
  last_seen_ = ctx_.now();
  awaiting_pong_ = false;  // any frame proves the peer is alive
  switch (ev.opcode) {
    case ws_opcode::text:
      if (state_ == state::open) {
        ctx_.counters().messages_in.add();
        if (ev.compressed) return on_compressed_text(ev.payload);
        on_text(ev.payload);
      }
      break;
    case ws_opcode::binary:
      if (state_ == state::open) {
        close_after_flush_ = true;
        begin_close(protocol::close_code::unsupported_data, "binary frames are not supported",
                    metrics::close_reason::protocol, false);
      }
      return false;
    case ws_opcode::ping:
      if (state_ == state::open) enqueue(hub::make_local(protocol::make_frame(ws_opcode::pong, ev.payload)));
      break;
    case ws_opcode::pong:
      break;
    case ws_opcode::close:
      if (state_ == state::open) {
        // Peer-initiated: echo its code, then close once the echo is written.
        state_ = state::closing;
        close_reason_ = metrics::close_reason::client;
        const auto code =
            ev.close_code == protocol::close_code::no_status ? protocol::close_code::normal : ev.close_code;
        close_after_flush_ = true;
        deadline_ = ctx_.now() + ctx_.svc().cfg.pong_timeout;
        enqueue(hub::make_local(protocol::make_close_frame(code, {})));
      } else if (state_ == state::closing) {
        terminate(close_reason_);  // the reply to our close
      }
      return false;
    case ws_opcode::cont:
      break;
  }
  return state_ == state::open;
}

bool ws_session::on_compressed_text(std::string_view payload) {
  auto& out = ctx_.inflate_buffer();
  const auto r = ctx_.inflater().inflate(payload, out, reader_.max_message());
  ctx_.counters().messages_inflated.add();
  if (r == protocol::inflater::result::too_big) {
    // As for an uncompressed message over the limit: 1009, and read on until the peer's close.
    begin_close(protocol::close_code::too_big, "message too big", metrics::close_reason::too_big, false);
    return false;
  }
  if (r == protocol::inflater::result::corrupt || !protocol::valid_utf8(out)) {
    close_after_flush_ = true;  // RFC 7692 8: a message that does not inflate fails the connection
    begin_close(protocol::close_code::invalid_payload,
                r == protocol::inflater::result::corrupt ? "bad compressed data" : "invalid UTF-8",
                metrics::close_reason::protocol, false);
    return false;
  }
  on_text(out);
  // A 64 KiB message once should not pin 64 KiB per shard for ever; small ones reuse the buffer.
  if (out.capacity() > (std::size_t{16} << 10)) std::string().swap(out);
  return state_ == state::open;
}

void ws_session::on_text(std::string_view text) {
  if (awaiting_auth_) return on_auth_frame(text);
  auto& tables = ctx_.tables();
  const hub::client_session self{
      id().role,        url_room_,  [&](std::string_view room) { return tables.in_room(*this, room); },
      &publish_bucket_, ctx_.now(), &join_bucket_};
  auto c = hub::decide_client_command(text, ctx_.svc().rights, self);
  using kind = hub::client_command::kind;
  switch (c.what) {
    case kind::pong:
      enqueue(hub::make_local(pong_json_frame()));
      return;
    case kind::error:
      count_refusal(ctx_.counters(), c);
      send_text(c.text);
      return;
    case kind::refresh:
      refresh(c.text);
      return;
    case kind::received:
      if (auto* store = ctx_.svc().receipts) store->confirm(c.id, id().user);
      ctx_.counters().receipts_confirmed.add();
      return;
    case kind::kill:
      // The failover demo: die as kill -9 would, with no drain, no deregistration, no flush.
      spdlog::warn("dev_kill: a client asked this node to die (SIGKILL)");
      ::kill(::getpid(), SIGKILL);
      return;
    case kind::join: {
      recovery_request rec;
      rec.wanted = c.recover;
      rec.since = c.since;
      rec.epoch = std::move(c.epoch);
      join_room(c.room, std::move(rec), false);
      return;
    }
    case kind::leave:
      tables.leave(*this, c.room);
      send_text(protocol::encode_left(c.room));
      return;
    case kind::publish:
      publish(std::move(c));
      return;
  }
}

void ws_session::publish(hub::client_command c) {
  auto& router = ctx_.svc().router;
  auto e = client_publish_envelope(router, ctx_.index(), id().user, std::move(c));
  const bool want_ack = e.claim_id;
  ctx_.counters().publishes_client.add();
  // The outcome may come on another thread and after this session is gone: find it again by id.
  auto* ctx = &ctx_;
  const auto sid = this->id().session_id;
  std::string ack_id = want_ack ? e.id : std::string();
  std::string to_room = e.target;
  router.publish(std::move(e),
                 [ctx, sid, ack_id = std::move(ack_id), room = std::move(to_room)](hub::router::publish_outcome o) {
                   if (!o.ec && !o.muted && ack_id.empty()) return;
                   asio::post(ctx->io(), [ctx, sid, ack_id, room, o = std::move(o)] {
                     auto* m = ctx->tables().find(sid);
                     if (!m) return;
                     auto* s = static_cast<ws_session*>(m);
                     if (o.ec) return s->send_error("unavailable", "publish failed: " + o.ec.message(), ack_id, room);
                     if (o.muted)
                       return s->send_error(protocol::error_code::muted, "you are muted in this room", ack_id, room);
                     s->send_text(protocol::encode_ack(ack_id, o.seq, o.duplicate));
                   });
                 });
}

void ws_session::send_error(std::string_view code, std::string_view message, std::string_view id,
                            std::string_view room) {
  ctx_.counters().client_errors.add();
  send_text(protocol::encode_error(code, message, id, room));
}

void ws_session::send_text(std::string_view payload) {
  enqueue(hub::make_local(protocol::make_frame(ws_opcode::text, payload)));
}

// ---- writing ----

void ws_session::deliver(const hub::frame_ref& f) {
  if (state_ != state::open) return;
  if (queue_.bytes() + f->bytes(deflate_).size() > ctx_.svc().cfg.max_queue_bytes) {
    // Slow consumer: drop what it hasn't read; it reconnects and recovers from history.
    begin_close(protocol::close_code::slow_consumer, "slow consumer", metrics::close_reason::slow_consumer, true);
    return;
  }
  enqueue(f);
}

void ws_session::enqueue(hub::frame_ref f) {
  if (state_ == state::closed) return;
  queue_.push(std::move(f), out(), ctx_.counters().queued_bytes);
  if (!flush_scheduled_ && !write_waiting_) {
    flush_scheduled_ = true;
    ++pending_ops_;
    ctx_.request_flush(this);
  }
}

void ws_session::flush() {
  // Called from the shard's flush handler, which counted this as a pending op.
  flush_scheduled_ = false;
  if (state_ != state::closed && !write_waiting_ && (welcomed_ || state_ == state::closing)) {
    error_code ec;
    ctx_.counters().bytes_out.add(queue_.write(writer(), ec, out(), ctx_.counters().queued_bytes));
    if (ec == asio::error::would_block || ec == asio::error::try_again)
      wait_writable();
    else if (ec)
      terminate(state_ == state::closing ? close_reason_ : close_reason_for(ec));
    else if (close_after_flush_ && state_ == state::closing)
      terminate(close_reason_);
  }
  op_done();
}

void ws_session::wait_writable() {
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
    // TLS may hold plaintext it read while it had to write first: no socket readiness will tell.
    if (state_ != state::closed && tls_pending() && wants_read()) on_readable({});
    op_done();
  });
}

// ---- closing ----

void ws_session::kick(std::uint16_t code, std::string_view reason) {
  if (state_ != state::open) return;
  send_text(protocol::encode_kicked(code, reason));
  begin_close(code, reason, metrics::close_reason::kicked, false);
}

void ws_session::drain() {
  begin_close(protocol::close_code::service_restart, "server restart", metrics::close_reason::drain, false);
}

void ws_session::begin_close(std::uint16_t code, std::string_view reason, metrics::close_reason why, bool drop_queue) {
  if (state_ != state::open) return;
  state_ = state::closing;
  close_reason_ = why;
  // Counted at the decision, not when the peer finally goes: a slow consumer that never reads
  // holds its socket until pong_timeout, but it was closed for being slow now.
  ctx_.counters().close(why);
  reason_counted_ = true;
  if (drop_queue) {
    // Keep a partly written frame: cutting it would corrupt the stream before the close frame.
    // Nor the 101 if it hasn't gone yet.
    const std::size_t keep = queue_.front() && (queue_.front_started() || handshake_first()) ? 1 : 0;
    queue_.drop_unsent(keep, out(), ctx_.counters().queued_bytes);
  }
  deadline_ = ctx_.now() + ctx_.svc().cfg.pong_timeout;
  enqueue(hub::make_local(protocol::make_close_frame(code, reason)));
  if (drop_queue) make_room_for_last_frame(socket_.native_handle());  // the client reads 4008, not only EOF
}

void ws_session::tick(clock::time_point now) {
  const auto& cfg = ctx_.svc().cfg;
  switch (state_) {
    case state::closed:
      return;
    case state::closing:
      if (now >= deadline_) terminate(close_reason_);  // no close reply, or a peer that won't read
      return;
    case state::open:
      if (awaiting_auth_) {
        if (now >= deadline_)
          begin_close(protocol::close_code::unauthorized, "no {\"type\":\"auth\"} within handshake_timeout",
                      metrics::close_reason::unauthorized, true);
        return;
      }
      if (token_exp_ != 0) {
        const auto wall =
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                .count();
        if (wall > token_exp_ + ctx_.svc().cfg.jwt_leeway.count())
          return begin_close(protocol::close_code::token_expired,
                             "token expired: send {\"type\":\"refresh\"} before exp",
                             metrics::close_reason::token_expired, false);
      }
      if (awaiting_pong_) {
        if (now >= deadline_) terminate(metrics::close_reason::ping_timeout);
      } else if (now - last_seen_ >= cfg.ping_interval) {
        awaiting_pong_ = true;
        deadline_ = now + cfg.pong_timeout;
        enqueue(hub::make_local(ping_frame()));
      }
      return;
  }
}

void ws_session::terminate(metrics::close_reason why) {
  if (state_ == state::closed) return;
  state_ = state::closed;
  if (!reason_counted_) ctx_.counters().close(why);
  close_socket();  // completes pending waits with operation_aborted
  queue_.clear(ctx_.counters().queued_bytes);
  // Every way out passes here, so every session leaves every index exactly once.
  ctx_.tables().remove(*this);
  ++pending_ops_;
  asio::post(ctx_.io(), [this] { op_done(); });
}

void ws_session::op_done() {
  if (--pending_ops_ == 0 && state_ == state::closed) ctx_.destroy(this);
}

}  // namespace roomcast::transport
