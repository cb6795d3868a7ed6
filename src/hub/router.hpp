#pragma once
// Node-wide routing between the bus and the shards.
//
// - dispatch(): a message from the bus is encoded once into one immutable frame and posted to
//   every shard; each shard queues it by reference on its recipients.
// - room_changed(): shards report a room's first/last member; the node subscribes/unsubscribes
//   the bus accordingly (join path only: the mutex here is never taken when delivering).
// - post()/gather(): run work on one or all shards (API queries, kicks).
#include "bus/bus.hpp"
#include "history/history.hpp"
#include "hub/shard.hpp"
#include "protocol/deflate.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace roomcast::hub {

class router {
 public:
  using task = std::function<void()>;
  using post_fn = std::function<void(task)>;  // runs a task on a shard's thread

  struct shard_port {
    shard* tables;
    post_fn post;
  };

  router(std::string node_id, bus::bus& bus);

  // Wiring, before any traffic.
  void add_shard(shard_port p) { shards_.push_back(std::move(p)); }
  // reject_when_down: history store unreachable -> refuse (503) rather than deliver without seq.
  void set_history(history::history* h, const history::rules* r, bool reject_when_down) noexcept {
    history_ = h;
    rules_ = r;
    reject_when_down_ = reject_when_down;
  }
  // permessage-deflate: message frames of at least min_bytes also get their compressed form,
  // built here once per node for every session that negotiated the extension.
  void set_compression(const protocol::deflate_options& o) noexcept { compression_ = o; }
  struct compression_counts {
    std::uint64_t messages = 0;   // messages compressed (once each, whatever the recipients)
    std::uint64_t bytes_in = 0;   // their payload bytes
    std::uint64_t bytes_out = 0;  // compressed
  };
  compression_counts compressed() const noexcept {
    return {compressions_.load(std::memory_order_relaxed), compress_in_.load(std::memory_order_relaxed),
            compress_out_.load(std::memory_order_relaxed)};
  }
  history::history* history_store() const noexcept { return history_; }
  history::policy policy_for(std::string_view room) const {
    return rules_ ? rules_->for_room(room) : history::policy{0, {}};
  }

  struct publish_outcome {
    std::error_code ec;      // not accepted (history store or bus unavailable)
    bool duplicate = false;  // the id was published before: not delivered again
    bool muted = false;      // check_mute and the publisher is muted in the room: not delivered
    bool queued = false;     // waiting in the bus's outage buffer
    std::uint64_t seq = 0;   // the room's seq (0: no history)
    std::string epoch;
    bool from_history = false;  // ec came from the history store (else from the bus)
    bool unsequenced = false;   // history store down: delivered without seq or id check
  };
  // Any thread. Claims the id and numbers the message (history), then hands it to the bus.
  // done runs once, on any thread.
  void publish(bus::envelope e, std::function<void(publish_outcome)> done);

  // Encodes a stored room message as the frame live delivery would have sent.
  static protocol::shared_frame encode(std::string_view room, const history::entry& en);
  std::size_t shard_count() const noexcept { return shards_.size(); }

  // Any thread. Encodes once and posts to every shard; done() (may be empty) runs once every shard
  // has queued it (the bus acks then). Kick envelopes close the target's sessions instead.
  void dispatch(const bus::envelope& e, bus::delivery_done done);

  // Any thread: presence envelopes from the bus go to `fn` (set before the bus starts).
  void on_presence(std::function<void(const bus::envelope&)> fn) { on_presence_ = std::move(fn); }
  // Any thread: queues f on this node's members of `room` (no seq: presence frames).
  void deliver_local(const std::string& room, const protocol::shared_frame& f);
  // Any thread: this node has members of `room` (join path lock; not for delivery paths).
  bool has_room(const std::string& room) const;

  // Any thread: the bus now delivers `room` here; shards catch up from history.
  void room_bound(const std::string& room);

  // A bus thread's burst (bus::on_burst): what dispatch() and room_bound() hand to the shards
  // between begin and end goes to each shard as one task, in order. Other threads are unaffected.
  void begin_burst();
  void end_burst();

  // Any thread (called by shards on join/leave).
  void room_changed(const std::string& room, bool gained);
  std::size_t node_room_count() const;

  // Runs fn on shard i's thread.
  void post(unsigned i, std::function<void(shard&)> fn);

  // Runs fn on every shard; done(results) runs once, on the thread of the shard that finished last.
  template <class T>
  void gather(std::function<T(shard&)> fn, std::function<void(std::vector<T>)> done);

  // A message id unique in the cluster: node nonce, shard, per-shard counter. Shard thread only.
  std::string make_id(unsigned shard_index);

  const std::string& node_id() const noexcept { return node_id_; }
  bus::bus& bus() noexcept { return bus_; }

 private:
  std::string node_id_;
  bus::bus& bus_;
  std::vector<shard_port> shards_;
  history::history* history_ = nullptr;
  const history::rules* rules_ = nullptr;
  bool reject_when_down_ = false;
  std::function<void(const bus::envelope&)> on_presence_;
  std::atomic<std::uint64_t> bypassed_{0};
  protocol::deflate_options compression_;
  // Written once per compressed message by the dispatching thread, not per delivery.
  std::atomic<std::uint64_t> compressions_{0}, compress_in_{0}, compress_out_{0};
  void compress(protocol::encoded_frame& f);

 public:
  std::uint64_t history_bypassed() const noexcept { return bypassed_.load(std::memory_order_relaxed); }
  std::uint32_t nonce_;

  // Runs t on shard i: now, or at end_burst() when this thread is in a burst.
  void to_shard(std::size_t i, task t);

  mutable std::mutex rooms_mu_;
  std::unordered_map<std::string, unsigned> room_shards_;  // room -> shards holding members
};

template <class T>
void router::gather(std::function<T(shard&)> fn, std::function<void(std::vector<T>)> done) {
  struct state {
    std::vector<T> results;
    std::atomic<std::size_t> left;
    std::function<T(shard&)> fn;
    std::function<void(std::vector<T>)> done;
  };
  auto st = std::make_shared<state>();
  st->results.resize(shards_.size());
  st->left = shards_.size();
  st->fn = std::move(fn);
  st->done = std::move(done);
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    shard* s = shards_[i].tables;
    shards_[i].post([st, s, i] {
      st->results[i] = st->fn(*s);
      if (st->left.fetch_sub(1, std::memory_order_acq_rel) == 1) st->done(std::move(st->results));
    });
  }
}

}  // namespace roomcast::hub
