#pragma once
// The AMQP 0-9-1 frames the RabbitMQ bus exchanges once a connection is set up, encoded and
// decoded here without I/O (sans-io, unit-tested): publishes, acks, bindings, consume and
// heartbeats out; deliveries, publisher confirms, RPC replies and closes in.
//
// Why not rabbitmq-c for these: it sends each publish as three send() calls and reads frame by
// frame, about 30 µs of CPU per message on each side (docs/benchmarks.md). Here every frame of a
// loop iteration goes out in one send(), and a read of up to 256 KiB is decoded in place.
// rabbitmq-c still opens the connection (login, tune, declarations): rare, blocking, and where
// its completeness matters.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::bus::amqp {

// Method ids as (class << 16) | method.
constexpr std::uint32_t method_id(std::uint16_t cls, std::uint16_t m) noexcept {
  return (std::uint32_t{cls} << 16) | m;
}
inline constexpr std::uint32_t connection_close = method_id(10, 50);
inline constexpr std::uint32_t connection_close_ok = method_id(10, 51);
inline constexpr std::uint32_t connection_blocked = method_id(10, 60);
inline constexpr std::uint32_t connection_unblocked = method_id(10, 61);
inline constexpr std::uint32_t channel_close = method_id(20, 40);
inline constexpr std::uint32_t queue_bind_ok = method_id(50, 21);
inline constexpr std::uint32_t queue_unbind_ok = method_id(50, 51);
inline constexpr std::uint32_t basic_consume_ok = method_id(60, 21);
inline constexpr std::uint32_t basic_cancel = method_id(60, 30);
inline constexpr std::uint32_t basic_return = method_id(60, 50);
inline constexpr std::uint32_t basic_deliver = method_id(60, 60);
inline constexpr std::uint32_t basic_ack = method_id(60, 80);
inline constexpr std::uint32_t basic_nack = method_id(60, 120);

// ---- encoding: each appends whole frames to `out`; false (nothing appended) when a name is
// longer than AMQP's 255-byte short string ----

// basic.publish + content header (content-type application/json, delivery mode 2 or 1) + body
// frames of at most frame_max bytes each.
bool append_publish(std::string& out, std::uint16_t channel, std::string_view exchange, std::string_view routing_key,
                    std::string_view body, bool persistent, std::uint32_t frame_max);
void append_ack(std::string& out, std::uint16_t channel, std::uint64_t delivery_tag, bool multiple);
// queue.bind (bind) or queue.unbind, no arguments; the broker answers bind-ok / unbind-ok.
bool append_queue_bind(std::string& out, std::uint16_t channel, std::string_view queue, std::string_view exchange,
                       std::string_view routing_key, bool bind);
// basic.consume with acks, server-named consumer tag; the broker answers consume-ok.
bool append_consume(std::string& out, std::uint16_t channel, std::string_view queue);
void append_heartbeat(std::string& out);
void append_connection_close(std::string& out);

// ---- decoding ----

struct event {
  enum kind_t { delivery, confirm, method, heartbeat, closed } kind = method;
  std::uint16_t channel = 0;
  std::uint32_t id = 0;          // method: its id; closed: connection_close or channel_close
  std::uint64_t tag = 0;         // delivery: delivery tag; confirm: publish sequence number
  bool multiple = false;         // confirm
  bool ack = false;              // confirm: basic.ack (true) or basic.nack
  bool redelivered = false;      // delivery
  std::string_view body;         // delivery: valid until the next prepare()
  std::uint16_t reply_code = 0;  // closed
  std::string_view reply_text;   // closed: valid until the next prepare()
};

class frame_reader {
 public:
  // Frames larger than frame_max (the connection's negotiated maximum) are a protocol error.
  explicit frame_reader(std::uint32_t frame_max = 131072);

  // Space for at least `n` more bytes; call commit() with what was read into it. Invalidates the
  // views of earlier events.
  char* prepare(std::size_t n);
  void commit(std::size_t n) noexcept { end_ += n; }

  // The next complete event, if the bytes so far hold one. A protocol error (bad frame end, a
  // frame over frame_max, a content frame out of place, a truncated method) sets error() and
  // returns false from then on.
  bool next(event& ev);
  const std::string& error() const noexcept { return error_; }
  std::size_t buffered() const noexcept { return end_ - begin_; }

 private:
  bool fail(std::string why);
  bool on_method(std::uint16_t channel, std::string_view payload, event& ev, bool& produced);

  std::uint32_t frame_max_;
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0;
  std::string error_;
  // A delivery (or a returned message, skipped) in progress: its header and body frames follow.
  enum class content { none, header, body } content_ = content::none;
  bool skipping_ = false;  // the content belongs to a basic.return
  event pending_;
  std::uint64_t body_left_ = 0;
  std::string assembled_;  // a body split over several frames
};

}  // namespace roomcast::bus::amqp
