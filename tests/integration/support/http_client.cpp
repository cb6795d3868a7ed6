#include "support/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace roomcast::itest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

http::request<http::string_body> make_request(std::uint16_t port, const http_request& req, bool keep_alive) {
  http::request<http::string_body> msg;
  msg.method_string(req.method);
  msg.target(req.target);
  msg.version(11);
  msg.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  msg.keep_alive(keep_alive);
  for (const auto& [name, value] : req.headers) msg.set(name, value);
  msg.body() = req.body;
  // GET without a body should not carry "Content-Length: 0" noise, everything else should.
  if (!req.body.empty() || req.method != "GET") msg.prepare_payload();
  return msg;
}

// A connection the server had closed before it answered anything: worth one more try on a new one.
struct stale_connection : std::runtime_error {
  stale_connection() : std::runtime_error("stale") {}
};

// One exchange on `stream` (connecting first unless `connected`), run on `ioc`; the timeout covers
// each step. Throws std::runtime_error (or stale_connection on a reused connection).
http_response exchange(asio::io_context& ioc, beast::tcp_stream& stream, beast::flat_buffer& buffer, std::uint16_t port,
                       bool connected, const http_request& req, http::request<http::string_body>& msg,
                       std::chrono::milliseconds timeout, bool* keep_alive = nullptr) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code result;
  std::string stage = "connect";
  auto fail = [&] {
    return std::runtime_error(req.method + " " + req.target + " failed at " + stage + ": " + result.message());
  };

  if (!connected) {
    stream.expires_after(timeout);
    stream.async_connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port),
                         [&](beast::error_code ec) { result = ec; });
    ioc.restart();
    ioc.run();
    if (result) throw fail();
  }
  stage = "write";
  stream.expires_after(timeout);
  http::async_write(stream, msg, [&](beast::error_code wec, std::size_t) {
    if (wec) return void(result = wec);
    stage = "read";
    http::async_read(stream, buffer, parser, [&](beast::error_code rec, std::size_t) { result = rec; });
  });
  ioc.restart();
  ioc.run();
  if (result) {
    const bool stale = connected && (stage == "write" || !parser.got_some()) &&
                       (result == http::error::end_of_stream || result == asio::error::eof ||
                        result == asio::error::connection_reset || result == asio::error::broken_pipe);
    if (stale) throw stale_connection();
    throw fail();
  }

  auto& res = parser.get();
  http_response out;
  out.status = res.result_int();
  for (const auto& field : res) out.headers[lower(std::string(field.name_string()))] = std::string(field.value());
  out.body = std::move(res.body());
  if (keep_alive) *keep_alive = res.keep_alive();
  return out;
}

}  // namespace

std::string http_response::header(std::string name) const {
  auto it = headers.find(lower(std::move(name)));
  return it == headers.end() ? std::string() : it->second;
}

bool http_response::has_header(std::string name) const { return headers.count(lower(std::move(name))) != 0; }

boost::json::value http_response::json() const { return boost::json::parse(body); }

http_response http_send(std::uint16_t port, const http_request& req, std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  auto msg = make_request(port, req, false);
  auto out = exchange(ioc, stream, buffer, port, false, req, msg, timeout);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return out;
}

http_response http_get(std::uint16_t port, const std::string& target, header_list headers,
                       std::chrono::milliseconds timeout) {
  http_request req;
  req.target = target;
  req.headers = std::move(headers);
  return http_send(port, req, timeout);
}

namespace {

http_request json_post(const std::string& target, const std::string& body, const std::string& api_key) {
  http_request req;
  req.method = "POST";
  req.target = target;
  req.body = body;
  req.headers.emplace_back("Content-Type", "application/json");
  if (!api_key.empty()) req.headers.emplace_back("X-API-Key", api_key);
  return req;
}

}  // namespace

http_response http_post_json(std::uint16_t port, const std::string& target, const std::string& body,
                             const std::string& api_key, std::chrono::milliseconds timeout) {
  return http_send(port, json_post(target, body, api_key), timeout);
}

struct http_connection::impl {
  explicit impl(std::uint16_t p) : port(p), stream(ioc) {}
  std::uint16_t port;
  asio::io_context ioc;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool open = false;
};

http_connection::http_connection(std::uint16_t port) : impl_(std::make_unique<impl>(port)) {}

http_connection::~http_connection() = default;

void http_connection::set_port(std::uint16_t port) {
  if (port == impl_->port) return;
  close();
  impl_->port = port;
}

std::uint16_t http_connection::port() const { return impl_->port; }

http_response http_connection::send(const http_request& req, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  auto msg = make_request(d.port, req, true);
  for (int attempt = 0;; ++attempt) {
    const bool reused = d.open;
    if (!reused) d.buffer.clear();
    try {
      bool keep_alive = true;
      auto out = exchange(d.ioc, d.stream, d.buffer, d.port, reused, req, msg, timeout, &keep_alive);
      d.open = true;
      if (!keep_alive) close();
      return out;
    } catch (const stale_connection&) {
      close();
      if (attempt > 0) throw std::runtime_error(req.method + " " + req.target + ": connection closed by the server");
    } catch (...) {
      close();
      throw;
    }
  }
}

http_response http_connection::post_json(const std::string& target, const std::string& body,
                                         std::chrono::milliseconds timeout) {
  return send(json_post(target, body, {}), timeout);
}

void http_connection::close() {
  beast::error_code ignored;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->stream.close();
  impl_->open = false;
}

}  // namespace roomcast::itest
