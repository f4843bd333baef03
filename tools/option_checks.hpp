// Number checks for CLI11 options. CLI11's own range validators print their
// bounds with %f (the largest double is a 309-digit number), and its integer
// conversion saturates without a word (99999999999999999999 becomes
// INT64_MAX). These parse the text themselves, reject what is out of range
// with a short message naming the allowed range, and rewrite the accepted
// value in plain decimal, so CLI11 converts exactly the number that was
// checked (it would read "010" as octal). Attach them with Option::transform:
// Option::check marks a validator non-modifying and drops the rewrite.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace longattn::cli {

inline constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();

// An integer in [lo, hi]. `note` follows the range in the message
// ("0 = all hardware threads").
CLI::Validator integer_in(std::int64_t lo, std::int64_t hi, const char* note = "");
// Any std::uint64_t (seeds).
CLI::Validator any_uint64();

// One of the names in `choices` (any case), rewritten as its number for
// CLI11 to convert into an enum. `what` names the kind in the message
// ("cuda2 is not a device: expected auto, cpu or cuda").
CLI::Validator choice_of(std::vector<std::pair<std::string, int>> choices, const std::string& what);

// A finite number x with lo <= x <= hi, or lo < x when `lo_open`.
// hi = infinity means no upper bound beyond being finite.
CLI::Validator number_in(double lo, double hi, bool lo_open = false);

}  // namespace longattn::cli
