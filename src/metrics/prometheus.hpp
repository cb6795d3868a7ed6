#pragma once
// Prometheus text exposition helpers, shared by every component that reports metrics.
#include <cstdint>
#include <string>

namespace roomcast::metrics {

// Appends "# HELP", "# TYPE" and the sample of one unlabeled metric.
inline void append_metric(std::string& out, const char* name, const char* type, const char* help, std::uint64_t value) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
  out += name;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

}  // namespace roomcast::metrics
