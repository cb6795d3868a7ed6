// The SSE fallback on one real node: GET of the route with Accept: text/event-stream. The stream
// (welcome, messages with id "<epoch>:<seq>", the comment heartbeat), recovery with Last-Event-ID
// and with ?since=&epoch=, a gap, publishing with POST under the WebSocket role and rate rules, a
// slow consumer, drain, and the metrics.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <chrono>
#include <csignal>
#include <sstream>

#include "support/itest.hpp"
#include "support/jwt.hpp"
#include "support/sse_client.hpp"
#include "support/tls_client.hpp"

namespace roomcast::itest {
namespace {

using clock_type = std::chrono::steady_clock;

// The welcome of a fresh stream; its id is the room's position.
sse_event open_stream(sse_client& c, std::uint16_t port, const std::string& path, const std::string& last_id = {}) {
  const auto status = c.connect(port, path, last_id);
  EXPECT_EQ(status, 200u) << c.body();
  auto w = c.next();
  if (!w) {
    ADD_FAILURE() << "no welcome";
    return {};
  }
  EXPECT_EQ(json_string(w->json(), "type"), "welcome") << w->data;
  return *w;
}

std::string metrics_text(std::uint16_t port) { return http_get(port, "/metrics").body; }
bool metrics_has_line(const std::string& metrics, const std::string& line) {
  std::istringstream in(metrics);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}
std::string post_frame(std::uint16_t port, const std::string& path, const std::string& body, unsigned* status) {
  http_request req;
  req.method = "POST";
  req.target = path;
  req.body = body;
  req.headers = {{"Content-Type", "application/json"}};
  const auto r = http_send(port, req);
  *status = r.status;
  return r.body;
}

TEST(sse, stream_carries_welcome_and_messages_with_their_position_as_id) {
  auto node = start_node();
  const auto port = node->port();
  sse_client c;
  const auto w = open_stream(c, port, ws_path("345", "STU", "s1", "tok", "web"));
  EXPECT_EQ(c.header("Content-Type"), "text/event-stream");
  EXPECT_EQ(c.header("X-Accel-Buffering"), "no");
  const auto welcome = w.json();
  const auto epoch = json_string(welcome.at("rooms").at(0), "epoch");
  ASSERT_EQ(epoch.size(), 16u) << w.data;
  EXPECT_EQ(w.id, epoch + ":0");
  EXPECT_EQ(json_string(welcome, "user"), "s1");

  // A WebSocket member of the same room gets the same messages (one shared frame per message).
  auto ws = join(port, "345", "STU", "w1");
  for (int n = 1; n <= 3; ++n) {
    const auto id = api_publish(port, R"({"room":"345","data":{"n":)" + std::to_string(n) + "}}");
    auto ev = c.next();
    ASSERT_TRUE(ev) << "message " << n;
    EXPECT_EQ(ev->id, epoch + ":" + std::to_string(n));
    const auto m = ev->json();
    EXPECT_EQ(json_string(m, "type"), "message");
    EXPECT_EQ(json_string(m, "id"), id);
    EXPECT_EQ(json_int(m, "seq"), n);
    EXPECT_EQ(json_int(m, "data.n"), n);
    auto f = ws->read_json();
    ASSERT_TRUE(f);
    EXPECT_EQ(json_int(*f, "seq"), n);
  }
  // A user message has no seq: no id.
  api_publish(port, R"({"user":"s1","data":{"direct":true}})");
  auto direct = c.next();
  ASSERT_TRUE(direct);
  EXPECT_TRUE(direct->id.empty()) << direct->id;
  EXPECT_TRUE(json_bool(direct->json(), "data.direct"));

  // Counted like a WebSocket session, and apart.
  const auto m = metrics_text(port);
  EXPECT_TRUE(metrics_has_line(m, "roomcast_connections 2")) << m.substr(0, 3000);
  EXPECT_TRUE(metrics_has_line(m, "roomcast_sse_connections 1")) << m.substr(0, 3000);
  c.close();
  EXPECT_TRUE(poll_until([&] { return metrics_has_line(metrics_text(port), "roomcast_sse_connections 0"); }, 5s));
  EXPECT_TRUE(poll_until([&] { return json_int(get_stats(port), "connections") == 1; }, 5s));
}

TEST(sse, heartbeat_comment_after_ping_interval_of_silence) {
  auto node = start_node({"--ping-interval", "300ms"});
  sse_client c;
  open_stream(c, node->port(), ws_path("345", "STU", "hb"));
  EXPECT_FALSE(c.next(1500ms)) << "no event expected, only comments";
  EXPECT_GE(c.comments(), 2u);
  EXPECT_FALSE(c.ended());
}

TEST(sse, last_event_id_recovers_what_was_missed_then_live) {
  auto node = start_node();
  const auto port = node->port();
  const auto path = ws_path("r1", "STU", "s1");
  std::string last_id;
  {
    sse_client c;
    open_stream(c, port, path);
    for (int n = 1; n <= 3; ++n) api_publish(port, R"({"room":"r1","data":{"n":)" + std::to_string(n) + "}}");
    for (int n = 1; n <= 2; ++n) ASSERT_TRUE(c.next());
    last_id = c.last_event_id();  // seq 2 read; 3 is lost with the connection
  }
  for (int n = 4; n <= 6; ++n) api_publish(port, R"({"room":"r1","data":{"n":)" + std::to_string(n) + "}}");
  sse_client c;
  open_stream(c, port, path, last_id);
  for (int n = 3; n <= 6; ++n) {
    auto ev = c.next();
    ASSERT_TRUE(ev) << n;
    EXPECT_EQ(json_int(ev->json(), "seq"), n) << ev->data;
    EXPECT_EQ(ev->id.substr(ev->id.find(':') + 1), std::to_string(n));
  }
  auto rec = c.next();
  ASSERT_TRUE(rec);
  EXPECT_EQ(json_string(rec->json(), "type"), "recovered") << rec->data;
  EXPECT_EQ(json_int(rec->json(), "from"), 3);
  EXPECT_EQ(json_int(rec->json(), "to"), 6);
  api_publish(port, R"({"room":"r1","data":{"n":7}})");
  auto live = c.next();
  ASSERT_TRUE(live);
  EXPECT_EQ(json_int(live->json(), "seq"), 7);

  // The URL's ?since=&epoch= asks the same (a client that can't set Last-Event-ID).
  const auto epoch = last_id.substr(0, last_id.find(':'));
  sse_client q;
  open_stream(q, port, path + "?since=5&epoch=" + epoch);
  for (int n = 6; n <= 7; ++n) {
    auto ev = q.next();
    ASSERT_TRUE(ev);
    EXPECT_EQ(json_int(ev->json(), "seq"), n);
  }
  EXPECT_TRUE(q.next_of_type("recovered"));
}

TEST(sse, unknown_epoch_gets_a_gap_whose_id_is_the_room_now) {
  auto node = start_node();
  const auto port = node->port();
  for (int n = 1; n <= 2; ++n) api_publish(port, R"({"room":"g","data":{"n":)" + std::to_string(n) + "}}");
  sse_client c;
  open_stream(c, port, ws_path("g", "STU", "s1"), "0123456789abcdef:1");
  auto gap = c.next();
  ASSERT_TRUE(gap);
  const auto j = gap->json();
  EXPECT_EQ(json_string(j, "type"), "gap") << gap->data;
  EXPECT_EQ(json_string(j, "reason"), "epoch");
  EXPECT_EQ(json_int(j, "seq"), 2);
  EXPECT_EQ(gap->id, json_string(j, "epoch") + ":2");
  // A malformed Last-Event-ID is no request to recover: just the stream.
  sse_client d;
  open_stream(d, port, ws_path("g", "STU", "s2"), "garbage");
  api_publish(port, R"({"room":"g","data":{"n":3}})");
  auto ev = d.next();
  ASSERT_TRUE(ev);
  EXPECT_EQ(json_int(ev->json(), "seq"), 3) << ev->data;
}

TEST(sse, post_publishes_under_the_websocket_role_and_rate_rules) {
  // One shard: the POST bucket is per user per shard, and each POST here is a new connection.
  auto node = start_node({"--threads", "1", "--publish-rate", "0.1", "--publish-burst", "3"});
  const auto port = node->port();
  sse_client student;
  open_stream(student, port, ws_path("345", "STU", "s1"));
  unsigned status = 0;
  // The teacher publishes through POST on its own route URL; the answer is the ack.
  auto body = post_frame(port, ws_path("345", "THE", "t1"), R"({"type":"publish","data":{"q":1},"id":"p1"})", &status);
  EXPECT_EQ(status, 200u) << body;
  auto ack = parse_json(body);
  EXPECT_EQ(json_string(ack, "type"), "ack");
  EXPECT_EQ(json_string(ack, "id"), "p1");
  EXPECT_EQ(json_int(ack, "seq"), 1);
  auto ev = student.next();
  ASSERT_TRUE(ev);
  EXPECT_EQ(json_string(ev->json(), "from"), "t1");
  EXPECT_EQ(json_int(ev->json(), "data.q"), 1);
  // Plain text is the seed's chat, as on a WebSocket.
  body = post_frame(port, ws_path("345", "THE", "t1"), "hello class", &status);
  EXPECT_EQ(status, 200u) << body;
  ev = student.next();
  ASSERT_TRUE(ev);
  EXPECT_EQ(json_string(ev->json(), "data.text"), "hello class");

  // A student may not publish (publish_roles), nor to another room, nor join over POST.
  body = post_frame(port, ws_path("345", "STU", "s1"), R"({"type":"publish","data":{},"id":"x1"})", &status);
  EXPECT_EQ(status, 403u) << body;
  EXPECT_EQ(json_string(parse_json(body), "code"), "forbidden");
  EXPECT_EQ(json_string(parse_json(body), "id"), "x1");
  body = post_frame(port, ws_path("345", "THE", "t1"), R"({"type":"publish","room":"346","data":{}})", &status);
  EXPECT_EQ(status, 403u) << body;
  EXPECT_EQ(json_string(parse_json(body), "code"), "not_in_room");
  body = post_frame(port, ws_path("345", "THE", "t1"), R"({"type":"join","room":"346"})", &status);
  EXPECT_EQ(status, 400u) << body;
  body = post_frame(port, ws_path("345", "THE", "t1"), R"({"type":"publish","data":)", &status);
  EXPECT_EQ(status, 400u) << body;
  EXPECT_EQ(json_string(parse_json(body), "code"), "bad_json");
  body = post_frame(port, ws_path("345", "THE", "t1"), R"({"type":"ping"})", &status);
  EXPECT_EQ(status, 200u) << body;
  EXPECT_EQ(json_string(parse_json(body), "type"), "pong");

  // Rate: the burst (3) is spent by two publishes above plus this one; the next is refused.
  body = post_frame(port, ws_path("345", "THE", "t1"), R"({"type":"publish","data":{"q":2}})", &status);
  EXPECT_EQ(status, 200u) << body;
  body = post_frame(port, ws_path("345", "THE", "t1"), R"({"type":"publish","data":{"q":3}})", &status);
  EXPECT_EQ(status, 429u) << body;
  EXPECT_EQ(json_string(parse_json(body), "code"), "rate_limited");
  // A path off the route is not a client frame.
  body = post_frame(port, "/demo/nothing", R"({"type":"ping"})", &status);
  EXPECT_EQ(status, 405u) << body;
}

TEST(sse, slow_consumer_is_closed_with_4008_behind_its_backlog) {
  auto node = start_node({"--max-queue-bytes", "65536", "--pong-timeout", "2s", "--send-buffer-bytes", "8192"});
  const auto port = node->port();
  sse_client slow(sse_client::options{4096, {}});
  open_stream(slow, port, ws_path("345", "STU", "slow"));
  sse_client fast;
  open_stream(fast, port, ws_path("345", "STU", "fast"));
  const std::string pad(16 * 1024, 'x');
  for (int n = 1; n <= 100; ++n) {
    api_publish(port, R"({"room":"345","data":{"n":)" + std::to_string(n) + R"(,"pad":")" + pad + R"("}})");
    auto ev = fast.next();
    ASSERT_TRUE(ev) << "fast lost " << n;
    ASSERT_EQ(json_int(ev->json(), "data.n"), n);
  }
  json::value stats;
  EXPECT_TRUE(poll_until(
      [&] {
        stats = get_stats(port);
        return json_int(stats, "closes.slow_consumer") >= 1;
      },
      10s, 50ms))
      << json::serialize(stats);
  // Reading at last (within pong_timeout, which bounds how long the node waits for a slow reader):
  // the events it had, whole, then the close event that says why, then the end.
  ASSERT_TRUE(slow.wait_end(10s));
  EXPECT_TRUE(poll_until([&] { return json_int(get_stats(port), "connections") == 1; }, 5s));
  ASSERT_FALSE(slow.skipped().empty());
  const auto& last = slow.skipped().back();
  EXPECT_EQ(json_string(last.json(), "type"), "close") << last.data.substr(0, 200);
  EXPECT_EQ(json_int(last.json(), "code"), 4008);
  for (std::size_t i = 0; i + 1 < slow.skipped().size(); ++i)
    EXPECT_NO_THROW(slow.skipped()[i].json()) << "event " << i << " cut";
}

TEST(sse, drain_ends_the_stream_with_1012_and_refuses_new_ones) {
  auto node = start_node({"--drain-window", "1s"});
  const auto port = node->port();
  sse_client c;
  open_stream(c, port, ws_path("345", "STU", "d1"));
  node->terminate();
  ASSERT_TRUE(c.wait_end(10s));
  ASSERT_FALSE(c.skipped().empty());
  EXPECT_EQ(json_int(c.skipped().back().json(), "code"), 1012) << c.skipped().back().data;
  EXPECT_EQ(node->wait_exit(10s), std::optional<int>(0));
}

TEST(sse, refusals_answer_the_upgrade_statuses) {
  auto node = start_node({"--max-connections", "1"});
  const auto port = node->port();
  sse_client a;
  open_stream(a, port, ws_path("345", "STU", "a"));
  sse_client b;
  EXPECT_EQ(b.connect(port, ws_path("345", "STU", "b")), 503u) << b.body();
  EXPECT_FALSE(b.header("Retry-After").empty());
  sse_client bad;
  EXPECT_EQ(bad.connect(port, "/demo/websocket/345/STU"), 404u);
  // Without Accept: text/event-stream a GET of the route is still the WebSocket probe.
  EXPECT_EQ(http_get(port, ws_path("345", "STU", "c")).status, 503u);
}

std::string token_for(const std::string& sub, std::int64_t exp_in_s) {
  const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch() + std::chrono::seconds(exp_in_s))
                       .count();
  return make_jwt_hs256(R"({"sub":")" + sub + R"(","exp":)" + std::to_string(exp) + "}", "s3cret");
}

TEST(sse, same_auth_as_websocket_url_or_bearer_token_and_expiry_ends_the_stream_with_4402) {
  auto node = start_node({"--auth", "jwt", "--jwt-secret", "s3cret", "--jwt-leeway", "0s", "--log-level", "debug"});
  const auto port = node->port();
  const auto t1 = token_for("u1", 3600), t2 = token_for("u2", 3600);
  // The URL's token, checked like an upgrade's.
  sse_client good;
  open_stream(good, port, ws_path("345", "STU", "u1", t1));
  sse_client bad;
  EXPECT_EQ(bad.connect(port, ws_path("345", "STU", "u1", t2)), 401u) << bad.body();
  // An EventSource can't send a first frame: "-" needs the Bearer header.
  sse_client dash;
  EXPECT_EQ(dash.connect(port, ws_path("345", "STU", "u1", "-")), 401u) << dash.body();
  sse_client bearer(sse_client::options{0, {{"Authorization", "Bearer " + token_for("u1", 3600)}}});
  open_stream(bearer, port, ws_path("345", "STU", "u1", "-"));
  // POST takes the same token rules.
  unsigned status = 0;
  post_frame(port, ws_path("345", "THE", "t1", t1), R"({"type":"ping"})", &status);
  EXPECT_EQ(status, 401u);
  post_frame(port, ws_path("345", "THE", "t1", token_for("t1", 3600)), R"({"type":"ping"})", &status);
  EXPECT_EQ(status, 200u);
  // A token that expires: the stream ends with the close event 4402 (an EventSource can't refresh).
  sse_client expiring;
  open_stream(expiring, port, ws_path("345", "STU", "u3", token_for("u3", 1)));
  ASSERT_TRUE(expiring.wait_end(10s));
  ASSERT_FALSE(expiring.skipped().empty());
  EXPECT_EQ(json_int(expiring.skipped().back().json(), "code"), 4402) << expiring.skipped().back().data;
  EXPECT_FALSE(good.ended());
  // Tokens never reach the log (debug level), in any of these paths.
  const auto log = node->output();
  for (const auto& t : {t1, t2}) EXPECT_EQ(log.find(t.substr(t.rfind('.'))), std::string::npos) << "a token in the log";
}

TEST(sse, over_tls_the_stream_and_post_speak_https) {
  const auto dir = make_temp_dir("sse-tls");
  make_test_certificate(dir, "sse-test");
  auto node = start_node({"--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"});
  tls_client_options o;
  o.ca_file = dir + "/cert.pem";
  tls_client stream(o);
  ASSERT_TRUE(stream.connect(node->port())) << stream.error();
  ASSERT_TRUE(stream.write("GET " + ws_path("345", "STU", "s1") +
                           " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"));
  ASSERT_TRUE(stream.read_text_until(R"("type":"welcome")")) << stream.received();
  EXPECT_NE(stream.received().find("Content-Type: text/event-stream\r\n"), std::string::npos) << stream.received();
  // Publishing by POST over its own TLS connection; the event comes on the stream with its id.
  tls_client poster(o);
  ASSERT_TRUE(poster.connect(node->port())) << poster.error();
  std::string body;
  EXPECT_EQ(
      poster.request("POST", ws_path("345", "THE", "t1"), R"({"type":"publish","data":{"tls":1},"id":"t-1"})", &body),
      200u)
      << body;
  ASSERT_TRUE(stream.read_text_until(R"("id":"t-1")")) << stream.received();
  const auto& got = stream.received();
  const auto at = got.find(R"("id":"t-1")");
  const auto id_line = got.rfind("\nid: ", at);
  ASSERT_NE(id_line, std::string::npos) << got;
  EXPECT_EQ(got.substr(got.find(':', id_line + 5) + 1, 2), "1\n") << got.substr(id_line, 80);
}

}  // namespace
}  // namespace roomcast::itest
