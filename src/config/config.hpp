#pragma once
// One typed config for a node, parsed once at start: defaults < TOML file < ROOMCAST_* env < flags.
// After start-up nothing looks up a string key. Every key is listed in config.cpp's key table,
// which also drives --help and deploy/roomcast.example.toml.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace roomcast::config {

using millis = std::chrono::milliseconds;

enum class auth_mode : std::uint8_t { none, jwt };
enum class bus_kind : std::uint8_t { local, rabbitmq, redis };
enum class registry_kind : std::uint8_t { local, redis };
enum class history_kind : std::uint8_t { automatic, local, redis };

struct config {
  // Network
  std::string listen_address = "0.0.0.0";
  std::uint16_t port = 8091;
  std::string node_id;   // default "<hostname>:<port>" (the seed's SERVER.HOST + port)
  unsigned threads = 0;  // shards; 0 = one per core
  std::string route = "/demo/websocket/{room}/{role}/{user}/{token}/{platform}";
  std::string web_root = "web";  // static files served at /; empty = none

  // Auth
  auth_mode auth = auth_mode::none;
  std::string jwt_secret;                    // required with auth = "jwt"
  std::chrono::seconds jwt_leeway{30};       // clock skew tolerated on exp/nbf
  std::string api_key;                       // X-API-Key for /api/*; empty = no key (demo only)
  std::vector<std::string> allowed_origins;  // empty = any Origin

  // Rights
  std::vector<std::string> publish_roles{"THE"};  // roles whose clients may publish to their rooms
  bool client_join = true;                        // clients may join/leave rooms beyond their URL room
  std::size_t max_rooms_per_session = 16;

  // Limits
  std::size_t max_connections = 100000;                 // WebSocket sessions per node; over it: 503
  std::size_t max_frame_bytes = std::size_t{64} << 10;  // largest client message
  std::size_t max_queue_bytes = std::size_t{1} << 20;   // per-session outbound queue; over it: slow consumer
  std::size_t max_body_bytes = std::size_t{1} << 20;    // HTTP request body
  std::size_t send_buffer_bytes = 0;                    // SO_SNDBUF of WebSocket sockets; 0 = kernel autotuning

  // TLS on the port (WebSocket, API, pages): both set, or neither
  std::string tls_cert;  // PEM certificate chain
  std::string tls_key;   // PEM private key

  // permessage-deflate (RFC 7692): negotiated when the client offers it and this is on
  bool compression = false;
  std::size_t compression_min_bytes = 512;   // messages under this go out uncompressed
  std::size_t compression_level = 1;         // zlib level 1-9 (1: fastest)
  millis handshake_timeout{10'000};          // whole HTTP request / upgrade
  millis ping_interval{25'000};              // idle time before the server pings
  millis pong_timeout{10'000};               // wait for pong (and for the peer's close reply)
  double publish_rate = 10;                  // client publishes per second per session
  double publish_burst = 20;                 // bucket size for publish_rate
  double api_publish_rate = 0;               // API publishes per second per shard; 0 = unlimited
  std::size_t api_publish_batch_max = 1000;  // messages in one POST /api/publish array
  std::size_t filter_max_users = 1000;       // user ids in one publish's "users" filter
  millis drain_window{10'000};               // spread of 1012 closes on SIGTERM
  millis retry_after{5'000};                 // base Retry-After for 503s (jitter added)

  // Abuse limits
  double source_rate = 1000;              // new connections per second per source address, per shard; 0 = off
  double source_burst = 2000;             // bucket size for source_rate (a class behind one NAT address)
  std::size_t source_table_size = 65536;  // source addresses tracked per shard
  std::vector<std::string> source_exempt{"127.0.0.1", "::1"};  // not limited by source_rate (a local proxy)
  std::size_t max_pending_handshakes = 4096;                   // connections of a shard still in HTTP (not upgraded)
  std::size_t json_max_depth = 32;                             // nesting of client frames and API bodies
  std::size_t json_max_members = 10000;                        // members of one JSON object or array in them
  double join_rate = 10;                                       // client join frames per second per session
  double join_burst = 32;                                      // bucket size for join_rate

  // Cluster: bus
  bus_kind bus = bus_kind::local;
  std::vector<std::string> rabbitmq_uris{"amqp://guest:guest@127.0.0.1:5672/"};
  std::string rabbitmq_prefix = "roomcast";     // exchange and queue names; several clusters share a broker
  millis rabbitmq_queue_expires{600'000};       // node queue x-expires: a node gone for good leaves none
  std::size_t rabbitmq_prefetch = 256;          // unacked deliveries in flight to this node
  bool rabbitmq_persistent = true;              // persistent messages (survive a broker restart)
  millis publish_timeout{5'000};                // wait for the broker's confirm before answering 202
  std::size_t outage_buffer_messages = 10'000;  // publishes kept while the broker is away
  std::size_t outage_buffer_bytes = 64u << 20;
  millis unbind_grace{5'000};           // keep a room bound this long after its last member
  std::size_t dedupe_window = 100'000;  // message ids remembered to drop redeliveries

  // History and idempotency
  history_kind history_store = history_kind::automatic;  // resolved: local for bus local, else redis
  std::vector<std::string> history{"* 300 10m"};         // "<room pattern> <messages> <ttl>", first match wins
  // Receipts (must-arrive messages)
  millis receipt_ttl{600'000};                // a receipt (and redelivery to who didn't confirm) lasts this long
  std::size_t receipt_max_messages = 10'000;  // receipts alive at once; beyond it publishes with receipts get 503
  std::size_t receipt_max_users = 10'000;     // expected users of one message; a bigger room gets 400

  // Presence frames
  std::vector<std::string> presence_events;  // "<room pattern> [interval]"; empty: no presence frames
  std::vector<std::string> presence_names;   // roles whose names presence frames carry

  millis idempotency_window{300'000};     // a publish id seen within this is a duplicate
  bool history_reject_when_down = false;  // history store down: false = deliver without seq, true = 503
  bool redis_script_publish = true;       // bus redis + history redis: the history script PUBLISHes room messages
  std::string redis_prefix = "roomcast";  // redis bus channel names; several clusters share a Redis

  // Cluster: registry
  registry_kind registry = registry_kind::local;
  std::string redis_address = "127.0.0.1:6379";
  std::string redis_host = "127.0.0.1";  // redis_address, split once here
  std::uint16_t redis_port = 6379;
  millis registry_heartbeat{2'000};
  millis registry_node_ttl{6'000};  // a node silent this long is reaped by the others
  millis redis_timeout{2'000};

  // Logs
  std::string log_level = "info";

  // Development
  bool dev_kill = false;  // DEV ONLY: a client's {"type":"kill"} SIGKILLs the node (failover demo)
};

struct parse_result {
  std::optional<config> cfg;  // set on success
  int exit_code = 0;          // 0 ok (or --help printed: cfg empty, exit 0), 2 bad config
  std::string message;        // one line naming the key, or the help text
};

// argv as given to main; env looked up through getenv.
parse_result parse(int argc, const char* const* argv);

// Parses only a TOML text (tests, example check).
parse_result parse_toml_text(std::string_view toml);

// deploy/roomcast.example.toml: every key, its default and what it means.
std::string example_toml();

// "64KiB", "1MiB", "4096" -> bytes; "10s", "500ms", "2m" -> ms.
std::optional<std::size_t> parse_size(std::string_view s);
std::optional<millis> parse_duration(std::string_view s);

}  // namespace roomcast::config
