#pragma once
// Shell and scratch helpers for the integration tests: running the scripts/ launchers, temp
// directories, free ports, unique names.

#include <cstdint>
#include <string>

namespace roomcast::itest {

struct command_result {
  int status = -1;     // exit code
  std::string output;  // stdout + stderr
  explicit operator bool() const { return status == 0; }
};

// Runs `command` through /bin/sh, capturing stdout and stderr.
command_result run_command(const std::string& command);

std::string shell_quote(const std::string& s);

// The last line of a script's output, without trailing blanks (the scripts print their answer there).
std::string last_line(std::string s);

std::string env_or(const char* name, const std::string& fallback);

// ROOMCAST_TEST_SCRIPTS, or the source tree's scripts/.
std::string scripts_dir();

// `scripts_dir()/<script> <args>` (script name quoted, args as given).
command_result run_script(const std::string& script, const std::string& args);

std::string random_token(std::size_t len = 10);

// Unique per test: exchange and queue names are <prefix>.rooms, <prefix>.node.<id>...
std::string unique_prefix();

// A fresh directory under ROOMCAST_TEST_TMP (or /tmp).
std::string make_temp_dir(const std::string& what);

// A TCP port on 127.0.0.1 nothing listens on (scripts/free-port.sh; `pair`: +10000 and +20000 are
// free too, as RabbitMQ's distribution and CLI ports need).
std::uint16_t script_free_port(bool pair = false);

}  // namespace roomcast::itest
