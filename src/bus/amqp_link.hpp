#pragma once
// One AMQP connection of the RabbitMQ bus, on the bus thread. rabbitmq-c opens it (TCP, login,
// tune, channel.open) and runs the blocking set-up RPCs the caller makes on raw(); then
// stream() hands the socket over to the bus's own non-blocking frames (bus/amqp_wire.hpp): every
// frame queued with out() goes out in one send() per loop, and reads are decoded in place.
// Heartbeats both ways are kept here. Not thread-safe: one thread owns a link.
#include "bus/amqp_wire.hpp"

#include <amqp.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace roomcast::bus {

class amqp_link {
 public:
  using clock = std::chrono::steady_clock;

  amqp_link() = default;
  ~amqp_link() { close(false); }
  amqp_link(const amqp_link&) = delete;
  amqp_link& operator=(const amqp_link&) = delete;

  // Connects and logs in (each blocking step bounded by `timeout`), opens channel 1. `name` is
  // shown in the broker's connection list (e.g. "roomcast a1 publish").
  bool open(const std::string& uri, std::string_view name, std::chrono::seconds heartbeat,
            std::chrono::milliseconds timeout, std::string& err);
  bool is_open() const noexcept { return conn_ != nullptr; }
  // For the blocking set-up RPCs (declarations, confirm.select, basic.qos) before stream().
  amqp_connection_state_t raw() const noexcept { return conn_; }
  const std::string& where() const noexcept { return where_; }

  // From now on the bus's own frames: the socket becomes non-blocking.
  bool stream(std::string& err);

  // Frames to send; flush() writes what the socket takes now and keeps the rest.
  std::string& out() noexcept { return out_; }
  bool wants_write() const noexcept { return out_off_ < out_.size(); }
  bool flush(std::string& err);
  // Reads what the socket has (bounded) and calls on_event(amqp::event&) for each event.
  // False on a closed socket, a protocol error, or a close from the broker (err says which).
  template <class F>
  bool read(std::string& err, F&& on_event);
  // Heartbeats: sends one when nothing went out for half the interval; fails when the broker
  // was silent for two intervals (a dead peer TCP would only notice much later).
  bool tick(clock::time_point now, std::string& err);
  int fd() const noexcept { return fd_; }
  std::uint32_t frame_max() const noexcept { return frame_max_; }

  // Drops the connection; graceful: a connection.close is tried first (never waited for).
  void close(bool graceful);

 private:
  bool recv_some(std::string& err, bool& would_block);

  amqp_connection_state_t conn_ = nullptr;
  int fd_ = -1;
  std::string where_;
  std::uint32_t frame_max_ = 131072;
  std::chrono::seconds heartbeat_{0};
  amqp::frame_reader reader_;
  std::string out_;
  std::size_t out_off_ = 0;
  clock::time_point last_sent_{}, last_received_{};
};

template <class F>
bool amqp_link::read(std::string& err, F&& on_event) {
  for (int i = 0; i < 4; ++i) {  // bounded, so the inbox and the other link are served too
    bool would_block = false;
    if (!recv_some(err, would_block)) return false;
    amqp::event ev;
    while (reader_.next(ev)) {
      if (ev.kind == amqp::event::closed) {
        err = std::string(ev.id == amqp::connection_close ? "broker closed the connection: "
                                                          : "broker closed the channel: ") +
              std::to_string(ev.reply_code) + " " + std::string(ev.reply_text);
        return false;
      }
      if (ev.kind != amqp::event::heartbeat) on_event(ev);
    }
    if (!reader_.error().empty()) {
      err = "AMQP protocol error: " + reader_.error();
      return false;
    }
    if (would_block) break;
  }
  return true;
}

// rabbitmq-c RPC outcome: true when normal, else err says what failed and why.
bool amqp_reply_ok(const amqp_rpc_reply_t& r, const char* what, std::string& err);
inline amqp_bytes_t amqp_bytes_of(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }

}  // namespace roomcast::bus
