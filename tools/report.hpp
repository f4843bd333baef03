// Run reports and plans as JSON (`longattn run --report r.json`,
// `longattn plan --json p.json`).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "longattn/plan.hpp"

namespace longattn::cli {

// Every submission with its dispatches (rect, mode, flops, predicted ms).
nlohmann::json plan_json(const Plan& plan);
// The report: totals, per-submission predicted vs measured, the plan as run.
nlohmann::json run_report_json(const RunReport& report);
// Writes `j` (indented) to `path` atomically (atomic_file.hpp); throws
// IoError naming the path.
void write_json(const std::string& path, const nlohmann::json& j);
// Writes text atomically; throws IoError naming the path.
void write_text(const std::string& path, const std::string& text);

}  // namespace longattn::cli
