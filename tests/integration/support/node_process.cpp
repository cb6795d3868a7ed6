#include "support/node_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/http_client.hpp"

extern char** environ;

namespace roomcast::itest {
namespace {

using clock_type = std::chrono::steady_clock;

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Spawns the binary with stdout+stderr redirected to a fresh temp file.
// ROOMCAST_* variables are dropped so the caller's environment cannot change the config; a test
// build's fault hooks (ROOMCAST_TEST_HOOK_*, set by the test itself) pass.
pid_t spawn(const std::string& binary, const std::vector<std::string>& args, std::string& log_path) {
  char tmpl[] = "/tmp/roomcast-itest-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp failed: " + std::string(std::strerror(errno)));
  log_path = tmpl;

  std::vector<std::string> argv_store;
  argv_store.push_back(binary);
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "ROOMCAST_", 9) != 0 || std::strncmp(*e, "ROOMCAST_TEST_HOOK_", 19) == 0) envp.push_back(*e);
  }
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  posix_spawn_file_actions_addclose(&actions, fd);

  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("posix_spawn(" + binary + ") failed: " + std::strerror(rc));
  return pid;
}

std::string tail_lines(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;  // a trailing newline does not start a line
  for (std::size_t n = 0; n < lines; ++n) {
    if (pos == 0) return text;
    auto nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return text.substr(pos + 1);
}

}  // namespace

std::uint16_t pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind/getsockname on 127.0.0.1:0 failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

exit_result run_to_exit(const std::string& binary, const std::vector<std::string>& args,
                        std::chrono::milliseconds timeout) {
  std::string log_path;
  pid_t pid = spawn(binary, args, log_path);
  exit_result result;
  auto deadline = clock_type::now() + timeout;
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      result.exit_code = decode_status(status);
      break;
    }
    if (clock_type::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the child's state
  }
  result.output = read_file(log_path);
  ::unlink(log_path.c_str());
  return result;
}

node_process::node_process(std::string binary, std::vector<std::string> args)
    : binary_(std::move(binary)), args_(std::move(args)) {
  // The free port can be stolen between pick and bind; retry a few times in that case.
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (start_once(why)) return;
    if (running()) break;  // alive but never healthy: retrying will not help
  }
  std::string out = output();
  if (running()) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
  throw std::runtime_error("roomcast did not become healthy: " + why + "\n--- node output ---\n" + tail_lines(out, 80));
}

bool node_process::start_once(std::string& why) {
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
  exit_code_.reset();
  port_ = pick_free_port();
  std::vector<std::string> full{"--listen-address", "127.0.0.1", "--port", std::to_string(port_)};
  full.insert(full.end(), args_.begin(), args_.end());
  pid_ = spawn(binary_, full, log_path_);

  auto deadline = clock_type::now() + std::chrono::seconds(10);
  while (clock_type::now() < deadline) {
    if (!running()) {
      why = "exited with code " + std::to_string(exit_code_.value_or(-1)) + " during startup";
      return false;
    }
    try {
      auto res = http_get(port_, "/healthz", {}, std::chrono::milliseconds(500));
      if (res.status == 200) return true;
      // A TLS node answers plain HTTP with 400 tls_required: it is up (the TLS tests go on over TLS).
      if (res.status == 400 && res.body.find("tls_required") != std::string::npos) return true;
      why = "GET /healthz answered " + std::to_string(res.status);
    } catch (const std::exception& e) {
      why = std::string("GET /healthz failed: ") + e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
  }
  why = "no 200 from /healthz within 10 s (last: " + why + ")";
  return false;
}

node_process::~node_process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
  // A sanitizer report in the node fails the test even when the node went on (TSan reports and
  // goes on; a SIGKILLed node's exit code says nothing): make tsan relies on this.
  const std::string out = output();
  for (const char* marker :
       {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
    if (const auto at = out.find(marker); at != std::string::npos)
      ADD_FAILURE() << "roomcast on port " << port_ << " reported " << marker << ":\n" << out.substr(at, 8000);
  }
  if (::testing::Test::HasFailure()) {
    std::cerr << "--- roomcast output (port " << port_ << ", exit "
              << (exit_code_ ? std::to_string(*exit_code_) : std::string("killed")) << ") ---\n"
              << output_tail(120) << "--- end of roomcast output ---\n";
  }
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

bool node_process::reap(bool block) {
  if (exit_code_) return true;
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  if (r == pid_) {
    exit_code_ = decode_status(status);
    return true;
  }
  return false;
}

bool node_process::running() { return pid_ > 0 && !reap(false); }

void node_process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

void node_process::terminate() { signal(SIGTERM); }

std::optional<int> node_process::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  while (!reap(false)) {
    if (clock_type::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the child's state
  }
  return exit_code_;
}

std::string node_process::output() const { return log_path_.empty() ? std::string() : read_file(log_path_); }

std::string node_process::output_tail(std::size_t lines) const { return tail_lines(output(), lines); }

}  // namespace roomcast::itest
