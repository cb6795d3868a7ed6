// Native TLS (tls_cert / tls_key): the handshake (TLS 1.2+, ALPN http/1.1), HTTPS API, wss with
// recovery, a plain-HTTP client on the TLS port, bad certificates, and a SIGHUP reload that keeps
// open connections.

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/json.hpp>

#include <csignal>
#include <fstream>
#include <string>

#include "support/cluster.hpp"
#include "support/itest.hpp"
#include "support/tls_client.hpp"

namespace roomcast::itest {
namespace {

class tls_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("tls");
    make_test_certificate(dir_, "roomcast-test-1");
    node_ = start_node({"--tls-cert", dir_ + "/cert.pem", "--tls-key", dir_ + "/key.pem"});
  }
  std::uint16_t port() const { return node_->port(); }
  tls_client_options verified() const {
    tls_client_options o;
    o.ca_file = dir_ + "/cert.pem";
    return o;
  }
  // GET target over a fresh TLS connection.
  unsigned https_get(const std::string& target, std::string* body = nullptr) {
    tls_client c(verified());
    if (!c.connect(port())) return 0;
    return c.request("GET", target, "", body);
  }
  double tls_metric(const std::string& name) {
    std::string body;
    if (https_get("/metrics", &body) != 200) return -1;
    const auto p = body.find("\n" + name + " ");
    return p == std::string::npos ? -1 : std::stod(body.substr(p + name.size() + 2));
  }

  std::string dir_;
  std::unique_ptr<node_process> node_;
};

TEST_F(tls_test, handshake_tls12_and_13_with_alpn_and_https_api) {
  tls_client c(verified());
  ASSERT_TRUE(c.connect(port())) << c.error();
  EXPECT_EQ(c.version(), "TLSv1.3");
  EXPECT_EQ(c.alpn(), "http/1.1");
  EXPECT_NE(c.peer_subject().find("roomcast-test-1"), std::string::npos) << c.peer_subject();
  std::string body;
  EXPECT_EQ(c.request("GET", "/healthz", "", &body), 200u) << c.head();
  // Keep-alive: a second request on the same TLS connection.
  EXPECT_EQ(c.request("POST", "/api/publish", R"({"room":"345","data":{"x":1}})", &body), 200u) << body;

  tls_client_options t12 = verified();
  t12.max_version = TLS1_2_VERSION;
  tls_client c12(t12);
  ASSERT_TRUE(c12.connect(port())) << c12.error();
  EXPECT_EQ(c12.version(), "TLSv1.2");
  EXPECT_EQ(c12.request("GET", "/healthz", ""), 200u);
}

TEST_F(tls_test, old_protocols_and_plain_http_are_refused_clearly) {
  const double before = tls_metric("roomcast_handshake_failures_total{reason=\"tls\"}");
  tls_client_options t11 = verified();
  t11.max_version = TLS1_1_VERSION;
  tls_client old(t11);
  EXPECT_FALSE(old.connect(port()));

  // Plain HTTP on the TLS port: a readable 400 that says what to do, not a broken handshake.
  const auto res = http_get(port(), "/healthz");
  EXPECT_EQ(res.status, 400u);
  EXPECT_NE(res.body.find("tls_required"), std::string::npos) << res.body;
  EXPECT_EQ(upgrade_status(port(), ws_path("345", "STU", "plain")), 400u);

  // A client that trusts another CA refuses the node's certificate (the node just sees it go).
  const auto other = make_temp_dir("tls-other");
  make_test_certificate(other, "someone-else");
  tls_client_options wrong;
  wrong.ca_file = other + "/cert.pem";
  tls_client w(wrong);
  EXPECT_FALSE(w.connect(port()));
  EXPECT_NE(w.error().find("certificate verify failed"), std::string::npos) << w.error();

  EXPECT_GE(tls_metric("roomcast_handshake_failures_total{reason=\"tls\"}") - before, 3)
      << "TLS 1.1, the plain GET and the plain upgrade";
  // The node is fine.
  EXPECT_EQ(https_get("/healthz"), 200u);
}

TEST_F(tls_test, wss_messages_both_ways_and_recovery_after_reconnect) {
  tls_client ws(verified());
  ASSERT_TRUE(ws.connect(port())) << ws.error();
  ASSERT_EQ(ws.upgrade(ws_path("345", "THE", "t1")), 101u) << ws.head();
  std::string payload;
  ASSERT_TRUE(ws.read_until(0x1, payload));
  auto welcome = json::parse(payload);
  ASSERT_EQ(json_string(welcome, "type"), "welcome") << payload;

  for (int i = 1; i <= 3; ++i) {
    std::string body;
    tls_client api(verified());
    ASSERT_TRUE(api.connect(port()));
    ASSERT_EQ(api.request("POST", "/api/publish", R"({"room":"345","data":{"n":)" + std::to_string(i) + "}}", &body),
              200u)
        << body;
  }
  const std::string epoch = json_string(welcome.at("rooms").as_array().at(0), "epoch");
  ASSERT_FALSE(epoch.empty()) << payload;
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(ws.read_until(0x1, payload));
    auto m = json::parse(payload);
    EXPECT_EQ(json_int(m, "data.n"), i) << payload;
    EXPECT_EQ(json_int(m, "seq"), i) << payload;
  }
  // Client -> server over TLS: a ping frame and a publish (THE may publish).
  ASSERT_TRUE(ws.send_frame(0x89, "hb"));
  ASSERT_TRUE(ws.read_until(0xA, payload));
  EXPECT_EQ(payload, "hb");
  ASSERT_TRUE(ws.send_frame(0x81, R"({"type":"publish","room":"345","data":{"n":4}})"));
  ASSERT_TRUE(ws.read_until(0x1, payload));
  while (json_string(json::parse(payload), "type") != "message") ASSERT_TRUE(ws.read_until(0x1, payload));
  EXPECT_EQ(json_int(json::parse(payload), "data.n"), 4) << payload;

  // Gone without a goodbye; back with since=1: gets 2, 3 and 4, in order, once.
  ws.send_frame(0x88, std::string{'\x03', '\xe8'});
  tls_client back(verified());
  ASSERT_TRUE(back.connect(port()));
  ASSERT_EQ(back.upgrade(ws_path("345", "STU", "t1") + "?since=1&epoch=" + epoch), 101u) << back.head();
  std::vector<std::int64_t> seqs;
  std::string seen;
  while (seqs.size() < 3 && back.read_until(0x1, payload)) {
    seen += payload + "\n";
    auto f = json::parse(payload);
    if (json_string(f, "type") == "message") seqs.push_back(json_int(f, "seq"));
  }
  EXPECT_EQ(seqs, (std::vector<std::int64_t>{2, 3, 4})) << seen;
}

TEST_F(tls_test, sighup_reloads_the_certificate_and_keeps_open_connections) {
  tls_client ws(verified());
  ASSERT_TRUE(ws.connect(port()));
  ASSERT_EQ(ws.upgrade(ws_path("345", "STU", "stay")), 101u);
  std::string payload;
  ASSERT_TRUE(ws.read_until(0x1, payload));  // welcome

  // A broken pair first: the node keeps its certificate and says why.
  const auto cert = dir_ + "/cert.pem";
  std::ofstream(cert, std::ios::trunc) << "not a certificate\n";
  node_->signal(SIGHUP);
  ASSERT_TRUE(poll_until([&] { return node_->output().find("not reloaded") != std::string::npos; }, 5s))
      << node_->output_tail(20);
  {
    tls_client c(tls_client_options{});
    ASSERT_TRUE(c.connect(port())) << c.error();
    EXPECT_NE(c.peer_subject().find("roomcast-test-1"), std::string::npos);
  }

  make_test_certificate(dir_, "roomcast-test-2");
  node_->signal(SIGHUP);
  ASSERT_TRUE(poll_until(
      [&] {
        tls_client c(tls_client_options{});
        return c.connect(port()) && c.peer_subject().find("roomcast-test-2") != std::string::npos;
      },
      5s))
      << node_->output_tail(20);

  // The connection from before the reload still works.
  tls_client api(tls_client_options{});
  ASSERT_TRUE(api.connect(port()));
  ASSERT_EQ(api.request("POST", "/api/publish", R"({"room":"345","data":{"after":"reload"}})", nullptr), 200u);
  ASSERT_TRUE(ws.read_until(0x1, payload));
  EXPECT_NE(payload.find("\"after\":\"reload\""), std::string::npos) << payload;
}

TEST(tls_config, bad_certificates_stop_the_node_with_a_clear_message) {
  const auto dir = make_temp_dir("tls-bad");
  make_test_certificate(dir, "a");
  const auto other = make_temp_dir("tls-bad-other");
  make_test_certificate(other, "b");
  struct bad {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<bad> cases{
      {{"--tls-cert", dir + "/missing.pem", "--tls-key", dir + "/key.pem"}, "tls_cert"},
      {{"--tls-cert", dir + "/cert.pem", "--tls-key", other + "/key.pem"}, "does not match"},
      {{"--tls-cert", dir + "/cert.pem"}, "go together"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"--listen-address", "127.0.0.1", "--port", std::to_string(script_free_port())};
    args.insert(args.end(), c.args.begin(), c.args.end());
    std::string cmd = shell_quote(roomcast_bin());
    for (const auto& a : args) cmd += " " + shell_quote(a);
    const auto r = run_command(cmd + " 2>&1");
    EXPECT_EQ(r.status, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace roomcast::itest
