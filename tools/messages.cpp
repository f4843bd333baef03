#include "messages.hpp"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>

namespace longattn::cli {
namespace {

struct Field {
  std::string_view name;  // as the library prints it, before " = "
  std::string_view flag;
  double per_unit = 1;  // library value / flag value (bytes per MiB)
  bool shape = false;
};

// Bare names ("budget_ms") cover messages that leave out "policy.".
constexpr Field kFields[] = {
    {"policy.budget_ms", "--budget-ms"},
    {"budget_ms", "--budget-ms"},
    {"policy.safety", "--safety"},
    {"policy.fixed_chunk_keys", "--chunk-keys"},
    {"policy.fixed_query_rows", "--query-rows"},
    {"policy.chunk_threshold_keys", "--chunk-threshold"},
    {"policy.workspace_limit_bytes", "--workspace-mb", 1024.0 * 1024.0},
    {"workspace_limit_bytes", "--workspace-mb", 1024.0 * 1024.0},
    {"threads", "--threads"},
    {"backend", "--device"},
    {"q.shape[0]", "--batch", 1, true},
    {"q.shape[1]", "--heads", 1, true},
    {"q.shape[2]", "--q-len", 1, true},
    {"q.shape[3]", "--head-dim", 1, true},
    {"k.shape[1]", "--kv-heads", 1, true},
    {"k.shape[2]", "--k-len", 1, true},
    {"v.shape[3]", "--v-head-dim", 1, true},
};

bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.';
}

}  // namespace

std::string without_prefix(std::string_view m) {
  if (m.starts_with("[longattn")) {
    const auto close = m.find("] ");
    if (close != std::string_view::npos) m.remove_prefix(close + 2);
  }
  return std::string(m);
}

std::string in_flag_terms(std::string_view message, FieldNames which) {
  const std::string m = without_prefix(message);
  std::string out;
  std::size_t i = 0;
  while (i < m.size()) {
    const Field* hit = nullptr;
    // A field starts a word and is followed by " = <value>"; anything else
    // (prose that happens to say "threads") stays as it is.
    if (i == 0 || !ident_char(m[i - 1]))
      for (const Field& f : kFields)
        if ((!f.shape || which == FieldNames::policy_and_shape) &&
            std::string_view(m).substr(i).starts_with(f.name) &&
            std::string_view(m).substr(i + f.name.size()).starts_with(" = ")) {
          hit = &f;
          break;
        }
    if (!hit) {
      out += m[i++];
      continue;
    }
    i += hit->name.size() + 3;
    out += hit->flag;
    out += ' ';
    if (hit->per_unit != 1) {
      char* end = nullptr;
      const double v = std::strtod(m.c_str() + i, &end);
      if (end != m.c_str() + i) {
        out += fmt::format("{:g}", v / hit->per_unit);
        i = static_cast<std::size_t>(end - m.c_str());
      }
    }
  }
  return out;
}

}  // namespace longattn::cli
