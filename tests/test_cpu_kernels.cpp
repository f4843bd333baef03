// Every CPU kernel path this machine can run, forced one at a time through
// LONGATTN_CPU_KERNEL, against the reference (single pass and chunked), and
// the run report naming the path that ran. A path the CPU lacks is skipped
// with the reason the backend gives (for AMX: the CPU, the OS or Linux's
// permission).
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

// Why the CPU backend refuses the forced path on this machine (its
// Unsupported message), or empty if it runs it.
std::string why_unavailable(const char* path) {
  ForcedKernel force(path);
  Case c;
  c.Lq = 1, c.Lk = 1, c.D = 8;
  lt::CaseData d(c);
  try {
    lt::run(d);
    return {};
  } catch (const longattn::Unsupported& e) {
    return e.what();
  }
}

#define SKIP_IF_UNAVAILABLE(path)                                  \
  if (const std::string why = why_unavailable(path); !why.empty()) \
  GTEST_SKIP() << "the " << (path) << " kernel does not run here: " << why

// The kernel name a report gives for `path` on inputs of dtype t: the BF16
// and AMX builds' products serve bfloat16 inputs only, and the rest run on
// their AVX-512 sibling.
std::string kernel_for(const std::string& path, DType t) {
  if ((path == "avx512bf16" || path == "amx") && t != DType::bfloat16) return "cpu.avx512";
  return "cpu." + path;
}

class CpuKernel : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Paths, CpuKernel,
                         ::testing::Values("generic", "avx2", "avx512", "avx512bf16", "amx"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param);
                         });

// Decode with fewer (batch, KV head) items than threads splits each
// item's keys across the threads (split-K) and merges the parts: single
// pass, with sinks and a mask, and chunked (the parts then merge into a
// loaded running state).
TEST_P(CpuKernel, DecodeSplitsKeysAcrossThreads) {
  const char* path = GetParam();
  SKIP_IF_UNAVAILABLE(path);
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
  SKIP_IF_UNAVAILABLE(path);
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
        EXPECT_EQ(kernels_of(report), std::vector<std::string>{kernel_for(path, t)}) << c.name();
      }
}

// Scales of either sign and zero (validation admits any finite scale): the
// bfloat16 builds apply a positive scale as the softmax loads the scores,
// which only a positive scale allows (it keeps the mask's -inf where it is).
TEST_P(CpuKernel, NegativeAndZeroScales) {
  const char* path = GetParam();
  SKIP_IF_UNAVAILABLE(path);
  ForcedKernel force(path);
  std::uint64_t seed = 7200;
  for (DType t : {DType::bfloat16, DType::float32})
    for (double scale : {-0.4, 0.0, 0.3})
      for (lt::MaskKind mask : {lt::MaskKind::none, lt::MaskKind::boolean}) {
        Case c;
        c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = 40, c.Lk = 150, c.D = 64;
        c.dtype = t, c.mask = mask, c.causal = mask == lt::MaskKind::none, c.scale = scale;
        c.seed = ++seed;
        longattn::AttentionOptions base;
        base.policy = lt::single_pass_policy();
        lt::check_case(c, base);
      }
}

// The shapes that break tilings, on every path, single pass and chunked
// (key chunks that end inside a key tile): lengths that are no multiple of
// 16, 32 or 64; head dims that are no multiple of 32 (the AMX build pads Q
// and K to 16 pairs = 32 values, V to 16 columns); GQA groups that leave
// padding rows (AMX blocks rows by 32); every mask kind, causal in both
// alignments, windows; strided and misaligned layouts. bfloat16 (the dtype
// the BF16 and AMX builds multiply) and float16.
TEST_P(CpuKernel, ShapesThatBreakTiles) {
  const char* path = GetParam();
  SKIP_IF_UNAVAILABLE(path);
  ForcedKernel force(path);
  struct Shape {
    std::int64_t B, Hq, Hkv, Lq, Lk, D, Dv;
    lt::MaskKind mask;
    bool causal, top_left;
    std::int64_t left, right;  // window (-1: unbounded)
    lt::Layout layout;
    bool misaligned;
  };
  using lt::Layout;
  using lt::MaskKind;
  const std::vector<Shape> shapes{
      // group 3, D 40 (20 pairs: one AMX tile of 16 and a padded one)
      {1, 6, 2, 37, 97, 40, 0, MaskKind::boolean, false, false, -1, -1, Layout::bhld, false},
      // group 8 (AMX: 24 query runs x 8 heads = 192 rows, 6 blocks), D 24, Dv 48
      {1, 8, 1, 33, 130, 24, 48, MaskKind::none, true, true, -1, -1, Layout::blhd, false},
      // D 256 (8 tiles of K), group 4, bottom-right causal, 17 rows x 4 heads = 68 rows
      {2, 4, 1, 17, 300, 256, 0, MaskKind::additive, true, false, -1, -1, Layout::bhld, true},
      // MHA, Dv 80 (five 16-column panels: an odd one), window, cache slice
      {1, 3, 3, 65, 129, 96, 80, MaskKind::none, false, false, 20, 3, Layout::cache_slice, false},
      // D 8 (4 pairs), group 5, a window on top of bottom-right causal
      {1, 5, 1, 50, 70, 8, 0, MaskKind::boolean, true, false, 9, -1, Layout::cache_slice_blhd,
       false},
      // D 130 (65 pairs: an odd last pair), Lq > Lk bottom-right: 30 rows see no key
      {1, 2, 1, 70, 40, 130, 0, MaskKind::none, true, false, -1, -1, Layout::bhld, false},
  };
  std::uint64_t seed = 7300;
  for (DType t : {DType::bfloat16, DType::float16})
    for (const Shape& sh : shapes)
      for (bool chunked : {false, true}) {
        Case c;
        c.B = sh.B, c.Hq = sh.Hq, c.Hkv = sh.Hkv, c.Lq = sh.Lq, c.Lk = sh.Lk, c.D = sh.D;
        c.Dv = sh.Dv, c.dtype = t, c.mask = sh.mask, c.causal = sh.causal;
        c.causal_top_left = sh.top_left, c.window_left = sh.left, c.window_right = sh.right;
        c.layout = sh.layout, c.misaligned = sh.misaligned, c.sinks = chunked;
        c.seed = ++seed;
        longattn::RunReport report;
        longattn::AttentionOptions base;
        base.policy = chunked ? lt::chunked_policy(45, 24) : lt::single_pass_policy();
        base.report = &report;
        base.threads = 2;
        lt::CaseData d = lt::check_case(c, base);
        EXPECT_EQ(kernels_of(report), std::vector<std::string>{kernel_for(path, t)}) << c.name();
        if (sh.Lq > sh.Lk && sh.causal && !sh.top_left)
          lt::expect_empty_rows(d, lt::first_rows(sh.Lq - sh.Lk));
      }
}

// A dispatch with few items a thread ends with smaller items (the earliest
// queries, as runs of one row block): on 8 threads, GQA groups that divide
// the block's rows and one that does not (5), MHA, two batches; single pass
// (the body and the tail split the rectangle's rows) and chunked (each row
// accumulated once into its running state: a row in both halves, or in
// neither, breaks the result).
TEST_P(CpuKernel, FewItemsAThreadEndWithSmallItems) {
  const char* path = GetParam();
  SKIP_IF_UNAVAILABLE(path);
  ForcedKernel force(path);
  struct Shape {
    std::int64_t B, Hq, Hkv, Lq, Lk;
    bool causal;
  };
  // 30, 18 and 36 items of 192 rows (48 x 4, 192 x 1, 38 x 5 queries x
  // heads), fewer than 16 a thread; the last shape's items see one key
  // tile each, and its whole rectangle runs as small items.
  const std::vector<Shape> shapes{{1, 8, 2, 700, 700, true},
                                  {1, 3, 3, 1000, 500, false},
                                  {2, 10, 2, 333, 400, true},
                                  {1, 4, 1, 200, 120, false}};
  std::uint64_t seed = 7500;
  for (DType t : lt::all_dtypes())
    for (const Shape& sh : shapes)
      for (bool chunked : {false, true}) {
        Case c;
        c.B = sh.B, c.Hq = sh.Hq, c.Hkv = sh.Hkv, c.Lq = sh.Lq, c.Lk = sh.Lk, c.D = 64;
        c.dtype = t, c.causal = sh.causal, c.sinks = chunked;
        c.mask = sh.causal ? lt::MaskKind::none : lt::MaskKind::additive;
        c.seed = ++seed;
        longattn::AttentionOptions base;
        base.policy = chunked ? lt::chunked_policy(200) : lt::single_pass_policy();
        base.threads = 8;
        lt::check_case(c, base);
      }
}

// Rows that see no key inside an item whose other rows do (a boolean mask
// hiding whole rows, and key tiles hidden from every row of a block): O = 0
// and LSE = -inf for the empty rows, the rest against the reference.
TEST_P(CpuKernel, FullyMaskedRowsAndBlocks) {
  const char* path = GetParam();
  SKIP_IF_UNAVAILABLE(path);
  ForcedKernel force(path);
  std::uint64_t seed = 7400;
  for (bool chunked : {false, true}) {
    Case c;
    c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = 40, c.Lk = 150, c.D = 64;
    c.dtype = DType::bfloat16, c.mask = lt::MaskKind::boolean, c.seed = ++seed;
    lt::CaseData d(c);
    // Query rows 0..9 of every head see nothing; rows 10..35 see only keys
    // 128..149, so the first two key tiles are hidden from every row of the
    // first block of 32 (head 0, queries 0..31) but not from the item.
    for (std::int64_t h = 0; h < c.Hq; ++h)
      for (std::int64_t i = 0; i < 36; ++i)
        for (std::int64_t j = 0; j < c.Lk; ++j) d.set_mask(0, h, i, j, i >= 10 && j >= 128);
    longattn::AttentionOptions base;
    base.policy = chunked ? lt::chunked_policy(64) : lt::single_pass_policy();
    lt::run(d, base);
    const lt::Comparison cmp = lt::compare(d);
    EXPECT_TRUE(cmp.ok) << path << ": " << cmp.message;
    lt::expect_empty_rows(d, lt::first_rows(10));
  }
}

// Forcing AMX where it cannot run is a typed error that names the path and
// the reason (never a crash); automatic choice then takes another path.
TEST(CpuKernelChoice, AmxRefusalSaysWhy) {
  const std::string why = why_unavailable("amx");
  if (why.empty()) GTEST_SKIP() << "this machine runs the AMX kernel";
  EXPECT_NE(why.find("LONGATTN_CPU_KERNEL = amx"), std::string::npos) << why;
  EXPECT_GT(why.size(), std::string("LONGATTN_CPU_KERNEL = amx").size() + 40) << why;
  Case c;
  c.dtype = DType::bfloat16, c.Lq = 64, c.Lk = 64, c.Hq = 2;
  longattn::RunReport report;
  longattn::AttentionOptions base;
  base.report = &report;
  lt::check_case(c, base);
  const auto kernels = kernels_of(report);
  ASSERT_EQ(kernels.size(), 1u);
  EXPECT_NE(kernels[0], "cpu.amx");
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
