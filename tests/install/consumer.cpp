// Links against the installed package and runs one small attention: two
// keys, one query, so the expected output is a closed form.
#include <cmath>
#include <cstdio>
#include <longattn/longattn.hpp>

int main() {
  float q[2] = {1.f, 0.f}, k[4] = {1.f, 0.f, 0.f, 1.f}, v[4] = {1.f, 2.f, 3.f, 4.f}, o[2] = {};
  using longattn::DType;
  longattn::AttentionOptions opt;
  opt.scale = 1.0;
  longattn::attention(longattn::contiguous(q, DType::float32, {1, 1, 1, 2}),
                      longattn::contiguous(k, DType::float32, {1, 1, 2, 2}),
                      longattn::contiguous(v, DType::float32, {1, 1, 2, 2}),
                      longattn::contiguous(o, DType::float32, {1, 1, 1, 2}), opt);
  // Logits 1 and 0: weights e/(e+1) and 1/(e+1).
  const double w = std::exp(1.0) / (std::exp(1.0) + 1.0);
  const double want0 = w * 1 + (1 - w) * 3, want1 = w * 2 + (1 - w) * 4;
  const bool ok = std::fabs(o[0] - want0) < 1e-5 && std::fabs(o[1] - want1) < 1e-5;
  std::printf("consumer: o = [%.6f, %.6f], want [%.6f, %.6f]: %s\n", o[0], o[1], want0, want1,
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
