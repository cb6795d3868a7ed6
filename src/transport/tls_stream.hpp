#pragma once
// A TLS connection in its HTTP phase, as a Beast AsyncStream: OpenSSL works on the non-blocking
// socket itself (SSL_set_fd), and an operation that would block waits for readiness with
// async_wait. No memory BIOs: after the upgrade, ws_session keeps the same SSL and socket and does
// its reactor-style reads and writes with SSL_read/SSL_write, as it does read_some/write_some.
//
// Timeouts as beast::tcp_stream has them (expires_after / expires_never): the timer cancels the
// socket's waits and the operation ends with beast::error::timeout.
// Only http_session.cpp includes this (Asio and Beast headers).
#include "transport/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <string>

namespace roomcast::transport {

class tls_stream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using error_code = boost::system::error_code;

  tls_stream(boost::asio::ip::tcp::socket socket, ssl_ptr ssl)
      : socket_(std::move(socket)), ssl_(std::move(ssl)), timer_(socket_.get_executor()) {}
  ~tls_stream() { timer_.cancel(); }

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  boost::asio::ip::tcp::socket& socket() noexcept { return socket_; }
  ssl_st* ssl() const noexcept { return ssl_.get(); }

  void expires_after(std::chrono::steady_clock::duration d) {
    timed_out_ = false;
    timer_.expires_after(d);
    timer_.async_wait([this](const error_code& ec) {
      if (ec) return;  // cancelled or replaced: `this` may be gone, touch nothing
      timed_out_ = true;
      error_code ignored;
      socket_.cancel(ignored);
    });
  }
  void expires_never() {
    timed_out_ = false;
    timer_.cancel();
  }

  // The upgrade: the socket and its TLS state go on to the WebSocket session.
  boost::asio::ip::tcp::socket release_socket() {
    timer_.cancel();
    return std::move(socket_);
  }
  ssl_ptr release_ssl() noexcept { return std::move(ssl_); }

  // Best effort close_notify before closing (a non-blocking SSL_shutdown: no waiting for the peer).
  void shutdown() noexcept {
    if (ssl_ && SSL_is_init_finished(ssl_.get())) SSL_shutdown(ssl_.get());
    error_code ignored;
    socket_.shutdown(boost::asio::socket_base::shutdown_send, ignored);
  }

  template <class Token>
  auto async_handshake(Token&& token) {
    return run<void(error_code)>(
        [](tls_stream& s, std::size_t&) {
          ERR_clear_error();
          return tls_result(s.ssl_.get(), SSL_do_handshake(s.ssl_.get()));
        },
        std::forward<Token>(token));
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return run<void(error_code, std::size_t)>(
        [buffers](tls_stream& s, std::size_t& n) {
          boost::asio::mutable_buffer b;
          for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
               ++it) {
            if (boost::asio::mutable_buffer(*it).size() > 0) {
              b = *it;
              break;
            }
          }
          if (b.size() == 0) return tls_status::done;
          ERR_clear_error();
          const int rc = SSL_read(s.ssl_.get(), b.data(), static_cast<int>(std::min<std::size_t>(b.size(), INT_MAX)));
          if (rc > 0) n = static_cast<std::size_t>(rc);
          return rc > 0 ? tls_status::done : tls_result(s.ssl_.get(), rc);
        },
        std::forward<Token>(token));
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return run<void(error_code, std::size_t)>(
        [buffers](tls_stream& s, std::size_t& n) {
          // One record for the whole sequence (HTTP head + body): copied, up to 16 KiB. A retry
          // after WANT_WRITE copies the same bytes again, as OpenSSL requires.
          s.wbuf_.clear();
          for (auto it = boost::asio::buffer_sequence_begin(buffers);
               it != boost::asio::buffer_sequence_end(buffers) && s.wbuf_.size() < max_write; ++it) {
            const boost::asio::const_buffer b(*it);
            s.wbuf_.append(static_cast<const char*>(b.data()), std::min(b.size(), max_write - s.wbuf_.size()));
          }
          if (s.wbuf_.empty()) return tls_status::done;
          ERR_clear_error();
          const int rc = SSL_write(s.ssl_.get(), s.wbuf_.data(), static_cast<int>(s.wbuf_.size()));
          if (rc > 0) n = static_cast<std::size_t>(rc);
          return rc > 0 ? tls_status::done : tls_result(s.ssl_.get(), rc);
        },
        std::forward<Token>(token));
  }

 private:
  static constexpr std::size_t max_write = 16 * 1024;

  // Runs `step` until it is done or fails, waiting for the readiness it asks for. The first try is
  // posted, so no handler runs inside its initiating function (Beast's composed operations rely on
  // that).
  template <class Signature, class Step, class Token>
  auto run(Step step, Token&& token) {
    return boost::asio::async_compose<Token, Signature>(
        [this, step, started = false, n = std::size_t{0}](auto& self, error_code ec = {}) mutable {
          if (!started) {
            started = true;
            return boost::asio::post(socket_.get_executor(), std::move(self));
          }
          if (ec) return finish(self, timed_out_ ? error_code(boost::beast::error::timeout) : ec, n);
          switch (step(*this, n)) {
            case tls_status::done:
              return finish(self, error_code{}, n);
            case tls_status::want_read:
              return socket_.async_wait(boost::asio::socket_base::wait_read, std::move(self));
            case tls_status::want_write:
              return socket_.async_wait(boost::asio::socket_base::wait_write, std::move(self));
            case tls_status::closed:
              return finish(self, error_code(boost::asio::error::eof), n);
            case tls_status::failed:
              break;
          }
          return finish(self, error_code(boost::asio::error::connection_reset), n);
        },
        token, socket_);
  }

  template <class Self>
  static void finish(Self& self, error_code ec, std::size_t n) {
    if constexpr (requires { self.complete(ec, n); })
      self.complete(ec, n);
    else
      self.complete(ec);
  }

  boost::asio::ip::tcp::socket socket_;
  ssl_ptr ssl_;
  boost::asio::steady_timer timer_;
  std::string wbuf_;
  bool timed_out_ = false;
};

}  // namespace roomcast::transport
