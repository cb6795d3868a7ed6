// The route template (config) and the request target (every client): split_path, query_param and
// match. Input "template\ntarget", or just a target against the seed's route.
#include "protocol/route_template.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace roomcast::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view tmpl_text = "/demo/websocket/{room}/{role}/{user}/{token}/{platform}";
  std::string_view target = in;
  if (const auto nl = in.find('\n'); nl != std::string_view::npos) {
    tmpl_text = in.substr(0, nl);
    target = in.substr(nl + 1);
  }
  std::string error;
  const auto tmpl = route_template::parse(tmpl_text, error);
  if (!tmpl && error.empty()) std::abort();  // a refusal always says why
  const std::string_view query = query_of(target);
  if (!query.empty() && query.data() + query.size() != target.data() + target.size()) std::abort();
  for (const char* name : {"since", "epoch", "rooms", "token"}) (void)query_param(target, name);
  const auto segments = split_path(target);
  if (!segments || !tmpl) return 0;
  route_params p;
  if (tmpl->match(*segments, p) == route_template::match_result::ok && (p.room.empty() || p.user.empty()))
    std::abort();  // ok promises a room and a user
  return 0;
}
