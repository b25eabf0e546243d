// Small string helpers used across parts (std only).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fk {

// Lowercase hex of bytes.
std::string to_hex(std::span<const std::uint8_t> bytes);
std::string to_hex(std::string_view bytes);

// Compares two secrets in time that depends only on their lengths, never on their contents.
bool constant_time_equals(std::string_view a, std::string_view b);

// "localhost", 127.0.0.0/8, ::1 and IPv4-mapped 127.x: an address of this machine's loopback.
bool is_loopback_address(std::string_view address);

// Counts characters that are not JSON whitespace (AWS's policy size rule).
std::size_t count_non_whitespace(std::string_view s);

bool starts_with(std::string_view s, std::string_view prefix);

// ASCII case-insensitive equality (IAM action and key names).
bool iequals(std::string_view a, std::string_view b);

// Without leading and trailing spaces, tabs, CR and LF.
std::string trim(std::string_view s);

// The key = value pairs of one [section] of an INI text (the AWS shared credentials and config
// files); keys and values trimmed, '#' and ';' lines skipped. Empty when the section is absent.
std::map<std::string, std::string> ini_section(std::string_view text, std::string_view section);

// The [section] names of an INI text, in order.
std::vector<std::string> ini_section_names(std::string_view text);

// RFC 3339 / ISO 8601 UTC, e.g. 2049-12-31T23:59:59Z; or another strftime `format` in UTC.
std::string format_utc(std::int64_t epoch_seconds, const char* format = "%Y-%m-%dT%H:%M:%SZ");

}  // namespace fk
