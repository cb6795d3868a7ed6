#include "history/history.hpp"
#include "history/local_history.hpp"
#include "history/redis_history.hpp"
#include "redis/hiredis.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace roomcast;
using namespace roomcast::history;
using namespace std::chrono_literals;

namespace {
bus::envelope room_msg(std::string room, std::string id, std::string data) {
  bus::envelope e;
  e.kind = protocol::target_kind::room;
  e.target = std::move(room);
  e.claim_id = !id.empty();
  e.id = std::move(id);
  e.from = "api";
  e.data = std::move(data);
  return e;
}
append_result append_sync(roomcast::history::history& h, const bus::envelope& e, const policy& p) {
  append_result out;
  h.append(e, p, [&](append_result r) { out = std::move(r); });
  return out;
}
read_result read_sync(roomcast::history::history& h, const std::string& room, std::uint64_t since, std::size_t limit) {
  read_result out;
  h.read(room, since, limit, std::chrono::milliseconds(0), [&](read_result r) { out = std::move(r); });
  return out;
}
}  // namespace

TEST(rules, first_match_wins_and_globs) {
  rules r;
  std::string err;
  ASSERT_TRUE(r.parse({"lobby-* 0 0s", "class-?? 5 1m", "* 300 10m"}, err)) << err;
  EXPECT_FALSE(r.for_room("lobby-1").keeps());
  EXPECT_EQ(r.for_room("345").max_messages, 300u);
  EXPECT_EQ(r.for_room("345").ttl, 10min);
  EXPECT_TRUE(r.any_keeps());
  EXPECT_TRUE(rules::glob_match("a*b*c", "axxbyyc"));
  EXPECT_FALSE(rules::glob_match("a*b*c", "axxbyy"));
  EXPECT_TRUE(rules::glob_match("*", ""));
  EXPECT_FALSE(r.parse({"* 300"}, err));
  EXPECT_FALSE(r.parse({"* lots 10m"}, err));
  EXPECT_FALSE(r.parse({"* 300 10"}, err));  // unit required
  EXPECT_FALSE(r.parse({"* 300 0s"}, err));  // history needs a ttl
  ASSERT_TRUE(r.parse({"* 0 0s"}, err));
  EXPECT_FALSE(r.any_keeps());
  EXPECT_FALSE(rules().for_room("x").keeps());  // no rule: no history
}

TEST(local_history, numbers_rooms_and_reads_back) {
  local_history h(5min);
  const policy p{3, 10min};
  for (int i = 1; i <= 5; ++i) {
    auto r = append_sync(h, room_msg("r", "", std::to_string(i)), p);
    EXPECT_EQ(r.seq, static_cast<std::uint64_t>(i));
    EXPECT_FALSE(r.epoch.empty());
  }
  EXPECT_EQ(append_sync(h, room_msg("other", "", "x"), p).seq, 1u);  // per room

  auto all = read_sync(h, "r", 2, 100);
  EXPECT_EQ(all.head, 5u);
  ASSERT_EQ(all.entries.size(), 3u);  // 3..5 kept (max 3)
  EXPECT_EQ(all.entries.front().seq, 3u);
  EXPECT_EQ(all.entries.front().data, "3");
  EXPECT_TRUE(all.complete);

  auto old = read_sync(h, "r", 1, 100);  // 2 was trimmed
  EXPECT_FALSE(old.complete);
  auto head_only = read_sync(h, "r", 0, 0);
  EXPECT_EQ(head_only.head, 5u);
  EXPECT_TRUE(head_only.entries.empty());
  auto nothing = read_sync(h, "never", 0, 10);
  EXPECT_TRUE(nothing.epoch.empty());
  EXPECT_EQ(nothing.head, 0u);
}

TEST(local_history, ids_are_idempotent_and_epochs_change_when_lost) {
  local_history h(5min);
  const policy p{300, 10min};
  auto first = append_sync(h, room_msg("r", "m1", "1"), p);
  auto again = append_sync(h, room_msg("r", "m1", "1"), p);
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.seq, first.seq);
  EXPECT_EQ(again.epoch, first.epoch);
  EXPECT_EQ(read_sync(h, "r", 0, 10).head, 1u);  // the duplicate took no seq

  // An id on a target without history is still claimed once.
  bus::envelope u;
  u.kind = protocol::target_kind::user;
  u.target = "alice";
  u.id = "u1";
  u.claim_id = true;
  EXPECT_FALSE(append_sync(h, u, policy{0, {}}).duplicate);
  EXPECT_TRUE(append_sync(h, u, policy{0, {}}).duplicate);

  // A read may create a fresh room's epoch, so its first messages belong to a known epoch.
  read_result fresh;
  h.read("fresh", 0, 0, 10min, [&](read_result r) { fresh = std::move(r); });
  EXPECT_FALSE(fresh.epoch.empty());
  EXPECT_EQ(fresh.head, 0u);
  EXPECT_EQ(append_sync(h, room_msg("fresh", "", "1"), p).epoch, fresh.epoch);

  h.clear();  // as if Redis were flushed
  auto after = append_sync(h, room_msg("r", "m2", "2"), p);
  EXPECT_EQ(after.seq, 1u);
  EXPECT_NE(after.epoch, first.epoch);
}

TEST(local_history, generated_ids_are_not_remembered) {
  local_history h(5min);
  const policy p{300, 10min};
  auto e = room_msg("r", "gen-1", "1");
  e.claim_id = false;  // the node made the id up: it can't come again
  EXPECT_FALSE(append_sync(h, e, p).duplicate);
  auto second = append_sync(h, e, p);
  EXPECT_FALSE(second.duplicate);
  EXPECT_EQ(second.seq, 2u);
}

TEST(local_history, a_room_written_again_outlives_its_first_expiry) {
  local_history h(5min);
  const policy p{300, 150ms};
  append_sync(h, room_msg("r", "", "1"), p);
  std::this_thread::sleep_for(90ms);
  append_sync(h, room_msg("r", "", "2"), p);  // expires now 150 ms after this
  std::this_thread::sleep_for(90ms);          // past the first expiry
  EXPECT_EQ(read_sync(h, "r", 0, 10).head, 2u);
  std::this_thread::sleep_for(120ms);  // past the second
  EXPECT_EQ(read_sync(h, "r", 0, 10).head, 0u);
}

// What the redis history reads back is checked, not trusted (tests/fuzz/fuzz_history_reply.cpp).
TEST(redis_read_reply, entries_out_of_order_or_out_of_range_are_left_out_and_the_read_is_incomplete) {
  auto decode = [](const std::string& resp, std::uint64_t since) {
    redisReader* r = redis::make_reader();
    redisReaderFeed(r, resp.data(), resp.size());
    void* reply = nullptr;
    EXPECT_EQ(redisReaderGetReply(r, &reply), REDIS_OK);
    auto res = decode_read_reply(static_cast<const redisReply*>(reply), since, "r");
    freeReplyObject(reply);
    redisReaderFree(r);
    return res;
  };
  auto entry = [](int seq, const std::string& data) {
    return "*2\r\n$3\r\n" + std::to_string(seq) + "-0\r\n*2\r\n$1\r\nd\r\n$" + std::to_string(data.size()) + "\r\n" +
           data + "\r\n";
  };
  const std::string head = "*3\r\n$1\r\ne\r\n:3\r\n";
  auto good = decode(head + "*3\r\n" + entry(1, "a") + entry(2, "b") + entry(3, "c"), 0);
  ASSERT_EQ(good.entries.size(), 3u);
  EXPECT_TRUE(good.complete);
  // 2 before 1, and a seq past the head: only what keeps the promise stays, and the hole shows.
  auto bad = decode(head + "*3\r\n" + entry(2, "b") + entry(1, "a") + entry(9, "z"), 0);
  ASSERT_EQ(bad.entries.size(), 1u);
  EXPECT_EQ(bad.entries[0].seq, 2u);
  EXPECT_FALSE(bad.complete);
  // An entry whose fields are not a list is lost, not delivered empty.
  auto flat = decode(head + "*1\r\n*2\r\n$3\r\n1-0\r\n$1\r\nx\r\n", 0);
  EXPECT_TRUE(flat.entries.empty());
  EXPECT_FALSE(flat.complete);
  // A reply of the wrong shape is an error.
  auto wrong = decode("*1\r\n:1\r\n", 0);
  EXPECT_TRUE(wrong.ec);
}
