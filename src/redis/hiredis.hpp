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

}  // namespace roomcast::redis
