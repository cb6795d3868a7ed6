#include "bus/amqp_wire.hpp"

#include <cstring>

namespace roomcast::bus::amqp {

namespace {

constexpr char frame_method = 1, frame_header = 2, frame_body = 3, frame_heartbeat = 8;
constexpr unsigned char frame_end = 0xCE;
constexpr std::size_t frame_overhead = 8;  // type, channel, size, and the end octet

void put8(std::string& o, std::uint8_t v) { o.push_back(static_cast<char>(v)); }
void put16(std::string& o, std::uint16_t v) {
  put8(o, static_cast<std::uint8_t>(v >> 8));
  put8(o, static_cast<std::uint8_t>(v));
}
void put32(std::string& o, std::uint32_t v) {
  put16(o, static_cast<std::uint16_t>(v >> 16));
  put16(o, static_cast<std::uint16_t>(v));
}
void put64(std::string& o, std::uint64_t v) {
  put32(o, static_cast<std::uint32_t>(v >> 32));
  put32(o, static_cast<std::uint32_t>(v));
}
void put_short(std::string& o, std::string_view s) {
  put8(o, static_cast<std::uint8_t>(s.size()));
  o.append(s);
}

// Writes a frame header with a size to patch, runs body(), patches the size and ends the frame.
template <class F>
void frame(std::string& o, char type, std::uint16_t channel, F&& body) {
  o.push_back(type);
  put16(o, channel);
  const std::size_t at = o.size();
  put32(o, 0);
  body();
  const auto size = static_cast<std::uint32_t>(o.size() - at - 4);
  for (int i = 0; i < 4; ++i) o[at + static_cast<std::size_t>(i)] = static_cast<char>(size >> (24 - 8 * i));
  put8(o, frame_end);
}

void method(std::string& o, std::uint16_t channel, std::uint32_t id, auto&& args) {
  frame(o, frame_method, channel, [&] {
    put32(o, id);
    args();
  });
}

bool short_ok(std::string_view s) noexcept { return s.size() <= 255; }

// Bounds-checked big-endian reads over one frame's payload.
struct cursor {
  std::string_view s;
  bool ok = true;
  std::uint64_t n(std::size_t bytes) {
    if (!ok || s.size() < bytes) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
    s.remove_prefix(bytes);
    return v;
  }
  std::string_view short_str() {
    const auto len = static_cast<std::size_t>(n(1));
    if (!ok || s.size() < len) {
      ok = false;
      return {};
    }
    auto v = s.substr(0, len);
    s.remove_prefix(len);
    return v;
  }
};

}  // namespace

bool append_publish(std::string& out, std::uint16_t channel, std::string_view exchange, std::string_view routing_key,
                    std::string_view body, bool persistent, std::uint32_t frame_max) {
  if (!short_ok(exchange) || !short_ok(routing_key) || frame_max <= frame_overhead) return false;
  method(out, channel, method_id(60, 40), [&] {
    put16(out, 0);  // ticket
    put_short(out, exchange);
    put_short(out, routing_key);
    put8(out, 0);  // mandatory, immediate
  });
  frame(out, frame_header, channel, [&] {
    put16(out, 60);  // class basic
    put16(out, 0);   // weight
    put64(out, body.size());
    put16(out, 0x8000 | 0x1000);  // content-type, delivery-mode (in this order on the wire)
    put_short(out, "application/json");
    put8(out, persistent ? 2 : 1);
  });
  const std::size_t chunk = frame_max - frame_overhead;
  for (std::size_t off = 0; off < body.size(); off += chunk)
    frame(out, frame_body, channel, [&] { out.append(body.substr(off, chunk)); });
  return true;
}

void append_ack(std::string& out, std::uint16_t channel, std::uint64_t delivery_tag, bool multiple) {
  method(out, channel, basic_ack, [&] {
    put64(out, delivery_tag);
    put8(out, multiple ? 1 : 0);
  });
}

bool append_queue_bind(std::string& out, std::uint16_t channel, std::string_view queue, std::string_view exchange,
                       std::string_view routing_key, bool bind) {
  if (!short_ok(queue) || !short_ok(exchange) || !short_ok(routing_key)) return false;
  method(out, channel, bind ? method_id(50, 20) : method_id(50, 50), [&] {
    put16(out, 0);  // ticket
    put_short(out, queue);
    put_short(out, exchange);
    put_short(out, routing_key);
    if (bind) put8(out, 0);  // no-wait (queue.unbind has none)
    put32(out, 0);           // arguments: empty table
  });
  return true;
}

bool append_consume(std::string& out, std::uint16_t channel, std::string_view queue) {
  if (!short_ok(queue)) return false;
  method(out, channel, method_id(60, 20), [&] {
    put16(out, 0);  // ticket
    put_short(out, queue);
    put_short(out, "");  // consumer tag: the broker names it
    put8(out, 0);        // no-local, no-ack, exclusive, no-wait: all off
    put32(out, 0);       // arguments
  });
  return true;
}

void append_heartbeat(std::string& out) {
  frame(out, frame_heartbeat, 0, [] {});
}

void append_connection_close(std::string& out) {
  method(out, 0, connection_close, [&] {
    put16(out, 200);  // reply-success
    put_short(out, "");
    put16(out, 0);
    put16(out, 0);
  });
}

frame_reader::frame_reader(std::uint32_t frame_max) : frame_max_(frame_max) {}

char* frame_reader::prepare(std::size_t n) {
  if (begin_ == end_) begin_ = end_ = 0;
  if (buf_.size() - end_ < n) {
    if (begin_ > 0) {  // keep the unread bytes at the front
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - end_ < n) buf_.resize(end_ + n);
  }
  return buf_.data() + end_;
}

bool frame_reader::fail(std::string why) {
  error_ = std::move(why);
  return false;
}

bool frame_reader::next(event& ev) {
  while (error_.empty()) {
    const std::size_t have = end_ - begin_;
    if (have < 7) return false;
    const char* p = buf_.data() + begin_;
    cursor h{{p, 7}};
    const auto type = static_cast<char>(h.n(1));
    const auto channel = static_cast<std::uint16_t>(h.n(2));
    const auto size = h.n(4);
    if (size + frame_overhead > frame_max_) return fail("frame of " + std::to_string(size) + " bytes over frame_max");
    if (have < size + frame_overhead) return false;
    if (static_cast<unsigned char>(p[7 + size]) != frame_end) return fail("bad frame end");
    const std::string_view payload(p + 7, static_cast<std::size_t>(size));
    begin_ += static_cast<std::size_t>(size) + frame_overhead;

    switch (type) {
      case frame_heartbeat:
        ev = event{};
        ev.kind = event::heartbeat;
        return true;
      case frame_method: {
        if (content_ != content::none) return fail("method frame inside a message's content");
        bool produced = false;
        if (!on_method(channel, payload, ev, produced)) return false;
        if (produced) return true;
        continue;
      }
      case frame_header: {
        if (content_ != content::header || channel != pending_.channel) return fail("unexpected content header");
        cursor c{payload};
        c.n(4);  // class, weight
        body_left_ = c.n(8);
        if (!c.ok) return fail("short content header");
        assembled_.clear();
        pending_.body = {};
        content_ = content::body;
        break;
      }
      case frame_body:
        if (content_ != content::body || channel != pending_.channel || payload.size() > body_left_)
          return fail("unexpected content body");
        body_left_ -= payload.size();
        if (!skipping_) {
          // One frame (the usual case): the body is read in place. Several: gathered.
          if (body_left_ == 0 && assembled_.empty())
            pending_.body = payload;
          else
            assembled_.append(payload);
        }
        break;
      default:
        return fail("unknown frame type " + std::to_string(static_cast<int>(type)));
    }
    if (content_ == content::body && body_left_ == 0) {
      content_ = content::none;
      if (skipping_) {
        skipping_ = false;
        continue;
      }
      if (!assembled_.empty()) pending_.body = assembled_;
      ev = pending_;
      return true;
    }
  }
  return false;
}

bool frame_reader::on_method(std::uint16_t channel, std::string_view payload, event& ev, bool& produced) {
  cursor c{payload};
  const auto id = static_cast<std::uint32_t>(c.n(4));
  if (!c.ok) return fail("short method frame");
  ev = event{};
  ev.channel = channel;
  ev.id = id;
  switch (id) {
    case basic_deliver: {
      c.short_str();  // consumer tag
      pending_ = event{};
      pending_.kind = event::delivery;
      pending_.channel = channel;
      pending_.id = id;
      pending_.tag = c.n(8);
      pending_.redelivered = (c.n(1) & 1) != 0;
      c.short_str();  // exchange
      c.short_str();  // routing key
      if (!c.ok) return fail("short basic.deliver");
      content_ = content::header;
      skipping_ = false;
      return true;  // the event comes with its body
    }
    case basic_return:
      // Not asked for (no mandatory publishes), but legal: its content is read and dropped.
      pending_ = event{};
      pending_.channel = channel;
      content_ = content::header;
      skipping_ = true;
      return true;
    case basic_ack:
    case basic_nack: {
      ev.kind = event::confirm;
      ev.ack = id == basic_ack;
      ev.tag = c.n(8);
      ev.multiple = (c.n(1) & 1) != 0;
      if (!c.ok) return fail("short basic.ack/nack");
      produced = true;
      return true;
    }
    case connection_close:
    case channel_close: {
      ev.kind = event::closed;
      ev.reply_code = static_cast<std::uint16_t>(c.n(2));
      ev.reply_text = c.short_str();
      if (!c.ok) return fail("short close");
      produced = true;
      return true;
    }
    default:
      ev.kind = event::method;  // bind-ok, consume-ok, blocked…: the caller decides
      produced = true;
      return true;
  }
}

}  // namespace roomcast::bus::amqp
