#pragma once
// A session's outbound queue: shared frames queued by reference, written with one gathering
// non-blocking write of up to 64 of them at a time, bounded in bytes by the session. Both session
// kinds use it; `Bytes` says which bytes of a frame go out (the WebSocket frame, plain or deflated,
// or its SSE event). It and the shard's gauge of the queued bytes (roomcast_queued_bytes, which
// moves with the count) are passed in, not kept: an idle session holds 40 bytes here.
// Thread: the owning shard's.
#include "hub/member.hpp"
#include "metrics/counters.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace roomcast::transport {

struct websocket_bytes {
  bool deflated = false;  // permessage-deflate was negotiated: the compressed frame where there is one
  std::string_view operator()(hub::local_frame& f) const noexcept { return f.bytes(deflated); }
};
struct sse_bytes {
  // The event is built before the frame is queued (its position is known then): this only reads it.
  std::string_view operator()(hub::local_frame& f) const { return f.sse(); }
};

template <class Bytes>
class send_queue {
 public:
  static constexpr std::size_t max_gather = 64;

  std::size_t bytes() const noexcept { return bytes_; }
  bool done() const noexcept { return head_ == items_.size(); }  // everything queued is written
  // The first frame not (completely) written yet; null when done.
  const hub::local_frame* front() const noexcept { return done() ? nullptr : items_[head_].get(); }
  bool front_started() const noexcept { return head_offset_ > 0; }

  void push(hub::frame_ref f, Bytes bytes_of, metrics::counter& gauge) {
    insert(items_.size() - head_, std::move(f), bytes_of, gauge);
  }
  // at: position among the unwritten frames (0 = next to be written; must not cut a started one).
  void insert(std::size_t at, hub::frame_ref f, Bytes bytes_of, metrics::counter& gauge) {
    grew(bytes_of(*f).size(), gauge);
    items_.insert(items_.begin() + static_cast<std::ptrdiff_t>(head_ + at), std::move(f));
  }

  // Writes as much as the socket takes now. Returns the bytes written; ec is would_block when the
  // socket is full (wait for writability), another error when the connection failed.
  // write_some(buffers, ec): the session's gathering non-blocking write (plain or TLS).
  template <class WriteSome>
  std::size_t write(WriteSome&& write_some, boost::system::error_code& ec, Bytes bytes_of, metrics::counter& gauge) {
    std::size_t total = 0;
    while (!done()) {
      std::array<boost::asio::const_buffer, max_gather> bufs;
      std::size_t n = 0;
      for (std::size_t i = head_; i < items_.size() && n < max_gather; ++i, ++n) {
        auto b = bytes_of(*items_[i]);
        if (i == head_) b.remove_prefix(head_offset_);
        bufs[n] = boost::asio::const_buffer(b.data(), b.size());
      }
      const std::size_t written = write_some(std::span<const boost::asio::const_buffer>(bufs.data(), n), ec);
      if (ec) break;
      total += written;
      consume(written, bytes_of, gauge);
    }
    if (done()) {
      items_.clear();
      head_ = 0;
      if (items_.capacity() > 256) items_.shrink_to_fit();  // give back a burst's memory
    }
    return total;
  }

  // Drops the unwritten frames but the first `keep` of them (a started frame must be finished, or
  // the stream is corrupt before the close that follows).
  void drop_unsent(std::size_t keep, Bytes bytes_of, metrics::counter& gauge) {
    for (std::size_t i = head_ + keep; i < items_.size(); ++i) shrank(bytes_of(*items_[i]).size(), gauge);
    items_.resize(std::min(items_.size(), head_ + keep));
  }
  void clear(metrics::counter& gauge) {
    items_.clear();
    head_ = head_offset_ = 0;
    shrank(bytes_, gauge);
  }

 private:
  void grew(std::size_t n, metrics::counter& gauge) noexcept {
    bytes_ += n;
    gauge.add(n);
  }
  void shrank(std::size_t n, metrics::counter& gauge) noexcept {
    bytes_ -= n;
    gauge.sub(n);
  }
  void consume(std::size_t n, Bytes bytes_of, metrics::counter& gauge) {
    shrank(n, gauge);
    while (n > 0) {
      const std::size_t left = bytes_of(*items_[head_]).size() - head_offset_;
      if (n < left) {
        head_offset_ += static_cast<std::uint32_t>(n);
        return;
      }
      n -= left;
      items_[head_].reset();
      ++head_;
      head_offset_ = 0;
    }
  }

  std::vector<hub::frame_ref> items_;
  std::size_t bytes_ = 0;
  std::uint32_t head_ = 0;         // first unwritten frame
  std::uint32_t head_offset_ = 0;  // bytes of items_[head_] already written
};

}  // namespace roomcast::transport
