// Every CPU kernel path this machine can run, forced one at a time through
// LONGATTN_CPU_KERNEL, against the reference (single pass and chunked), and
// the run report naming the path that ran. A path the CPU lacks is skipped
// with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;

// Restores LONGATTN_CPU_KERNEL when a test ends, however it ends.
class ForcedKernel {
 public:
  explicit ForcedKernel(const char* path) {
    if (const char* old = std::getenv("LONGATTN_CPU_KERNEL")) old_ = old;
    setenv("LONGATTN_CPU_KERNEL", path, 1);
  }
  ~ForcedKernel() {
    if (old_.empty())
      unsetenv("LONGATTN_CPU_KERNEL");
    else
      setenv("LONGATTN_CPU_KERNEL", old_.c_str(), 1);
  }
  ForcedKernel(const ForcedKernel&) = delete;
  ForcedKernel& operator=(const ForcedKernel&) = delete;

 private:
  std::string old_;
};

// The distinct kernels a report names, over all its submissions.
std::vector<std::string> kernels_of(const longattn::RunReport& r) {
  std::vector<std::string> all;
  for (const auto& s : r.submissions)
    for (const auto& k : s.kernels)
      if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(k);
  return all;
}

// Whether the CPU backend accepts the forced path on this machine.
bool path_available(const char* path) {
  ForcedKernel force(path);
  Case c;
  c.Lq = 1, c.Lk = 1, c.D = 8;
  lt::CaseData d(c);
  try {
    lt::run(d);
    return true;
  } catch (const longattn::Unsupported&) {
    return false;
  }
}

class CpuKernel : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Paths, CpuKernel,
                         ::testing::Values("generic", "avx2", "avx512", "avx512bf16"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param);
                         });

// Decode with fewer (batch, KV head) items than threads splits each
// item's keys across the threads (split-K) and merges the parts: single
// pass, with sinks and a mask, and chunked (the parts then merge into a
// loaded running state).
TEST_P(CpuKernel, DecodeSplitsKeysAcrossThreads) {
  const char* path = GetParam();
  if (!path_available(path))
    GTEST_SKIP() << "the " << path << " kernel does not run on this CPU (or was not built)";
  ForcedKernel force(path);
  std::uint64_t seed = 7100;
  for (std::int64_t Lq : {1, 3})
    for (bool chunked : {false, true}) {
      Case c;
      c.B = 1, c.Hq = 8, c.Hkv = 1, c.Lq = Lq, c.Lk = lt::small_tests() ? 2500 : 9000, c.D = 64;
      c.dtype = DType::bfloat16, c.causal = true, c.sinks = true;
      c.mask = chunked ? lt::MaskKind::none : lt::MaskKind::boolean;
      c.seed = ++seed;
      lt::CaseData d(c);
      longattn::AttentionOptions o;
      longattn::RunReport rep;
      o.report = &rep;
      o.threads = 2;  // at least two, so that one item is split
      if (chunked) o.policy = lt::chunked_policy(3000);
      lt::run(d, o);
      const lt::Comparison cmp = lt::compare(d);
      EXPECT_TRUE(cmp.ok) << path << ": " << cmp.message;
    }
}

TEST_P(CpuKernel, MatchesTheReferenceAndIsReported) {
  const char* path = GetParam();
  if (!path_available(path))
    GTEST_SKIP() << "the " << path << " kernel does not run on this CPU (or was not built)";
  ForcedKernel force(path);
  std::uint64_t seed = 7000;
  for (DType t : lt::all_dtypes())
    for (bool chunked : {false, true})
      for (bool causal : {false, true}) {
        Case c;
        c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 53, c.Lk = 150, c.D = 72, c.Dv = 40;
        c.dtype = t, c.causal = causal, c.sinks = chunked;
        c.mask = causal ? lt::MaskKind::none : lt::MaskKind::additive;
        c.seed = ++seed;
        longattn::RunReport report;
        longattn::AttentionOptions base;
        base.policy = chunked ? lt::chunked_policy(40) : lt::single_pass_policy();
        base.report = &report;
        lt::check_case(c, base);
        // The BF16 build's products serve bfloat16 inputs only; the rest
        // run its AVX-512 sibling.
        const std::string want = std::string(path) == "avx512bf16" && t != DType::bfloat16
                                     ? "cpu.avx512"
                                     : std::string("cpu.") + path;
        EXPECT_EQ(kernels_of(report), std::vector<std::string>{want}) << c.name();
      }
}

TEST(CpuKernelChoice, UnknownPathIsRefusedByName) {
  ForcedKernel force("avx9000");
  Case c;
  lt::CaseData d(c);
  try {
    lt::run(d);
    FAIL() << "LONGATTN_CPU_KERNEL = avx9000 was accepted";
  } catch (const longattn::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("LONGATTN_CPU_KERNEL = \"avx9000\""), std::string::npos)
        << e.what();
  }
}

}  // namespace
