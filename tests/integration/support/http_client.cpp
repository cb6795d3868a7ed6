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

  http::request<http::string_body> msg;
  msg.method_string(req.method);
  msg.target(req.target);
  msg.version(11);
  msg.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  msg.set(http::field::connection, "close");
  for (const auto& [name, value] : req.headers) msg.set(name, value);
  msg.body() = req.body;
  // GET without a body should not carry "Content-Length: 0" noise, everything else should.
  if (!req.body.empty() || req.method != "GET") msg.prepare_payload();

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code result = asio::error::would_block;
  std::string stage = "connect";

  // tcp_stream's expiry covers the whole exchange: every async op below shares one deadline.
  stream.expires_after(timeout);
  stream.async_connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), [&](beast::error_code ec) {
    if (ec) return void(result = ec);
    stage = "write";
    http::async_write(stream, msg, [&](beast::error_code wec, std::size_t) {
      if (wec) return void(result = wec);
      stage = "read";
      http::async_read(stream, buffer, parser, [&](beast::error_code rec, std::size_t) { result = rec; });
    });
  });
  ioc.run();
  if (result) {
    throw std::runtime_error(req.method + " " + req.target + " failed at " + stage + ": " + result.message());
  }

  auto& res = parser.get();
  http_response out;
  out.status = res.result_int();
  for (const auto& field : res) out.headers[lower(std::string(field.name_string()))] = std::string(field.value());
  out.body = std::move(res.body());
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

http_response http_post_json(std::uint16_t port, const std::string& target, const std::string& body,
                             const std::string& api_key, std::chrono::milliseconds timeout) {
  http_request req;
  req.method = "POST";
  req.target = target;
  req.body = body;
  req.headers.emplace_back("Content-Type", "application/json");
  if (!api_key.empty()) req.headers.emplace_back("X-API-Key", api_key);
  return http_send(port, req, timeout);
}

}  // namespace roomcast::itest
