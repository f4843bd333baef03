// merge_states(): combine (O, LSE) results over disjoint key sets. With
// m = max_i LSE_i and w_i = exp(LSE_i - m):
//   O = sum_i w_i O_i / sum_i w_i,   LSE = m + log(sum_i w_i).
// Parts with LSE = -inf carry no weight (the identity); if every part is
// empty the row is empty: O = 0, LSE = -inf.
#include <omp.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "core/half.hpp"
#include "core/problem.hpp"
#include "core/state.hpp"
#include "longattn/attention.hpp"

namespace longattn {
namespace {

constexpr const char* kOp = "[longattn::merge_states] ";

[[noreturn]] void fail(const std::string& msg) { throw InvalidArgument(kOp + msg); }

void check_view(const TensorView& t, const std::string& name, int rank,
                const std::array<std::int64_t, 4>& shape) {
  if (t.rank != rank)
    fail(name + ".rank = " + std::to_string(t.rank) + " but must be " + std::to_string(rank));
  for (int i = 0; i < rank; ++i) {
    const auto u = static_cast<std::size_t>(i);
    if (t.shape[u] != shape[u])
      fail(name + ".shape[" + std::to_string(i) + "] = " + std::to_string(t.shape[u]) +
           " but must be " + std::to_string(shape[u]));
    if (t.strides[u] < 0)
      fail(name + ".strides[" + std::to_string(i) + "] = " + std::to_string(t.strides[u]) +
           " is negative");
  }
  if (t.device != Device::cpu)
    fail(name + ".device = " + device_name(t.device) + ": merge_states runs on the CPU");
  if (t.data == nullptr && t.numel() > 0)
    fail(name + ".data = null with " + std::to_string(t.numel()) + " elements");
}

std::int64_t offset(const TensorView& t, std::int64_t a, std::int64_t b, std::int64_t c,
                    std::int64_t d = 0) {
  return a * t.strides[0] + b * t.strides[1] + c * t.strides[2] +
         (t.rank == 4 ? d * t.strides[3] : 0);
}

}  // namespace

void merge_states(const std::vector<PartialResult>& parts, const TensorView& out,
                  const TensorView& out_lse, int threads) {
  if (parts.empty()) fail("parts.size() = 0: need at least one partial result");
  if (threads < 0 || threads > core::max_cpu_threads())
    fail("threads = " + std::to_string(threads) + " must be in [0, " +
         std::to_string(core::max_cpu_threads()) + "]");
  if (out.rank != 4) fail("out.rank = " + std::to_string(out.rank) + " but must be 4");
  const std::array<std::int64_t, 4> shape = out.shape;
  for (int i = 0; i < 4; ++i)
    if (shape[static_cast<std::size_t>(i)] < 0)
      fail("out.shape[" + std::to_string(i) +
           "] = " + std::to_string(shape[static_cast<std::size_t>(i)]) + " is negative");
  check_view(out, "out", 4, shape);
  if (out.dtype == DType::boolean) fail("out.dtype = boolean must be a float type");
  const std::array<std::int64_t, 4> lshape{shape[0], shape[1], shape[2], 0};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string n = "parts[" + std::to_string(i) + "]";
    check_view(parts[i].o, n + ".o", 4, shape);
    check_view(parts[i].lse, n + ".lse", 3, lshape);
    if (parts[i].o.dtype == DType::boolean) fail(n + ".o.dtype = boolean must be a float type");
    if (parts[i].lse.dtype != DType::float32)
      fail(n + ".lse.dtype = " + dtype_name(parts[i].lse.dtype) + " must be float32");
    if (parts[i].o.data == out.data && out.numel() > 0) fail(n + ".o aliases out");
  }
  if (out_lse.present()) {
    check_view(out_lse, "out_lse", 3, lshape);
    if (out_lse.dtype != DType::float32)
      fail("out_lse.dtype = " + std::string(dtype_name(out_lse.dtype)) + " must be float32");
  }

  const std::int64_t B = shape[0], H = shape[1], L = shape[2], Dv = shape[3];
  const int nt = threads > 0 ? threads : 0;
#pragma omp parallel for collapse(2) schedule(static) \
    num_threads(nt > 0 ? nt : omp_get_max_threads()) if (B * H * L > 64)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      std::vector<double> acc(static_cast<std::size_t>(Dv));
      std::vector<double> w(parts.size());
      for (std::int64_t r = 0; r < L; ++r) {
        double m = -INFINITY;
        for (const auto& pt : parts)
          m = std::fmax(m, static_cast<const float*>(pt.lse.data)[offset(pt.lse, b, h, r)]);
        double sum = 0;
        for (std::size_t i = 0; i < parts.size(); ++i) {
          const double l =
              static_cast<const float*>(parts[i].lse.data)[offset(parts[i].lse, b, h, r)];
          w[i] = core::rescale(l, m, [](double x) { return std::exp(x); });
          sum += w[i];
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::size_t i = 0; i < parts.size(); ++i) {
          if (w[i] == 0) continue;
          for (std::int64_t d = 0; d < Dv; ++d)
            acc[static_cast<std::size_t>(d)] +=
                w[i] * core::load_as_float(parts[i].o.data, offset(parts[i].o, b, h, r, d),
                                           parts[i].o.dtype);
        }
        const double inv = sum > 0 ? 1.0 / sum : 0.0;
        for (std::int64_t d = 0; d < Dv; ++d)
          core::store_from_float(out.data, offset(out, b, h, r, d), out.dtype,
                                 static_cast<float>(acc[static_cast<std::size_t>(d)] * inv));
        if (out_lse.present())
          static_cast<float*>(out_lse.data)[offset(out_lse, b, h, r)] =
              static_cast<float>(sum > 0 ? m + std::log(sum) : -INFINITY);
      }
    }
}

}  // namespace longattn
