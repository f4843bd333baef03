// The .npy path end to end: random q/k/v (and mask, sinks) written as .npy,
// `longattn run` on them (in-process and through the binary), out.npy and
// lse.npy read back and compared with a float64 attention computed here.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "cli_test_util.hpp"
#include "half.hpp"
#include "npy.hpp"

namespace longattn::cli {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Case {
  std::int64_t B = 1, Hq = 4, Hkv = 2, Lq = 37, Lk = 100, D = 16, Dv = 16;
  DType dtype = DType::float32;
  bool causal = true;
  int mask = 0;  // 0 none, 1 bool [Lq, Lk], 2 additive [1, 1, Lq, Lk]
  bool sinks = false;
};

// Values as they are stored (rounded to the dtype), kept in double for the
// reference, plus the file bytes.
struct Tensor {
  std::vector<std::int64_t> shape;
  std::vector<double> val;
  HostArray file;
};

Tensor random_tensor(std::mt19937& rng, DType t, std::vector<std::int64_t> shape, double lo,
                     double hi) {
  Tensor x{shape, {}, HostArray(t, shape)};
  std::uniform_real_distribution<double> u(lo, hi);
  x.val.resize(static_cast<std::size_t>(x.file.numel()));
  for (std::size_t i = 0; i < x.val.size(); ++i) {
    const float f = static_cast<float>(u(rng));
    if (t == DType::float32) {
      x.file.as<float>()[i] = f;
      x.val[i] = f;
    } else if (t == DType::float16) {
      x.file.as<std::uint16_t>()[i] = float_to_f16(f);
      x.val[i] = f16_to_float(float_to_f16(f));
    } else {
      x.file.as<std::uint16_t>()[i] = float_to_bf16(f);
      x.val[i] = bf16_to_float(float_to_bf16(f));
    }
  }
  return x;
}

double read_elem(const HostArray& a, std::size_t i) {
  if (a.dtype == DType::float32) return a.as<float>()[i];
  if (a.dtype == DType::float16) return f16_to_float(a.as<std::uint16_t>()[i]);
  return bf16_to_float(a.as<std::uint16_t>()[i]);
}

// Runs `c` through the CLI and checks out.npy and lse.npy against float64.
void check_case(const Case& c, double tol, std::vector<std::string> extra = {}) {
  test::TempDir dir;
  std::mt19937 rng(1234);
  Tensor q = random_tensor(rng, c.dtype, {c.B, c.Hq, c.Lq, c.D}, -1.5, 1.5);
  Tensor k = random_tensor(rng, c.dtype, {c.B, c.Hkv, c.Lk, c.D}, -1.5, 1.5);
  Tensor v = random_tensor(rng, c.dtype, {c.B, c.Hkv, c.Lk, c.Dv}, -1, 1);
  std::vector<std::string> args = {"run",
                                   "--q",
                                   dir.file("q.npy"),
                                   "--k",
                                   dir.file("k.npy"),
                                   "--v",
                                   dir.file("v.npy"),
                                   "--out",
                                   dir.file("o.npy"),
                                   "--lse",
                                   dir.file("lse.npy"),
                                   "--no-progress",
                                   c.causal ? "--causal" : "--no-causal"};
  if (c.dtype == DType::bfloat16) args.push_back("--bf16");
  write_npy(dir.file("q.npy"), c.dtype, q.shape, q.file.data.data());
  write_npy(dir.file("k.npy"), c.dtype, k.shape, k.file.data.data());
  write_npy(dir.file("v.npy"), c.dtype, v.shape, v.file.data.data());

  // Mask: a 2-D boolean [Lq, Lk] (NumPy broadcasting) or a 4-D additive one.
  std::vector<double> bias(static_cast<std::size_t>(c.Lq * c.Lk), 0.0);
  if (c.mask == 1) {
    HostArray m(DType::boolean, {c.Lq, c.Lk});
    std::bernoulli_distribution keep(0.7);
    for (std::size_t i = 0; i < bias.size(); ++i) {
      const bool kk = keep(rng) && !(i / static_cast<std::size_t>(c.Lk) == 3);  // row 3: all masked
      m.as<std::uint8_t>()[i] = kk;
      bias[i] = kk ? 0.0 : -kInf;
    }
    write_npy(dir.file("m.npy"), DType::boolean, m.shape, m.data.data());
    args.insert(args.end(), {"--mask", dir.file("m.npy")});
  } else if (c.mask == 2) {
    Tensor m = random_tensor(rng, c.dtype, {1, 1, c.Lq, c.Lk}, -2, 1);
    for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = m.val[i];
    write_npy(dir.file("m.npy"), c.dtype, m.shape, m.file.data.data());
    args.insert(args.end(), {"--mask", dir.file("m.npy")});
  }
  std::vector<double> sinks(static_cast<std::size_t>(c.Hq), -kInf);
  if (c.sinks) {
    Tensor s = random_tensor(rng, DType::float32, {c.Hq}, 0, 2);
    sinks = s.val;
    write_npy(dir.file("s.npy"), DType::float32, s.shape, s.file.data.data());
    args.insert(args.end(), {"--sinks", dir.file("s.npy")});
  }
  args.insert(args.end(), extra.begin(), extra.end());

  const auto r = test::run_cli(args);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("plan:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FLOP/s"), std::string::npos) << r.out;

  const HostArray out = read_npy(dir.file("o.npy"), {.u2_is_bf16 = true});
  const HostArray lse = read_npy(dir.file("lse.npy"));
  ASSERT_EQ(out.dtype, c.dtype);
  ASSERT_EQ(out.shape, (std::vector<std::int64_t>{c.B, c.Hq, c.Lq, c.Dv}));
  ASSERT_EQ(lse.shape, (std::vector<std::int64_t>{c.B, c.Hq, c.Lq}));

  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  double max_err = 0, max_lse_err = 0;
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.Hq; ++h)
      for (std::int64_t i = 0; i < c.Lq; ++i) {
        const std::int64_t kh = h / (c.Hq / c.Hkv);
        std::vector<double> s(static_cast<std::size_t>(c.Lk), -kInf);
        double m = sinks[h];
        for (std::int64_t j = 0; j < c.Lk; ++j) {
          if (c.causal && j > i + c.Lk - c.Lq) continue;
          double dot = 0;
          for (std::int64_t d = 0; d < c.D; ++d)
            dot += q.val[((b * c.Hq + h) * c.Lq + i) * c.D + d] *
                   k.val[((b * c.Hkv + kh) * c.Lk + j) * c.D + d];
          s[j] = dot * scale + bias[i * c.Lk + j];
          m = std::max(m, s[j]);
        }
        double l = c.sinks ? std::exp(sinks[h] - m) : 0.0;
        std::vector<double> o(static_cast<std::size_t>(c.Dv), 0.0);
        if (m > -kInf)
          for (std::int64_t j = 0; j < c.Lk; ++j) {
            if (s[j] == -kInf) continue;
            const double p = std::exp(s[j] - m);
            l += p;
            for (std::int64_t d = 0; d < c.Dv; ++d)
              o[d] += p * v.val[((b * c.Hkv + kh) * c.Lk + j) * c.Dv + d];
          }
        const std::int64_t row = (b * c.Hq + h) * c.Lq + i;
        for (std::int64_t d = 0; d < c.Dv; ++d) {
          const double want = l > 0 ? o[d] / l : 0.0;
          const double got = read_elem(out, static_cast<std::size_t>(row * c.Dv + d));
          ASSERT_FALSE(std::isnan(got)) << "row " << row;
          max_err = std::max(max_err, std::abs(got - want));
        }
        const double want_lse = l > 0 ? m + std::log(l) : -kInf;
        const double got_lse = lse.as<float>()[row];
        if (std::isinf(want_lse))
          EXPECT_EQ(got_lse, want_lse) << "row " << row;
        else
          max_lse_err = std::max(max_lse_err, std::abs(got_lse - want_lse));
      }
  EXPECT_LT(max_err, tol);
  EXPECT_LT(max_lse_err, 10 * tol);
}

TEST(CliRun, Float32CausalChunkedGqa) {
  check_case({}, 1e-5, {"--chunk-keys", "16", "--budget-ms", "0"});
}

TEST(CliRun, Float32BoolMaskSinksLqGreaterThanLk) {
  Case c;
  c.Lq = 50;
  c.Lk = 30;
  c.mask = 1;
  c.sinks = true;
  check_case(c, 1e-5, {"--chunk-keys", "7"});
}

TEST(CliRun, Float16AdditiveMaskDifferentVDim) {
  Case c;
  c.dtype = DType::float16;
  c.causal = false;
  c.mask = 2;
  c.Dv = 24;
  c.Hkv = 1;
  check_case(c, 2e-3);
}

TEST(CliRun, Bfloat16RawBitsBatch2) {
  Case c;
  c.dtype = DType::bfloat16;
  c.B = 2;
  c.Hkv = 4;
  check_case(c, 1.5e-2, {"--chunk-keys", "32"});
}

TEST(CliRun, GeneratedInputsPassTheReferenceCheckAndWriteReportAndTimeline) {
  test::TempDir dir;
  const auto r = test::run_cli({"run",
                                "--heads",
                                "4",
                                "--kv-heads",
                                "1",
                                "--q-len",
                                "200",
                                "--k-len",
                                "300",
                                "--head-dim",
                                "32",
                                "--mask",
                                "additive",
                                "--sinks",
                                "--chunk-keys",
                                "64",
                                "--device",
                                "cpu",
                                "--threads",
                                "2",
                                "--report",
                                dir.file("r.json"),
                                "--timeline",
                                dir.file("t.svg"),
                                "--check-rows",
                                "16"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
  std::ifstream rf(dir.file("r.json"));
  const auto j = nlohmann::json::parse(rf);
  EXPECT_TRUE(j.at("completed").get<bool>());
  EXPECT_GE(j.at("submissions").size(), 1u);
  EXPECT_EQ(j.at("plan").at("num_submissions").get<std::size_t>(), j.at("submissions").size());
  std::ifstream tf(dir.file("t.svg"));
  const std::string svg((std::istreambuf_iterator<char>(tf)), {});
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("budget"), std::string::npos);
}

TEST(CliRun, PlanPrintsWithoutRunning) {
  const auto r = test::run_cli({"plan", "--q-len", "65536", "--k-len", "65536", "--heads", "32",
                                "--kv-heads", "8", "--budget-ms", "100", "--device", "cpu"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("plan:"), std::string::npos);
  EXPECT_NE(r.out.find("submission"), std::string::npos);
}

TEST(CliRun, TheBinaryRunsTheNpyPath) {
  test::TempDir dir;
  std::mt19937 rng(7);
  for (const char* name : {"q", "k", "v"}) {
    const Tensor t = random_tensor(rng, DType::float32, {1, 2, 20, 8}, -1, 1);
    write_npy(dir.file(std::string(name) + ".npy"), DType::float32, t.shape, t.file.data.data());
  }
  const std::string cmd = std::string(LONGATTN_CLI_PATH) + " run --q " + dir.file("q.npy") +
                          " --k " + dir.file("k.npy") + " --v " + dir.file("v.npy") + " --out " +
                          dir.file("o.npy") + " --check-rows 8 > " + dir.file("log.txt") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(read_npy(dir.file("o.npy")).shape, (std::vector<std::int64_t>{1, 2, 20, 8}));
  const std::string bad = std::string(LONGATTN_CLI_PATH) + " run --heads 0 > /dev/null 2>&1";
  const int status = std::system(bad.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace longattn::cli
