// MQTT topics and filters as NATS subjects (and JetStream key-value keys).
//
// Each topic level becomes one subject token: a level made only of [A-Za-z0-9_-] (and not
// empty) is kept as it is; any other level (empty, or holding '.', '*', '>', '$', spaces,
// '=' or any other byte) is written as '=' followed by its bytes in lower-case hex, so every
// level NATS cannot carry survives the round trip and two different topics never share a
// subject. Filters map '+' to '*' and '#' to '>'. A filter is mapped to a *superset* of what it
// matches in MQTT (the receiving broker matches exactly): "a/#" also needs "a" itself
// (MQTT lets '#' match the parent level), and leading wildcards reach '$' topics in NATS.
// Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fk::cluster {

// One MQTT level as one subject token.
std::string encode_level(std::string_view level);

// "a/b c/" -> "a.=622063." + ... ; a topic name (no wildcards).
std::string topic_to_subject(std::string_view topic);

// The topic a subject (made by topic_to_subject) came from; nullopt when it is not one.
std::optional<std::string> subject_to_topic(std::string_view subject);

// The subjects to subscribe to for a filter (one, or two for a trailing '#').
std::vector<std::string> filter_to_subjects(std::string_view filter);

// A single key-value key for any string (a client id, a topic): its bytes in one token.
std::string key_for(std::string_view text);

}  // namespace fk::cluster
