#pragma once
// The HTTP side of a connection: reads requests (keep-alive), serves the API and web/, and
// upgrades WebSocket requests that match the route, then hands the socket to a ws_session.
#include <boost/asio/ip/tcp.hpp>

namespace roomcast::transport {

class shard_context;

// Starts serving a freshly accepted connection on the shard's thread.
void start_http_session(shard_context& ctx, boost::asio::ip::tcp::socket socket);

}  // namespace roomcast::transport
