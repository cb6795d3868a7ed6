#pragma once
// The hiredis pieces every Redis user reads replies with: owned replies and a reply's value.
// (Connections: redis/connection.hpp.)
#include <hiredis/hiredis.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace roomcast::redis {

struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

// A string, status or error reply's text (empty for anything else, and for null).
std::string_view view(const redisReply* r) noexcept;
inline std::string str(const redisReply* r) { return std::string(view(r)); }
// An integer reply, or a string reply holding digits (0 otherwise).
std::uint64_t num(const redisReply* r) noexcept;

// Most elements of one reply array. hiredis 0.14 allocates an array's element pointers as soon as
// it reads the header, so "*400000001" from a broken or hostile server would cost 3.2 GB before a
// single element arrived (found by tests/fuzz/fuzz_history_reply.cpp). Our biggest legitimate
// reply (a node's session list at max_connections 100,000) is far below this.
inline constexpr std::size_t max_reply_elements = std::size_t{1} << 22;

// A reply reader whose arrays are bounded by max_reply_elements: a bigger one is a protocol error
// (redisReaderGetReply fails) instead of an allocation. Free with redisReaderFree.
redisReader* make_reader();

}  // namespace roomcast::redis
