#include "support/shell.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <vector>

#ifndef ROOMCAST_SOURCE_DIR
#error "ROOMCAST_SOURCE_DIR must point at the source tree"
#endif

namespace roomcast::itest {

command_result run_command(const std::string& command) {
  command_result r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("popen failed for: " + command);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = (st >= 0 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

std::string last_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  auto nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v && *v) ? std::string(v) : fallback;
}

std::string scripts_dir() { return env_or("ROOMCAST_TEST_SCRIPTS", ROOMCAST_SOURCE_DIR "/scripts"); }

command_result run_script(const std::string& script, const std::string& args) {
  return run_command(shell_quote(scripts_dir() + "/" + script) + " " + args);
}

std::string random_token(std::size_t len) {
  static std::mt19937_64 rng{std::random_device{}() ^ (static_cast<std::uint64_t>(::getpid()) << 20)};
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s;
  for (std::size_t i = 0; i < len; ++i) s += alphabet[rng() % (sizeof alphabet - 1)];
  return s;
}

std::string unique_prefix() { return "rctest" + random_token(); }

std::string make_temp_dir(const std::string& what) {
  std::string base = env_or("ROOMCAST_TEST_TMP", "/tmp");
  std::string tmpl = base + "/itest-" + what + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed under " + base);
  return buf.data();
}

std::uint16_t script_free_port(bool pair) {
  auto r = run_script("free-port.sh", pair ? "--pair" : "");
  if (r.status != 0) throw std::runtime_error("free-port.sh failed: " + r.output);
  return static_cast<std::uint16_t>(std::stoi(last_line(r.output)));
}

}  // namespace roomcast::itest
