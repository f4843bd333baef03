// calibrate(): the profile it measures and the options it refuses.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "longattn/longattn.hpp"

namespace {

using longattn::CalibrateOptions;
using longattn::DType;

CalibrateOptions small(longattn::BackendKind backend) {
  CalibrateOptions c;
  c.backend = backend;
  c.dtypes = {DType::float32, DType::bfloat16};
  c.head_dims = {32};
  c.heads = 4, c.q_len = 64, c.k_len = 256, c.reps = 1, c.threads = 1;
  return c;
}

TEST(Calibrate, MeasuresEveryRateKeyAndTheFixedCosts) {
  CalibrateOptions c = small(longattn::BackendKind::cpu);
  std::vector<std::string> lines;
  c.log = [&](const std::string& l) { lines.push_back(l); };
  const longattn::DeviceProfile p = longattn::calibrate(c);
  EXPECT_EQ(p.backend, "cpu");
  EXPECT_FALSE(p.device_name.empty());
  EXPECT_EQ(p.invalid_field(), "");
  for (DType t : c.dtypes)
    for (bool causal : {false, true})
      for (bool masked : {false, true}) {
        if (causal && masked) continue;  // not a calibrated variant
        const std::string key = longattn::DeviceProfile::rate_key(t, 32, causal, masked);
        ASSERT_TRUE(p.gflops.count(key)) << key;
        EXPECT_GT(p.gflops.at(key), 0) << key;
      }
  EXPECT_GT(p.dispatch_overhead_ms + p.submission_overhead_ms, 0);
  EXPECT_EQ(p.samples, longattn::default_profile(longattn::BackendKind::cpu).samples + 1);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.front().find("longattn calibrate: cpu"), std::string::npos) << lines.front();
}

TEST(Calibrate, BadOptionsAreNamedAndNothingIsMeasured) {
  struct Bad {
    const char* what;
    void (*edit)(CalibrateOptions&);
    const char* message;
    bool unsupported;
  };
  const Bad bad[] = {
      {"reps", [](CalibrateOptions& c) { c.reps = 0; }, "reps = 0", false},
      {"no dtypes", [](CalibrateOptions& c) { c.dtypes.clear(); }, "dtypes is empty", false},
      {"no head dims", [](CalibrateOptions& c) { c.head_dims.clear(); }, "head_dims is empty",
       false},
      {"q_len", [](CalibrateOptions& c) { c.q_len = 1; }, "q_len = 1", false},
      {"heads", [](CalibrateOptions& c) { c.heads = 0; }, "heads = 0", false},
      {"head dim too large",
       [](CalibrateOptions& c) {
         c.head_dims = {32, 300};
       },
       "head_dims 300", true},
  };
  for (const Bad& b : bad) {
    CalibrateOptions c = small(longattn::BackendKind::cpu);
    b.edit(c);
    bool logged = false;
    c.log = [&](const std::string&) { logged = true; };
    try {
      (void)longattn::calibrate(c);
      ADD_FAILURE() << b.what << ": accepted";
    } catch (const longattn::Error& e) {
      EXPECT_EQ(e.code(), b.unsupported ? longattn::ErrorCode::unsupported
                                        : longattn::ErrorCode::invalid_argument)
          << b.what;
      EXPECT_NE(std::string(e.what()).find(b.message), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("[longattn::calibrate]"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(logged) << b.what << ": measured before checking";
  }
}

}  // namespace
