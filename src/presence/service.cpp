#include "presence/service.hpp"

#include "metrics/prometheus.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace roomcast::presence {

struct service::impl : std::enable_shared_from_this<impl> {
  impl(const rules& r, std::vector<std::string> name_roles, hub::router& rt, registry::registry& reg)
      : rules_(r), router(rt), registry(reg), tracker_(r, std::move(name_roles)) {}

  const rules& rules_;
  hub::router& router;
  registry::registry& registry;
  mutable std::mutex mu;
  std::condition_variable cv;
  tracker tracker_;       // under mu
  bool stopping = false;  // under mu
  std::atomic<std::uint64_t> frames{0}, reads{0}, failed_reads{0}, pings_sent{0}, pings_received{0}, ping_counter{0};

  void run() {
    std::unique_lock lk(mu);
    while (!stopping) {
      const auto now = tracker::clock::now();
      auto jobs = tracker_.due(now);
      if (!jobs.empty()) {
        lk.unlock();
        for (const auto& j : jobs) read(j);
        lk.lock();
        continue;
      }
      // Until the next room is due or something changes; bounded so a stop is never missed.
      const auto next = tracker_.next_due().value_or(now + std::chrono::seconds(1));
      cv.wait_until(lk, std::min(next, now + std::chrono::seconds(1)));
    }
  }

  void read(const tracker::job& j) {
    reads.fetch_add(1, std::memory_order_relaxed);
    registry.describe_room(j.room, [self = shared_from_this(), j](std::error_code ec, const registry::room_members& m) {
      self->read_done(j, ec, m);
    });
  }

  void read_done(const tracker::job& j, std::error_code ec, const registry::room_members& m) {
    std::optional<std::string> frame;
    {
      std::lock_guard lk(mu);
      if (stopping) return;
      if (ec) {
        failed_reads.fetch_add(1, std::memory_order_relaxed);
        tracker_.read_failed(j.room);
      } else {
        frame = tracker_.read_done(j.room, m, j.local, router.has_room(j.room));
      }
    }
    cv.notify_all();  // a change while reading may be due now
    if (ec) return;
    if (frame) {
      frames.fetch_add(1, std::memory_order_relaxed);
      router.deliver_local(j.room, protocol::make_frame(protocol::ws_opcode::text, *frame));
    }
    if (j.local) ping(protocol::target_kind::room, j.room);
  }

  void ping(protocol::target_kind kind, const std::string& room) {
    if (!router.bus().reaches_other_nodes()) return;
    bus::envelope e;
    e.type = bus::envelope_type::presence;
    e.kind = kind;
    e.target = room;
    e.id = router.node_id() + "/presence/" + std::to_string(ping_counter.fetch_add(1, std::memory_order_relaxed));
    e.from = "presence";
    e.origin = router.node_id();
    pings_sent.fetch_add(1, std::memory_order_relaxed);
    // Best effort: a lost ping delays the other nodes' frames until the room's next change.
    router.bus().publish(std::move(e), [](std::error_code ec, bus::publish_result) {
      if (ec) spdlog::debug("presence: ping not sent: {}", ec.message());
    });
  }
};

service::service(const rules& r, std::vector<std::string> name_roles, hub::router& router, registry::registry& reg)
    : impl_(std::make_shared<impl>(r, std::move(name_roles), router, reg)) {}

service::~service() { stop(); }

bool service::enabled() const noexcept { return !impl_->rules_.empty(); }

void service::start() {
  if (!enabled() || thread_.joinable()) return;
  thread_ = std::thread([me = impl_] {
    pthread_setname_np(pthread_self(), "rc-presence");
    me->run();
  });
}

void service::stop() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
}

void service::local_change(const std::string& room) {
  if (!enabled()) return;
  {
    std::lock_guard lk(impl_->mu);
    impl_->tracker_.changed(room, true);
  }
  impl_->cv.notify_all();
}

void service::on_ping(const bus::envelope& e) {
  auto& m = *impl_;
  if (!enabled() || e.origin == m.router.node_id()) return;  // the local bus hands our own back
  m.pings_received.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lk(m.mu);
    if (e.kind == protocol::target_kind::all)
      m.tracker_.changed_all();
    else if (m.router.has_room(e.target))  // nobody here to tell otherwise
      m.tracker_.changed(e.target, false);
  }
  m.cv.notify_all();
}

void service::nodes_reaped() {
  if (!enabled()) return;
  {
    std::lock_guard lk(impl_->mu);
    impl_->tracker_.changed_all();
  }
  impl_->cv.notify_all();
  impl_->ping(protocol::target_kind::all, {});
}

void service::append_metrics(std::string& o) const {
  if (!enabled()) return;
  const auto& m = *impl_;
  auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    metrics::append_metric(o, name, type, help, v);
  };
  std::size_t tracked = 0;
  {
    std::lock_guard lk(m.mu);
    tracked = m.tracker_.tracked();
  }
  line("roomcast_presence_rooms", "gauge", "Rooms with presence frames this node tracks.", tracked);
  line("roomcast_presence_frames_total", "counter", "Presence frames sent to a room's members on this node.",
       m.frames.load());
  line("roomcast_presence_reads_total", "counter", "Room member reads from the registry for presence.", m.reads.load());
  line("roomcast_presence_failed_reads_total", "counter", "Presence reads the registry could not answer (retried).",
       m.failed_reads.load());
  line("roomcast_presence_pings_sent_total", "counter", "Presence changes announced to the other nodes.",
       m.pings_sent.load());
  line("roomcast_presence_pings_received_total", "counter", "Presence changes announced by other nodes.",
       m.pings_received.load());
}

}  // namespace roomcast::presence
