#include "transport/http_session.hpp"

#include <sys/socket.h>

#include "auth/jwt.hpp"
#include "protocol/deflate.hpp"
#include "protocol/sse.hpp"
#include "protocol/ws_frame.hpp"
#include "transport/shard_context.hpp"
#include "transport/tls_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/range/iterator_range.hpp>
#include <spdlog/spdlog.h>

#include <charconv>
#include <fstream>
#include <random>
#include <sstream>

namespace roomcast::transport {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using metrics::handshake_failure;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_static_file = std::size_t{8} << 20;

using response_t = http::response<http::string_body>;

response_t make_response(const api::response& r, unsigned version, bool keep_alive) {
  response_t res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "roomcast");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.body() = r.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

std::string retry_after_value(const config::config& cfg) {
  // Jitter spreads the retries of a refused crowd instead of bringing it back all at once.
  static thread_local std::minstd_rand rng{std::random_device{}()};
  const auto base = std::chrono::duration_cast<std::chrono::seconds>(cfg.retry_after).count();
  const auto jitter = std::uniform_int_distribution<long long>(0, std::max<long long>(base, 1))(rng);
  return std::to_string(std::max<long long>(1, base + jitter));
}

std::string_view content_type_for(std::string_view path) {
  const auto dot = path.rfind('.');
  const auto ext = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
  if (ext == "html") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "json") return "application/json";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "ico") return "image/x-icon";
  if (ext == "txt" || ext == "md") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

api::response serve_file(const config::config& cfg, std::string_view method, std::string_view target) {
  if (method != "GET" && method != "HEAD") {
    auto r = api::handler::error(405, "method_not_allowed", "use GET");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (cfg.web_root.empty()) return api::handler::error(404, "not_found", "no such resource");
  auto segs = protocol::split_path(target);
  if (!segs) return api::handler::error(400, "bad_request", "malformed path");
  std::string rel;
  for (const auto& s : *segs) {
    // No way out of web_root: no dot segments, no separators or NULs inside a segment.
    if (s == ".." || s == "." || s.find('/') != std::string::npos || s.find('\0') != std::string::npos)
      return api::handler::error(404, "not_found", "no such resource");
    if (s.empty()) continue;
    rel += "/";
    rel += s;
  }
  if (rel.empty()) rel = "/index.html";
  std::ifstream f(cfg.web_root + rel, std::ios::binary);
  if (!f) return api::handler::error(404, "not_found", "no such resource");
  f.seekg(0, std::ios::end);
  const auto size = f.tellg();
  if (size < 0 || static_cast<std::size_t>(size) > max_static_file)
    return api::handler::error(404, "not_found", "no such resource");
  f.seekg(0);
  api::response r;
  r.content_type = std::string(content_type_for(rel));
  r.body.resize(static_cast<std::size_t>(size));
  f.read(r.body.data(), size);
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;  // HEAD: run_http sends the headers with this body's length, without the body
}

// Runs the API handler and resumes on this coroutine's executor with the response.
template <class Token>
auto async_api(api::handler& h, api::request req, Token&& token) {
  return asio::async_initiate<Token, void(api::response)>(
      [&h](auto handler, const api::request& request) {
        auto ex = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        h.handle(request, [shared, ex](api::response r) {
          asio::post(ex, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
        });
      },
      token, std::move(req));
}

struct upgrade_decision {
  unsigned status = 101;
  handshake_failure failure{};
  std::string message;
  hub::identity id;
  std::string room;
  recovery_request recovery;
  bool auth_frame = false;     // token "-" and no Authorization header: the first frame must be auth
  std::int64_t token_exp = 0;  // the token's exp (Unix s); the session closes then without a refresh
};

// What a request on the route is:
// - websocket: an upgrade;
// - probe: a plain GET of the route (no upgrade headers): the same checks without the WebSocket
//   headers and without taking a connection slot, so that a client whose socket failed can learn
//   why (browsers hide the status of a refused upgrade): 426 when the upgrade would be accepted;
// - sse: a GET with Accept: text/event-stream: a stream, admitted like an upgrade (a slot of
//   max_connections, not while draining); recovery from Last-Event-ID or ?since=&epoch=;
// - post: a client frame of an SSE client (or any HTTP client) in the body: the same auth, and no
//   slot (status 101 here means "go on").
// The token can't come in a first frame on SSE (EventSource sends nothing): URL or Bearer only.
enum class request_kind : std::uint8_t { websocket, probe, sse, post };

upgrade_decision decide_upgrade(shard_context& ctx, const http::request<http::string_body>& req,
                                request_kind kind = request_kind::websocket) {
  const bool probe = kind != request_kind::websocket;  // no WebSocket headers to check
  upgrade_decision d;
  auto& svc = ctx.svc();
  auto fail = [&](unsigned status, handshake_failure f, std::string msg) {
    d.status = status;
    d.failure = f;
    d.message = std::move(msg);
    return d;
  };
  const auto segs = protocol::split_path(req.target());
  protocol::route_params p;
  if (!segs) return fail(400, handshake_failure::bad_request, "malformed path");
  switch (svc.route.match(*segs, p)) {
    case protocol::route_template::match_result::no_match:
      return fail(404, handshake_failure::not_found, "path does not match " + svc.route.text());
    case protocol::route_template::match_result::empty_param:
      return fail(400, handshake_failure::bad_request, "room and user must not be empty");
    case protocol::route_template::match_result::ok:
      break;
  }
  if (p.room.size() > 256 || p.user.size() > 256 || p.role.size() > 64 || p.platform.size() > 64)
    return fail(400, handshake_failure::bad_request, "room, user, role or platform too long");
  if (!probe && req[http::field::sec_websocket_version] != "13")
    return fail(400, handshake_failure::bad_request, "Sec-WebSocket-Version must be 13");
  const auto key = req[http::field::sec_websocket_key];
  if (!probe && key.size() != 24) return fail(400, handshake_failure::bad_request, "bad Sec-WebSocket-Key");
  // A same-origin fetch sends no Origin: the probe checks one only when it is there.
  if (!svc.cfg.allowed_origins.empty() && !(probe && req[http::field::origin].empty())) {
    const auto origin = req[http::field::origin];
    const auto& ao = svc.cfg.allowed_origins;
    if (std::find(ao.begin(), ao.end(), origin) == ao.end())
      return fail(403, handshake_failure::forbidden, "origin not allowed");
  }
  if (svc.cfg.auth == config::auth_mode::jwt) {
    // The token: `Authorization: Bearer` (clients that can set headers), else the URL's segment;
    // "-" there means the first WebSocket frame carries it (browsers: out of URLs and logs).
    std::string_view token = p.token;
    const auto authz = req[http::field::authorization];
    if (!authz.empty()) {
      if (!authz.starts_with("Bearer ") || authz.size() <= 7)
        return fail(401, handshake_failure::unauthorized, "Authorization must be \"Bearer <token>\"");
      token = authz.substr(7);
    }
    if (authz.empty() && token == "-") {
      if (kind == request_kind::sse || kind == request_kind::post)
        return fail(401, handshake_failure::unauthorized,
                    "over SSE the token goes in the URL or in Authorization: Bearer (no first frame)");
      d.auth_frame = true;
    } else {
      auth::jwt_claims claims;
      const auto e = auth::verify_hs256(token, svc.cfg.jwt_secret, p.user, std::chrono::system_clock::now(),
                                        svc.cfg.jwt_leeway, &claims);
      if (e != auth::jwt_error::none)
        return fail(401, handshake_failure::unauthorized, std::string(auth::to_string(e)));
      d.token_exp = claims.exp;
    }
  }
  if (kind != request_kind::post && svc.state.draining.load(std::memory_order_relaxed))
    return fail(503, handshake_failure::draining, "node is shutting down");
  // ?since=<seq>&epoch=<epoch>: the seed's plain client can ask for recovery in the URL.
  if (auto since = protocol::query_param(req.target(), "since")) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(since->data(), since->data() + since->size(), v);
    if (ec != std::errc{} || ptr != since->data() + since->size())
      return fail(400, handshake_failure::bad_request, "since must be a non-negative integer");
    d.recovery.wanted = true;
    d.recovery.since = v;
    d.recovery.epoch = protocol::query_param(req.target(), "epoch").value_or("");
  }
  // EventSource sends back the last event id it saw when it reconnects: newer than the URL's since.
  if (kind == request_kind::sse) {
    std::string epoch;
    std::uint64_t seq = 0;
    if (protocol::parse_sse_event_id(req["Last-Event-ID"], epoch, seq)) {
      d.recovery.wanted = true;
      d.recovery.since = seq;
      d.recovery.epoch = std::move(epoch);
    }
  }
  if (kind == request_kind::post) {
    d.id.user = std::move(p.user);
    d.id.role = std::move(p.role);
    d.id.platform = std::move(p.platform);
    d.room = std::move(p.room);
    return d;
  }
  if (kind == request_kind::probe) {
    if (svc.state.ws_sessions.load(std::memory_order_relaxed) >= svc.cfg.max_connections)
      return fail(503, handshake_failure::over_capacity, "node is full");
    return fail(426, handshake_failure::count_, "this URL takes a WebSocket upgrade");
  }
  // Admission: reserve a slot now; destroy() gives it back.
  const auto n = svc.state.ws_sessions.fetch_add(1, std::memory_order_relaxed);
  if (n >= svc.cfg.max_connections) {
    svc.state.ws_sessions.fetch_sub(1, std::memory_order_relaxed);
    return fail(503, handshake_failure::over_capacity, "node is full");
  }
  d.id.session_id = ctx.next_session_id();
  d.id.user = std::move(p.user);
  d.id.role = std::move(p.role);
  d.id.platform = std::move(p.platform);
  d.room = std::move(p.room);
  return d;
}

// Runs router::publish and resumes on this coroutine's executor with the outcome.
template <class Token>
auto async_publish(hub::router& router, bus::envelope e, Token&& token) {
  return asio::async_initiate<Token, void(hub::router::publish_outcome)>(
      [&router](auto handler, bus::envelope env) {
        auto ex = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        router.publish(std::move(env), [shared, ex](hub::router::publish_outcome o) {
          asio::post(ex, [shared, o = std::move(o)]() mutable { (*shared)(std::move(o)); });
        });
      },
      token, std::move(e));
}

api::response client_frame_answer(unsigned status, std::string json) {
  api::response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(json);
  return r;
}

// The status of a refused client frame, from its error code (docs/protocol.md, "SSE").
unsigned status_for_error(std::string_view error_frame) {
  const auto code = protocol::find_raw_member(error_frame, "code").value_or("");
  if (code == "\"forbidden\"" || code == "\"not_in_room\"" || code == "\"muted\"") return 403;
  if (code == "\"rate_limited\"") return 429;
  if (code == "\"unavailable\"") return 503;
  return 400;
}

// POST on the route: the body is one client frame, decided as a WebSocket session's
// (hub::decide_client_command: role, room, rate), for the URL's user, role and room. The publish
// rate bucket is the user's on this shard (shard_context::post_bucket).
asio::awaitable<api::response> client_post(shard_context& ctx, upgrade_decision d, std::string body) {
  auto& svc = ctx.svc();
  namespace ec = protocol::error_code;
  if (body.size() > svc.cfg.max_frame_bytes)
    co_return api::handler::error(413, "too_large", "a client frame over max_frame_bytes");
  auto* bucket = ctx.post_bucket(d.id.user);
  if (!bucket)
    co_return client_frame_answer(
        429, protocol::encode_error(ec::rate_limited, "too many publishing users on this node; retry later"));
  const std::string room = d.room;
  const hub::client_session self{d.id.role, room,      [&room](std::string_view r) { return r == room; },
                                 bucket,    ctx.now(), nullptr};
  auto c = hub::decide_client_command(body, svc.rights, self);
  ctx.counters().messages_in.add();
  using kind = hub::client_command::kind;
  switch (c.what) {
    case kind::pong:
      co_return client_frame_answer(200, std::string(protocol::pong_payload()));
    case kind::error: {
      count_refusal(ctx.counters(), c);
      const auto status = status_for_error(c.text);
      co_return client_frame_answer(status, std::move(c.text));
    }
    case kind::received:
      if (auto* store = svc.receipts) store->confirm(c.id, d.id.user);
      ctx.counters().receipts_confirmed.add();
      co_return client_frame_answer(204, {});
    case kind::publish: {
      auto e = client_publish_envelope(svc.router, ctx.index(), d.id.user, std::move(c));
      const std::string id = e.id;
      ctx.counters().publishes_client.add();
      const auto o = co_await async_publish(svc.router, std::move(e), asio::use_awaitable);
      if (o.ec) {
        ctx.counters().client_errors.add();
        co_return client_frame_answer(
            503, protocol::encode_error("unavailable", "publish failed: " + o.ec.message(), id, room));
      }
      if (o.muted) {
        ctx.counters().client_errors.add();
        co_return client_frame_answer(403, protocol::encode_error(ec::muted, "you are muted in this room", id, room));
      }
      co_return client_frame_answer(200, protocol::encode_ack(id, o.seq, o.duplicate));
    }
    case kind::join:
    case kind::leave:
    case kind::refresh:
    case kind::kill:
      break;
  }
  // join, leave, refresh, kill: a stream is in its URL's room, with the token it was opened with.
  ctx.counters().client_errors.add();
  co_return client_frame_answer(
      400, protocol::encode_error(ec::bad_request, "a POST takes publish, plain text, received and ping", {}, c.room));
}

// Logs a target without its token: the route's {token} segment must never reach a log.
std::string redacted_path(const protocol::route_template&, std::string_view target) {
  auto segs = protocol::split_path(target);
  if (!segs || segs->empty()) return "/";
  return "/" + (*segs)[0] + "/...";
}

// The answer to a refused upgrade or stream (counted, logged without the token): the status and
// reason of the decision, with Retry-After on a 503. The connection closes after it.
api::response refusal(shard_context& ctx, const upgrade_decision& d, std::string_view target) {
  ctx.counters().handshake_failed(d.failure);
  spdlog::debug("upgrade refused {} {}: {}", d.status, redacted_path(ctx.svc().route, target), d.message);
  auto r =
      api::handler::error(d.status, metrics::handshake_failure_names[static_cast<std::size_t>(d.failure)], d.message);
  if (d.status == 503) r.headers.emplace_back("Retry-After", retry_after_value(ctx.svc().cfg));
  return r;
}

// A connection counts in pending_handshakes while it is in HTTP: from accept to its upgrade or close.
class pending_slot {
 public:
  explicit pending_slot(shard_context& ctx) noexcept : ctx_(&ctx) {}
  ~pending_slot() { release(); }
  pending_slot(const pending_slot&) = delete;
  pending_slot& operator=(const pending_slot&) = delete;
  void release() noexcept {
    if (ctx_) ctx_->counters().pending_handshakes.sub();
    ctx_ = nullptr;
  }

 private:
  shard_context* ctx_;
};

// What differs between plain and TLS connections in serve_http.
ssl_ptr take_tls(beast::tcp_stream&) noexcept { return nullptr; }
ssl_ptr take_tls(tls_stream& s) noexcept { return s.release_ssl(); }
void close_send(beast::tcp_stream& s) noexcept {
  error_code ignored;
  s.socket().shutdown(asio::socket_base::shutdown_send, ignored);
}
void close_send(tls_stream& s) noexcept { s.shutdown(); }

// Requests on one connection (keep-alive) until it closes or upgrades. Stream: beast::tcp_stream
// or tls_stream.
template <class Stream>
asio::awaitable<void> serve_http(shard_context& ctx, Stream& stream, pending_slot& slot) {
  auto& svc = ctx.svc();
  const auto& cfg = svc.cfg;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(cfg.max_body_bytes);
    parser.header_limit(16 * 1024);
    stream.expires_after(cfg.handshake_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset) co_return;
    if (ec == beast::error::timeout) {
      ctx.counters().handshake_failed(handshake_failure::timeout);
      co_return;
    }
    if (ec == http::error::body_limit) {
      auto res = make_response(api::handler::error(413, "too_large", "request body over max_body_bytes"), 11, false);
      stream.expires_after(cfg.handshake_timeout);
      co_await http::async_write(stream, res, use_tuple);
      co_return;
    }
    if (ec) {
      if (n > 0 || buffer.size() > 0) {
        auto res = make_response(api::handler::error(400, "bad_request", "malformed HTTP request"), 11, false);
        stream.expires_after(cfg.handshake_timeout);
        co_await http::async_write(stream, res, use_tuple);
      }
      co_return;
    }
    auto& req = parser.get();
    ctx.refresh_now();

    if (beast::websocket::is_upgrade(req)) {
      auto d = decide_upgrade(ctx, req);
      if (d.status != 101) {
        auto res = make_response(refusal(ctx, d, req.target()), req.version(), false);
        co_await http::async_write(stream, res, use_tuple);
        co_return;
      }
      // The 101 is not written here: the session sends it in one write with its welcome.
      std::string handshake =
          "HTTP/1.1 101 Switching Protocols\r\nServer: roomcast\r\nUpgrade: websocket\r\n"
          "Connection: Upgrade\r\nSec-WebSocket-Accept: ";
      handshake += protocol::websocket_accept_key(req[http::field::sec_websocket_key]);
      handshake += "\r\n";
      bool deflate = false;
      if (cfg.compression) {
        std::string offers;  // a client may send the header more than once (RFC 6455 11.3.2)
        for (const auto& f : boost::make_iterator_range(req.equal_range(http::field::sec_websocket_extensions))) {
          if (!offers.empty()) offers += ", ";
          offers += f.value();
        }
        if (auto answer = protocol::negotiate_deflate(offers); !answer.empty()) {
          handshake += "Sec-WebSocket-Extensions: " + answer + "\r\n";
          deflate = true;
        }
      }
      handshake += "\r\n";
      // Bytes the client sent right after its request belong to the WebSocket stream.
      std::string initial(static_cast<const char*>(buffer.data().data()), buffer.size());
      stream.expires_never();
      slot.release();
      auto tls = take_tls(stream);
      ctx.adopt(stream.release_socket(), std::move(d.id), std::move(d.room), std::move(d.recovery), std::move(initial),
                handshake, d.auth_frame, d.token_exp, deflate, std::move(tls));
      co_return;
    }

    const std::string_view target = req.target();
    const std::string_view path = target.substr(0, target.find('?'));
    if (req.method() == http::verb::get && !api::handler::owns(path) &&
        protocol::accepts_event_stream(req[http::field::accept])) {
      auto d = decide_upgrade(ctx, req, request_kind::sse);
      if (d.status == 101) {
        // The response head is not written here: the stream sends it in one write with its welcome.
        stream.expires_never();
        slot.release();
        auto tls = take_tls(stream);
        ctx.adopt_sse(stream.release_socket(), std::move(d.id), std::move(d.room), std::move(d.recovery), d.token_exp,
                      std::move(tls));
        co_return;
      }
      if (d.failure != handshake_failure::not_found) {
        // EventSource gives up on a status other than 200 (it reconnects only after a stream ended).
        auto res = make_response(refusal(ctx, d, req.target()), req.version(), false);
        co_await http::async_write(stream, res, use_tuple);
        co_return;
      }
    }

    ctx.counters().http_requests.add();
    api::response r;
    upgrade_decision probe;
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    const bool post = req.method() == http::verb::post;
    const bool route = (get || post) && !api::handler::owns(path);
    if (route) probe = decide_upgrade(ctx, req, post ? request_kind::post : request_kind::probe);
    if (route && post && probe.status == 101) {
      r = co_await client_post(ctx, std::move(probe), std::move(req.body()));
      r.headers.emplace_back("Cache-Control", "no-store");
    } else if (route && probe.status != 101 && probe.failure != handshake_failure::not_found) {
      // A plain GET of the WebSocket route: what its upgrade would get (426 = it would be accepted).
      r = api::handler::error(probe.status,
                              probe.status == 426
                                  ? std::string_view("upgrade_required")
                                  : metrics::handshake_failure_names[static_cast<std::size_t>(probe.failure)],
                              probe.message);
      if (probe.status == 426) r.headers.emplace_back("Upgrade", "websocket");
      if (probe.status == 503) r.headers.emplace_back("Retry-After", retry_after_value(cfg));
      r.headers.emplace_back("Access-Control-Allow-Origin", "*");  // the body is only the reason
      r.headers.emplace_back("Cache-Control", "no-store");
    } else if (api::handler::owns(path)) {
      api::request ar;
      ar.method = std::string(req.method_string());
      ar.target = std::string(target);
      ar.content_type = std::string(req[http::field::content_type]);
      ar.api_key = std::string(req["X-API-Key"]);
      ar.body = std::move(req.body());
      ar.shard = ctx.index();
      r = co_await async_api(svc.api, std::move(ar), asio::use_awaitable);
    } else {
      r = serve_file(cfg, req.method_string(), target);
    }
    const bool keep_alive = req.keep_alive() && !svc.state.draining.load(std::memory_order_relaxed);
    auto res = make_response(r, req.version(), keep_alive);
    if (req.method() == http::verb::head) {
      // The headers a GET gets, its Content-Length included, and no body (RFC 9110 9.3.2).
      const auto length = res.body().size();
      res.body().clear();
      res.content_length(length);
    }
    stream.expires_after(cfg.handshake_timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    if (wec || !keep_alive) {
      close_send(stream);
      co_return;
    }
  }
}

asio::awaitable<void> run_http(shard_context& ctx, asio::ip::tcp::socket socket) {
  pending_slot slot(ctx);  // start_http_session counted it
  beast::tcp_stream stream(std::move(socket));
  co_await serve_http(ctx, stream, slot);
}

// TLS port: the handshake, then the same HTTP. A client speaking plain HTTP to it gets a plain 400
// that says so (its first byte is not a TLS handshake record, 0x16) instead of a failed handshake.
asio::awaitable<void> run_https(shard_context& ctx, asio::ip::tcp::socket socket) {
  pending_slot slot(ctx);
  const auto& cfg = ctx.svc().cfg;
  auto ssl = ctx.svc().tls->accept(socket.native_handle());
  if (!ssl) co_return;
  tls_stream stream(std::move(socket), std::move(ssl));
  stream.expires_after(cfg.handshake_timeout);
  {
    auto [ec] = co_await stream.socket().async_wait(asio::socket_base::wait_read, use_tuple);
    char first = 0;
    const auto n = ec ? -1 : ::recv(stream.socket().native_handle(), &first, 1, MSG_PEEK);
    if (n <= 0) {
      if (ec == asio::error::operation_aborted) ctx.counters().handshake_failed(handshake_failure::timeout);
      co_return;
    }
    if (first != 0x16) {
      ctx.counters().handshake_failed(handshake_failure::tls);
      static constexpr std::string_view body =
          R"({"error":{"code":"tls_required","message":"this port speaks TLS: use https:// or wss://"}})";
      const std::string res =
          "HTTP/1.1 400 Bad Request\r\nServer: roomcast\r\nContent-Type: application/json\r\n"
          "Connection: close\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
      co_await asio::async_write(stream.socket(), asio::buffer(res), use_tuple);
      error_code ignored;
      stream.socket().shutdown(asio::socket_base::shutdown_send, ignored);
      co_return;
    }
  }
  auto [hec] = co_await stream.async_handshake(use_tuple);
  if (hec) {
    ctx.counters().handshake_failed(hec == beast::error::timeout ? handshake_failure::timeout : handshake_failure::tls);
    co_return;
  }
  co_await serve_http(ctx, stream, slot);
}

}  // namespace

void start_http_session(shard_context& ctx, asio::ip::tcp::socket socket) {
  ctx.counters().pending_handshakes.add();
  if (ctx.svc().tls)
    asio::co_spawn(ctx.io(), run_https(ctx, std::move(socket)), asio::detached);
  else
    asio::co_spawn(ctx.io(), run_http(ctx, std::move(socket)), asio::detached);
}

void refuse_connection(shard_context& ctx, asio::ip::tcp::socket& socket, connection_refusal why) {
  // Nothing is read and nothing allocated: one non-blocking write of a fixed answer, then close.
  // What the client already sent is read away first, so the close is a FIN and not a reset that
  // could destroy the answer before the client reads it.
  std::string_view body;
  std::string head;
  if (why == connection_refusal::source_rate) {
    body = R"x({"error":{"code":"rate_limited","message":"too many connections from this address (source_rate)"}})x";
    head = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n";
  } else {
    body =
        R"x({"error":{"code":"over_capacity","message":"too many unfinished handshakes (max_pending_handshakes)"}})x";
    head = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + retry_after_value(ctx.svc().cfg) + "\r\n";
  }
  head += "Server: roomcast\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ";
  head += std::to_string(body.size());
  head += "\r\n\r\n";
  head += body;
  error_code ec;
  socket.write_some(asio::buffer(head), ec);
  socket.shutdown(asio::socket_base::shutdown_send, ec);
  const auto scratch = ctx.read_buffer();
  socket.read_some(asio::buffer(scratch.data(), scratch.size()), ec);
  socket.close(ec);
}

}  // namespace roomcast::transport
