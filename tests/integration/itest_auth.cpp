// Tokens outside the URL (auth = jwt): `Authorization: Bearer` on the upgrade, or "-" in the URL's
// token segment and {"type":"auth","token"} as the first frame. Until it is accepted the session
// is in no room and gets nothing; a bad, late or missing auth frame closes with 4401. Tokens never
// reach the log.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <ctime>

#include "support/cluster.hpp"
#include "support/itest.hpp"
#include "support/jwt.hpp"

namespace roomcast::itest {
namespace {

std::string token(const std::string& sub, std::int64_t exp_offset_s, const std::string& secret = "s3cret") {
  const auto exp = static_cast<std::int64_t>(std::time(nullptr)) + exp_offset_s;
  return make_jwt_hs256(R"({"sub":")" + sub + R"(","exp":)" + std::to_string(exp) + "}", secret);
}

class auth_outside_url : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = start_node({"--auth", "jwt", "--jwt-secret", "s3cret", "--handshake-timeout", "1s", "--jwt-leeway", "1s",
                        "--log-level", "debug"});
  }
  std::unique_ptr<node_process> node_;
};

TEST_F(auth_outside_url, bearer_header_on_the_upgrade) {
  const auto good = token("u1", 3600);
  ws_options o;
  o.headers = {{"Authorization", "Bearer " + good}};
  auto m = join_path(node_->port(), ws_path("345", "STU", "u1", "-"), o);
  EXPECT_EQ(json_string(m.welcome, "user"), "u1");
  // The header wins over the URL: a good header with a junk URL token is fine, a bad one is 401.
  ws_client bad({.headers = {{"Authorization", "Bearer " + token("u1", 3600, "other")}}});
  EXPECT_EQ(bad.connect(node_->port(), ws_path("345", "STU", "u1", "-")), 401u);
  ws_client not_bearer({.headers = {{"Authorization", "Basic dTE6cA=="}}});
  EXPECT_EQ(not_bearer.connect(node_->port(), ws_path("345", "STU", "u1", "-")), 401u);
  const auto out = node_->output();
  EXPECT_EQ(out.find(good), std::string::npos) << "a token reached the log";
}

TEST_F(auth_outside_url, first_frame_auth_good_bad_late_and_never) {
  const auto good = token("u2", 3600);
  // Good: nothing arrives before the auth frame; then welcome, and the member gets room messages.
  ws_client c;
  ASSERT_EQ(c.connect(node_->port(), ws_path("345", "STU", "u2", "-")), 101u);
  api_publish(node_->port(), R"({"room":"345","data":"before auth"})");
  EXPECT_FALSE(c.read_text(400ms)) << "a session still waiting for its token got a frame";
  EXPECT_EQ(json_int(get_json(node_->port(), "/api/rooms/345"), "sessions"), 0) << "in the room before auth";
  ASSERT_TRUE(c.send_text(R"({"type":"auth","token":")" + good + R"("})"));
  auto w = c.read_json();
  ASSERT_TRUE(w);
  EXPECT_EQ(json_string(*w, "type"), "welcome") << boost::json::serialize(*w);
  const auto id = api_publish(node_->port(), R"({"room":"345","data":"after auth"})");
  auto msg = c.read_type("message");
  ASSERT_TRUE(msg);
  EXPECT_EQ(json_string(*msg, "id"), id);
  ASSERT_TRUE(c.send_text(R"({"type":"auth","token":")" + good + R"("})"));  // again: an error, not a close
  EXPECT_TRUE(c.read_type("error"));
  EXPECT_TRUE(c.is_open());

  // Bad token, wrong subject, another frame first: 4401.
  const std::vector<std::string> first_frames{R"({"type":"auth","token":"x.y.z"})",
                                              R"({"type":"auth","token":")" + token("someone-else", 3600) + R"("})",
                                              R"({"type":"ping"})", "hello"};
  for (const auto& first : first_frames) {
    ws_client b;
    ASSERT_EQ(b.connect(node_->port(), ws_path("345", "STU", "u2", "-")), 101u);
    ASSERT_TRUE(b.send_text(first));
    EXPECT_TRUE(b.wait_closed(3s)) << first;
    EXPECT_EQ(b.close_code(), 4401) << first << ": " << b.why();
  }

  // Never: closed after handshake_timeout (1 s here) with 4401.
  ws_client never;
  ASSERT_EQ(never.connect(node_->port(), ws_path("345", "STU", "u2", "-")), 101u);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(never.wait_closed(5s));
  EXPECT_EQ(never.close_code(), 4401) << never.why();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 900ms);

  // Late (after the timeout): the connection is gone already.
  ws_client late;
  ASSERT_EQ(late.connect(node_->port(), ws_path("345", "STU", "u2", "-")), 101u);
  std::this_thread::sleep_for(1500ms);
  late.send_text(R"({"type":"auth","token":")" + good + R"("})", 1s);
  EXPECT_TRUE(late.wait_closed(3s));
  EXPECT_EQ(late.close_code(), 4401);

  EXPECT_GE(metric_value(node_->port(), "roomcast_closes_total{reason=\"unauthorized\"}"), 5);
  EXPECT_EQ(node_->output().find(good), std::string::npos) << "a token reached the log";
}

// A session's token expires: {"type":"refresh"} with a new one before that keeps it open; without
// one the session is closed with 4402 once exp + jwt_leeway passed. A bad refresh changes nothing.
TEST_F(auth_outside_url, refresh_before_exp_or_closed_with_4402) {
  auto keeps = join(node_->port(), "345", "STU", "u3", "pc", token("u3", 2));
  auto lapses = join(node_->port(), "345", "STU", "u4", "pc", token("u4", 2));
  ASSERT_TRUE(keeps->send_text(R"({"type":"refresh","token":")" + token("u3", 3600, "wrong") + R"("})"));
  auto err = keeps->read_type("error");
  ASSERT_TRUE(err);
  EXPECT_EQ(json_string(*err, "code"), "unauthorized");
  ASSERT_TRUE(keeps->send_text(R"({"type":"refresh","token":")" + token("someone", 3600) + R"("})"));
  EXPECT_TRUE(keeps->read_type("error")) << "a token of another user was taken";
  const auto fresh = token("u3", 3600);
  ASSERT_TRUE(keeps->send_text(R"({"type":"refresh","token":")" + fresh + R"("})"));
  auto ok = keeps->read_type("refreshed");
  ASSERT_TRUE(ok);
  EXPECT_GT(json_int(*ok, "exp"), static_cast<std::int64_t>(std::time(nullptr)) + 3000);
  EXPECT_TRUE(lapses->wait_closed(8s));
  EXPECT_EQ(lapses->close_code(), 4402) << lapses->why();
  EXPECT_TRUE(keeps->is_open());
  const auto id = api_publish(node_->port(), R"({"room":"345","data":"still here"})");
  EXPECT_TRUE(read_message_id(keeps, id)) << "the refreshed session lost its room";
  EXPECT_EQ(metric_value(node_->port(), "roomcast_closes_total{reason=\"token_expired\"}"), 1);
  EXPECT_EQ(node_->output().find(fresh), std::string::npos) << "a token reached the log";
}

}  // namespace
}  // namespace roomcast::itest
