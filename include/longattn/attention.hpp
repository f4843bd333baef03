// The public entry points: attention(), plan_attention() and merge_states().
//
// Conventions (all documented limits in one place):
// - q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv], out [B, Hq, Lq, Dv]
//   as logical shapes; any int64 element strides (see tensor.hpp).
// - q, k, v and out share one dtype: float32, float16 or bfloat16. All math
//   accumulates in float32.
// - GQA/MQA: Hkv divides Hq; query head h reads KV head h / (Hq / Hkv).
//   K and V are never copied or expanded.
// - 1 <= D, Dv <= 256 (Dv may differ from D) on every backend. CUDA runs a
//   head on the narrowest instantiated kernel width that holds D and Dv
//   (LONGATTN_CUDA_HEAD_DIMS), zero-padded inside the kernel; a build
//   without a wide enough width refuses the call (Unsupported).
// - Causal is bottom-right aligned by default: query i sees keys
//   j <= i + (Lk - Lq), so the last query sees every key (FlashAttention's
//   and MLX's rule; the one a KV cache needs). With Lq > Lk the first
//   Lq - Lk rows see no key. CausalAlign::top_left is PyTorch's is_causal:
//   query i sees keys j <= i, so with Lk > Lq the last Lk - Lq keys are
//   never seen. The two agree when Lq = Lk.
// - Sliding window (FlashAttention's window_size): window_left and
//   window_right, -1 = unbounded, measured from each query's diagonal
//   c(i) = i + (Lk - Lq) (bottom-right, the default) or c(i) = i (top-left):
//   query i sees keys j with c(i) - window_left <= j <= c(i) + window_right.
//   The alignment is causal_align's, read even when causal is false.
//   Causal is window_right = 0; causal with a window is the intersection
//   (window_right > 0 then changes nothing). Window 0 on both sides is the
//   diagonal alone. No array is read: rectangles and key tiles the window
//   hides are skipped, so the cost is about Lq x (left + right + 1), and a
//   window combines with a mask array and sinks like causal does.
// - Logit soft-cap (Gemma 2): softcap > 0 replaces each logit s = scale * q.k
//   by softcap * tanh(s / softcap) before any mask is added and before the
//   softmax (and the sink, which is a logit of its own, is not capped);
//   0 = off. Every backend.
// - A mask array is either boolean (DType::boolean, true = keep) or additive
//   (float32/float16/bfloat16, added to the scaled logit, -inf = drop). Its
//   logical shape is 4-D and broadcasts to [B, Hq, Lq, Lk]: each dim is 1 or
//   the full size (stride 0 is fine too). Causal and a mask array combine: a
//   key is visible only if both allow it. Additive terms are exact in
//   float32 up to |v| = FLT_MAX * scale (3e37 at scale 1/sqrt(128)) on every
//   backend; beyond that the CUDA backend's Hopper kernel, which adds
//   v / scale to the unscaled logit, may overflow: -v then hides the key
//   like -inf (a row it hides entirely gives O = 0 where the CPU gives the
//   mean of V), +v gives NaN. Use -inf (or a value like -1e9) to drop.
// - Sinks: float32 [Hq], one extra logit per head that enters the softmax
//   denominator only (as in gpt-oss); counted exactly once however the keys
//   are chunked.
// - LSE output: float32 [B, Hq, Lq], natural log (base e), like PyTorch and
//   FlashAttention: LSE = log(sum_j exp(s_ij)) (+ exp(sink) if sinks).
// - A row that sees no key (fully masked, or Lk = 0) gives O = 0 and
//   LSE = -inf (with sinks: O = 0, LSE = sink), never NaN.
// - NaN in q, k or v propagates: every output row whose softmax reads a NaN
//   is NaN. (A NaN in V may also reach rows that mask that key out when the
//   key shares a tile with visible ones: 0 * NaN is NaN.)
// - B = 0 or Lq = 0 is a valid call with nothing to compute.
// - Errors: longattn::InvalidArgument / Unsupported / OutOfMemory /
//   BackendError / Cancelled (see error.hpp, plan.hpp). An error that stops
//   a run part way carries the report of what ran (Error::partial_report),
//   and options.report is filled with it too.
#pragma once

#include <optional>
#include <vector>

#include "longattn/plan.hpp"
#include "longattn/tensor.hpp"

namespace longattn {

enum class BackendKind : std::uint8_t { automatic, cpu, cuda };
const char* backend_name(BackendKind b);

// Where the causal diagonal sits when Lq != Lk (see the conventions above).
enum class CausalAlign : std::uint8_t { bottom_right, top_left };

struct AttentionOptions {
  // Causal alignment, read only when causal.
  CausalAlign causal_align = CausalAlign::bottom_right;
  std::optional<double> scale;  // default 1/sqrt(D)
  bool causal = false;          // see causal_align
  // Sliding window around the diagonal (see above); -1 = unbounded.
  std::int64_t window_left = -1, window_right = -1;
  float softcap = 0;                 // logit soft-cap (see above); 0 = off, else finite and > 0
  TensorView mask;                   // optional boolean or additive mask (see above)
  TensorView sinks;                  // optional float32 [Hq]
  TensorView lse;                    // optional output, float32 [B, Hq, Lq], base e
  Policy policy = default_policy();  // how to split the work
  BackendKind backend = BackendKind::automatic;  // automatic: by q.device
  DeviceProfile* profile = nullptr;  // used and refined in place; nullptr: the process-wide one
  int threads = 0;                   // CPU threads, 0..1024; 0 = all hardware threads
  // CUDA: the stream the kernels go on (cudaStream_t; nullptr = the legacy
  // default stream). A call with neither `report` nor `progress` set whose
  // plan is one submission of single-pass dispatches, predicted within a
  // quarter of budget * safety (decode, short prefill), is only enqueued
  // there and returns at once, as CUDA libraries do: the output is ready
  // when the stream reaches that point, and the inputs must stay alive
  // until then. Such calls are not timed, so they do not refine the device
  // profile. Every other call runs timed submissions and has finished when
  // attention() returns.
  void* cuda_stream = nullptr;
  // CUDA, timed calls: the host waits at each submission boundary (the
  // submission's time is known at once, so the rest can be re-planned);
  // false: submissions are timed by events read at the end. Untimed calls
  // (above) never wait.
  bool host_wait = true;
  ProgressCallback progress;    // called between submissions; may cancel
  RunReport* report = nullptr;  // filled when non-null

  // 200 ms per submission (under every OS watchdog in DESIGN.md, with
  // margin), safety 0.8, 1 GiB of running state at most.
  static Policy default_policy();
};

// Exact attention; routes to one single-pass dispatch or a budgeted chunked
// plan. Throws Cancelled (carrying the partial report) if `progress` stops it.
void attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
               const AttentionOptions& options = {});

// The FLOPs of one attention() call without a mask array or window: 2 *
// (D + Dv) per (batch, query head) and visible (query, key) pair, the two
// matrix products; causal is bottom-right aligned. The same count as RunReport's
// total_flops (one implementation), for benchmarks that time other code.
double attention_flops(std::int64_t B, std::int64_t Hq, std::int64_t Lq, std::int64_t Lk,
                       std::int64_t D, std::int64_t Dv, bool causal);

// The plan attention() would run, without running it. Only shapes, dtypes
// and options are read; data pointers may be null.
Plan plan_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                    const TensorView& out, const AttentionOptions& options = {});

// The process-wide default profile of a backend (what attention() refines
// when options.profile is null). A copy.
DeviceProfile default_profile(BackendKind backend);

// One partial result over a key set: o [B, H, L, Dv] normalized output (any
// float dtype), lse [B, H, L] float32, base e; LSE = -inf marks an empty set.
struct PartialResult {
  TensorView o;
  TensorView lse;
};

// Merges partial results over disjoint key sets into the result over their
// union, as DESIGN.md defines (associative; empty parts are the identity).
// out [B, H, L, Dv]; out_lse optional [B, H, L] float32. CPU memory only.
void merge_states(const std::vector<PartialResult>& parts, const TensorView& out,
                  const TensorView& out_lse = {}, int threads = 0);

}  // namespace longattn
