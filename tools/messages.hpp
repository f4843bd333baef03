// Library error messages as the command line shows them. The library names
// its own fields ("[longattn::plan_attention] q.shape[3] = 300 ..."); the
// user typed flags, so the tool says "--head-dim 300 ..." instead, and drops
// the bracketed prefix because the tool prints "longattn: " in front already.
#pragma once

#include <string>
#include <string_view>

namespace longattn::cli {

// "[longattn] x" and "[longattn::attention] x" become "x".
std::string without_prefix(std::string_view message);

enum class FieldNames : unsigned char {
  policy,            // policy fields only: the shapes came from .npy files
  policy_and_shape,  // the shapes came from --q-len, --heads, ... as well
};

// Replaces the library's field names with the flags that set them, e.g.
// "policy.budget_ms = 0.001" -> "--budget-ms 0.001", "q.shape[3] = 300" ->
// "--head-dim 300" (policy_and_shape only), "workspace_limit_bytes =
// 1048576" -> "--workspace-mb 1". Strips the prefix too.
std::string in_flag_terms(std::string_view message, FieldNames which);

}  // namespace longattn::cli
