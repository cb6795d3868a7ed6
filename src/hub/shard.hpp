#pragma once
// Per-shard tables: sessions, room index, user index, and fan-out.
// Thread: everything here runs on the owning shard's thread only. No locks.
#include "hub/member.hpp"
#include "hub/presence.hpp"
#include "metrics/counters.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace roomcast::hub {

struct held_frame {
  std::uint64_t seq;
  frame_ref frame;
};

// One member of one room on this shard, with its place in the room's sequence.
struct room_slot {
  member* m;
  std::uint64_t last_seq = 0;  // last seq this member got for the room
  bool syncing = false;        // its history read is in flight: live frames wait in `held`
  std::vector<held_frame> held;
};

struct room_entry {
  std::string name;
  std::vector<room_slot> members;
  // The room's sequence as this shard delivered it: duplicates (seq <= last_seq) are dropped and a
  // hole (seq > last_seq + 1) is filled from history before anything after it is delivered.
  std::uint64_t last_seq = 0;
  std::string epoch;
  bool filling = false;
  std::vector<held_frame> held;  // frames after a hole, while it is being filled
  // The bus became live while every member was still reading its position: catch up once one is
  // known (reading from 0 would find a trimmed history and announce a gap nobody has).
  bool catch_up_pending = false;
};

struct user_entry {
  std::string name;
  std::vector<member*> sessions;
};

// Transparent hashing so lookups by string_view don't allocate.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// One room's members on this shard, by role (GET /api/rooms lists the busiest).
struct room_load {
  std::string room;
  std::size_t online = 0;
  std::map<std::string, std::size_t> by_role;
};

struct session_snapshot {
  std::uint64_t session_id;
  std::string user;
  std::string role;
  std::string platform;
  std::vector<std::string> rooms;
};

// Told about every membership change of a shard's sessions (the registry listens).
// Runs on the shard's thread; must not block.
class membership_listener {
 public:
  virtual ~membership_listener() = default;
  virtual void on_open(const member& m) = 0;
  virtual void on_join(const member& m, const std::string& room) = 0;
  virtual void on_leave(const member& m, const std::string& room) = 0;
  virtual void on_close(const member& m) = 0;
};

class shard {
 public:
  // on_room_change(room, gained): the shard gained its first / lost its last member of `room`.
  using room_change_fn = std::function<void(const std::string& room, bool gained)>;
  // Asks for the room's history after `since`; the answer comes back through fill_done() on this
  // shard's thread.
  using fill_fn = std::function<void(const std::string& room, std::uint64_t since)>;
  // The same for one member whose own sequence has a hole (its position was read before a message
  // the room had already passed); the answer comes back through member_fill_done().
  using member_fill_fn = std::function<void(std::uint64_t session_id, const std::string& room, std::uint64_t since)>;

  shard(unsigned index, metrics::shard_counters& counters) : index_(index), counters_(counters) {}
  shard(const shard&) = delete;
  shard& operator=(const shard&) = delete;

  unsigned index() const noexcept { return index_; }
  // Numbers the message ids this shard generates (router::make_id). Owned by the shard, so no
  // two shards write the same cache line.
  std::uint64_t next_message_number() noexcept { return ++message_counter_; }
  void on_room_change(room_change_fn f) { room_change_ = std::move(f); }
  void set_listener(membership_listener* l) noexcept { listener_ = l; }
  void on_fill(fill_fn f) { fill_ = std::move(f); }
  void on_member_fill(member_fill_fn f) { member_fill_ = std::move(f); }

  void add(member& m);
  // Removes m from every index. Called exactly once per added member, on every way out.
  void remove(member& m);

  enum class join_result { joined, already, too_many };
  // sync: the room keeps history and the member's position is being read; live frames for it wait
  // until finish_sync().
  join_result join(member& m, std::string_view room, std::size_t max_rooms, bool sync = false);
  // The member's history read is done and what it missed is queued: it is now at `seq` of `epoch`;
  // frames held meanwhile that are newer go out now. False when the member left the room.
  bool finish_sync(member& m, std::string_view room, std::uint64_t seq, std::string_view epoch);
  bool leave(member& m, std::string_view room);
  bool in_room(const member& m, std::string_view room) const;

  // Fan-out: queue f on every matching member. Returns the number of recipients.
  // seq/epoch: the room message's place in its history (seq 0: the room keeps none).
  std::size_t deliver_room(std::string_view room, const frame_ref& f, std::uint64_t seq = 0,
                           std::string_view epoch = {});
  // The bus now delivers this room here: read from history what was published before that, after
  // the members' positions (a hole nobody could see yet).
  void catch_up(std::string_view room);
  // A hole's history arrived (ok = false: it could not be read): deliver what was missing, then
  // the frames held behind the hole. Frames are the encoded message frames, ascending seq.
  // `head`: the room's seq when history was read (frames after it can't be in `frames`).
  void fill_done(std::string_view room, bool ok, std::string_view epoch, const std::vector<held_frame>& frames,
                 std::uint64_t head = 0);
  // One member's hole arrived: deliver what it lacks in order, then what was held for it.
  void member_fill_done(std::uint64_t session_id, std::string_view room, bool ok, std::string_view epoch,
                        const std::vector<held_frame>& frames, std::uint64_t head = 0);
  std::size_t deliver_user(std::string_view user, const frame_ref& f);
  std::size_t deliver_all(const frame_ref& f);

  std::size_t kick_user(std::string_view user, std::uint16_t code, std::string_view reason);
  // The user's sessions on this shard leave `room` and get `left` (the connections stay open).
  std::size_t remove_user_from_room(std::string_view room, std::string_view user, const frame_ref& left);
  bool kick_session(std::uint64_t session_id, std::uint16_t code, std::string_view reason);

  member* find(std::uint64_t session_id) const;

  room_presence room_info(std::string_view room) const;
  std::vector<session_snapshot> user_info(std::string_view user) const;
  // Every room with members on this shard (the dashboard's list; not on the delivery path).
  std::vector<room_load> room_loads() const;

  std::size_t session_count() const noexcept { return all_.size(); }
  std::size_t room_count() const noexcept { return rooms_.size(); }
  std::size_t user_count() const noexcept { return users_.size(); }
  const std::vector<member*>& members() const noexcept { return all_; }

 private:
  void remove_from_room(member& m, std::size_t membership_index);
  std::size_t fan_out(room_entry& r, const frame_ref& f, std::uint64_t seq);
  void accept(room_entry& r, const frame_ref& f, std::uint64_t seq);
  void restart_epoch(room_entry& r, std::string_view epoch);
  static std::uint64_t baseline(const room_entry& r);
  static bool all_syncing(const room_entry& r);
  // A `gap` frame saying the messages before `seq` can't be delivered (counted as unfilled).
  frame_ref lost_before(const room_entry& r, std::uint64_t seq);
  // Delivers the slot's held frames in order; stops at a hole and asks for a member fill (unless
  // `may_fill` is false: then the hole is announced). Ends the slot's syncing when all went out.
  void release_held(room_entry& r, room_slot& slot, bool may_fill);
  // Delivers one frame to the slot's member in seq order: skips what it has, announces a hole
  // before it with lost_before().
  void deliver_next(room_entry& r, room_slot& slot, const held_frame& h);
  // Marks the slot syncing and asks for its own hole after slot.last_seq (member_fill_ is set).
  void start_member_fill(room_entry& r, room_slot& slot);

  unsigned index_;
  std::uint64_t message_counter_ = 0;
  metrics::shard_counters& counters_;
  room_change_fn room_change_;
  membership_listener* listener_ = nullptr;
  fill_fn fill_;
  member_fill_fn member_fill_;
  std::vector<member*> all_;
  std::unordered_map<std::uint64_t, member*> by_session_;
  std::unordered_map<std::string, std::unique_ptr<room_entry>, string_hash, std::equal_to<>> rooms_;
  std::unordered_map<std::string, std::unique_ptr<user_entry>, string_hash, std::equal_to<>> users_;
};

}  // namespace roomcast::hub
