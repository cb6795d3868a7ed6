#include "hub/shard.hpp"

#include <algorithm>
#include <cassert>

#include "protocol/codec.hpp"

namespace roomcast::hub {

std::string format_session_id(std::uint64_t id) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) s[static_cast<std::size_t>(i)] = hex[id & 0xf];
  return s;
}

bool parse_session_id(std::string_view text, std::uint64_t& id) noexcept {
  if (text.size() != 16) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return false;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  id = v;
  return true;
}

std::vector<std::string> member::room_names() const {
  std::vector<std::string> out;
  out.reserve(rooms_.size());
  for (const auto& m : rooms_) out.push_back(m.room->name);
  return out;
}

void shard::add(member& m) {
  assert(!m.registered_);
  m.registered_ = true;
  m.all_index_ = static_cast<std::uint32_t>(all_.size());
  all_.push_back(&m);
  by_session_.emplace(m.id_.session_id, &m);

  auto it = users_.find(m.id_.user);
  if (it == users_.end()) {
    auto e = std::make_unique<user_entry>();
    e->name = m.id_.user;
    it = users_.emplace(m.id_.user, std::move(e)).first;
    counters_.index_users.add();
  }
  m.user_ = it->second.get();
  m.user_index_ = static_cast<std::uint32_t>(m.user_->sessions.size());
  m.user_->sessions.push_back(&m);
  counters_.connections.add();
  if (listener_) listener_->on_open(m);
}

void shard::remove(member& m) {
  if (!m.registered_) return;
  m.registered_ = false;
  while (!m.rooms_.empty()) remove_from_room(m, m.rooms_.size() - 1);
  if (listener_) listener_->on_close(m);

  // Swap-remove from the user's sessions and from all_; fix the moved element's index.
  auto& us = m.user_->sessions;
  member* last = us.back();
  us[m.user_index_] = last;
  last->user_index_ = m.user_index_;
  us.pop_back();
  if (us.empty()) {
    users_.erase(m.user_->name);
    counters_.index_users.sub();
  }
  m.user_ = nullptr;

  member* last_all = all_.back();
  all_[m.all_index_] = last_all;
  last_all->all_index_ = m.all_index_;
  all_.pop_back();
  by_session_.erase(m.id_.session_id);
  counters_.connections.sub();
}

shard::join_result shard::join(member& m, std::string_view room, std::size_t max_rooms, bool sync) {
  for (const auto& ms : m.rooms_)
    if (ms.room->name == room) return join_result::already;
  if (m.rooms_.size() >= max_rooms) return join_result::too_many;
  auto it = rooms_.find(room);
  bool gained = false;
  if (it == rooms_.end()) {
    auto e = std::make_unique<room_entry>();
    e->name = std::string(room);
    it = rooms_.emplace(e->name, std::move(e)).first;
    counters_.index_rooms.add();
    gained = true;
  }
  room_entry* r = it->second.get();
  m.rooms_.push_back({r, static_cast<std::uint32_t>(r->members.size())});
  room_slot slot{&m};
  slot.syncing = sync;
  slot.last_seq = r->last_seq;
  r->members.push_back(std::move(slot));
  counters_.room_joins.add();
  if (listener_) listener_->on_join(m, r->name);
  if (gained && room_change_) room_change_(r->name, true);
  return join_result::joined;
}

bool shard::finish_sync(member& m, std::string_view room, std::uint64_t seq, std::string_view epoch) {
  for (auto& ms : m.rooms_) {
    if (ms.room->name != room) continue;
    room_entry& r = *ms.room;
    room_slot& slot = r.members[ms.index];
    // The room's own last_seq is moved only by deliveries: the head this member read may still be
    // on the bus, and other members may need it.
    if (r.epoch.empty() && !epoch.empty()) r.epoch = std::string(epoch);
    slot.last_seq = seq;
    release_held(r, slot, true);
    if (r.catch_up_pending && !all_syncing(r)) {
      r.catch_up_pending = false;
      catch_up(r.name);
    }
    return true;
  }
  return false;
}

void shard::release_held(room_entry& r, room_slot& slot, bool may_fill) {
  std::vector<held_frame> held;
  held.swap(slot.held);
  for (std::size_t i = 0; i < held.size(); ++i) {
    const auto& h = held[i];
    if (may_fill && member_fill_ && h.seq != 0 && slot.last_seq != 0 && h.seq > slot.last_seq + 1) {
      // The room passed a message before this member's position was known: read it for this
      // member; the rest stays held behind it.
      slot.held.assign(std::make_move_iterator(held.begin() + static_cast<std::ptrdiff_t>(i)),
                       std::make_move_iterator(held.end()));
      start_member_fill(r, slot);
      return;
    }
    deliver_next(r, slot, h);
  }
  slot.syncing = false;
}

void shard::deliver_next(room_entry& r, room_slot& slot, const held_frame& h) {
  if (h.seq != 0 && h.seq <= slot.last_seq) return;  // already sent (from history)
  if (h.seq != 0 && slot.last_seq != 0 && h.seq > slot.last_seq + 1) slot.m->deliver(lost_before(r, h.seq));
  if (h.seq != 0) slot.last_seq = h.seq;
  if (!h.frame->for_member(slot.m->id_)) {
    counters_.messages_filtered.add();
    return;
  }
  if (h.seq != 0)
    slot.m->deliver_at(h.frame, h.seq, r.epoch);
  else
    slot.m->deliver(h.frame);
  counters_.messages_out.add();
}

void shard::start_member_fill(room_entry& r, room_slot& slot) {
  slot.syncing = true;
  counters_.gap_fills.add();
  member_fill_(slot.m->id().session_id, r.name, slot.last_seq);
}

void shard::member_fill_done(std::uint64_t session_id, std::string_view room, bool ok, std::string_view epoch,
                             const std::vector<held_frame>& frames, std::uint64_t head) {
  member* m = find(session_id);
  if (!m) return;
  for (auto& ms : m->rooms_) {
    if (ms.room->name != room) continue;
    room_entry& r = *ms.room;
    room_slot& slot = r.members[ms.index];
    if (!slot.syncing) return;
    // What history lost of the hole is announced with a gap, then delivery goes on.
    if (ok && epoch == r.epoch)
      for (const auto& h : frames) deliver_next(r, slot, h);
    // A hole beyond the history's head when it was read holds seqs numbered after the read (still
    // on their way), not lost ones: read again. The next read's head is newer, so at most once.
    release_held(r, slot, ok && head <= slot.last_seq);
    return;
  }
}

bool shard::leave(member& m, std::string_view room) {
  for (std::size_t i = 0; i < m.rooms_.size(); ++i) {
    if (m.rooms_[i].room->name == room) {
      remove_from_room(m, i);
      return true;
    }
  }
  return false;
}

bool shard::in_room(const member& m, std::string_view room) const {
  return std::any_of(m.rooms_.begin(), m.rooms_.end(), [&](const auto& ms) { return ms.room->name == room; });
}

void shard::remove_from_room(member& m, std::size_t i) {
  room_entry* r = m.rooms_[i].room;
  const std::uint32_t pos = m.rooms_[i].index;
  // Swap-remove m's slot; the moved member's membership record points at its new slot.
  if (pos + 1 != r->members.size()) {
    r->members[pos] = std::move(r->members.back());
    member* moved = r->members[pos].m;
    for (auto& ms : moved->rooms_) {
      if (ms.room == r) {
        ms.index = pos;
        break;
      }
    }
  }
  r->members.pop_back();
  m.rooms_[i] = m.rooms_.back();
  m.rooms_.pop_back();
  if (listener_) listener_->on_leave(m, r->name);
  if (r->members.empty()) {
    std::string name = std::move(r->name);
    rooms_.erase(name);
    counters_.index_rooms.sub();
    if (room_change_) room_change_(name, false);
  }
}

std::size_t shard::fan_out(room_entry& r, const frame_ref& f, std::uint64_t seq) {
  std::size_t n = 0, skipped = 0;
  for (auto& slot : r.members) {
    if (slot.syncing) {
      slot.held.push_back({seq, f});
      continue;
    }
    if (seq != 0) {
      if (seq <= slot.last_seq) continue;  // it got this one from its recovery already
      if (slot.last_seq != 0 && seq > slot.last_seq + 1 && member_fill_) {
        // This member's position is behind the room's (it was read before a message the room had
        // passed): hold and read its own hole. Rare; never true for a member that was in sync.
        slot.held.push_back({seq, f});
        start_member_fill(r, slot);
        continue;
      }
      slot.last_seq = seq;  // passed, whether it is for this member or not
    }
    if (!f->for_member(slot.m->id_)) {
      ++skipped;
      continue;
    }
    if (seq != 0)
      slot.m->deliver_at(f, seq, r.epoch);
    else
      slot.m->deliver(f);
    ++n;
  }
  counters_.messages_out.add(n);
  if (skipped) counters_.messages_filtered.add(skipped);
  return n;
}

void shard::restart_epoch(room_entry& r, std::string_view epoch) {
  // History was lost (Redis flushed, expired) and numbering restarted: members can't be told what
  // they missed, so they are told that they can't.
  const bool had = !r.epoch.empty();
  r.epoch = std::string(epoch);
  r.last_seq = 0;
  r.filling = false;
  r.held.clear();
  if (!had) return;
  auto gap =
      make_local(protocol::make_frame(protocol::ws_opcode::text, protocol::encode_gap(r.name, "epoch", 0, epoch)));
  for (auto& slot : r.members) {
    slot.last_seq = 0;
    if (slot.syncing)
      slot.held.push_back({0, gap});
    else
      slot.m->deliver(gap);
  }
}

void shard::accept(room_entry& r, const frame_ref& f, std::uint64_t seq) {
  // Nothing delivered in this room on this shard yet: its members' positions (from their history
  // reads) are the baseline, so a message lost before the first one here is still seen.
  if (r.last_seq == 0) r.last_seq = baseline(r);
  if (r.last_seq != 0 && seq <= r.last_seq) {
    counters_.duplicates_dropped.add();  // redelivered: this shard delivered it already
    return;
  }
  if (r.last_seq != 0 && seq > r.last_seq + 1 && fill_) {
    // A hole: the bus lost messages. Hold this one and read the hole from history.
    r.filling = true;
    r.held.push_back({seq, f});
    counters_.gap_fills.add();
    fill_(r.name, r.last_seq);
    return;
  }
  r.last_seq = seq;
  fan_out(r, f, seq);
}

std::uint64_t shard::baseline(const room_entry& r) {
  std::uint64_t base = 0;
  for (const auto& slot : r.members)
    if (!slot.syncing && (base == 0 || slot.last_seq < base)) base = slot.last_seq;
  return base;
}

frame_ref shard::lost_before(const room_entry& r, std::uint64_t seq) {
  counters_.gaps_unfilled.add();
  return make_local(
      protocol::make_frame(protocol::ws_opcode::text, protocol::encode_gap(r.name, "lost", seq - 1, r.epoch)));
}

bool shard::all_syncing(const room_entry& r) {
  return std::all_of(r.members.begin(), r.members.end(), [](const room_slot& s) { return s.syncing; });
}

void shard::catch_up(std::string_view room) {
  auto it = rooms_.find(room);
  if (it == rooms_.end() || !fill_) return;
  room_entry& r = *it->second;
  if (r.filling) return;  // a fill in flight reads this stretch already
  if (r.last_seq == 0 && all_syncing(r)) {
    r.catch_up_pending = true;  // no member's position is known yet: finish_sync runs it
    return;
  }
  if (r.last_seq == 0) r.last_seq = baseline(r);
  r.filling = true;
  fill_(r.name, r.last_seq);
}

std::size_t shard::deliver_room(std::string_view room, const frame_ref& f, std::uint64_t seq, std::string_view epoch) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return 0;
  room_entry& r = *it->second;
  if (seq == 0) return fan_out(r, f, 0);
  if (r.epoch != epoch) restart_epoch(r, epoch);
  if (r.filling) {
    r.held.push_back({seq, f});
    return 0;
  }
  accept(r, f, seq);
  return r.members.size();
}

void shard::fill_done(std::string_view room, bool ok, std::string_view epoch, const std::vector<held_frame>& frames,
                      std::uint64_t head) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  room_entry& r = *it->second;
  if (!r.filling) return;
  r.filling = false;
  if (ok && r.epoch.empty()) r.epoch = std::string(epoch);
  if (ok && epoch == r.epoch) {
    for (auto& h : frames) {
      if (h.seq != r.last_seq + 1) continue;
      r.last_seq = h.seq;
      fan_out(r, h.frame, h.seq);
    }
  }
  std::vector<held_frame> held;
  held.swap(r.held);
  std::sort(held.begin(), held.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  for (std::size_t i = 0; i < held.size(); ++i) {
    auto& h = held[i];
    if (h.seq <= r.last_seq) continue;
    if (h.seq > r.last_seq + 1 && ok && head <= r.last_seq && fill_) {
      // A hole after the history's head when it was read: those seqs were numbered after the
      // read (another node's publishes still on their way here), not lost. Read again; the next
      // read's head is at least h.seq, so this repeats at most once per hole.
      r.held.assign(std::make_move_iterator(held.begin() + static_cast<std::ptrdiff_t>(i)),
                    std::make_move_iterator(held.end()));
      r.filling = true;
      counters_.gap_fills.add();
      fill_(r.name, r.last_seq);
      return;
    }
    if (h.seq > r.last_seq + 1) {
      // History doesn't have the hole either (trimmed or lost): say so instead of hiding it.
      fan_out(r, lost_before(r, h.seq), 0);
      // Members were told: their own sequence resumes after the hole, without reading it again.
      for (auto& slot : r.members)
        if (!slot.syncing && slot.last_seq < h.seq - 1) slot.last_seq = h.seq - 1;
    }
    r.last_seq = h.seq;
    fan_out(r, h.frame, h.seq);
  }
}

std::size_t shard::deliver_user(std::string_view user, const frame_ref& f) {
  auto it = users_.find(user);
  if (it == users_.end()) return 0;
  const auto& ss = it->second->sessions;
  for (member* m : ss) m->deliver(f);
  counters_.messages_out.add(ss.size());
  return ss.size();
}

std::size_t shard::deliver_all(const frame_ref& f) {
  for (member* m : all_) m->deliver(f);
  counters_.messages_out.add(all_.size());
  return all_.size();
}

std::size_t shard::kick_user(std::string_view user, std::uint16_t code, std::string_view reason) {
  auto it = users_.find(user);
  if (it == users_.end()) return 0;
  const auto& ss = it->second->sessions;
  for (member* m : ss) m->kick(code, reason);
  return ss.size();
}

std::size_t shard::remove_user_from_room(std::string_view room, std::string_view user, const frame_ref& left) {
  auto it = users_.find(user);
  if (it == users_.end()) return 0;
  std::size_t n = 0;
  for (member* m : it->second->sessions) {
    if (!leave(*m, room)) continue;
    m->deliver(left);
    ++n;
  }
  return n;
}

bool shard::kick_session(std::uint64_t session_id, std::uint16_t code, std::string_view reason) {
  auto it = by_session_.find(session_id);
  if (it == by_session_.end()) return false;
  it->second->kick(code, reason);
  return true;
}

member* shard::find(std::uint64_t session_id) const {
  auto it = by_session_.find(session_id);
  return it == by_session_.end() ? nullptr : it->second;
}

room_presence shard::room_info(std::string_view room) const {
  room_presence s;
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return s;
  for (const auto& slot : it->second->members) s.add(slot.m->id_.user, slot.m->id_.role, slot.m->id_.platform);
  return s;
}

std::vector<room_load> shard::room_loads() const {
  std::vector<room_load> out;
  out.reserve(rooms_.size());
  for (const auto& [name, r] : rooms_) {
    if (r->members.empty()) continue;
    room_load c{name, r->members.size(), {}};
    for (const auto& slot : r->members) ++c.by_role[slot.m->id_.role];
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<session_snapshot> shard::user_info(std::string_view user) const {
  std::vector<session_snapshot> out;
  auto it = users_.find(user);
  if (it == users_.end()) return out;
  for (const member* m : it->second->sessions)
    out.push_back({m->id_.session_id, m->id_.user, m->id_.role, m->id_.platform, m->room_names()});
  return out;
}

}  // namespace roomcast::hub
