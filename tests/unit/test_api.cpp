// api::handler without sockets: a request in, a response out. One node with the local bus, the
// local history and the local registry; the one shard runs posted tasks inline.
#include "api_node.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <optional>

using namespace roomcast;
namespace json = boost::json;

namespace {

struct node_fixture : test::api_node {
  int counter = 0;
  using api_node::api_node;

  api::response call(std::string method, std::string target, std::string body = "", std::string key = "",
                     std::string content_type = "application/json") {
    api::request r{std::move(method), std::move(target), std::move(content_type), std::move(key), std::move(body), 0};
    std::optional<api::response> out;
    api->handle(r, [&](api::response resp) { out = std::move(resp); });
    EXPECT_TRUE(out.has_value()) << "no synchronous answer";
    return out.value_or(api::response{});
  }
};

std::string code_of(const api::response& r) {
  return std::string(json::parse(r.body).at("error").at("code").as_string());
}

}  // namespace

TEST(api, publish_numbers_room_messages_and_answers_duplicates_with_the_first_seq) {
  node_fixture n;
  auto a = n.call("POST", "/api/publish", R"({"room":"345","data":{"x":1},"id":"k1"})");
  ASSERT_EQ(a.status, 200u) << a.body;
  EXPECT_EQ(json::parse(a.body).at("seq").as_int64(), 1);
  auto b = n.call("POST", "/api/publish", R"({"room":"345","data":{"x":2}})");
  EXPECT_EQ(json::parse(b.body).at("seq").as_int64(), 2) << b.body;
  auto dup = n.call("POST", "/api/publish", R"({"room":"345","data":{"x":1},"id":"k1"})");
  EXPECT_TRUE(json::parse(dup.body).at("duplicate").as_bool()) << dup.body;
  EXPECT_EQ(json::parse(dup.body).at("seq").as_int64(), 1);
}

TEST(api, bad_requests_get_the_documented_status_and_code) {
  node_fixture n;
  EXPECT_EQ(code_of(n.call("POST", "/api/publish", R"({"data":1})")), "bad_request");      // no target
  EXPECT_EQ(code_of(n.call("POST", "/api/publish", R"({"room":"345"})")), "bad_request");  // no data
  EXPECT_EQ(code_of(n.call("POST", "/api/publish", "{oops")), "bad_json");
  auto r = n.call("POST", "/api/publish", R"({"room":"1","data":1})", "", "text/plain");
  EXPECT_EQ(r.status, 415u);
  r = n.call("GET", "/api/publish");
  EXPECT_EQ(r.status, 405u);
  EXPECT_EQ(r.headers.at(0).first, "Allow");
  EXPECT_EQ(n.call("GET", "/api/nope").status, 404u);
  EXPECT_EQ(n.call("GET", "/api/rooms?limit=0").status, 400u);
  EXPECT_EQ(n.call("GET", "/api/rooms?cursor=x").status, 400u);
  for (const char* body : {R"({"user":""})", R"({"session":"nope"})", R"({"user":"u","session":"s"})"})
    EXPECT_EQ(n.call("POST", "/api/disconnect", body).status, 400u) << body;
}

TEST(api, a_publish_field_the_server_does_not_know_is_refused_not_ignored) {
  node_fixture n;
  // A teachers-only filter this server can't apply must not reach every student.
  auto r = n.call("POST", "/api/publish", R"({"room":"345","data":1,"role":["THE"]})");
  EXPECT_EQ(r.status, 400u) << r.body;
  EXPECT_EQ(code_of(r), "bad_request");
  EXPECT_NE(r.body.find("unknown field \\\"role\\\""), std::string::npos) << r.body;
  // In a batch one unknown field refuses the whole batch: nothing is published.
  auto b = n.call("POST", "/api/publish", R"([{"room":"345","data":1},{"room":"345","data":2,"platform":"pc"}])");
  EXPECT_EQ(b.status, 400u) << b.body;
  auto next = n.call("POST", "/api/publish", R"({"room":"345","data":3})");
  ASSERT_EQ(next.status, 200u) << next.body;
  EXPECT_EQ(json::parse(next.body).at("seq").as_int64(), 1) << "the refused batch published something";
  // Every documented field is still taken.
  EXPECT_EQ(n.call("POST", "/api/publish", R"({"room":"345","data":1,"id":"f1","from":"teacher"})").status, 200u);
  EXPECT_EQ(
      n.call("POST", "/api/publish", R"({"room":"345","data":1,"roles":["THE"],"platforms":["pc"],"users":["u"]})")
          .status,
      200u);
}

TEST(api, bad_filters_get_400_and_publish_nothing) {
  node_fixture n;
  n.cfg.filter_max_users = 100;
  std::string many = R"({"room":"345","data":1,"users":[)";
  for (int i = 0; i < 10'000; ++i) many += (i ? ",\"u" : "\"u") + std::to_string(i) + "\"";
  many += "]}";
  const std::pair<std::string, std::string> cases[] = {
      {R"({"room":"345","data":1,"roles":[]})", "must not be empty"},
      {R"({"room":"345","data":1,"platforms":"pc"})", "array"},
      {R"({"room":"345","data":1,"users":[7]})", "non-empty strings"},
      {R"({"user":"u1","data":1,"roles":["THE"]})", "room messages only"},
      {R"({"all":true,"data":1,"platforms":["pc"]})", "room messages only"},
      {many, "at most 100"},
      {R"([{"room":"345","data":1},{"room":"345","data":1,"roles":[]}])", "[1]: "},
  };
  for (const auto& [body, why] : cases) {
    auto r = n.call("POST", "/api/publish", body);
    EXPECT_EQ(r.status, 400u) << body.substr(0, 80);
    EXPECT_NE(r.body.find(why), std::string::npos) << r.body.substr(0, 200);
  }
  auto next = n.call("POST", "/api/publish", R"({"room":"345","data":3})");
  EXPECT_EQ(json::parse(next.body).at("seq").as_int64(), 1) << "a refused publish took a seq";
}

TEST(api, history_shows_each_message_with_its_filter) {
  node_fixture n;
  n.call("POST", "/api/publish", R"({"room":"7","data":1,"roles":["THE"]})");
  n.call("POST", "/api/publish", R"({"room":"7","data":2})");
  auto h = n.call("GET", "/api/rooms/7/history");
  ASSERT_EQ(h.status, 200u) << h.body;
  const auto msgs = json::parse(h.body).at("messages").as_array();
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].at("roles").as_array().at(0).as_string(), "THE");
  EXPECT_FALSE(msgs[1].as_object().contains("roles"));
}

TEST(api, the_key_guards_api_but_not_health_and_metrics) {
  node_fixture n("s3cret");
  EXPECT_EQ(n.call("GET", "/api/nodes").status, 401u);
  EXPECT_EQ(n.call("GET", "/api/nodes", "", "wrong").status, 401u);
  EXPECT_EQ(n.call("GET", "/api/nodes", "", "s3cret").status, 200u);
  EXPECT_EQ(n.call("GET", "/healthz").status, 200u);
  EXPECT_EQ(n.call("GET", "/metrics").status, 200u);
}

TEST(api, readyz_follows_the_drain) {
  node_fixture n;
  EXPECT_EQ(n.call("GET", "/readyz").status, 200u);
  n.state.draining = true;
  auto r = n.call("GET", "/readyz");
  EXPECT_EQ(r.status, 503u);
  EXPECT_FALSE(json::parse(r.body).at("ready").as_bool());
}

TEST(api, nodes_carry_the_summary_and_history_reads_back) {
  node_fixture n;
  auto nodes = json::parse(n.call("GET", "/api/nodes").body);
  EXPECT_EQ(json::serialize(nodes), R"({"nodes":[{"node":"n1","connections":0}]})");
  n.call("POST", "/api/publish", R"({"room":"r","data":"a"})");
  n.call("POST", "/api/publish", R"({"room":"r","data":"b"})");
  auto h = json::parse(n.call("GET", "/api/rooms/r/history?since=1").body);
  EXPECT_EQ(h.at("seq").as_int64(), 2);
  ASSERT_EQ(h.at("messages").as_array().size(), 1u) << json::serialize(h);
  EXPECT_EQ(json::serialize(h.at("messages").at(0).at("data")), R"("b")");
}

namespace {
struct room_member final : hub::member {
  explicit room_member(std::string user) : member(hub::identity{7, std::move(user), "STU", "pc"}) {}
  void deliver(const hub::frame_ref& f) override { got.emplace_back(f->bytes().substr(2)); }
  void kick(std::uint16_t, std::string_view) override {}
  std::vector<std::string> got;
};
}  // namespace

TEST(api, kick_removes_the_users_sessions_from_the_room_and_keeps_them_connected) {
  node_fixture n;
  room_member s("s1");
  n.tables.add(s);
  n.tables.join(s, "345", 4);
  n.tables.join(s, "other", 4);
  auto r = n.call("POST", "/api/rooms/345/kick", R"({"user":"s1","reason":"be nice"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_FALSE(n.tables.in_room(s, "345"));
  EXPECT_TRUE(n.tables.in_room(s, "other"));
  ASSERT_EQ(s.got.size(), 1u);
  EXPECT_EQ(s.got[0], R"({"type":"left","room":"345","kicked":true,"reason":"be nice"})");
  EXPECT_EQ(n.tables.session_count(), 1u);
  // Bad bodies change nothing.
  EXPECT_EQ(n.call("POST", "/api/rooms/other/kick", R"({"reason":"x"})").status, 400u);
  EXPECT_EQ(n.call("POST", "/api/rooms/other/kick", R"({"user":"s1","why":"x"})").status, 400u);
  EXPECT_EQ(n.call("GET", "/api/rooms/other/kick").status, 405u);
  EXPECT_TRUE(n.tables.in_room(s, "other"));
  n.tables.remove(s);
}

TEST(api, a_muted_user_cannot_publish_to_the_room_until_the_mute_ends) {
  node_fixture n;
  auto client_publish = [&](std::string room, std::string user) {
    bus::envelope e;
    e.kind = protocol::target_kind::room;
    e.target = std::move(room);
    e.from = std::move(user);
    e.id = "c" + std::to_string(++n.counter);
    e.check_mute = true;
    e.data = "1";
    std::optional<hub::router::publish_outcome> out;
    n.router.publish(std::move(e), [&](hub::router::publish_outcome o) { out = std::move(o); });
    EXPECT_TRUE(out);
    return out.value_or(hub::router::publish_outcome{});
  };
  auto r = n.call("POST", "/api/rooms/345/mute", R"({"user":"s1","duration":"10m"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(json::parse(r.body).at("muted_ms").as_int64(), 600'000);
  EXPECT_TRUE(client_publish("345", "s1").muted);
  EXPECT_FALSE(client_publish("other", "s1").muted);
  EXPECT_FALSE(client_publish("345", "s2").muted);
  // A muted publish took no seq: the next one is 1... after the unmute.
  ASSERT_EQ(n.call("POST", "/api/rooms/345/mute", R"({"user":"s1","duration":"0s"})").status, 200u);
  auto ok = client_publish("345", "s1");
  EXPECT_FALSE(ok.muted);
  EXPECT_EQ(ok.seq, 2u);  // s2's publish above was 1
  for (const char* body : {R"({"user":"s1"})", R"({"user":"s1","duration":"soon"})", R"({"user":"s1","duration":600})",
                           R"({"user":"s1","duration":"8d"})", R"({"duration":"1m"})"})
    EXPECT_EQ(n.call("POST", "/api/rooms/345/mute", body).status, 400u) << body;
}

TEST(api, json_bodies_over_the_depth_or_member_limit_get_400_and_are_counted) {
  node_fixture n;
  n.cfg.json_max_depth = 4;
  n.cfg.json_max_members = 3;
  n.api.emplace(n.cfg, n.router, n.reg, n.state);  // the handler reads its limits at construction
  n.api->set_counters({&n.counters});
  auto deep = n.call("POST", "/api/publish", R"({"room":"345","data":[[[[1]]]]})");
  EXPECT_EQ(deep.status, 400u);
  EXPECT_EQ(code_of(deep), "bad_json");
  EXPECT_NE(deep.body.find("json_max_depth"), std::string::npos) << deep.body;
  auto wide = n.call("POST", "/api/publish",
                     R"([{"room":"345","data":1},{"room":"345","data":2},)"
                     R"({"room":"345","data":3},{"room":"345","data":4}])");
  EXPECT_EQ(wide.status, 400u);
  EXPECT_NE(wide.body.find("json_max_members"), std::string::npos) << wide.body;
  for (const char* path : {"/api/disconnect", "/api/rooms/345/kick", "/api/rooms/345/mute"}) {
    auto r = n.call("POST", path, R"({"user":"u","reason":{"a":{"b":{"c":[1]}}}})");
    EXPECT_EQ(r.status, 400u) << path;
    EXPECT_NE(r.body.find("json_max_depth"), std::string::npos) << path << " " << r.body;
  }
  EXPECT_EQ(n.counters.json_refused_api[0].get(), 4u);
  EXPECT_EQ(n.counters.json_refused_api[1].get(), 1u);
  EXPECT_EQ(n.call("POST", "/api/publish", R"({"room":"345","data":[[1]]})").status, 200u);
  const auto text = n.api->metrics_text();
  EXPECT_NE(text.find("roomcast_json_refused_total{source=\"api\",limit=\"depth\"} 4"), std::string::npos);
}

TEST(api, disconnect_of_an_unknown_session_on_a_single_node_counts_none) {
  node_fixture n;
  auto r = n.call("POST", "/api/disconnect", R"({"session":"0000000000000001"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(json::parse(r.body).at("sessions").as_int64(), 0);
}
