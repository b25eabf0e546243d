#include "mqtt/topic.h"

#include <algorithm>

namespace fk::mqtt {

bool valid_topic_name(std::string_view topic) {
  return !topic.empty() && topic.find_first_of("+#") == std::string_view::npos;
}

bool valid_topic_filter(std::string_view filter) {
  if (filter.empty()) return false;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = filter.find('/', start);
    std::string_view level =
        filter.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (level.find('#') != std::string_view::npos) {
      if (level != "#" || end != std::string_view::npos) return false;
    }
    if (level.find('+') != std::string_view::npos && level != "+") return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

bool topic_matches(std::string_view filter, std::string_view topic, bool hash_matches_parent) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
      (filter[0] == '+' || filter[0] == '#'))
    return false;
  std::size_t f = 0, t = 0;
  for (;;) {
    std::size_t fe = filter.find('/', f);
    std::string_view flevel =
        filter.substr(f, fe == std::string_view::npos ? std::string_view::npos : fe - f);
    if (flevel == "#") return true;  // matches the parent level and everything below
    if (t > topic.size()) return false;
    std::size_t te = topic.find('/', t);
    std::string_view tlevel =
        topic.substr(t, te == std::string_view::npos ? std::string_view::npos : te - t);
    if (flevel != "+" && flevel != tlevel) return false;
    const bool fdone = fe == std::string_view::npos;
    const bool tdone = te == std::string_view::npos;
    if (fdone && tdone) return true;
    if (tdone) {
      // "a/#" matches "a" in MQTT (not in AWS IoT): the rest of the filter must be "#".
      return hash_matches_parent && filter.substr(fe + 1) == "#";
    }
    if (fdone) return false;
    f = fe + 1;
    t = te + 1;
  }
}

std::optional<SharedFilter> parse_shared_filter(std::string_view filter) {
  constexpr std::string_view kPrefix = "$share/";
  if (filter.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string_view rest = filter.substr(kPrefix.size());
  std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return SharedFilter{};
  std::string_view group = rest.substr(0, slash);
  if (group.find_first_of("+#") != std::string_view::npos) return SharedFilter{};
  std::string_view inner = rest.substr(slash + 1);
  if (!valid_topic_filter(inner)) return SharedFilter{};
  return SharedFilter{std::string(group), std::string(inner)};
}

std::size_t count_levels_separators(std::string_view topic) {
  return static_cast<std::size_t>(std::count(topic.begin(), topic.end(), '/'));
}

}  // namespace fk::mqtt
