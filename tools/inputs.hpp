// The tensors of one attention call as the tool holds them: generated from a
// seeded RNG (shape, dtype, mask, GQA and sinks given as options) or read from
// .npy files, kept on the host, and mirrored to device memory for
// `--device cuda`. The library only sees views.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "device_buffers.hpp"
#include "host_array.hpp"
#include "longattn/attention.hpp"

namespace longattn::cli {

enum class MaskOption : std::uint8_t { none, boolean, additive };
const char* mask_option_name(MaskOption m);

// Shape and content of a generated problem. Defaults are the README's first
// command: small enough for a 2-core CPU in seconds, large enough that a
// 50 ms budget splits it into several submissions.
struct ProblemSpec {
  std::int64_t batch = 1;
  std::int64_t heads = 8;     // Hq
  std::int64_t kv_heads = 2;  // Hkv; divides Hq (GQA 4:1 by default)
  std::int64_t q_len = 2048;
  std::int64_t k_len = 2048;
  std::int64_t head_dim = 128;
  std::int64_t v_head_dim = 0;  // 0 = head_dim
  DType dtype = DType::float32;
  bool causal = true;
  MaskOption mask = MaskOption::none;
  bool sinks = false;
  std::optional<double> scale;  // default 1/sqrt(head_dim)
  std::uint64_t seed = 0;

  std::int64_t dv() const { return v_head_dim > 0 ? v_head_dim : head_dim; }
  std::string describe() const;  // "B=1 Hq=8 Hkv=2 Lq=2048 Lk=2048 D=128 float32 causal"
};

// All tensors of one call. Host arrays are the source of truth; with
// Device::cuda each present array also has a device copy, and the views
// point at it.
struct Workload {
  HostArray q, k, v, mask, sinks;  // inputs; mask and sinks may be empty
  HostArray out, lse;              // outputs; lse may be empty
  bool causal = true;
  std::optional<double> scale;
  Device device = Device::cpu;

  // Views for the library, on `device`. Null views for absent tensors.
  TensorView q_view, k_view, v_view, out_view, mask_view, sinks_view, lse_view;

  // Points the views at host memory, or uploads to the device and points
  // them there. Call once all host arrays are final.
  void place(Device d);
  // Copies out and lse back from the device (no-op on the CPU).
  void fetch_outputs();
  // AttentionOptions carrying the mask, sinks, lse, causal flag and scale.
  AttentionOptions options() const;

 private:
  DeviceBuffer dq_, dk_, dv_, dout_, dmask_, dsinks_, dlse_;
};

// Shape-only views (null data) for plan_attention: no memory is touched.
struct ShapeViews {
  TensorView q, k, v, out, mask, sinks, lse;
};
ShapeViews shape_views(const ProblemSpec& spec, Device device);

// Deterministic inputs for `spec` (same seed, same bytes, on every machine
// and thread count): q, k, v roughly unit-variance uniform; a [1, 1, Lq, Lk]
// broadcast mask (boolean keeps ~90% of keys; additive adds values in
// [-2, 0] and -inf to ~5% of keys); sinks in [0, 2]. Allocates out and lse.
Workload generate_workload(const ProblemSpec& spec);

// Allocates zeroed out [B, Hq, Lq, Dv] (dtype of q) and, if `with_lse`,
// lse [B, Hq, Lq] float32, from the shapes of w.q and w.v.
void allocate_outputs(Workload& w, bool with_lse);

}  // namespace longattn::cli
