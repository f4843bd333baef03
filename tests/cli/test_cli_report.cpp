// What `longattn run` and `plan` say about a run: the plan summary, the
// timeline, the reference check with NaN inputs, warnings, a run stopped by
// SIGTERM, and out-of-memory messages.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli_test_util.hpp"
#include "inputs.hpp"
#include "npy.hpp"
#include "reference_check.hpp"
#include "report.hpp"
#include "summary.hpp"
#include "timeline.hpp"

namespace longattn::cli {
namespace {

Dispatch dispatch(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) {
  Dispatch d;
  d.rect = {.q0 = q0, .q1 = q1, .k0 = k0, .k1 = k1};
  return d;
}

// The 1M causal plan said "44 key chunks of 73152 keys" while most of its
// dispatches were 24384 keys wide: the summary now reads the dispatches.
TEST(CliSummary, PlanSummaryDescribesTheDispatches) {
  Plan plan;
  plan.chunked = true;
  plan.chunk_keys = 73152;
  plan.query_rows = 192;
  Submission a, b;
  a.dispatches = {dispatch(0, 192, 0, 24384), dispatch(192, 384, 0, 24384)};
  b.dispatches = {dispatch(384, 576, 0, 24384), dispatch(576, 768, 0, 73152),
                  dispatch(768, 800, 0, 100)};
  plan.submissions = {a, b};
  std::ostringstream out;
  print_plan(out, plan, AttentionOptions::default_policy(), false);
  const std::string s = out.str();
  EXPECT_NE(s.find("2 submissions, 5 dispatches"), std::string::npos) << s;
  EXPECT_NE(s.find("min 32 x 100, median 192 x 24384, max 192 x 73152"), std::string::npos) << s;
  EXPECT_EQ(s.find("key chunks of"), std::string::npos) << s;

  plan.submissions = {a};
  std::ostringstream one;
  print_plan(one, plan, AttentionOptions::default_policy(), false);
  EXPECT_NE(one.str().find("1 submission, 2 dispatches"), std::string::npos) << one.str();
  EXPECT_NE(one.str().find("every dispatch: 192 query rows x 24384 keys"), std::string::npos)
      << one.str();
}

// A plan by KV head says so in the summary (the passes, each submission's
// head) and in the JSON report (plan.by_kv_head, each submission's kv_head).
TEST(CliSummary, PlanByKvHeadNamesThePassesAndTheirHeads) {
  Plan plan;
  plan.chunked = true;
  plan.by_kv_head = true;
  for (std::int64_t g = 0; g < 3; ++g) {
    Submission s;
    s.kv_head = g;
    s.dispatches = {dispatch(0, 96, 0, 4096)};
    plan.submissions.push_back(s);
  }
  std::ostringstream out;
  print_plan(out, plan, AttentionOptions::default_policy(), true);
  const std::string s = out.str();
  EXPECT_NE(s.find("one pass per KV head, 3 passes"), std::string::npos) << s;
  EXPECT_NE(s.find("submission 2 (KV head 2)"), std::string::npos) << s;

  RunReport r;
  r.plan = plan;
  const auto j = run_report_json(r);
  EXPECT_EQ(j.at("plan").at("by_kv_head"), true);
  EXPECT_EQ(j.at("plan").at("submissions").at(1).at("kv_head"), 1);
  r.plan = Plan{};
  r.plan.submissions = {Submission{}};
  EXPECT_EQ(run_report_json(r).at("plan").at("by_kv_head"), false);
  EXPECT_EQ(run_report_json(r).at("plan").at("submissions").at(0).at("kv_head"), -1);
}

RunReport report_of(std::size_t n, double budget_ms) {
  RunReport r;
  r.budget_ms = budget_ms;
  for (std::size_t i = 0; i < n; ++i) {
    SubmissionReport s;
    s.dispatches = 1;
    s.predicted_ms = 8;
    s.measured_ms = i % 97 == 5 ? 12 : 7;
    s.over_budget = budget_ms > 0 && s.measured_ms > budget_ms;
    r.budget_misses += s.over_budget ? 1 : 0;
    r.total_ms += s.measured_ms;
    r.submissions.push_back(s);
  }
  return r;
}

// The number in ` name="..."` of one SVG tag.
double attr(const std::string& tag, const std::string& name) {
  const std::string key = " " + name + "=\"";
  const auto at = tag.find(key);
  EXPECT_NE(at, std::string::npos) << name << " in " << tag;
  return at == std::string::npos ? 0 : std::stod(tag.substr(at + key.size()));
}

std::vector<std::string> tags(const std::string& svg, const std::string& start) {
  std::vector<std::string> out;
  for (auto i = svg.find(start); i != std::string::npos; i = svg.find(start, i + 1))
    out.push_back(svg.substr(i, svg.find('>', i) - i));
  return out;
}

TEST(CliTimeline, OneSubmissionWithoutBudget) {
  const std::string svg = timeline_svg(report_of(1, 0), 0.8, "t");
  EXPECT_NE(svg.find(">1 submission,"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("over budget"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("budget"), std::string::npos) << "a budget drawn where there is none";
}

// Past ~870 submissions the 1-pixel bars overlapped; labels sat on the bars.
TEST(CliTimeline, ManySubmissionsAreBinnedAndLabelsStayOffThePlot) {
  const RunReport r = report_of(5000, 10);
  const std::string svg = timeline_svg(r, 0.8, "t");
  const auto bars = tags(svg, "<rect class=\"bar\"");
  ASSERT_FALSE(bars.empty());
  EXPECT_LE(bars.size(), 400u);
  double prev_end = -1;
  for (const auto& b : bars) {
    const double x = attr(b, "x"), w = attr(b, "width");
    EXPECT_GE(w, 1.5);
    EXPECT_GT(x, prev_end) << "bars overlap: " << b;
    prev_end = x + w;
  }
  // Every bin holding a submission over budget is red.
  EXPECT_NE(svg.find("fill=\"#d62728\"><title>"), std::string::npos);
  EXPECT_NE(svg.find("5000 submissions, " + std::to_string(r.budget_misses) + " over budget"),
            std::string::npos);

  const auto plot = tags(svg, "<rect class=\"plot-area\"");
  ASSERT_EQ(plot.size(), 1u);
  const double top = attr(plot[0], "y");
  const auto labels = tags(svg, "<text class=\"legend\"");
  ASSERT_GE(labels.size(), 3u);
  for (const auto& l : labels) EXPECT_LT(attr(l, "y"), top) << l;
  EXPECT_NE(svg.find("budget 10.0 ms"), std::string::npos);
}

// A run on CPU of a small generated problem, outputs on the host.
Workload computed(const ProblemSpec& spec) {
  Workload w = generate_workload(spec);
  w.place(Device::cpu);
  AttentionOptions opt = w.options();
  attention(w.q_view, w.k_view, w.v_view, w.out_view, opt);
  return w;
}

// NaN in q propagates (README): the check compares NaN positions, so NaN
// where the reference has NaN passes and NaN anywhere else fails.
TEST(CliCheck, NaNOutputsMatchNaNReferenceRowsOnly) {
  ProblemSpec spec;
  spec.heads = 2;
  spec.kv_heads = 1;
  spec.q_len = 16;
  spec.k_len = 16;
  spec.head_dim = 8;
  spec.causal = false;
  Workload w = generate_workload(spec);
  w.q.as<float>()[3] = std::numeric_limits<float>::quiet_NaN();  // row (0, 0, 0)
  w.place(Device::cpu);
  AttentionOptions opt = w.options();
  attention(w.q_view, w.k_view, w.v_view, w.out_view, opt);
  ASSERT_TRUE(std::isnan(w.out.as<float>()[0]));
  const CheckResult c = check_against_reference(w, 8, 0);
  EXPECT_TRUE(c.pass) << c.max_out_err << " " << c.max_lse_err;

  Workload clean = computed(spec);
  ASSERT_TRUE(check_against_reference(clean, 8, 0).pass);
  clean.out.as<float>()[1] = std::numeric_limits<float>::quiet_NaN();  // row (0, 0, 0): finite ref
  EXPECT_FALSE(check_against_reference(clean, 8, 0).pass);
}

TEST(CliCheck, NaNInAQueryFilePassesTheCheck) {
  test::TempDir dir;
  std::vector<float> q(1 * 2 * 8 * 4, 0.25f), kv(1 * 1 * 8 * 4, 0.5f);
  for (std::size_t i = 0; i < kv.size(); ++i) kv[i] = 0.1f * static_cast<float>(i % 7);
  q[5] = std::numeric_limits<float>::quiet_NaN();
  write_npy(dir.file("q.npy"), DType::float32, std::vector<std::int64_t>{1, 2, 8, 4}, q.data());
  for (const char* n : {"k.npy", "v.npy"})
    write_npy(dir.file(n), DType::float32, std::vector<std::int64_t>{1, 1, 8, 4}, kv.data());
  const auto r = test::run_cli({"run", "--q", dir.file("q.npy"), "--k", dir.file("k.npy"), "--v",
                                dir.file("v.npy"), "--out", dir.file("o.npy"), "--check-rows", "16",
                                "--no-progress"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
}

TEST(CliWarnings, EachWarningIsPrintedOnceAndWrittenToTheReport) {
  std::set<std::string> said;
  std::ostringstream err;
  print_warnings(err, {"budget_ms = 1 cannot be kept", "budget_ms = 1 cannot be kept"}, said);
  print_warnings(err, {"budget_ms = 1 cannot be kept", "something else"}, said);
  EXPECT_EQ(err.str(),
            "longattn: warning: --budget-ms 1 cannot be kept\n"
            "longattn: warning: something else\n");
  RunReport r;
  r.warnings = {"w1"};
  r.plan.warnings = {"w0"};
  const auto j = run_report_json(r);
  EXPECT_EQ(j.at("warnings"), nlohmann::json::array({"w1"}));
  EXPECT_EQ(j.at("plan").at("warnings"), nlohmann::json::array({"w0"}));
}

TEST(CliMemory, HostAllocationFailuresSayTheSizeAndWhatFor) {
  try {
    HostArray a(DType::float32, {1, 32, std::int64_t{1} << 40, 128}, "generated q");
    FAIL() << "allocated 2^54 bytes";
  } catch (const OutOfMemory& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("generated q [1, 32, 1099511627776, 128] float32"), std::string::npos) << m;
    EXPECT_NE(m.find("TiB"), std::string::npos) << m;
  }
}

extern "C" void count_signal(int) {}

std::string measured_ms(double ms) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "measured %.1f ms", ms);
  return buf;
}

// SIGTERM (what `kill` and `timeout` send) stops the run at the next
// submission boundary like Ctrl-C: the finished rows are printed, the
// report is written with the partial report's totals, and the exit code is
// 143. Before, SIGTERM was not handled: no report, no clean exit.
TEST(CliSignals, SigtermCancelsCleanlyAndWritesTheReport) {
  // A handler of our own (not SIG_IGN: the tool leaves ignored signals
  // alone), so that the killer can see when the tool's replaces it.
  struct sigaction mine {
  }, old{};
  mine.sa_handler = count_signal;
  sigemptyset(&mine.sa_mask);
  ASSERT_EQ(sigaction(SIGTERM, &mine, &old), 0);

  test::TempDir dir;
  std::atomic<bool> done{false};
  // One SIGTERM, once the tool's handler has replaced ours: a second one
  // would end the process at once (test_cli_process.cpp).
  std::thread killer([&] {
    while (!done.load()) {
      struct sigaction now {};
      sigaction(SIGTERM, nullptr, &now);
      if (now.sa_handler != count_signal) {
        ::kill(::getpid(), SIGTERM);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  const auto r =
      test::run_cli({"run", "--q-len", "2048", "--k-len", "2048", "--head-dim", "64", "--budget-ms",
                     "5", "--no-progress", "--report", dir.file("r.json")});
  done.store(true);
  killer.join();
  sigaction(SIGTERM, &old, nullptr);

  EXPECT_EQ(r.code, 143) << r.out << r.err;
  EXPECT_NE(r.out.find("cancelled after"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("final query rows:"), std::string::npos) << r.out;
  std::ifstream f(dir.file("r.json"));
  ASSERT_TRUE(f) << "no report written";
  const auto j = nlohmann::json::parse(f);
  EXPECT_FALSE(j.at("completed").get<bool>());
  // The printed totals are the report's own.
  EXPECT_NE(r.out.find(measured_ms(j.at("total_ms").get<double>())), std::string::npos) << r.out;
}

}  // namespace
}  // namespace longattn::cli
