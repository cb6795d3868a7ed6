#include "config/config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace roomcast::config;
using namespace std::chrono_literals;

namespace {
parse_result parse_args(std::vector<const char*> args) {
  args.insert(args.begin(), "roomcast");
  return parse(static_cast<int>(args.size()), args.data());
}
}  // namespace

TEST(config, defaults_match_the_seed) {
  auto r = parse_args({});
  ASSERT_TRUE(r.cfg) << r.message;
  EXPECT_EQ(r.cfg->port, 8091);
  EXPECT_EQ(r.cfg->route, "/demo/websocket/{room}/{role}/{user}/{token}/{platform}");
  EXPECT_EQ(r.cfg->auth, auth_mode::none);
  EXPECT_GE(r.cfg->threads, 1u);
  EXPECT_NE(r.cfg->node_id.find(":8091"), std::string::npos);  // host:port as in the seed
  EXPECT_EQ(r.cfg->publish_roles, std::vector<std::string>{"THE"});
}

TEST(config, flags_win_over_env_over_file) {
  const char* path = "/tmp/roomcast_test_config.toml";
  {
    std::ofstream f(path);
    f << "port = 9001\nthreads = 3\nmax_queue_bytes = \"2MiB\"\npublish_roles = [\"THE\", \"TA\"]\n";
  }
  ::setenv("ROOMCAST_THREADS", "4", 1);
  auto r = parse_args({"--config", path, "--port", "9002"});
  ::unsetenv("ROOMCAST_THREADS");
  ASSERT_TRUE(r.cfg) << r.message;
  EXPECT_EQ(r.cfg->port, 9002);   // flag
  EXPECT_EQ(r.cfg->threads, 4u);  // env over file
  EXPECT_EQ(r.cfg->max_queue_bytes, 2u << 20);
  EXPECT_EQ(r.cfg->publish_roles, (std::vector<std::string>{"THE", "TA"}));
}

TEST(config, errors_exit_2_naming_the_key) {
  auto r = parse_args({"--port", "abc"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("'port'"), std::string::npos) << r.message;
  r = parse_args({"--route", "/x/{nope}"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("'route'"), std::string::npos) << r.message;
  r = parse_args({"--auth", "jwt"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("jwt_secret"), std::string::npos) << r.message;
  r = parse_args({"--ping-interval", "10"});  // a unit is required
  EXPECT_EQ(r.exit_code, 2);
  r = parse_args({"--no-such-flag", "1"});
  EXPECT_EQ(r.exit_code, 2);
  r = parse_toml_text("colour = \"blue\"\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("'colour'"), std::string::npos) << r.message;
  r = parse_toml_text("max_frame_bytes = \"lots\"\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("'max_frame_bytes'"), std::string::npos) << r.message;
}

TEST(config, abuse_limits_have_generous_defaults_and_a_member_limit_that_takes_a_users_filter) {
  auto r = parse_args({});
  ASSERT_TRUE(r.cfg) << r.message;
  EXPECT_EQ(r.cfg->source_rate, 1000);  // a school behind one NAT address joins hundreds at once
  EXPECT_EQ(r.cfg->source_burst, 2000);
  EXPECT_EQ(r.cfg->max_pending_handshakes, 4096u);
  EXPECT_EQ(r.cfg->source_exempt, (std::vector<std::string>{"127.0.0.1", "::1"}));  // a local proxy, benchmarks
  EXPECT_EQ(r.cfg->json_max_depth, 32u);
  EXPECT_GE(r.cfg->json_max_members, r.cfg->filter_max_users);
  EXPECT_GE(r.cfg->json_max_members, r.cfg->api_publish_batch_max);
  EXPECT_GE(r.cfg->join_burst, static_cast<double>(r.cfg->max_rooms_per_session));
  r = parse_args({"--json-max-members", "100"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("'json_max_members'"), std::string::npos) << r.message;
  r = parse_args({"--json-max-members", "100", "--filter-max-users", "100", "--api-publish-batch-max", "50"});
  EXPECT_TRUE(r.cfg) << r.message;
  r = parse_args({"--source-exempt", "10.0.0.1, fd00::1"});
  ASSERT_TRUE(r.cfg) << r.message;
  EXPECT_EQ(r.cfg->source_exempt, (std::vector<std::string>{"10.0.0.1", "fd00::1"}));
  r = parse_args({"--source-exempt", "lb.example"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("'source_exempt'"), std::string::npos) << r.message;
  r = parse_args({"--json-max-depth", "33"});  // deeper than the bus carries between nodes
  EXPECT_EQ(r.exit_code, 2);
  r = parse_args({"--source-rate", "0", "--json-max-depth", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.message.find("'json_max_depth'"), std::string::npos) << r.message;
}

TEST(config, sizes_and_durations) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("64KiB"), 65536u);
  EXPECT_EQ(parse_size("1MiB"), 1u << 20);
  EXPECT_FALSE(parse_size("1 parsec"));
  EXPECT_FALSE(parse_size(""));
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("10s"), 10s);
  EXPECT_EQ(parse_duration("2m"), 2min);
  EXPECT_FALSE(parse_duration("10"));
  EXPECT_FALSE(parse_duration("-1s"));
}

TEST(config, example_file_is_complete_and_parses) {
  // deploy/roomcast.example.toml must be exactly what the binary documents, and must load.
  std::ifstream f(std::string(ROOMCAST_SOURCE_DIR) + "/deploy/roomcast.example.toml");
  ASSERT_TRUE(f) << "deploy/roomcast.example.toml missing";
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(), example_toml())
      << "regenerate with: roomcast --print-example-config > deploy/roomcast.example.toml";
  auto r = parse_toml_text(ss.str());
  EXPECT_TRUE(r.cfg) << r.message;
}
