#include "option_checks.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <string>

namespace longattn::cli {
namespace {

constexpr std::size_t kEchoChars = 24;

// What the user typed, cut short: a 300-digit argument is not worth
// repeating in full.
std::string echo(const std::string& s) {
  return s.size() <= kEchoChars ? s : s.substr(0, kEchoChars) + "...";
}

std::string int_range(std::int64_t lo, std::int64_t hi) {
  if (hi == kMaxInt64) return lo == 0 ? "an integer >= 0" : fmt::format("an integer >= {}", lo);
  return fmt::format("an integer in {}..{}", lo, hi);
}

// Parses all of `s` as a base-10 integer of type T; false if it is not one
// or does not fit.
template <class T>
bool parse_whole(const std::string& s, T& v, bool& out_of_range) {
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (first != last && *first == '+') ++first;  // from_chars takes no '+'
  const auto [end, ec] = std::from_chars(first, last, v);
  out_of_range = ec == std::errc::result_out_of_range && end == last;
  return ec == std::errc() && end == last && first != last;
}

// For --help, after the type: "INT:0..1024". Bounds that are merely the
// type's own limit are left out: the type says as much.
std::string help_range(std::int64_t lo, std::int64_t hi) {
  return hi == kMaxInt64 ? "" : fmt::format("{}..{}", lo, hi);
}

}  // namespace

CLI::Validator integer_in(std::int64_t lo, std::int64_t hi, const char* note) {
  const std::string want = int_range(lo, hi) + (*note ? std::string(" (") + note + ")" : "");
  return CLI::Validator(
      [lo, hi, want](std::string& s) -> std::string {
        std::int64_t v = 0;
        bool too_big = false;
        if (!parse_whole(s, v, too_big))
          return too_big ? echo(s) + " is out of range: expected " + want
                         : echo(s) + " is not an integer: expected " + want;
        if (v < lo || v > hi) return echo(s) + " is out of range: expected " + want;
        s = std::to_string(v);
        return "";
      },
      help_range(lo, hi));
}

CLI::Validator any_uint64() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        std::uint64_t v = 0;
        bool too_big = false;
        if (!parse_whole(s, v, too_big))
          return echo(s) + (too_big ? " is out of range" : " is not an integer") +
                 ": expected an integer in 0..18446744073709551615";
        s = std::to_string(v);
        return "";
      },
      "");
}

CLI::Validator choice_of(std::vector<std::pair<std::string, int>> choices,
                         const std::string& what) {
  std::string want, names;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    want += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i].first;
    names += (i == 0 ? "" : ",") + choices[i].first;
  }
  return CLI::Validator(
      [choices, what, want](std::string& s) -> std::string {
        std::string lower = s;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (const auto& [name, value] : choices)
          if (lower == name) {
            s = std::to_string(value);
            return "";
          }
        return echo(s) + " is not " + what + ": expected " + want;
      },
      "{" + names + "}");
}

CLI::Validator number_in(double lo, double hi, bool lo_open) {
  std::string want;
  if (std::isinf(hi) && std::isinf(lo))
    want = "a finite number";
  else if (std::isinf(hi))
    want = fmt::format("a finite number {} {:g}", lo_open ? ">" : ">=", lo);
  else if (std::isinf(lo))
    want = fmt::format("a number <= {:g}", hi);
  else
    want = fmt::format("a number in {}{:g}, {:g}]", lo_open ? "(" : "[", lo, hi);
  return CLI::Validator(
      [lo, hi, lo_open, want](std::string& s) -> std::string {
        double v = 0;
        const char* first = s.data();
        const char* last = s.data() + s.size();
        if (first != last && *first == '+') ++first;
        const auto [end, ec] = std::from_chars(first, last, v);
        if (end != last || first == last ||
            (ec != std::errc() && ec != std::errc::result_out_of_range))
          return echo(s) + " is not a number: expected " + want;
        if (ec == std::errc::result_out_of_range || !std::isfinite(v) || v > hi ||
            (lo_open ? v <= lo : v < lo))
          return echo(s) + " is out of range: expected " + want;
        // Exactly as typed (minus '+'): CLI11's conversion reads decimal
        // floating point the same way, and reprinting would round.
        s.assign(first, last);
        return "";
      },
      lo_open || std::isinf(lo) || std::isinf(hi) ? "" : fmt::format("{:g}..{:g}", lo, hi));
}

}  // namespace longattn::cli
