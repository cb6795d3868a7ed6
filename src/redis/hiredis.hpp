#pragma once
// The hiredis pieces every Redis backend (bus, history, registry) uses: owned replies, reading a
// reply's value, and connecting with one timeout for the connect and every later blocking call.
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace roomcast::redis {

struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

// A string or status reply's text (empty for anything else, and for null).
std::string_view view(const redisReply* r) noexcept;
inline std::string str(const redisReply* r) { return std::string(view(r)); }
// An integer reply, or a string reply holding digits (0 otherwise).
std::uint64_t num(const redisReply* r) noexcept;

timeval to_timeval(std::chrono::milliseconds ms) noexcept;

// Connects to host:port. `timeout` bounds the connect and every later blocking read or write on
// the connection; TCP keepalive is on, so a peer that vanished is noticed. nullptr on failure,
// with `err` saying why (no host name or port in it: callers add their own context).
redisContext* connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout, std::string& err);

}  // namespace roomcast::redis
