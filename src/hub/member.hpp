#pragma once
// What the hub knows of a session: its identity, its memberships, and how to hand it a frame.
// The transport's WebSocket session derives from member; the hub never sees a socket.
#include "protocol/filter.hpp"
#include "protocol/sse.hpp"
#include "protocol/ws_frame.hpp"

#include <boost/intrusive_ptr.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::hub {

struct identity {
  std::uint64_t session_id = 0;
  std::string user;
  std::string role;
  std::string platform;
};

// A shared frame as held by one shard. The cross-thread shared_ptr is copied once per shard; each
// recipient on the shard takes a non-atomic reference, so fan-out does no atomic op per recipient.
// A room message may carry its audience (a filter): members it doesn't match skip it but still
// count its seq as passed, so it is never a hole for them.
// SSE sessions read the same frame as an event (sse()): built at the first SSE recipient on the
// shard and kept with the frame, so an SSE frame is made once per message per shard, never per
// recipient, and a shard without SSE sessions never makes one.
class local_frame {
 public:
  explicit local_frame(protocol::shared_frame f, std::shared_ptr<const protocol::filter> audience = {}) noexcept
      : frame_(std::move(f)), audience_(std::move(audience)) {}
  // A frame only SSE sessions send (the heartbeat comment): `event` is the stream's bytes as they are.
  struct sse_only {
    std::string event;
  };
  explicit local_frame(sse_only e) : sse_(std::make_unique<const std::string>(std::move(e.event))) {}

  std::string_view bytes() const noexcept { return frame_->bytes(); }
  std::string_view payload() const noexcept { return frame_->payload(); }
  // The frame's JSON as a Server-Sent Event; a room message gets the id "<epoch>:<seq>" (seq > 0).
  // The first call builds it; later calls return the same bytes whatever they pass (a frame is one
  // message, so every recipient asks with the same position). Shard thread only (not atomic).
  std::string_view sse(std::uint64_t seq = 0, std::string_view epoch = {}) {
    if (!sse_) sse_ = std::make_unique<const std::string>(protocol::sse_event(payload(), seq, epoch));
    return *sse_;
  }
  // What a session that negotiated permessage-deflate sends: the compressed frame when there is one.
  std::string_view bytes(bool deflated) const noexcept { return frame_->bytes(deflated); }
  bool for_member(const identity& id) const noexcept {
    return !audience_ || audience_->matches(id.role, id.platform, id.user);
  }

  friend void intrusive_ptr_add_ref(local_frame* f) noexcept { ++f->refs_; }
  friend void intrusive_ptr_release(local_frame* f) noexcept {
    if (--f->refs_ == 0) delete f;
  }

 private:
  protocol::shared_frame frame_;
  std::shared_ptr<const protocol::filter> audience_;  // null: every member
  std::unique_ptr<const std::string> sse_;            // the SSE event, once an SSE session asked
  std::uint32_t refs_ = 0;
};
using frame_ref = boost::intrusive_ptr<local_frame>;

inline frame_ref make_local(protocol::shared_frame f, std::shared_ptr<const protocol::filter> audience = {}) {
  return frame_ref(new local_frame(std::move(f), std::move(audience)));
}
// An audience to share between the frames of one message (null for everyone).
inline std::shared_ptr<const protocol::filter> share_audience(const protocol::filter& f) {
  return f.empty() ? nullptr : std::make_shared<const protocol::filter>(f);
}

// Session ids: 24 bits of a random nonce per shard (drawn at start), 8 bits of shard, 32 bits of
// counter; 16 hex digits.
std::string format_session_id(std::uint64_t id);
bool parse_session_id(std::string_view text, std::uint64_t& id) noexcept;
inline unsigned shard_of_session(std::uint64_t id) noexcept { return static_cast<unsigned>((id >> 32) & 0xff); }

class shard;
struct room_entry;
struct user_entry;

class member {
 public:
  virtual ~member() = default;

  // Queues a frame. Must not remove the member from any index synchronously (the hub is
  // iterating); a member that must close schedules it.
  virtual void deliver(const frame_ref& f) = 0;
  // A room message at `seq` of the room's `epoch` (seq > 0: the room keeps history). The same rule
  // as deliver(). Only an SSE session needs the position (its event id); others take the frame.
  virtual void deliver_at(const frame_ref& f, std::uint64_t /*seq*/, std::string_view /*epoch*/) { deliver(f); }
  // Sends `kicked` and closes with `code`. Same rule: closing happens later.
  virtual void kick(std::uint16_t code, std::string_view reason) = 0;

  const identity& id() const noexcept { return id_; }
  std::vector<std::string> room_names() const;
  std::size_t room_count() const noexcept { return rooms_.size(); }

 protected:
  explicit member(identity id) : id_(std::move(id)) {}

 private:
  friend class shard;
  struct membership {
    room_entry* room;
    std::uint32_t index;  // position in room->members
  };
  identity id_;
  std::vector<membership> rooms_;
  user_entry* user_ = nullptr;
  std::uint32_t user_index_ = 0;
  std::uint32_t all_index_ = 0;
  bool registered_ = false;
};

}  // namespace roomcast::hub
