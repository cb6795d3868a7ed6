// Rejections and limits: routing, auth, API validation, frame limits, protocol
// errors, connection cap, publish rate limit, bad configuration.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>

#include <stdlib.h>
#include <unistd.h>

#include "support/cluster.hpp"
#include "support/itest.hpp"
#include "support/jwt.hpp"

namespace roomcast::itest {
namespace {

namespace json = boost::json;

void expect_json_error(const http_response& res, unsigned status) {
  EXPECT_EQ(res.status, status) << res.body;
  auto body = try_parse_json(res.body);
  ASSERT_TRUE(body.has_value()) << "error body is not JSON: " << res.body;
  EXPECT_FALSE(json_string(*body, "error.code").empty()) << res.body;
  EXPECT_NE(json_find(*body, "error.message"), nullptr) << res.body;
}

// The next frame must be {"type":"error","code":<code>}.
void expect_error_frame(member& m, const std::string& code) {
  auto frame = m->read_json();
  ASSERT_TRUE(frame.has_value()) << "no frame (stream: " << m->read_error() << ")";
  EXPECT_EQ(json_string(*frame, "type"), "error") << json::serialize(*frame);
  EXPECT_EQ(json_string(*frame, "code"), code) << json::serialize(*frame);
  EXPECT_NE(json_find(*frame, "message"), nullptr) << json::serialize(*frame);
}

void expect_still_open(member& m) {
  ASSERT_TRUE(m->send_text(R"({"type":"ping"})")) << m->last_error();
  auto pong = m->read_type("pong");
  EXPECT_TRUE(pong.has_value()) << "connection did not stay open (stream: " << m->read_error() << ")";
}

// --- routing -------------------------------------------------------------------

TEST(errors_route, path_outside_the_route_is_404) {
  auto node = start_node();
  EXPECT_EQ(upgrade_status(node->port(), "/nope"), 404u);
  EXPECT_EQ(upgrade_status(node->port(), "/demo/websocket/345/STU/u1/tok"), 404u);  // segment missing
  EXPECT_EQ(upgrade_status(node->port(), "/demo/websocket/345/STU/u1/tok/pc/extra"), 404u);
  EXPECT_EQ(upgrade_status(node->port(), ws_path("345", "STU", "u1")), 101u);
}

TEST(errors_route, empty_user_or_room_is_400) {
  auto node = start_node();
  EXPECT_EQ(upgrade_status(node->port(), "/demo/websocket/345/STU//tok/pc"), 400u);
  EXPECT_EQ(upgrade_status(node->port(), "/demo/websocket//STU/u1/tok/pc"), 400u);
}

// --- JWT auth --------------------------------------------------------------------

class jwt_test : public ::testing::Test {
 protected:
  void SetUp() override { node_ = start_node({"--auth", "jwt", "--jwt-secret", "s3cret"}); }

  static std::string token(const std::string& sub, std::int64_t exp_offset_s, const std::string& secret = "s3cret") {
    auto exp = static_cast<std::int64_t>(std::time(nullptr)) + exp_offset_s;
    return make_jwt_hs256(R"({"sub":")" + sub + R"(","exp":)" + std::to_string(exp) + "}", secret);
  }
  unsigned status_for(const std::string& user, const std::string& tok) {
    return upgrade_status(node_->port(), ws_path("345", "STU", user, tok));
  }

  std::unique_ptr<node_process> node_;
};

TEST_F(jwt_test, valid_token_upgrades) {
  auto m = join(node_->port(), "345", "STU", "452784", "pc", token("452784", 3600));
  EXPECT_EQ(json_string(m.welcome, "user"), "452784");
}

TEST_F(jwt_test, missing_token_is_401) {
  // An empty token segment: the only way to "omit" it with this route.
  EXPECT_EQ(status_for("452784", ""), 401u);
}

TEST_F(jwt_test, malformed_token_is_401) {
  EXPECT_EQ(status_for("452784", "tok"), 401u);
  EXPECT_EQ(status_for("452784", "a.b.c"), 401u);
}

TEST_F(jwt_test, wrong_signature_is_401) { EXPECT_EQ(status_for("452784", token("452784", 3600, "other")), 401u); }

TEST_F(jwt_test, expired_token_is_401) { EXPECT_EQ(status_for("452784", token("452784", -3600)), 401u); }

TEST_F(jwt_test, subject_must_match_url_user) { EXPECT_EQ(status_for("452784", token("999999", 3600)), 401u); }

TEST_F(jwt_test, alg_none_is_401) {
  auto exp = std::to_string(std::time(nullptr) + 3600);
  auto unsigned_token =
      base64url(R"({"alg":"none","typ":"JWT"})") + "." + base64url(R"({"sub":"452784","exp":)" + exp + "}") + ".";
  EXPECT_EQ(status_for("452784", unsigned_token), 401u);
}

TEST_F(jwt_test, plain_get_of_the_route_says_why_an_upgrade_would_fail) {
  // Browsers hide a refused upgrade's status; roomcast.js asks with a plain GET instead.
  auto bad = http_get(node_->port(), ws_path("345", "STU", "452784", token("452784", -3600)));
  EXPECT_EQ(bad.status, 401u) << bad.body;
  EXPECT_EQ(json_string(bad.json(), "error.code"), "unauthorized") << bad.body;
  EXPECT_EQ(bad.headers["access-control-allow-origin"], "*");
  auto good = http_get(node_->port(), ws_path("345", "STU", "452784", token("452784", 3600)));
  EXPECT_EQ(good.status, 426u) << good.body;
  EXPECT_EQ(json_string(good.json(), "error.code"), "upgrade_required") << good.body;
  EXPECT_EQ(http_get(node_->port(), ws_path("345", "STU", "452784", token("452784", 3600)) + "?since=x").status, 400u);
  // The probe takes no connection slot and is no refused handshake.
  auto stats = get_stats(node_->port());
  EXPECT_EQ(json_int(stats, "connections"), 0) << json::serialize(stats);
  EXPECT_EQ(json_int(stats, "handshake_failures.unauthorized"), 0) << json::serialize(stats);
  // Other paths are still static files.
  EXPECT_EQ(http_get(node_->port(), "/seed.html").status, 404u);  // no web root in this node
}

TEST(errors_dev, kill_frame_needs_dev_kill) {
  auto node = start_node();
  auto m = join(node->port(), "345", "THE", "t1");
  EXPECT_FALSE(m.welcome.as_object().contains("dev_kill")) << json::serialize(m.welcome);
  ASSERT_TRUE(m->send_text(R"({"type":"kill"})"));
  auto err = m->read_type("error");
  ASSERT_TRUE(err.has_value()) << m->read_error();
  EXPECT_EQ(json_string(*err, "code"), "forbidden");
  EXPECT_TRUE(node->running());
}

TEST(errors_dev, kill_frame_with_dev_kill_dies_like_kill_9) {
  auto node = start_node({"--dev-kill", "true"});
  auto m = join(node->port(), "345", "STU", "s1");
  EXPECT_TRUE(json_bool(m.welcome, "dev_kill")) << json::serialize(m.welcome);
  ASSERT_TRUE(m->send_text(R"({"type":"kill"})"));
  const auto code = node->wait_exit(std::chrono::seconds(10));
  ASSERT_TRUE(code.has_value()) << "the node did not die";
  EXPECT_EQ(*code, 128 + SIGKILL);
}

// --- HTTP API validation ------------------------------------------------------------

class api_test : public ::testing::Test {
 protected:
  void SetUp() override { node_ = start_node({"--api-key", "k", "--max-body-bytes", "1024"}); }
  std::uint16_t port() const { return node_->port(); }
  std::unique_ptr<node_process> node_;
};

TEST_F(api_test, missing_or_wrong_api_key_is_401) {
  expect_json_error(http_post_json(port(), "/api/publish", R"({"room":"345","data":1})"), 401);
  expect_json_error(http_post_json(port(), "/api/publish", R"({"room":"345","data":1})", "wrong"), 401);
  expect_json_error(http_get(port(), "/api/stats"), 401);
  auto ok = http_post_json(port(), "/api/publish", R"({"room":"345","data":1})", "k");
  EXPECT_EQ(ok.status, 200u) << ok.body;
  EXPECT_TRUE(json_bool(ok.json(), "ok")) << ok.body;
  EXPECT_FALSE(json_string(ok.json(), "id").empty()) << ok.body;
  // Health probes stay open to the orchestrator.
  EXPECT_EQ(http_get(port(), "/healthz").status, 200u);
}

TEST_F(api_test, unknown_api_path_is_404) {
  expect_json_error(http_get(port(), "/api/nope", {{"X-API-Key", "k"}}), 404);
  expect_json_error(http_post_json(port(), "/api/nope", "{}", "k"), 404);
}

TEST_F(api_test, wrong_method_is_405) {
  expect_json_error(http_get(port(), "/api/publish", {{"X-API-Key", "k"}}), 405);
  http_request del;
  del.method = "DELETE";
  del.target = "/api/stats";
  del.headers = {{"X-API-Key", "k"}};
  expect_json_error(http_send(port(), del), 405);
}

TEST_F(api_test, body_too_large_is_413) {
  std::string body = R"({"room":"345","data":")" + std::string(4096, 'x') + R"("})";
  expect_json_error(http_post_json(port(), "/api/publish", body, "k"), 413);
}

TEST_F(api_test, non_json_content_type_is_415) {
  http_request req;
  req.method = "POST";
  req.target = "/api/publish";
  req.body = R"({"room":"345","data":1})";
  req.headers = {{"X-API-Key", "k"}, {"Content-Type", "text/plain"}};
  expect_json_error(http_send(port(), req), 415);
}

TEST_F(api_test, bad_json_body_is_400) {
  expect_json_error(http_post_json(port(), "/api/publish", R"({"room":"345","data":)", "k"), 400);
  expect_json_error(http_post_json(port(), "/api/publish", R"({"data":1})", "k"), 400);      // no target
  expect_json_error(http_post_json(port(), "/api/publish", R"({"room":"345"})", "k"), 400);  // no data
  expect_json_error(http_post_json(port(), "/api/disconnect", R"({"user":"u1","code":1000})", "k"), 400);
}

TEST_F(api_test, bad_disconnect_targets_are_400_and_the_node_lives) {
  // These once called a moved-from callback: std::bad_function_call ended the process.
  for (const char* body : {R"({"user":""})", R"({"user":5})", R"({"session":5})", R"({"session":"nope"})"}) {
    expect_json_error(http_post_json(port(), "/api/disconnect", body, "k"), 400);
    ASSERT_TRUE(node_->running()) << body;
  }
  EXPECT_EQ(http_get(port(), "/healthz").status, 200u);
}

TEST_F(api_test, bad_batch_is_400_and_publishes_nothing) {
  auto m = join(port(), "345", "STU", "u1");
  expect_json_error(http_post_json(port(), "/api/publish", "[]", "k"), 400);  // empty
  expect_json_error(http_post_json(port(), "/api/publish", R"([{"room":"345","data":1},2])", "k"),
                    400);  // not an object
  // One bad message refuses the whole batch: the good one before it is not delivered either.
  auto bad = http_post_json(port(), "/api/publish", R"([{"room":"345","data":{"first":1}},{"room":"345"}])", "k");
  expect_json_error(bad, 400);
  EXPECT_NE(bad.body.find("[1]"), std::string::npos) << "the error names the bad element: " << bad.body;
  auto ok = http_post_json(port(), "/api/publish", R"({"room":"345","data":{"marker":1}})", "k");
  ASSERT_EQ(ok.status, 200u) << ok.body;
  auto frame = m->read_json();
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(json_string(*frame, "id"), json_string(ok.json(), "id")) << "something of the refused batch arrived";
}

TEST(api_batch, batch_over_api_publish_batch_max_is_400) {
  auto node = start_node({"--api-publish-batch-max", "3"});
  const std::string three = R"([{"room":"r","data":1},{"room":"r","data":2},{"room":"r","data":3}])";
  EXPECT_EQ(http_post_json(node->port(), "/api/publish", three).status, 200u);
  expect_json_error(
      http_post_json(node->port(), "/api/publish",
                     R"([{"room":"r","data":1},{"room":"r","data":2},{"room":"r","data":3},{"room":"r","data":4}])"),
      400);
}

TEST(api_batch, batch_counts_against_api_publish_rate) {
  auto node = start_node({"--api-publish-rate", "5"});  // burst 5 per shard
  std::string six = "[";
  for (int i = 0; i < 6; ++i) six += std::string(i ? "," : "") + R"({"room":"r","data":)" + std::to_string(i) + "}";
  six += "]";
  auto r = http_post_json(node->port(), "/api/publish", six);
  EXPECT_EQ(r.status, 429u) << r.body;
  EXPECT_FALSE(r.header("retry-after").empty());
}

// --- WebSocket frame errors ----------------------------------------------------------

class frame_test : public ::testing::Test {
 protected:
  void SetUp() override { node_ = start_node({"--max-frame-bytes", "1024"}); }
  member join_student() { return join(node_->port(), "345", "STU", "u1"); }
  std::unique_ptr<node_process> node_;
};

TEST_F(frame_test, oversized_frame_closes_1009) {
  auto m = join_student();
  m->send_text(std::string(4096, 'a'));  // may fail half-way once the server closes
  ASSERT_TRUE(m->wait_closed()) << "still open";
  EXPECT_EQ(m->close_code(), std::optional<std::uint16_t>(1009)) << m->read_error();
}

TEST_F(frame_test, frame_under_the_limit_is_fine) {
  auto m = join_student();
  ASSERT_TRUE(m->send_text(R"({"type":"ping","pad":")" + std::string(900, 'p') + R"("})"));
  auto pong = m->read_json();
  ASSERT_TRUE(pong.has_value()) << m->read_error();
  EXPECT_EQ(json_string(*pong, "type"), "pong");
}

TEST_F(frame_test, invalid_json_is_bad_json_and_stays_open) {
  auto m = join_student();
  ASSERT_TRUE(m->send_text(R"({"type":"ping")"));
  expect_error_frame(m, "bad_json");
  ASSERT_TRUE(m->send_text("  {oops"));  // leading spaces: still JSON-ish
  expect_error_frame(m, "bad_json");
  expect_still_open(m);
}

TEST_F(frame_test, unknown_or_missing_type_is_unknown_type) {
  auto m = join_student();
  ASSERT_TRUE(m->send_text(R"({"type":"dance"})"));
  expect_error_frame(m, "unknown_type");
  ASSERT_TRUE(m->send_text(R"({"room":"345"})"));
  expect_error_frame(m, "unknown_type");
  expect_still_open(m);
}

TEST_F(frame_test, binary_frame_closes_1003) {
  auto m = join_student();
  ASSERT_TRUE(m->send_binary(std::string("\x01\x02\x03", 3)));
  ASSERT_TRUE(m->wait_closed()) << "still open";
  EXPECT_EQ(m->close_code(), std::optional<std::uint16_t>(1003)) << m->read_error();
}

TEST_F(frame_test, invalid_utf8_closes_1007) {
  auto m = join_student();
  ASSERT_TRUE(m->send_text(std::string("caf\xc3\x28", 5)));
  ASSERT_TRUE(m->wait_closed()) << "still open";
  EXPECT_EQ(m->close_code(), std::optional<std::uint16_t>(1007)) << m->read_error();
}

// The code of the first close frame in what a node sent (unmasked server frames); 0 if none.
int close_code_in(const std::string& bytes) {
  std::size_t i = 0;
  while (i + 1 < bytes.size()) {
    const auto op = static_cast<unsigned char>(bytes[i]) & 0x0f;
    std::size_t len = static_cast<unsigned char>(bytes[i + 1]) & 0x7f, head = 2;
    if (len == 126) {
      if (i + 4 > bytes.size()) return 0;
      len = (static_cast<std::size_t>(static_cast<unsigned char>(bytes[i + 2])) << 8) |
            static_cast<unsigned char>(bytes[i + 3]);
      head = 4;
    }
    if (op == 8 && len >= 2 && i + head + 2 <= bytes.size())
      return (static_cast<unsigned char>(bytes[i + head]) << 8) | static_cast<unsigned char>(bytes[i + head + 1]);
    i += head + len;
  }
  return 0;
}

// RFC 6455 7.4: a close code a peer must not send is answered with 1002, not echoed.
TEST(errors_close, a_forbidden_close_code_is_answered_with_1002) {
  auto node = start_node();
  for (int code : {1005, 1006, 1015, 2000, 999}) {
    raw_ws_client c;
    ASSERT_EQ(c.connect(node->port(), ws_path("345", "STU", "u1")), 101u);
    // A masked close frame (mask 0) carrying `code`.
    std::string frame{
        '\x88', '\x82', '\0', '\0', '\0', '\0', static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
    ASSERT_TRUE(c.send_raw(frame));
    EXPECT_EQ(close_code_in(c.read_to_end(5s)), 1002) << "the node's answer to close code " << code;
  }
  raw_ws_client ok;
  ASSERT_EQ(ok.connect(node->port(), ws_path("345", "STU", "u2")), 101u);
  ASSERT_TRUE(ok.send_raw(std::string{'\x88', '\x82', '\0', '\0', '\0', '\0', '\x0f', '\xa0'}));  // 4000: echoed
  EXPECT_EQ(close_code_in(ok.read_to_end(5s)), 4000);
}

// A client still sending megabytes of an oversized message reads the 1009 close frame (the node
// drops the rest of the message instead of resetting the connection under it), then answers it.
TEST(errors_close, a_client_sending_megabytes_of_an_oversized_message_reads_1009) {
  auto node = start_node({"--max-frame-bytes", "4096"});
  raw_ws_client c;
  ASSERT_EQ(c.connect(node->port(), ws_path("345", "STU", "u1")), 101u);
  constexpr std::uint64_t size = 8u << 20;
  std::string head{'\x81', '\xff'};  // text, masked, 64-bit length
  for (int i = 7; i >= 0; --i) head.push_back(static_cast<char>((size >> (8 * i)) & 0xff));
  head.append(4, '\0');  // mask
  ASSERT_TRUE(c.send_raw(head));
  const std::string chunk(64 << 10, 'x');
  for (std::uint64_t sent = 0; sent < size; sent += chunk.size())
    ASSERT_TRUE(c.send_raw(chunk)) << "the node reset the connection after " << sent << " bytes";
  ASSERT_TRUE(c.send_raw(std::string{'\x88', '\x82', '\0', '\0', '\0', '\0', '\x03', '\xe8'}));  // our close reply
  EXPECT_EQ(close_code_in(c.read_to_end(5s)), 1009);
  EXPECT_EQ(metric_value(node->port(), "roomcast_closes_total{reason=\"too_big\"}"), 1);
}

// --- limits ---------------------------------------------------------------------------

TEST(errors_limits, connection_cap_answers_503_with_retry_after) {
  auto node = start_node({"--max-connections", "3"});
  std::vector<member> members;
  for (auto user : {"u1", "u2", "u3"}) members.push_back(join(node->port(), "345", "STU", user));

  ws_client fourth;
  EXPECT_EQ(fourth.connect(node->port(), ws_path("345", "STU", "u4")), 503u) << fourth.last_error();
  std::string retry_after = fourth.handshake_header("Retry-After");
  EXPECT_FALSE(retry_after.empty()) << "503 without Retry-After";
  EXPECT_GE(std::atoi(retry_after.c_str()), 1) << "Retry-After should be delay-seconds: " << retry_after;

  // A freed slot can be taken again (poll: the close is processed asynchronously).
  members.front()->close();
  bool admitted = poll_until(
      [&] {
        ws_client again;
        return again.connect(node->port(), ws_path("345", "STU", "u5")) == 101;
      },
      std::chrono::seconds(5), std::chrono::milliseconds(50));
  EXPECT_TRUE(admitted) << "slot not released after a client close";
}

TEST(errors_limits, client_publish_rate_limit) {
  auto node = start_node({"--publish-rate", "2", "--publish-burst", "2"});
  auto teacher = join(node->port(), "345", "THE", "t1");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(teacher->send_text("msg " + std::to_string(i)));

  int rate_limited = 0;
  // Drain everything the burst produced (own echoes, errors) until the stream goes quiet.
  while (auto frame = teacher->read_json(std::chrono::milliseconds(500))) {
    if (json_string(*frame, "type") == "error") {
      EXPECT_EQ(json_string(*frame, "code"), "rate_limited") << json::serialize(*frame);
      ++rate_limited;
    }
  }
  EXPECT_GE(rate_limited, 1);
  EXPECT_LE(rate_limited, 8) << "burst of 2 should let at least 2 through";
  expect_still_open(teacher);
}

// --- configuration ----------------------------------------------------------------------

TEST(errors_config, non_numeric_port_exits_2) {
  auto r = run_to_exit(roomcast_bin(), {"--port", "abc"});
  EXPECT_EQ(r.exit_code, std::optional<int>(2)) << r.output;
}

TEST(errors_config, route_with_unknown_placeholder_exits_2) {
  auto r = run_to_exit(roomcast_bin(), {"--listen-address", "127.0.0.1", "--port", std::to_string(pick_free_port()),
                                        "--route", "/x/{nope}"});
  EXPECT_EQ(r.exit_code, std::optional<int>(2)) << r.output;
}

TEST(errors_config, unknown_toml_key_exits_2_and_names_it) {
  char path[] = "/tmp/roomcast-itest-XXXXXX.toml";
  int fd = ::mkstemps(path, 5);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << "frobnicate_level = 3\n";
  }
  // Flags keep the node off the default port should it wrongly accept the file.
  auto r = run_to_exit(roomcast_bin(),
                       {"--config", path, "--listen-address", "127.0.0.1", "--port", std::to_string(pick_free_port())});
  std::remove(path);
  EXPECT_EQ(r.exit_code, std::optional<int>(2)) << r.output;
  EXPECT_NE(r.output.find("frobnicate_level"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace roomcast::itest
