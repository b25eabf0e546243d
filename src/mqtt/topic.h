// Topic names and filters (MQTT spec 4.7): validation, matching and shared subscriptions.
// Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fk::mqtt {

// A topic name for PUBLISH: non-empty, no '+' or '#'.
bool valid_topic_name(std::string_view topic);

// A topic filter: non-empty; '+' fills a whole level; '#' only as the whole last level.
bool valid_topic_filter(std::string_view filter);

// Whether `filter` matches `topic` (both valid). Filters starting with a wildcard do not match
// topics starting with '$' (spec 4.7.2). The MQTT spec lets "a/#" match "a"; AWS IoT Core
// does not (`hash_matches_parent` = false).
bool topic_matches(std::string_view filter, std::string_view topic,
                   bool hash_matches_parent = true);

// "$share/<group>/<filter>" (MQTT 5 shared subscription).
struct SharedFilter {
  std::string group;
  std::string filter;
};
// std::nullopt when `filter` is not a shared subscription; a SharedFilter with an empty group
// when it starts with "$share/" but is malformed.
std::optional<SharedFilter> parse_shared_filter(std::string_view filter);

// Number of '/' in a topic.
std::size_t count_levels_separators(std::string_view topic);

}  // namespace fk::mqtt
