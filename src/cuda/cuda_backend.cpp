// The CUDA backend: one kernel launch per dispatch on the caller's stream
// (plus a split-K merge when a dispatch alone would not fill the GPU),
// submissions bracketed by events, the float32 running state in device
// memory. Dispatches outside a submission (the executor's enqueue path) are
// only launched: no events and no host synchronization anywhere, so a
// decode step costs its launches and nothing more.
//
// Kernel choice per dispatch (all in device code under src/cuda/), each on
// the narrowest instantiated head-dim width that holds D and Dv (narrower
// heads run zero-padded inside the kernel, KernelParams::width):
// - float16 / bfloat16 prefill on Hopper (sm_90a build, widths 64, 128,
//   256, TMA-readable layout): the wgmma kernel (hopper_kernel.cuh; array
//   masks and the soft-cap take its second instantiation); up to 64 packed
//   rows (query heads of a KV group x queries: decode, short verification
//   steps) in its packed mode, which reads each K/V tile once for the whole
//   GQA group.
// - other float16 / bfloat16 problems with more than 8 packed rows: the
//   mma.sync kernel (prefill_kernel.cuh).
// - up to 8 packed rows off Hopper (or LONGATTN_CUDA_DECODE=vector), and
//   every float32 problem: the vector kernel, which also reads each K/V row
//   once for the whole group.
// Each is split over the keys (split-K) when its grid is smaller than the
// GPU; the splits' partial states go to a workspace that belongs to the
// stream (device_cache.hpp), so a dispatch allocates only when its stream
// first needs more than before, or to graph-owned memory under capture.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.hpp"
#include "core/int_math.hpp"
#include "core/mask_blocks.hpp"
#include "cuda/check.hpp"
#include "cuda/device_cache.hpp"
#include "cuda/kernel_params.hpp"
#include "cuda/split_k.hpp"

namespace longattn::core {
namespace {

using cuda::check_cuda;
using cuda::device_alloc;
using cuda::InMode;
using cuda::KernelKind;
using cuda::KernelParams;
using cuda::OutMode;
using cuda::stream_workspace;
using cuda::StreamWorkspace;
using cuda::vector_splits;

// Largest split-K workspace one dispatch may use: enough for 32 splits of
// 32 heads x 64 rows x D 256. Decode (32 splits x 32 rows x D 128) uses
// about 0.5 MB.
constexpr std::size_t kWorkspaceBytes = std::size_t{64} << 20;

// Whether rows of a tensor can be read 16 bytes at a time: `cols` a
// multiple of 8 (so a row is whole 16-byte pieces), unit column stride, the
// other strides and the base 16-byte aligned.
bool vectorizable(const void* ptr, const std::int64_t (&s)[4], DType t, std::int64_t cols) {
  const auto es = static_cast<std::int64_t>(dtype_size(t));
  return cols % 8 == 0 && reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0 && s[3] == 1 &&
         (s[0] * es) % 16 == 0 && (s[1] * es) % 16 == 0 && (s[2] * es) % 16 == 0;
}

// Whether a mask's key pairs (j, j + 1), j even, can be read as one
// 2-element load (KernelParams::vec_mask).
bool mask_pairs(const Problem& p) {
  if (p.mask_kind == MaskKind::none || p.mask_stride[3] != 1) return false;
  const std::size_t es = dtype_size(p.mask_dtype);  // boolean: 1 byte
  return reinterpret_cast<std::uintptr_t>(p.mask) % (2 * es) == 0 && p.mask_stride[0] % 2 == 0 &&
         p.mask_stride[1] % 2 == 0 && p.mask_stride[2] % 2 == 0;
}

// Whether the mask's rows from key k0 on can be copied 16 bytes at a time
// (KernelParams::stage_mask).
bool mask_rows_copyable(const Problem& p, std::int64_t k0) {
  if (p.mask_kind == MaskKind::none || p.mask_stride[3] != 1) return false;
  const auto es = static_cast<std::int64_t>(dtype_size(p.mask_dtype));  // boolean: 1 byte
  return reinterpret_cast<std::uintptr_t>(p.mask) % 16 == 0 && (p.mask_stride[0] * es) % 16 == 0 &&
         (p.mask_stride[1] * es) % 16 == 0 && (p.mask_stride[2] * es) % 16 == 0 &&
         (k0 * es) % 16 == 0;
}

// The launcher of the narrowest instantiated width >= max(D, Dv) for the
// dtype (narrower heads run padded, KernelParams::width); `hopper_only`
// takes only the Hopper kernel's widths.
const cuda::LauncherEntry* find_width(const Problem& p, bool hopper_only) {
  const cuda::LauncherEntry* best = nullptr;
  for (int i = 0; i < cuda::kNumLaunchers; ++i) {
    const auto& e = cuda::kLaunchers[i];
    if (e.dtype != static_cast<int>(p.dtype) || e.head_dim < std::max(p.D, p.Dv)) continue;
    if (hopper_only && !cuda::hopper_head_dim(e.head_dim)) continue;
    if (best == nullptr || e.head_dim < best->head_dim) best = &e;
  }
  return best;
}

const cuda::LauncherEntry& find_launcher(const Problem& p) {
  if (const cuda::LauncherEntry* e = find_width(p, false)) return *e;
  std::string have;
  for (auto d : cuda_head_dims()) have += (have.empty() ? "" : ", ") + std::to_string(d);
  throw Unsupported("[longattn::cuda] head dims D = " + std::to_string(p.D) +
                    ", Dv = " + std::to_string(p.Dv) + " with dtype " + dtype_name(p.dtype) +
                    " exceed this build's widest (built widths: " + have + ")");
}

// The names the run report gives the kernels (plan.hpp, SubmissionReport).
const char* kernel_name(KernelKind k, bool packed) {
  switch (k) {
    case KernelKind::wgmma:
      return packed ? "cuda.wgmma.packed" : "cuda.wgmma";
    case KernelKind::tensor_core:
      return "cuda.mma";
    case KernelKind::vector:
      return "cuda.vector";
  }
  throw BackendError("[longattn::cuda] unknown kernel kind " + std::to_string(static_cast<int>(k)));
}

KernelParams make_params(const Problem& p) {
  KernelParams k;
  static_cast<Problem&>(k) = p;
  k.vec_q = vectorizable(p.q, p.q_stride, p.dtype, p.D);
  k.vec_k = vectorizable(p.k, p.k_stride, p.dtype, p.D);
  k.vec_v = vectorizable(p.v, p.v_stride, p.dtype, p.Dv);
  k.vec_mask = mask_pairs(p);
  k.cap_exp = p.softcap_log2 > 0.f ? 2.f * core::kLog2e / p.softcap_log2 : 0.f;
  return k;
}

class CudaBackend final : public Backend {
 public:
  // Cheap: the device's properties are cached, the events are made by the
  // first begin_submission, the workspace is taken by the first split-K
  // dispatch.
  explicit CudaBackend(const BackendConfig& cfg)
      : stream_(static_cast<cudaStream_t>(cfg.cuda_stream)), host_wait_(cfg.host_wait) {
    check_cuda(cudaGetDevice(&device_), "cudaGetDevice");
    const cuda::DeviceInfo info = cuda::device_info(device_);
    device_name_ = info.name;
    sms_ = info.sms;
    hopper_ = info.hopper;
    // Read per backend (per call), so a process may switch between calls.
    const char* prefill = std::getenv("LONGATTN_CUDA_PREFILL");
    const char* decode = std::getenv("LONGATTN_CUDA_DECODE");
    force_mma_ = prefill != nullptr && std::string(prefill) == "mma";
    vector_decode_ = decode != nullptr && std::string(decode) == "vector";
  }

  // No stream synchronization: the workspace stays with its stream (the
  // next user is ordered after this call's kernels), cudaFree of a running
  // state waits for the device by itself, and CUDA defers destroying an
  // event still pending. Errors are dropped: destructors must not throw.
  ~CudaBackend() override {
    if (blocks_ != nullptr) (void)cudaFreeAsync(blocks_, stream_);  // after the call's kernels
    for (auto& s : states_) (void)cudaFree(s);
    for (auto& [a, b] : events_) {
      (void)cudaEventDestroy(a);
      (void)cudaEventDestroy(b);
    }
  }

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }

  StateView alloc_state(const Problem& p, std::int64_t rows) override {
    const std::int64_t n = p.B * p.Hq * rows;
    const auto bytes = static_cast<std::size_t>(n * (cuda::state_pitch(p.Dv) + 2)) * sizeof(float);
    auto* base = static_cast<float*>(device_alloc(bytes, "the running state"));
    states_.push_back(base);
    StateView s;
    s.m = base;
    s.l = base + n;
    s.o = base + 2 * n;
    s.rows = rows;
    return s;
  }

  void release_state(StateView& s) noexcept override {
    if (s.m == nullptr) return;
    auto it = std::find(states_.begin(), states_.end(), s.m);
    if (it != states_.end()) states_.erase(it);
    // Not checked: release runs while unwinding from another error too, and
    // must not throw then (a failing cudaFree means the context is already
    // broken, which the next launch or synchronization reports).
    (void)cudaFree(s.m);
    s = StateView{};
  }

  // On the device, on the call's stream, into stream-ordered memory (so it
  // works under graph capture and is freed after the call's kernels). The
  // counts need the summary on the host: read back only when the call
  // waits on the host anyway and the stream is not being captured.
  void summarize_mask(Problem& p) override {
    const core::BlockDims d = core::block_dims(p);
    const auto bytes = static_cast<std::size_t>(d.nb * d.nh * d.nq * d.nk);
    if (bytes == 0) return;
    void* ptr = nullptr;
    check_cuda(cudaMallocAsync(&ptr, bytes, stream_), "cudaMallocAsync(mask summary)");
    blocks_ = static_cast<std::uint8_t*>(ptr);
    cuda::launch_mask_summary(make_params(p), blocks_, stream_);
    core::attach_blocks(p, blocks_);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check_cuda(cudaStreamIsCapturing(stream_, &capture), "cudaStreamIsCapturing");
    if (!host_wait_ || capture != cudaStreamCaptureStatusNone) return;
    std::vector<std::uint8_t> host(bytes);
    check_cuda(cudaMemcpyAsync(host.data(), blocks_, bytes, cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync(mask summary)");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(mask summary)");
    cost_ = core::mask_cost(p, host);
    p.mask_cost = &cost_;
  }

  void begin_submission() override {
    if (next_event_ == events_.size()) {
      cudaEvent_t a = nullptr, b = nullptr;
      check_cuda(cudaEventCreate(&a), "cudaEventCreate");
      check_cuda(cudaEventCreate(&b), "cudaEventCreate");
      events_.emplace_back(a, b);
    }
    check_cuda(cudaEventRecord(events_[next_event_].first, stream_),
               "cudaEventRecord(submission start)");
  }

  const char* dispatch(const Problem& p, const Dispatch& d, const StateView& state) override {
    const Rect& r = d.rect;
    if (r.q1 <= r.q0 || p.B == 0) return "";  // no rows: nothing to launch (and no grid of 0)
    KernelParams k = make_params(p);
    k.q0 = r.q0;
    k.q1 = r.q1;
    k.k0 = r.k0;
    k.k1 = r.k1;
    k.in_mode = reads_state(d.mode) ? InMode::load : InMode::sinks;
    k.out_mode = writes_output(d.mode) ? OutMode::final : OutMode::state;
    if (d.mode != Mode::single_pass) {
      k.st_m = state.m;
      k.st_l = state.l;
      k.st_o = state.o;
      k.st_q0 = state.q0;
      k.st_rows = state.rows;
    }
    k.st_pitch = cuda::state_pitch(p.Dv);
    k.stage_mask = mask_rows_copyable(p, r.k0);

    // Keys any row of the rectangle sees (the causal rule and the window
    // hide the rest; the kernels skip their tiles), for the split-K sizing.
    const std::int64_t nq = r.q1 - r.q0;
    const std::int64_t keys = std::max<std::int64_t>(
        0, std::min(r.k1, p.key_end(r.q1 - 1)) - std::max(r.k0, p.key_begin(r.q0)));
    const std::int64_t packed = p.group * nq;
    // The kernel, then its width: the Hopper kernel's (64, 128 or 256)
    // where it serves, else the narrowest instantiated one.
    const cuda::LauncherEntry* hopper = hopper_ ? find_width(p, true) : nullptr;
    const bool wgmma_decode = use_wgmma_decode(p, k, packed, hopper);
    const bool vector = !wgmma_decode && (p.dtype == DType::float32 || packed <= 8);
    const bool wgmma = !wgmma_decode && !vector && use_wgmma(k, hopper);
    const cuda::LauncherEntry& entry = wgmma_decode || wgmma ? *hopper : find_launcher(p);
    const int hd = entry.head_dim;
    k.width = hd;
    // Splits the split-K workspace can hold: each takes a partial state
    // (m, l, o) of every row.
    const std::int64_t row_bytes =
        p.B * p.Hq * nq * (hd + 2) * static_cast<std::int64_t>(sizeof(float));
    const std::int64_t workspace_splits = static_cast<std::int64_t>(kWorkspaceBytes) / row_bytes;
    const std::int64_t max_splits = std::min<std::int64_t>(cuda::kMaxSplits, workspace_splits);
    cuda::TileGrid g;  // the tile kernels' grid, for tile_splits
    g.sms = sms_;
    g.max_splits = max_splits;
    std::int64_t splits = 1;
    // The grid's head dimension, which CUDA limits to 65535.
    std::int64_t grid_heads = p.B * p.Hkv;
    const char* grid_heads_name = "B * Hkv";
    if (wgmma_decode) {
      // The Hopper kernel in packed mode: one block per (b, KV head, query
      // tile, split); memory-bound, so split-K aims for one wave.
      const cuda::HopperConfig cfg = cuda::hopper_decode_config(hd);
      k.kind = KernelKind::wgmma;
      k.packed = 1;
      g.base = ceil_div(nq, cfg.block_m / p.group) * p.B * p.Hkv;
      g.units = ceil_div(keys, cfg.block_n);
      g.min_units = 2;
      g.one_wave = true;
      splits = cuda::tile_splits(g);
    } else if (vector) {
      k.kind = KernelKind::vector;
      int rows = 8;
      while (rows / 2 >= packed && rows > 1) rows /= 2;
      k.rows_per_block = rows;
      const int lanes = cuda::vec_lanes_per_key(hd);
      const int nb = cuda::vec_keys_per_group(rows, static_cast<int>(dtype_size(p.dtype)));
      const std::int64_t kstep = static_cast<std::int64_t>(cuda::kVecWarps) * (32 / lanes) * nb;
      // At least 128 keys a split. The kernel is latency-bound per block
      // (each step waits one memory round trip; 229 registers a thread
      // allow 8 resident warps an SM), so short splits cost little and many
      // blocks are what fills the GPU: ncu on H100 (2026-11-27) showed the
      // 4K-key decode with the former 512-key floor on 64 blocks, 6% of
      // warp slots busy, 29.6 us for 4 MB.
      splits = vector_splits(ceil_div(packed, rows) * p.B * p.Hkv, ceil_div(keys, kstep),
                             ceil_div(128, kstep), std::int64_t{cuda::kVecBlocksPerSm} * sms_,
                             max_splits);
    } else {
      if (wgmma) {
        k.kind = KernelKind::wgmma;
        g.base = ceil_div(nq, cuda::hopper_config(hd).block_m) * p.B * p.Hq;
        g.units = ceil_div(keys, cuda::hopper_config(hd).block_n);
        g.resident = sms_;  // one block per SM (launch bounds)
      } else {
        k.kind = KernelKind::tensor_core;
        g.base = ceil_div(nq, cuda::tc_config(hd).block_m) * p.B * p.Hq;
        g.units = ceil_div(keys, cuda::tc_config(hd).block_n);
        g.resident = tc_blocks_per_sm(entry) * sms_;
      }
      g.min_units = 4;
      g.uniform = !p.causal || keys >= 4 * nq;
      grid_heads = p.B * p.Hq;
      grid_heads_name = "B * Hq";
      splits = cuda::tile_splits(g);
    }
    if (grid_heads > 65535)
      throw Unsupported("[longattn::cuda] " + std::string(grid_heads_name) + " = " +
                        std::to_string(grid_heads) + " exceeds the grid limit 65535");
    k.splits = static_cast<std::int32_t>(splits);
    if (splits == 1) return kernel_name(entry.launch(k, stream_), k.packed != 0);
    const std::int64_t n = p.B * p.Hq * nq;
    const std::int64_t o_at = (2 * splits * n + 3) / 4 * 4;  // part_o 16-byte aligned
    const auto bytes = static_cast<std::size_t>(o_at + splits * n * hd) * sizeof(float);
    StreamWorkspace& ws = workspace(bytes);
    k.part_m = ws.ptr;
    k.part_l = ws.ptr + splits * n;
    k.part_o = ws.ptr + o_at;
    std::lock_guard<std::mutex> hold(ws.launch);
    const KernelKind ran = entry.launch(k, stream_);
    cuda::launch_merge(k, stream_);
    return kernel_name(ran, k.packed != 0);
  }

  // This stream's split-K workspace (graph-owned under capture), at least
  // `bytes` large.
  StreamWorkspace& workspace(std::size_t bytes) {
    if (!workspace_ || workspace_->bytes < bytes)
      workspace_ = stream_workspace(device_, stream_, bytes);
    return *workspace_;
  }

  // The Hopper kernel serves 16-bit prefill at widths 64, 128 and 256
  // (`hopper`: the narrowest one built that holds D and Dv; none on other
  // GPUs), on rows TMA can read (16-byte aligned, unit last stride);
  // everything else, or LONGATTN_CUDA_PREFILL=mma, takes the mma.sync kernel.
  bool use_wgmma(const KernelParams& k, const cuda::LauncherEntry* hopper) const {
    if (hopper == nullptr || k.dtype == DType::float32 || !k.vec_q || !k.vec_k || !k.vec_v)
      return false;
    return !force_mma_;
  }

  // Packed decode on the Hopper kernel (hopper_decode_config): the same
  // layout conditions, a power-of-2 GQA group of at most 64 heads and at
  // most 64 packed rows (decode, short verification steps), unless
  // LONGATTN_CUDA_DECODE=vector.
  bool use_wgmma_decode(const Problem& p, const KernelParams& k, std::int64_t packed,
                        const cuda::LauncherEntry* hopper) const {
    if (p.dtype == DType::float32 || packed > 64 || p.group > 64 ||
        (p.group & (p.group - 1)) != 0 || !use_wgmma(k, hopper))
      return false;
    return !vector_decode_;
  }

  // Resident mma.sync-kernel blocks per SM for this (dtype, head_dim).
  std::int64_t tc_blocks_per_sm(const cuda::LauncherEntry& e) const {
    return cuda::blocks_per_sm(device_, e.dtype * 1024 + e.head_dim, e.tc_blocks_per_sm);
  }

  std::optional<double> end_submission() override {
    auto [start, end] = events_[next_event_];
    check_cuda(cudaEventRecord(end, stream_), "cudaEventRecord(submission end)");
    if (host_wait_) {
      check_cuda(cudaEventSynchronize(end), "cudaEventSynchronize(submission end)");
      return elapsed(start, end);
    }
    ++next_event_;
    return std::nullopt;
  }

  std::vector<double> finish() override {
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    std::vector<double> times;
    for (std::size_t i = 0; i < next_event_; ++i)
      times.push_back(elapsed(events_[i].first, events_[i].second));
    next_event_ = 0;
    return times;
  }

 private:
  static double elapsed(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0.f;
    check_cuda(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    return static_cast<double>(ms);
  }

  cudaStream_t stream_ = nullptr;
  bool host_wait_ = true;
  int device_ = 0;
  int sms_ = 1;
  bool hopper_ = false;
  bool force_mma_ = false;      // LONGATTN_CUDA_PREFILL=mma
  bool vector_decode_ = false;  // LONGATTN_CUDA_DECODE=vector
  std::string device_name_;
  std::shared_ptr<StreamWorkspace> workspace_;  // taken by the first split-K dispatch
  std::vector<float*> states_;
  std::uint8_t* blocks_ = nullptr;  // the mask's summary (summarize_mask), stream-ordered
  core::MaskCost cost_;
  // (start, end) event pairs; [0, next_event_) are submissions not yet
  // timed (host_wait off), reused after finish().
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> events_;
  std::size_t next_event_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const BackendConfig& cfg) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    throw Unsupported(
        std::string("[longattn::cuda] no CUDA device is available (cudaGetDeviceCount: ") +
        (e != cudaSuccess ? cudaGetErrorName(e) : "0 devices") + ")");
  }
  return std::make_unique<CudaBackend>(cfg);
}

bool cuda_available() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return n > 0;
}

std::vector<std::int64_t> cuda_head_dims() {
  std::vector<std::int64_t> dims;
  for (int i = 0; i < cuda::kNumLaunchers; ++i) dims.push_back(cuda::kLaunchers[i].head_dim);
  std::sort(dims.begin(), dims.end());
  dims.erase(std::unique(dims.begin(), dims.end()), dims.end());
  return dims;
}

std::shared_ptr<void> cuda_upload(const void* host, std::size_t bytes) {
  void* p = cuda::device_alloc(std::max<std::size_t>(bytes, 1), "calibration inputs");
  std::shared_ptr<void> owned(p, [](void* q) { (void)cudaFree(q); });
  check_cuda(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy(calibration inputs)");
  return owned;
}

}  // namespace longattn::core
