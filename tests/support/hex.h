// Hex helpers for the conformance tables ("10 0c 00 04 ..." <-> bytes). Spaces are ignored.
#pragma once

#include <string>
#include <string_view>

namespace fk::test {

inline std::string unhex(std::string_view hex) {
  std::string digits, out;
  for (char c : hex) {
    if (c != ' ') digits.push_back(c);
  }
  for (std::size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  return out;
}

inline std::string hex(std::string_view bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

}  // namespace fk::test
