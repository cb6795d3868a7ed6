#include "transport/shard_context.hpp"

#include "transport/http_session.hpp"
#include "transport/sse_session.hpp"
#include "transport/ws_session.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <random>

namespace roomcast::transport {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
hub::source_limiter::address key_of(const asio::ip::address& a) {
  return a.is_v4() ? hub::source_limiter::v4(a.to_v4().to_uint()) : hub::source_limiter::v6(a.to_v6().to_bytes());
}
}  // namespace

shard_context::shard_context(unsigned index, services& svc)
    : index_(index),
      svc_(svc),
      tables_(index, counters_),
      acceptor_(io_),
      sources_(svc.cfg.source_rate, svc.cfg.source_burst, svc.cfg.source_table_size),
      sweep_timer_(io_),
      drain_timer_(io_),
      now_(clock::now()),
      sessions_(std::make_unique<session_list>()) {
  std::random_device rd;
  nonce_ = rd() & 0xffffff;
  for (const auto& text : svc.cfg.source_exempt) {
    error_code bad;
    const auto a = asio::ip::make_address(text, bad);
    if (!bad) sources_.exempt(key_of(a));  // config checked the syntax
  }
  tables_.on_room_change([this](const std::string& room, bool gained) { svc_.router.room_changed(room, gained); });
  // A hole in a room's (or one member's) sequence: read it from history, encode each missing
  // message once, and hand the frames back on this shard's thread.
  auto read_hole = [this](const std::string& room, std::uint64_t since,
                          std::function<void(bool, std::string, std::vector<hub::held_frame>, std::uint64_t)> back) {
    auto* h = svc_.history;
    if (!h) return back(false, {}, {}, 0);
    const auto limit = std::max<std::size_t>(1, svc_.router.policy_for(room).max_messages);
    h->read(room, since, limit, std::chrono::milliseconds(0),
            [this, room, back = std::move(back)](history::read_result r) {
              std::vector<hub::held_frame> frames;
              if (!r.ec)
                for (const auto& en : r.entries)
                  frames.push_back(
                      {en.seq, hub::make_local(hub::router::encode(room, en), hub::share_audience(en.audience))});
              asio::post(io_, [back, ok = !r.ec, epoch = std::move(r.epoch), frames = std::move(frames),
                               head = r.head]() mutable { back(ok, std::move(epoch), std::move(frames), head); });
            });
  };
  tables_.on_fill([this, read_hole](const std::string& room, std::uint64_t since) {
    read_hole(room, since,
              [this, room](bool ok, const std::string& epoch, const std::vector<hub::held_frame>& frames,
                           std::uint64_t head) { tables_.fill_done(room, ok, epoch, frames, head); });
  });
  tables_.on_member_fill([this, read_hole](std::uint64_t sid, const std::string& room, std::uint64_t since) {
    read_hole(room, since,
              [this, sid, room](bool ok, const std::string& epoch, const std::vector<hub::held_frame>& frames,
                                std::uint64_t head) { tables_.member_fill_done(sid, room, ok, epoch, frames, head); });
  });
}

shard_context::~shard_context() {
  // Sessions left at exit (the io_context stopped): free them without running handlers.
  sessions_->clear_and_dispose([](session* s) { delete s; });
}

void shard_context::listen(const asio::ip::tcp::endpoint& ep) {
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  // SO_REUSEPORT: each shard has its own acceptor on the same port; the kernel spreads connections.
  int one = 1;
  ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

void shard_context::start() {
  do_accept();
  arm_sweep();
}

void shard_context::do_accept() {
  acceptor_.async_accept(peer_, [this](const error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      refresh_now();
      // User-level non-blocking from the start: one ioctl per connection (the WebSocket session
      // writes with non-blocking write_some; Asio's async ops would set it again otherwise).
      error_code nb;
      socket.non_blocking(true, nb);
      if (admit(socket)) start_http_session(*this, std::move(socket));
    } else if (ec == asio::error::no_descriptors) {
      // Out of file descriptors: back off briefly instead of spinning on accept.
      spdlog::warn("shard {}: accept: {}", index_, ec.message());
      auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
      t->async_wait([this, t](const error_code&) { do_accept(); });
      return;
    }
    do_accept();
  });
}

bool shard_context::admit(asio::ip::tcp::socket& socket) {
  const bool allowed = sources_.allow(key_of(peer_.address()), now_);
  counters_.source_table_entries.set(sources_.size());
  counters_.source_table_evictions.set(sources_.evictions());
  if (!allowed) {
    counters_.refused_source_rate.add();
    refuse_connection(*this, socket, connection_refusal::source_rate);
    return false;
  }
  if (counters_.pending_handshakes.get() >= svc_.cfg.max_pending_handshakes) {
    counters_.refused_pending_full.add();
    refuse_connection(*this, socket, connection_refusal::pending_handshakes);
    return false;
  }
  return true;
}

void shard_context::stop_accepting() {
  error_code ec;
  acceptor_.close(ec);
}

void shard_context::adopt(asio::ip::tcp::socket socket, hub::identity id, std::string url_room,
                          recovery_request recovery, std::string initial_bytes, const std::string& handshake,
                          bool auth_frame, std::int64_t token_exp, bool deflate, ssl_ptr tls) {
  auto* s = new ws_session(*this, std::move(socket), std::move(id), std::move(url_room), std::move(tls));
  sessions_->push_back(*s);
  if (deflate) s->use_deflate();
  s->start(std::move(recovery), std::move(initial_bytes), handshake, auth_frame, token_exp);
}

void shard_context::adopt_sse(asio::ip::tcp::socket socket, hub::identity id, std::string url_room,
                              recovery_request recovery, std::int64_t token_exp, ssl_ptr tls) {
  auto* s = new sse_session(*this, std::move(socket), std::move(id), std::move(url_room), std::move(tls));
  sessions_->push_back(*s);
  s->start(std::move(recovery), token_exp);
}

hub::token_bucket* shard_context::post_bucket(std::string_view user) {
  if (auto it = post_buckets_.find(user); it != post_buckets_.end()) {
    it->second.last = now_;
    return &it->second.bucket;
  }
  if (post_buckets_.size() >= svc_.cfg.source_table_size) return nullptr;
  auto& e = post_buckets_[std::string(user)];
  e.last = now_;
  return &e.bucket;
}

void shard_context::destroy(session* s) {
  sessions_->erase(sessions_->iterator_to(*s));
  delete s;
  svc_.state.ws_sessions.fetch_sub(1, std::memory_order_relaxed);
  if (draining_) check_drained();
}

void shard_context::request_flush(session* s) {
  flush_list_.push_back(s);
  if (flush_list_.size() > 1) return;
  // One handler flushes every session that got frames since: a burst becomes one write each.
  asio::post(io_, [this] {
    refresh_now();
    flushing_.swap(flush_list_);
    for (session* x : flushing_) x->flush();
    flushing_.clear();
  });
}

std::uint64_t shard_context::next_session_id() noexcept {
  return (std::uint64_t{nonce_} << 40) | (std::uint64_t{index_ & 0xff} << 32) | ++session_counter_;
}

void shard_context::arm_sweep() {
  using namespace std::chrono;
  const auto& cfg = svc_.cfg;
  // Fine enough for every deadline, coarse enough to cost nothing: one timer for all sessions.
  auto period = std::min<milliseconds>({milliseconds(1000), cfg.ping_interval / 4, cfg.pong_timeout / 4});
  period = std::max(period, milliseconds(25));
  sweep_timer_.expires_after(period);
  sweep_timer_.async_wait([this](const error_code& ec) {
    if (ec) return;
    sweep();
    arm_sweep();
  });
}

void shard_context::sweep() {
  refresh_now();
  sources_.expire(now_);
  counters_.source_table_entries.set(sources_.size());
  // A POST bucket idle for as long as a full refill takes is full again: the same as none.
  // (Confirms use ten times the rate and the burst: the same refill time.)
  const auto& cfg = svc_.cfg;
  if (cfg.publish_rate > 0) {
    const auto refill = std::chrono::duration<double>(cfg.publish_burst / cfg.publish_rate);
    std::erase_if(post_buckets_, [&](const auto& kv) { return now_ - kv.second.last > refill; });
  } else {
    post_buckets_.clear();
  }
  for (auto& s : *sessions_) s.tick(now_);
}

void shard_context::begin_drain(std::chrono::milliseconds window, std::function<void()> on_empty) {
  // The acceptor stays open: /readyz must answer 503 to the load balancer, and new upgrades get
  // 503 + Retry-After. Sessions are closed evenly over the window so that their reconnects don't
  // hit the other nodes all at once.
  draining_ = true;
  on_drained_ = std::move(on_empty);
  const std::size_t n = std::max<std::size_t>(1, sessions_->size());
  constexpr auto min_step = std::chrono::milliseconds(10);
  const auto per_session = window / n;
  if (per_session >= min_step) {
    drain_per_step_ = 1;
    drain_step_ = std::chrono::duration_cast<std::chrono::milliseconds>(per_session);
  } else {
    const auto steps = std::max<std::int64_t>(1, window / min_step);
    drain_per_step_ = (n + static_cast<std::size_t>(steps) - 1) / static_cast<std::size_t>(steps);
    drain_step_ = min_step;
  }
  drain_step();
}

void shard_context::drain_step() {
  // Close the next slice; sessions still open are those not yet asked.
  std::size_t closed = 0;
  for (auto& s : *sessions_) {
    if (closed == drain_per_step_) break;
    if (s.open()) {
      s.drain();
      ++closed;
    }
  }
  check_drained();
  if (closed == 0) return;  // nothing left to ask; the rest finish their close handshakes
  drain_timer_.expires_after(drain_step_);
  drain_timer_.async_wait([this](const error_code& ec) {
    if (!ec) drain_step();
  });
}

void shard_context::check_drained() {
  if (sessions_->empty() && on_drained_) {
    auto f = std::move(on_drained_);
    on_drained_ = nullptr;
    f();
  }
}

}  // namespace roomcast::transport
