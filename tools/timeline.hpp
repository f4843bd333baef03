// `longattn run --timeline t.svg`: each submission's measured time as a bar,
// its predicted time as a tick, against the budget drawn as a horizontal line.
// Past about 290 submissions a bar stands for several consecutive ones (the
// slowest of them), so bars never overlap.
#pragma once

#include <string>

#include "longattn/plan.hpp"

namespace longattn::cli {

// A standalone SVG document. `safety` > 0 also draws budget * safety (what
// the planner aims for). `title` is escaped.
std::string timeline_svg(const RunReport& report, double safety, const std::string& title);

}  // namespace longattn::cli
