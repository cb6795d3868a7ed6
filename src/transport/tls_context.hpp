#pragma once
// The node's TLS server context (config tls_cert / tls_key): OpenSSL directly, no Asio.
//
// TLS 1.2 and 1.3 only, forward-secret AEAD ciphers for 1.2, ALPN http/1.1, no renegotiation, no
// compression; SSL_MODE_RELEASE_BUFFERS so an idle connection gives its 2 x 16 KiB record buffers
// back. reload() (SIGHUP) builds a new context from the files and swaps it in: connections keep
// the context they started with (OpenSSL counts references), new ones get the new certificate.
#include <atomic>
#include <memory>
#include <string>

struct ssl_ctx_st;  // SSL_CTX
struct ssl_st;      // SSL

namespace roomcast::transport {

// One connection's TLS state; frees the SSL on destruction.
struct ssl_deleter {
  void operator()(ssl_st* s) const noexcept;
};
using ssl_ptr = std::unique_ptr<ssl_st, ssl_deleter>;

class tls_context {
 public:
  // Loads the certificate chain and key; false with `error` set when they don't load or match.
  bool load(const std::string& cert_file, const std::string& key_file, std::string& error);
  // SIGHUP: the same files again. On failure the old context stays and `error` says why.
  bool reload(std::string& error) { return load(cert_file_, key_file_, error); }

  bool enabled() const noexcept { return ctx_.load() != nullptr; }
  // A new server-side SSL for an accepted non-blocking socket; null when out of memory.
  ssl_ptr accept(int fd) const;

 private:
  std::atomic<std::shared_ptr<ssl_ctx_st>> ctx_;  // swapped by reload(), read once per accept
  std::string cert_file_, key_file_;
};

// What SSL_get_error said, reduced to what the I/O loops act on.
enum class tls_status { done, want_read, want_write, closed, failed };
tls_status tls_result(ssl_st* s, int rc) noexcept;

}  // namespace roomcast::transport
