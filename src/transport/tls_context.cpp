#include "transport/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>

namespace roomcast::transport {

void ssl_deleter::operator()(ssl_st* s) const noexcept { SSL_free(s); }

namespace {

std::string openssl_error() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

// ALPN: we speak HTTP/1.1 only (WebSocket upgrades are HTTP/1.1). A client that offers only other
// protocols gets no ALPN answer rather than an alert: it may still speak HTTP/1.1.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void*) {
  static constexpr unsigned char h11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
  for (unsigned i = 0; i < inlen;) {
    const unsigned len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == sizeof h11 && std::memcmp(in + i + 1, h11, sizeof h11) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

bool tls_context::load(const std::string& cert_file, const std::string& key_file, std::string& error) {
  ERR_clear_error();
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) {
    error = openssl_error();
    return false;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2: ECDHE with AES-GCM or ChaCha20 only (TLS 1.3 suites are all AEAD already).
  SSL_CTX_set_cipher_list(c, "ECDHE+AESGCM:ECDHE+CHACHA20");
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Resumption by tickets only: no server-side session cache growing with clients.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1) {
    error = "tls_cert '" + cert_file + "': " + openssl_error();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(c, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
    error = "tls_key '" + key_file + "': " + (mismatch ? "does not match tls_cert (" : "") + openssl_error() +
            (mismatch ? ")" : "");
    return false;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    error = "tls_key does not match tls_cert: " + openssl_error();
    return false;
  }
  cert_file_ = cert_file;
  key_file_ = key_file;
  ctx_.store(std::move(ctx));
  return true;
}

ssl_ptr tls_context::accept(int fd) const {
  const auto ctx = ctx_.load();
  if (!ctx) return nullptr;
  ssl_ptr s(SSL_new(ctx.get()));  // holds its own reference to the context
  if (!s) return nullptr;
  if (SSL_set_fd(s.get(), fd) != 1) return nullptr;
  SSL_set_accept_state(s.get());
  return s;
}

tls_status tls_result(ssl_st* s, int rc) noexcept {
  switch (SSL_get_error(s, rc)) {
    case SSL_ERROR_NONE:
      return tls_status::done;
    case SSL_ERROR_WANT_READ:
      return tls_status::want_read;
    case SSL_ERROR_WANT_WRITE:
      return tls_status::want_write;
    case SSL_ERROR_ZERO_RETURN:
      return tls_status::closed;
    default:
      ERR_clear_error();  // the thread's error queue must not carry this into another connection
      return tls_status::failed;
  }
}

}  // namespace roomcast::transport
