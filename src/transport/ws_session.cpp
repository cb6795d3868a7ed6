#include "transport/ws_session.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/jwt.hpp"
#include "hub/router.hpp"
#include "transport/shard_context.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <csignal>
#include <cstdio>
#include <array>

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
// A peer that went away (closed tab, lost network) is not a server error.
metrics::close_reason reason_for(const error_code& ec) {
  if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
      ec == asio::error::connection_aborted)
    return metrics::close_reason::dropped;
  return metrics::close_reason::error;
}
constexpr int max_reads_per_wakeup = 16;  // then yield so one busy client can't starve the shard
constexpr std::size_t max_gather = 64;
}  // namespace

ws_session::ws_session(shard_context& ctx, asio::ip::tcp::socket socket, hub::identity id, std::string url_room,
                       ssl_ptr tls)
    : hub::member(std::move(id)),
      ctx_(ctx),
      socket_(std::move(socket)),
      tls_(std::move(tls)),
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
    queue_grew(handshake_->bytes().size());
    queue_.push_back(handshake_);
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
  if (tls_ && SSL_has_pending(tls_.get())) {
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

void ws_session::join_room(const std::string& room, recovery_request recovery, bool initial) {
  auto& router = ctx_.svc().router;
  const auto policy = router.policy_for(room);
  auto* store = ctx_.svc().history;
  const bool sync = policy.keeps() && store != nullptr;
  const auto r = ctx_.tables().join(*this, room, ctx_.svc().cfg.max_rooms_per_session, sync);
  if (r == hub::shard::join_result::too_many)
    return send_error(protocol::error_code::too_many_rooms, "too many rooms for one session", {}, room);
  if (!sync || r == hub::shard::join_result::already) {
    history::read_result none;
    return on_synced(room, recovery, initial, none);
  }
  // The read completes on another thread, maybe after this session is gone: find it again by id.
  auto* ctx = &ctx_;
  const auto sid = id().session_id;
  const std::size_t limit = recovery.wanted ? policy.max_messages : 0;  // 0: the position only
  store->read(room, recovery.since, limit, policy.ttl,
              [ctx, sid, room, recovery, initial](history::read_result res) mutable {
                asio::post(ctx->io(),
                           [ctx, sid, room, recovery = std::move(recovery), initial, res = std::move(res)]() mutable {
                             if (auto* m = ctx->tables().find(sid))
                               static_cast<ws_session*>(m)->on_synced(room, recovery, initial, res);
                           });
              });
}

void ws_session::on_synced(const std::string& room, const recovery_request& recovery, bool initial,
                           const history::read_result& r) {
  protocol::room_position pos{room, r.ec ? 0 : r.head, r.ec ? std::string() : r.epoch};
  if (initial) {
    // welcome goes first: frames queued while the history was read wait behind it.
    const std::vector<protocol::room_position> rooms{pos};
    const auto sid = hub::format_session_id(id().session_id);
    auto w = hub::make_local(protocol::make_frame(
        ws_opcode::text,
        protocol::encode_welcome({ctx_.svc().router.node_id(), sid, id().user, &rooms, ctx_.svc().cfg.dev_kill})));
    queue_grew(w->bytes().size());
    queue_.insert(queue_.begin() + static_cast<std::ptrdiff_t>(head_) + (handshake_first() ? 1 : 0), std::move(w));
    handshake_.reset();
    welcomed_ = true;
    if (!queue_.empty() && !flush_scheduled_ && !write_waiting_) {
      flush_scheduled_ = true;
      ++pending_ops_;
      ctx_.request_flush(this);
    }
  } else {
    send_text(protocol::encode_joined(pos));
  }
  std::uint64_t position = pos.seq;
  std::uint64_t recovered_to = 0;  // the recovery below sent (since, recovered_to] of pos.epoch
  if (recovery.wanted && ctx_.svc().router.policy_for(room).keeps()) {
    auto& c = ctx_.counters();
    if (r.ec) {
      c.recovery_gaps.add();
      send_text(protocol::encode_gap(room, "unavailable", 0, ""));
    } else if (r.epoch.empty() || recovery.epoch != r.epoch) {
      c.recovery_gaps.add();
      send_text(protocol::encode_gap(room, r.epoch.empty() ? "expired" : "epoch", r.head, r.epoch));
    } else if (!r.complete) {
      c.recovery_gaps.add();
      send_text(protocol::encode_gap(room, "trimmed", r.head, r.epoch));
    } else {
      // What it missed, in order, then live frames newer than that (held meanwhile by the shard).
      // Only what was for this member: a message for others is passed over, not a hole.
      for (const auto& en : r.entries)
        if (en.audience.matches(id().role, id().platform, id().user))
          enqueue(hub::make_local(hub::router::encode(room, en)));
      c.recoveries.add();
      send_text(protocol::encode_recovered(room, recovery.since + 1, r.head));
      recovered_to = r.head;
    }
  }
  if (r.ec) position = 0;
  ctx_.tables().finish_sync(*this, room, position, pos.epoch);
  redeliver_unconfirmed(room, recovery.since, recovered_to, pos.epoch);
}

void ws_session::redeliver_unconfirmed(const std::string& room, std::uint64_t since, std::uint64_t recovered_to,
                                       const std::string& epoch) {
  auto* store = ctx_.svc().receipts;
  if (!store) return;
  auto* ctx = &ctx_;
  const auto sid = id().session_id;
  store->pending(
      id().user, room,
      [ctx, sid, room, since, recovered_to, epoch](std::error_code ec, std::vector<receipts::pending_message> msgs) {
        if (ec || msgs.empty()) return;
        asio::post(ctx->io(), [ctx, sid, room, since, recovered_to, epoch, msgs = std::move(msgs)] {
          auto* m = ctx->tables().find(sid);
          if (!m || !ctx->tables().in_room(*m, room)) return;
          auto* s = static_cast<ws_session*>(m);
          const auto& who = s->id();
          for (const auto& p : msgs) {
            // The recovery just sent it (with "receipt":true): once is enough.
            if (p.epoch == epoch && p.seq > since && p.seq <= recovered_to) continue;
            // The user was expected through another of its sessions: this one may be outside the
            // message's filter (an unreadable filter sends nothing).
            protocol::filter audience;
            if (!protocol::parse_filter_json(p.audience, audience) ||
                !audience.matches(who.role, who.platform, who.user))
              continue;
            s->send_text(p.frame);
            ctx->counters().receipts_redelivered.add();
          }
        });
      });
}

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
      terminate(state_ == state::closing ? close_reason_ : reason_for(rec));
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
      ctx_.counters().client_errors.add();
      switch (c.refused) {
        case hub::client_command::limit::none:
          break;
        case hub::client_command::limit::join_rate:
          ctx_.counters().join_rate_limited.add();
          break;
        case hub::client_command::limit::json_depth:
          ctx_.counters().json_refused_client[0].add();
          break;
        case hub::client_command::limit::json_members:
          ctx_.counters().json_refused_client[1].add();
          break;
      }
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
  bus::envelope e;
  e.kind = protocol::target_kind::room;
  e.target = std::move(c.room);
  const bool want_ack = !c.id.empty();
  e.id = want_ack ? std::move(c.id) : router.make_id(ctx_.index());
  e.claim_id = want_ack;
  e.check_mute = true;
  e.from = this->id().user;
  e.data = std::move(c.data);
  e.audience = std::move(c.audience);
  e.origin = router.node_id();
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
  if (queued_bytes_ + f->bytes(deflate_).size() > ctx_.svc().cfg.max_queue_bytes) {
    // Slow consumer: drop what it hasn't read; it reconnects and recovers from history.
    begin_close(protocol::close_code::slow_consumer, "slow consumer", metrics::close_reason::slow_consumer, true);
    return;
  }
  enqueue(f);
}

void ws_session::queue_grew(std::size_t n) noexcept {
  queued_bytes_ += n;
  ctx_.counters().queued_bytes.add(n);
}

void ws_session::queue_shrank(std::size_t n) noexcept {
  queued_bytes_ -= n;
  ctx_.counters().queued_bytes.sub(n);
}

void ws_session::enqueue(hub::frame_ref f) {
  if (state_ == state::closed) return;
  queue_grew(f->bytes(deflate_).size());
  queue_.push_back(std::move(f));
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
    while (head_ < queue_.size()) {
      std::array<asio::const_buffer, max_gather> bufs;
      std::size_t n = 0;
      for (std::size_t i = head_; i < queue_.size() && n < max_gather; ++i, ++n) {
        auto b = queue_[i]->bytes(deflate_);
        if (i == head_) b.remove_prefix(head_offset_);
        bufs[n] = asio::const_buffer(b.data(), b.size());
      }
      error_code ec;
      const std::size_t written = write_some(std::span<const asio::const_buffer>(bufs.data(), n), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        wait_writable();
        break;
      }
      if (ec) {
        terminate(state_ == state::closing ? close_reason_ : reason_for(ec));
        break;
      }
      ctx_.counters().bytes_out.add(written);
      consume(written);
    }
    if (state_ != state::closed && head_ == queue_.size()) {
      queue_.clear();
      head_ = 0;
      if (queue_.capacity() > 256) queue_.shrink_to_fit();  // give back a burst's memory
      if (close_after_flush_ && state_ == state::closing) terminate(close_reason_);
    }
  }
  op_done();
}

void ws_session::consume(std::size_t n) {
  queue_shrank(n);
  while (n > 0) {
    const std::size_t left = queue_[head_]->bytes(deflate_).size() - head_offset_;
    if (n < left) {
      head_offset_ += static_cast<std::uint32_t>(n);
      return;
    }
    n -= left;
    queue_[head_].reset();
    ++head_;
    head_offset_ = 0;
  }
}

std::size_t ws_session::read_some(std::span<char> into, error_code& ec) {
  if (!tls_) return socket_.read_some(asio::buffer(into.data(), into.size()), ec);
  ERR_clear_error();
  const int rc = SSL_read(tls_.get(), into.data(), static_cast<int>(into.size()));
  if (rc > 0) return static_cast<std::size_t>(rc);
  switch (tls_result(tls_.get(), rc)) {
    case tls_status::want_read:
    case tls_status::want_write:  // it has a record to send first (rare in TLS 1.2/1.3 without renegotiation)
      ec = asio::error::would_block;
      break;
    case tls_status::closed:
      ec = asio::error::eof;  // close_notify: the peer went away
      break;
    default:
      ec = asio::error::connection_reset;
  }
  return 0;
}

std::size_t ws_session::write_some(std::span<const asio::const_buffer> bufs, error_code& ec) {
  if (!tls_) return socket_.write_some(bufs, ec);
  // One record from the queue's head: after WANT_WRITE the next try starts at the same byte with
  // at least as many bytes (the queue only grows at its tail), as OpenSSL asks of a retry.
  auto staging = ctx_.tls_write_buffer();
  std::size_t len = 0;
  for (const auto& b : bufs) {
    const std::size_t take = std::min(b.size(), staging.size() - len);
    std::memcpy(staging.data() + len, b.data(), take);
    len += take;
    if (len == staging.size()) break;
  }
  ERR_clear_error();
  const int rc = SSL_write(tls_.get(), staging.data(), static_cast<int>(len));
  if (rc > 0) return static_cast<std::size_t>(rc);
  ec = tls_result(tls_.get(), rc) == tls_status::want_write ? asio::error::would_block : asio::error::broken_pipe;
  return 0;
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
    if (tls_ && state_ != state::closed && SSL_has_pending(tls_.get()) && wants_read()) on_readable({});
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

namespace {
// net.core.wmem_max: the most SO_SNDBUF can ask for without CAP_NET_ADMIN. Read once.
int wmem_max() {
  static const int v = [] {
    int n = 212992;  // the kernel's default
    if (FILE* f = std::fopen("/proc/sys/net/core/wmem_max", "r")) {
      if (std::fscanf(f, "%d", &n) != 1) n = 212992;
      std::fclose(f);
    }
    return n;
  }();
  return v;
}
}  // namespace

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
    const std::size_t keep = head_ < queue_.size() && (head_offset_ > 0 || handshake_first()) ? 1 : 0;
    for (std::size_t i = head_ + keep; i < queue_.size(); ++i) queue_shrank(queue_[i]->bytes(deflate_).size());
    queue_.resize(head_ + keep);
  }
  deadline_ = ctx_.now() + ctx_.svc().cfg.pong_timeout;
  enqueue(hub::make_local(protocol::make_close_frame(code, reason)));
  if (drop_queue) {
    // A slow consumer's kernel send buffer is full, so the close frame would never get in and the
    // client would see only EOF. Double the buffer once so the frame lands behind what the client
    // has yet to read: when it reads, it learns why (4008). SO_SNDBUF is capped at
    // net.core.wmem_max; a bigger (autotuned) buffer grows only with SO_SNDBUFFORCE
    // (CAP_NET_ADMIN), else the client sees EOF. send_buffer_bytes keeps it under the cap.
    const int fd = socket_.native_handle();
    int cur = 0;
    socklen_t len = sizeof cur;
    if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &len) == 0) {
      const int want = cur;  // the kernel doubles what is set; queued bytes count with their overhead
      if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) != 0 && want <= wmem_max())
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
    }
  }
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
  error_code ec;
  if (tls_ && SSL_is_init_finished(tls_.get())) SSL_shutdown(tls_.get());  // close_notify, best effort
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);  // completes pending waits with operation_aborted
  queue_.clear();
  queue_shrank(queued_bytes_);
  // Every way out passes here, so every session leaves every index exactly once.
  ctx_.tables().remove(*this);
  ++pending_ops_;
  asio::post(ctx_.io(), [this] { op_done(); });
}

void ws_session::op_done() {
  if (--pending_ops_ == 0 && state_ == state::closed) ctx_.destroy(this);
}

}  // namespace roomcast::transport
