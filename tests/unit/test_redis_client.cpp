// The sans-io parts of redis::connection: the queue of commands waiting for their reply (bounds,
// order, deadlines, failing everything on a disconnect) and the script bookkeeping (load once per
// connection, run by sha, load again once on NOSCRIPT). No server: replies are built by hand.
#include "redis/command_queue.hpp"
#include "redis/errors.hpp"
#include "redis/hiredis.hpp"
#include "redis/scripts.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include <string>
#include <vector>

namespace {

using namespace roomcast::redis;
using clock_t_ = command_queue::clock;
using std::chrono::milliseconds;

redisReply status_reply(const char* text) {
  redisReply r{};
  r.type = REDIS_REPLY_STATUS;
  r.str = const_cast<char*>(text);
  r.len = std::strlen(text);
  return r;
}

// Records each handler call: the reply's text (or "-") and the error.
struct log_t {
  std::vector<std::string> calls;
  reply_handler handler(std::string tag) {
    return [this, tag](const redisReply* r, std::error_code ec) {
      calls.push_back(tag + ":" + (r ? std::string(r->str, r->len) : "-") + ":" + (ec ? ec.message() : "ok"));
    };
  }
};

TEST(command_queue, replies_complete_commands_in_the_order_they_were_sent) {
  command_queue q(10);
  log_t log;
  const auto t0 = clock_t_::now();
  ASSERT_TRUE(q.push(log.handler("a"), t0));
  ASSERT_TRUE(q.push(log.handler("b"), t0));
  auto r = status_reply("OK");
  bool unexpected = true;
  auto e = q.on_reply(unexpected);
  ASSERT_TRUE(e);
  EXPECT_FALSE(unexpected);
  e->done(&r, {});
  e = q.on_reply(unexpected);
  e->done(&r, {});
  EXPECT_EQ(log.calls, (std::vector<std::string>{"a:OK:ok", "b:OK:ok"}));
  EXPECT_TRUE(q.empty());
  // A reply nobody waits for is told apart (the connection drops on it).
  EXPECT_FALSE(q.on_reply(unexpected));
  EXPECT_TRUE(unexpected);
}

TEST(command_queue, is_bounded) {
  command_queue q(2);
  log_t log;
  const auto t0 = clock_t_::now();
  EXPECT_TRUE(q.push(log.handler("a"), t0));
  EXPECT_TRUE(q.push(log.handler("b"), t0));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.push(log.handler("c"), t0));
  EXPECT_EQ(q.size(), 2u);
  bool unexpected = false;
  q.on_reply(unexpected);  // one answered: room for one more
  EXPECT_FALSE(q.full());
  EXPECT_TRUE(q.push(log.handler("c"), t0));
  // The error a full queue reports is Redis's own.
  const auto ec = make_error(errc::queue_full);
  EXPECT_EQ(ec.category().name(), std::string("roomcast.redis"));
  EXPECT_EQ(ec.message(), "redis command queue full");
}

TEST(command_queue, disconnect_fails_every_waiting_command_oldest_first) {
  command_queue q(10);
  log_t log;
  const auto t0 = clock_t_::now();
  q.push(log.handler("a"), t0);
  q.push(nullptr, t0);  // nobody waits for this one's reply
  q.push(log.handler("c"), t0);
  EXPECT_EQ(q.fail_all(make_error(errc::disconnected)), 3u);
  EXPECT_EQ(log.calls, (std::vector<std::string>{"a:-:redis connection lost before the reply",
                                                 "c:-:redis connection lost before the reply"}));
  EXPECT_TRUE(q.empty());
}

TEST(command_queue, a_failing_handler_may_queue_again) {
  // Handlers run after the queue is emptied: one that sends again (a retry, a fallback) finds a
  // consistent queue.
  command_queue q(10);
  int reentered = 0;
  const auto t0 = clock_t_::now();
  q.push(
      [&](const redisReply*, std::error_code) {
        ++reentered;
        EXPECT_TRUE(q.empty());
        q.push(nullptr, t0);
      },
      t0);
  q.fail_all(make_error(errc::stopped));
  EXPECT_EQ(reentered, 1);
  EXPECT_EQ(q.size(), 1u);
}

TEST(command_queue, the_oldest_deadline_decides_the_timeout) {
  command_queue q(10);
  const auto t0 = clock_t_::now();
  EXPECT_FALSE(q.next_deadline());
  EXPECT_FALSE(q.overdue(t0 + milliseconds(10'000)));
  q.push(nullptr, t0 + milliseconds(100));
  q.push(nullptr, t0 + milliseconds(200));
  EXPECT_EQ(*q.next_deadline(), t0 + milliseconds(100));
  EXPECT_FALSE(q.overdue(t0 + milliseconds(99)));
  EXPECT_TRUE(q.overdue(t0 + milliseconds(100)));
  bool unexpected = false;
  q.on_reply(unexpected);  // the first answered in time: the second's deadline counts now
  EXPECT_FALSE(q.overdue(t0 + milliseconds(150)));
  EXPECT_EQ(*q.next_deadline(), t0 + milliseconds(200));
}

TEST(command_queue, subscribe_waits_for_one_confirmation_per_channel) {
  command_queue q(10);
  log_t log;
  q.push(log.handler("sub"), clock_t_::now(), 3);
  bool unexpected = false;
  EXPECT_FALSE(q.on_reply(unexpected));
  EXPECT_FALSE(q.on_reply(unexpected));
  EXPECT_FALSE(unexpected);
  auto e = q.on_reply(unexpected);
  ASSERT_TRUE(e);
  EXPECT_TRUE(q.empty());
}

TEST(script_set, loads_every_script_on_each_connection_then_runs_them_by_sha) {
  script_set s;
  const auto a = s.add("return 1");
  const auto b = s.add("return 2");
  auto loads = s.load_commands();
  ASSERT_EQ(loads.size(), 2u);
  EXPECT_EQ(loads[0], (command{"SCRIPT", "LOAD", "return 1"}));
  EXPECT_EQ(loads[1], (command{"SCRIPT", "LOAD", "return 2"}));
  EXPECT_FALSE(s.all_loaded());

  std::vector<std::string_view> argv;  // views into the args: they outlive it
  const command args{"1", "key", "arg"}, none{"0"};
  s.append_call(a, args, argv);  // not loaded yet: the body goes along
  EXPECT_EQ(argv, (std::vector<std::string_view>{"EVAL", "return 1", "1", "key", "arg"}));

  s.on_loaded(a, "sha-a");
  EXPECT_FALSE(s.all_loaded());
  s.on_loaded(b, "sha-b");
  EXPECT_TRUE(s.all_loaded());
  s.append_call(b, none, argv);
  EXPECT_EQ(argv, (std::vector<std::string_view>{"EVALSHA", "sha-b", "0"}));

  // A new connection learns its shas again.
  s.connection_lost();
  EXPECT_FALSE(s.loaded(a));
  EXPECT_EQ(s.load_commands().size(), 2u);
}

TEST(script_set, noscript_loads_the_script_once_for_every_call_that_failed) {
  script_set s;
  const auto a = s.add("return 1");
  s.load_commands();
  s.on_loaded(a, "sha-a");
  EXPECT_TRUE(script_set::is_noscript("NOSCRIPT No matching script. Please use EVAL."));
  EXPECT_FALSE(script_set::is_noscript("ERR wrong number of arguments"));
  // Three calls were in flight when Redis flushed its scripts: one SCRIPT LOAD, three resends.
  EXPECT_TRUE(s.on_noscript(a));
  EXPECT_FALSE(s.on_noscript(a));
  EXPECT_FALSE(s.on_noscript(a));
  // The resends still go by sha: the load is ahead of them in the pipeline.
  std::vector<std::string_view> argv;
  const command none{"0"};
  s.append_call(a, none, argv);
  EXPECT_EQ(argv[0], "EVALSHA");
  // Loaded again: a later flush loads it again.
  s.on_loaded(a, "sha-a");
  EXPECT_TRUE(s.on_noscript(a));
}

TEST(redis_errors, have_one_category_with_a_message_each) {
  for (int c = 1; c <= static_cast<int>(errc::bad_reply); ++c) {
    const auto ec = make_error(static_cast<errc>(c));
    EXPECT_EQ(&ec.category(), &category());
    EXPECT_NE(ec.message(), "unknown redis error") << c;
  }
  EXPECT_NE(make_error(errc::timeout), make_error(errc::disconnected));
}

}  // namespace

// A reply array's header makes hiredis allocate its element pointers at once: a bigger array than
// max_reply_elements is a protocol error, not a 3.2 GB allocation (found by fuzz_history_reply).
TEST(reader, arrays_over_the_bound_are_an_error_not_an_allocation) {
  auto read_one = [](const std::string& bytes, bool& ok) {
    redisReader* r = make_reader();
    redisReaderFeed(r, bytes.data(), bytes.size());
    void* reply = nullptr;
    ok = redisReaderGetReply(r, &reply) == REDIS_OK && reply != nullptr;
    const auto n = ok ? static_cast<redisReply*>(reply)->elements : 0;
    if (reply) freeReplyObject(reply);
    redisReaderFree(r);
    return n;
  };
  bool ok = false;
  EXPECT_EQ(read_one("*3\r\n:1\r\n$1\r\nx\r\n*0\r\n", ok), 3u);
  EXPECT_TRUE(ok);
  read_one("*400000001\r\n:3\r\n", ok);
  EXPECT_FALSE(ok);
  read_one("*" + std::to_string(max_reply_elements + 1) + "\r\n", ok);
  EXPECT_FALSE(ok);
}
