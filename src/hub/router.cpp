#include "hub/router.hpp"

#include <random>

namespace roomcast::hub {

router::router(std::string node_id, bus::bus& b) : node_id_(std::move(node_id)), bus_(b) {
  std::random_device rd;
  nonce_ = rd();
}

namespace {
// The burst of the current (bus) thread: tasks per shard, handed over at end_burst().
struct burst {
  const router* owner = nullptr;
  std::vector<std::vector<router::task>> per_shard;
};
thread_local burst tl_burst;
}  // namespace

void router::begin_burst() {
  if (tl_burst.owner) return;
  tl_burst.owner = this;
  tl_burst.per_shard.resize(shards_.size());
}

void router::end_burst() {
  if (tl_burst.owner != this) return;
  tl_burst.owner = nullptr;
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    auto tasks = std::move(tl_burst.per_shard[i]);
    tl_burst.per_shard[i].clear();
    if (tasks.empty()) continue;
    if (tasks.size() == 1) {
      shards_[i].post(std::move(tasks.front()));
      continue;
    }
    shards_[i].post([tasks = std::move(tasks)] {
      for (const auto& t : tasks) t();
    });
  }
}

void router::to_shard(std::size_t i, task t) {
  if (tl_burst.owner == this) return tl_burst.per_shard[i].push_back(std::move(t));
  shards_[i].post(std::move(t));
}

void router::dispatch(const bus::envelope& e, bus::delivery_done done) {
  if (e.type == bus::envelope_type::presence) {  // for presence::service, not for members
    if (on_presence_) on_presence_(e);
    if (done) done();
    return;
  }
  // Counts shards still to take the message; the last one runs done (the broker ack).
  struct completion {
    std::atomic<std::size_t> left;
    bus::delivery_done done;
    void shard_finished() {
      if (left.fetch_sub(1, std::memory_order_acq_rel) == 1 && done) done();
    }
  };
  std::shared_ptr<completion> c;
  if (done) {
    c = std::make_shared<completion>();
    c->left = shards_.size();
    c->done = std::move(done);
  }

  if (e.type == bus::envelope_type::room_kick) {
    auto left = protocol::make_frame(protocol::ws_opcode::text, protocol::encode_left(e.target, e.reason, true));
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      shard* t = shards_[i].tables;
      to_shard(i, [t, room = e.target, user = e.user, left, c] {
        t->remove_user_from_room(room, user, make_local(left));
        if (c) c->shard_finished();
      });
    }
    return;
  }
  if (e.type == bus::envelope_type::kick) {
    // kind user: every session of the user; kind all: the one session whose id is the target.
    auto k = std::make_shared<const bus::envelope>(e);
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      shard* t = shards_[i].tables;
      to_shard(i, [k, t, c] {
        if (k->kind == protocol::target_kind::user) {
          t->kick_user(k->target, k->code, k->reason);
        } else if (std::uint64_t sid = 0; parse_session_id(k->target, sid)) {
          t->kick_session(sid, k->code, k->reason);
        }
        if (c) c->shard_finished();
      });
    }
    return;
  }

  // One frame for every recipient on every shard.
  struct routed {
    protocol::target_kind kind;
    std::string target;
    protocol::shared_frame frame;
    std::shared_ptr<const protocol::filter> audience;
    std::uint64_t seq;
    std::string epoch;
  };
  auto f = std::make_shared<protocol::encoded_frame>();
  protocol::append_message(f->payload_buffer(), {e.kind, e.target, e.id, e.from, e.data, e.seq, e.receipt});
  f->finish(protocol::ws_opcode::text);
  compress(*f);
  auto r = std::make_shared<const routed>(
      routed{e.kind, e.target, std::move(f), share_audience(e.audience), e.seq, e.epoch});
  // Every shard gets it: with one shard per core there are only a few, and a shard without
  // members answers with one hash lookup. Filtering here would need shared state on the hot path.
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    shard* t = shards_[i].tables;
    to_shard(i, [r, t, c] {
      const frame_ref local = make_local(r->frame, r->audience);
      switch (r->kind) {
        case protocol::target_kind::room:
          t->deliver_room(r->target, local, r->seq, r->epoch);
          break;
        case protocol::target_kind::user:
          t->deliver_user(r->target, local);
          break;
        case protocol::target_kind::all:
          t->deliver_all(local);
          break;
      }
      if (c) c->shard_finished();
    });
  }
}

void router::compress(protocol::encoded_frame& f) {
  if (!compression_.enabled) return;
  const auto payload = f.payload();
  if (payload.size() < compression_.min_bytes) return;
  // One deflater per dispatching thread (a bus thread, or a shard with the local bus).
  thread_local protocol::deflater deflater(compression_.level);
  thread_local std::string out;
  out.clear();
  if (!deflater.compress(payload, out)) return;
  compressions_.fetch_add(1, std::memory_order_relaxed);
  compress_in_.fetch_add(payload.size(), std::memory_order_relaxed);
  compress_out_.fetch_add(out.size(), std::memory_order_relaxed);
  // Incompressible (already compressed or random data): the plain frame is the smaller one.
  if (out.size() < payload.size()) f.set_deflated(out, protocol::ws_opcode::text);
  if (out.capacity() > (std::size_t{1} << 20)) std::string().swap(out);  // don't keep a huge buffer
}

void router::publish(bus::envelope e, std::function<void(publish_outcome)> done) {
  const auto p = e.kind == protocol::target_kind::room ? policy_for(e.target) : history::policy{0, {}};
  auto to_bus = [this](bus::envelope env, std::function<void(publish_outcome)> cb) {
    publish_outcome o;
    o.seq = env.seq;
    o.epoch = env.epoch;
    bus_.publish(std::move(env), [o, cb = std::move(cb)](std::error_code ec, bus::publish_result r) mutable {
      o.ec = ec;
      o.queued = r.queued;
      cb(std::move(o));
    });
  };
  if (!history_ || (!p.keeps() && !e.claim_id && !e.check_mute)) return to_bus(std::move(e), std::move(done));
  auto shared = std::make_shared<bus::envelope>(std::move(e));
  history_->append(*shared, p, [this, shared, to_bus, done = std::move(done)](const history::append_result& r) mutable {
    if (r.ec && !reject_when_down_) {
      // Delivery goes on without the history store (rooms don't need it); the message has no seq.
      bypassed_.fetch_add(1, std::memory_order_relaxed);
      return to_bus(std::move(*shared), [done = std::move(done)](publish_outcome o) {
        o.unsequenced = true;
        done(std::move(o));
      });
    }
    // Refused, a duplicate, or already on the bus (the store's script published it): done here.
    if (r.ec || r.duplicate || r.muted || history_->publishes(*shared)) {
      publish_outcome o;
      o.ec = r.ec;
      o.from_history = static_cast<bool>(r.ec);
      o.duplicate = r.duplicate;
      o.muted = r.muted;
      o.seq = r.seq;
      o.epoch = r.epoch;
      return done(std::move(o));
    }
    shared->seq = r.seq;
    shared->epoch = r.epoch;
    to_bus(std::move(*shared), std::move(done));
  });
}

protocol::shared_frame router::encode(std::string_view room, const history::entry& en) {
  auto f = std::make_shared<protocol::encoded_frame>();
  protocol::append_message(f->payload_buffer(),
                           {protocol::target_kind::room, room, en.id, en.from, en.data, en.seq, en.receipt});
  f->finish(protocol::ws_opcode::text);
  return f;
}

void router::room_changed(const std::string& room, bool gained) {
  bool subscribe = false, unsubscribe = false;
  {
    std::lock_guard lk(rooms_mu_);
    if (gained) {
      subscribe = room_shards_[room]++ == 0;
    } else {
      auto it = room_shards_.find(room);
      if (it != room_shards_.end() && --it->second == 0) {
        room_shards_.erase(it);
        unsubscribe = true;
      }
    }
    // Calling the bus under the lock keeps subscribe/unsubscribe of one room in order.
    if (subscribe) bus_.subscribe_room(room);
    if (unsubscribe) bus_.unsubscribe_room(room);
  }
}

void router::room_bound(const std::string& room) {
  if (!history_ || !policy_for(room).keeps()) return;
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    shard* t = shards_[i].tables;
    to_shard(i, [t, room] { t->catch_up(room); });
  }
}

void router::deliver_local(const std::string& room, const protocol::shared_frame& f) {
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    shard* t = shards_[i].tables;
    shards_[i].post([t, room, f] { t->deliver_room(room, make_local(f)); });
  }
}

bool router::has_room(const std::string& room) const {
  std::lock_guard lk(rooms_mu_);
  return room_shards_.contains(room);
}

std::size_t router::node_room_count() const {
  std::lock_guard lk(rooms_mu_);
  return room_shards_.size();
}

void router::post(unsigned i, std::function<void(shard&)> fn) {
  if (i >= shards_.size()) return;
  shard* s = shards_[i].tables;
  shards_[i].post([s, fn = std::move(fn)] { fn(*s); });
}

std::string router::make_id(unsigned shard_index) {
  char buf[48];
  const int n = std::snprintf(buf, sizeof buf, "%08x-%u-%llu", nonce_, shard_index,
                              static_cast<unsigned long long>(shards_[shard_index].tables->next_message_number()));
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace roomcast::hub
