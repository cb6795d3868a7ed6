#include "transport/session.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include "transport/shard_context.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <cstdio>
#include <cstring>

namespace roomcast::transport {

namespace asio = boost::asio;

void session::join_room(const std::string& room, recovery_request recovery, bool initial) {
  auto& router = ctx_.svc().router;
  const auto policy = router.policy_for(room);
  auto* store = ctx_.svc().history;
  const bool sync = policy.keeps() && store != nullptr;
  const auto r = ctx_.tables().join(*this, room, ctx_.svc().cfg.max_rooms_per_session, sync);
  if (r == hub::shard::join_result::too_many) {
    ctx_.counters().client_errors.add();
    return send_text(
        protocol::encode_error(protocol::error_code::too_many_rooms, "too many rooms for one session", {}, room));
  }
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
                               static_cast<session*>(m)->on_synced(room, recovery, initial, res);
                           });
              });
}

void session::on_synced(const std::string& room, const recovery_request& recovery, bool initial,
                        const history::read_result& r) {
  protocol::room_position pos{room, r.ec ? 0 : r.head, r.ec ? std::string() : r.epoch};
  if (initial) {
    // welcome goes first: frames queued while the history was read wait behind it.
    const std::vector<protocol::room_position> rooms{pos};
    const auto sid = hub::format_session_id(id().session_id);
    queue_welcome(
        protocol::encode_welcome({ctx_.svc().router.node_id(), sid, id().user, &rooms, ctx_.svc().cfg.dev_kill}), pos);
  } else {
    send_text(protocol::encode_joined(pos));
  }
  std::uint64_t position = pos.seq;
  std::uint64_t recovered_to = 0;  // the recovery below sent (since, recovered_to] of pos.epoch
  if (recovery.wanted && ctx_.svc().router.policy_for(room).keeps()) {
    auto& c = ctx_.counters();
    if (r.ec) {
      c.recovery_gaps.add();
      send_gap(protocol::encode_gap(room, "unavailable", 0, ""), 0, "");
    } else if (r.epoch.empty() || recovery.epoch != r.epoch) {
      c.recovery_gaps.add();
      send_gap(protocol::encode_gap(room, r.epoch.empty() ? "expired" : "epoch", r.head, r.epoch), r.head, r.epoch);
    } else if (!r.complete) {
      c.recovery_gaps.add();
      send_gap(protocol::encode_gap(room, "trimmed", r.head, r.epoch), r.head, r.epoch);
    } else {
      // What it missed, in order, then live frames newer than that (held meanwhile by the shard).
      // Only what was for this member: a message for others is passed over, not a hole.
      for (const auto& en : r.entries)
        if (en.audience.matches(id().role, id().platform, id().user))
          queue_recovered(hub::make_local(hub::router::encode(room, en)), en.seq, r.epoch);
      c.recoveries.add();
      send_text(protocol::encode_recovered(room, recovery.since + 1, r.head));
      recovered_to = r.head;
    }
  }
  if (r.ec) position = 0;
  ctx_.tables().finish_sync(*this, room, position, pos.epoch);
  redeliver_unconfirmed(room, recovery.since, recovered_to, pos.epoch);
}

void session::redeliver_unconfirmed(const std::string& room, std::uint64_t since, std::uint64_t recovered_to,
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
          auto* s = static_cast<session*>(m);
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

std::size_t session::read_some(std::span<char> into, boost::system::error_code& ec) {
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

std::size_t session::write_some(std::span<const asio::const_buffer> bufs, boost::system::error_code& ec) {
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

bool session::tls_pending() const noexcept { return tls_ && SSL_has_pending(tls_.get()); }

void session::close_socket() noexcept {
  boost::system::error_code ec;
  if (tls_ && SSL_is_init_finished(tls_.get())) SSL_shutdown(tls_.get());  // close_notify, best effort
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
}

bus::envelope client_publish_envelope(hub::router& router, unsigned shard, std::string_view user,
                                      hub::client_command&& c) {
  bus::envelope e;
  e.kind = protocol::target_kind::room;
  e.target = std::move(c.room);
  const bool want_ack = !c.id.empty();
  e.id = want_ack ? std::move(c.id) : router.make_id(shard);
  e.claim_id = want_ack;
  e.check_mute = true;
  e.from = std::string(user);
  e.data = std::move(c.data);
  e.audience = std::move(c.audience);
  e.origin = router.node_id();
  return e;
}

metrics::close_reason close_reason_for(const boost::system::error_code& ec) noexcept {
  if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
      ec == asio::error::connection_aborted)
    return metrics::close_reason::dropped;
  return metrics::close_reason::error;
}

void count_refusal(metrics::shard_counters& counters, const hub::client_command& c) noexcept {
  counters.client_errors.add();
  switch (c.refused) {
    case hub::client_command::limit::none:
      break;
    case hub::client_command::limit::join_rate:
      counters.join_rate_limited.add();
      break;
    case hub::client_command::limit::json_depth:
      counters.json_refused_client[0].add();
      break;
    case hub::client_command::limit::json_members:
      counters.json_refused_client[1].add();
      break;
  }
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

void make_room_for_last_frame(int fd) noexcept {
  int cur = 0;
  socklen_t len = sizeof cur;
  if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &len) == 0) {
    const int want = cur;  // the kernel doubles what is set; queued bytes count with their overhead
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) != 0 && want <= wmem_max())
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
  }
}

}  // namespace roomcast::transport
