#pragma once
// The HTTP side of a connection: reads requests (keep-alive), serves the API and web/, and
// upgrades WebSocket requests that match the route, then hands the socket to a ws_session.
#include <boost/asio/ip/tcp.hpp>

namespace roomcast::transport {

class shard_context;

// Starts serving a freshly accepted connection on the shard's thread.
void start_http_session(shard_context& ctx, boost::asio::ip::tcp::socket socket);

enum class connection_refusal : unsigned char {
  source_rate,         // 429: the source address is over source_rate
  pending_handshakes,  // 503: the shard holds max_pending_handshakes connections in HTTP
};
// Answers a connection that is not served at all (its request unread) and closes it.
void refuse_connection(shard_context& ctx, boost::asio::ip::tcp::socket& socket, connection_refusal why);

}  // namespace roomcast::transport
