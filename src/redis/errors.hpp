#pragma once
// Why a Redis command got no reply: one error category for every Redis user (bus, history,
// registry), so callers and tests read the same codes whichever backend asked.
#include <string>
#include <system_error>

namespace roomcast::redis {

enum class errc {
  not_connected = 1,  // the connection is down (reconnecting): the command was not sent
  queue_full,         // too many commands waiting for their reply
  timeout,            // a reply took longer than the timeout: the connection was given up
  disconnected,       // the connection broke before the reply came (Redis may have run it)
  stopped,            // the connection was stopped
  error_reply,        // Redis answered with an error
  bad_reply,          // Redis answered something the caller did not expect
};

const std::error_category& category() noexcept;

inline std::error_code make_error(errc e) noexcept { return {static_cast<int>(e), category()}; }

}  // namespace roomcast::redis
