// The CPU kernel's source, compiled five times (kernel_amx.cpp with AMX
// tiles, kernel_avx512bf16.cpp with AVX512-BF16, kernel_avx512.cpp with
// AVX-512 F/BW/DQ/VL, kernel_avx2.cpp with -mavx2 -mfma -mf16c,
// kernel_generic.cpp portable), each inside its own namespace
// LONGATTN_KERNEL_NS so the builds never share an inline definition. The
// builds differ only in their matrix products: the AVX-512 one in its
// micro-kernel (16-float vectors and 32 registers: 6 x 64 blocks instead of
// 6 x 16), the BF16 and AMX ones in the bfloat16 products they give
// bfloat16 inputs (vdpbf16ps, or TDPBF16PS on tiles; see kBf16Dot).
//
// Per work item (batch b, KV head g, a run of queries): R rows = the `group`
// query heads of g times nq queries. For each key tile of kKeys keys (128 in
// the AVX-512 builds, 64 in the AVX2 and portable ones):
//   S = (scale*log2e * Q) . K^T           (6x16 register-blocked FMA kernel)
//   soft-cap S (if set), then mask S (causal / array) in place
//   online softmax per row in base 2      (m, l, rescale O)
//   O += P . V                            (the same FMA kernel)
// Never an Lq x Lk matrix: S is R x kKeys. K and V are converted to float32 and
// packed once per item and tile, for all the query heads that read them.
#include <omp.h>

#include <memory>
#include <new>
#include <optional>
#include <vector>

#include "core/faults.hpp"
#include "core/half.hpp"
#include "core/mask_blocks.hpp"
// The vector helpers and matrix products, with the standard, intrinsics
// and tile headers they take.
#include "cpu/kernel_simd.hpp"

namespace longattn::cpu::LONGATTN_KERNEL_NS {
namespace {

// n elements of a strided row of `t` -> contiguous float32.
inline void convert_row(const void* base, std::int64_t off, std::int64_t stride, DType t, int n,
                        float* dst) {
  if (stride == 1) {
    switch (t) {
      case DType::float32:
        std::memcpy(dst, static_cast<const float*>(base) + off, static_cast<std::size_t>(n) * 4);
        return;
      case DType::bfloat16: {
        const auto* s = static_cast<const std::uint16_t*>(base) + off;
        for (int i = 0; i < n; ++i) {
          const std::uint32_t u = static_cast<std::uint32_t>(s[i]) << 16;
          std::memcpy(dst + i, &u, 4);
        }
        return;
      }
      case DType::float16: {
        const auto* s = static_cast<const std::uint16_t*>(base) + off;
        int i = 0;
#if defined(__F16C__)
        for (; i + 8 <= n; i += 8)
          _mm256_storeu_ps(
              dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
#endif
        for (; i < n; ++i) dst[i] = core::fp16_to_float(s[i]);
        return;
      }
      default:
        break;
    }
  }
  for (int i = 0; i < n; ++i) dst[i] = core::load_as_float(base, off + i * stride, t);
}

#if defined(__AVX512F__)
// The 16 x 16 block at src (lds floats a row) transposed to dst (ldd a
// row), in 16-float vectors: pairs of rows interleaved by 32 then 64 bits,
// then 128-bit lanes gathered in two steps. 64 shuffles for 256 floats,
// where the 8 x 8 AVX2 blocks below take 96. (The all-lanes masked
// intrinsics, as max512 in kernel_simd.hpp: GCC 12's unmasked ones pass an
// uninitialized merge source.)
inline void transpose16x16(const float* src, std::int64_t lds, float* dst, std::int64_t ldd) {
  constexpr __mmask16 kAll = 0xFFFF;
  const auto unpack64 = [](__m512 a, __m512 b, bool high) {
    const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
    return _mm512_castpd_ps(high ? _mm512_mask_unpackhi_pd(x, 0xFF, x, y)
                                 : _mm512_mask_unpacklo_pd(x, 0xFF, x, y));
  };
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {  // lane L of t[i]: rows i, i+1 at columns 4L, 4L+1
    t[i] = _mm512_mask_unpacklo_ps(r[i], kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_mask_unpackhi_ps(r[i], kAll, r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // lane L of r[i + k]: rows i..i+3 at column 4L + k
    r[i] = unpack64(t[i], t[i + 2], false);
    r[i + 1] = unpack64(t[i], t[i + 2], true);
    r[i + 2] = unpack64(t[i + 1], t[i + 3], false);
    r[i + 3] = unpack64(t[i + 1], t[i + 3], true);
  }
  // Lanes 0 and 2 (0x88) or 1 and 3 (0xDD) of x, then of y.
  const auto lanes = [](__m512 x, __m512 y, bool odd) {
    return odd ? _mm512_mask_shuffle_f32x4(x, kAll, x, y, 0xDD)
               : _mm512_mask_shuffle_f32x4(x, kAll, x, y, 0x88);
  };
  for (int k = 0; k < 4; ++k) {  // column 4L + k: lane L of r[k], r[4 + k], r[8 + k], r[12 + k]
    const __m512 a = lanes(r[k], r[4 + k], false), b = lanes(r[k], r[4 + k], true);
    const __m512 c = lanes(r[8 + k], r[12 + k], false), d = lanes(r[8 + k], r[12 + k], true);
    _mm512_storeu_ps(dst + k * ldd, lanes(a, c, false));
    _mm512_storeu_ps(dst + (4 + k) * ldd, lanes(b, d, false));
    _mm512_storeu_ps(dst + (8 + k) * ldd, lanes(a, c, true));
    _mm512_storeu_ps(dst + (12 + k) * ldd, lanes(b, d, true));
  }
}
#endif

// dst[d * ldd + j] = src[j * lds + d] for j < rows, d < cols (a transpose).
inline void transpose(const float* src, std::int64_t lds, int rows, int cols, float* dst,
                      std::int64_t ldd) {
  int j = 0;
#if defined(__AVX512F__)
  for (; j + 16 <= rows && cols % 16 == 0; j += 16)
    for (int d = 0; d < cols; d += 16)
      transpose16x16(src + j * lds + d, lds, dst + d * ldd + j, ldd);
#endif
#if defined(__AVX2__)
  for (; j + 8 <= rows; j += 8) {
    int d = 0;
    for (; d + 8 <= cols; d += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (j + i) * lds + d);
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      const __m256 o[8] = {
          _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
          _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
          _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
          _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (d + i) * ldd + j, o[i]);
    }
    for (; d < cols; ++d)
      for (int i = 0; i < 8; ++i) dst[d * ldd + j + i] = src[(j + i) * lds + d];
  }
#endif
  for (; j < rows; ++j)
    for (int d = 0; d < cols; ++d) dst[d * ldd + j] = src[j * lds + d];
}

int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Row strides of the packed K^T and V tiles, padded by 16 floats: at 64 or
// 128 floats (256 or 512 bytes) the 16-column panel the FMA kernel walks
// down would map every row into the same few L1 sets and evict itself.
constexpr int kKtStride = kKeys + 16;
inline int v_stride(int dvp) { return dvp + 16; }

// Scratch memory on 64-byte boundaries: whole cache lines for the vector
// loads, and for the AMX tile rows (every row stride is a multiple of 64
// bytes).
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, std::size_t) { ::operator delete (p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const Aligned64<U>&) const {
    return true;
  }
};
template <class T>
using AlignedVector = std::vector<T, Aligned64<T>>;

// Per-thread scratch, sized once per call.
struct Scratch {
  AlignedVector<float> q, s, o, kt, v, tmp, m, l;
  // The bfloat16-pair operands (kBf16Dot): Q rows, K^T, V and P.
  AlignedVector<std::uint32_t> qb, kb, vb, pb;
};

// bfloat16 inputs take bfloat16 products in builds that have them: Q K^T
// on the inputs' own bfloat16 values (exact products, float32 sums), and
// P V with P rounded to bfloat16, as GPU kernels do; the softmax stays
// float32. kernel_avx512bf16.cpp multiplies with vdpbf16ps, kernel_amx.cpp
// with AMX tiles (TDPBF16PS) on the same operand layouts.
#if defined(__AVX512BF16__)
inline constexpr bool kBf16Dot = true;
#else
inline constexpr bool kBf16Dot = false;
#endif
#if defined(LONGATTN_KERNEL_AMX)
inline constexpr bool kAmx = true;
#else
inline constexpr bool kAmx = false;
#endif
// The bfloat16 products run on blocks of this many rows (scores, softmax,
// P V), so that a block's scores stay in the L1 cache: two tiles of 16 for
// AMX, eight 6-row micro-kernels for vdpbf16ps.
inline constexpr int kRowBlock = kAmx ? 32 : 48;
// Rows of the small items that end a dispatch with few items a thread (see
// the kernel's entry): one row block, two on AMX tiles (32 rows a tile pair,
// so that 48 would pad to 64).
inline constexpr int kTailRows = kAmx ? 2 * kRowBlock : kRowBlock;

struct Item {
  std::int64_t b, g, i0;  // batch, KV head, first query of the run
};

class Rectangle {
 public:
  // `item_rows`: the rows of a work item aimed at (the query heads of a KV
  // head times the queries of a run).
  Rectangle(const Problem& p, const Rect& r, Mode mode, const StateView& st,
            int item_rows = kItemRows)
      : p_(p), r_(r), mode_(mode), st_(st) {
    nq_ = static_cast<int>(std::max<std::int64_t>(1, item_rows / p.group));
    nq_ = static_cast<int>(std::min<std::int64_t>(nq_, std::max<std::int64_t>(1, r.q1 - r.q0)));
    rows_ = static_cast<int>(p.group) * nq_;
    dvp_ = round_up(static_cast<int>(p.Dv), 16);
    // Decode-sized items (a GQA group of one query) spend their time packing,
    // not multiplying: they keep the float32 products.
    dot_ = kBf16Dot && p.dtype == DType::bfloat16 && rows_ >= 24;
    // AMX tiles take 32 rows at a time (two tiles of 16) and K in steps of
    // 16 pairs: rows and Q's pairs are padded with zeros to those.
    tiles_ = dot_ && kAmx;
    rows_pad_ = round_up(rows_, tiles_ ? 32 : 6);
    dpairs_ = static_cast<int>((p.D + 1) / 2);
    qk_pairs_ = tiles_ ? round_up(dpairs_, 16) : dpairs_;
  }

  // Whether this rectangle's items multiply on AMX tiles (each thread that
  // runs them loads the tile configuration first).
  bool uses_tiles() const { return tiles_; }

  int queries_per_item() const { return nq_; }
  std::int64_t items_per_head() const { return (r_.q1 - r_.q0 + nq_ - 1) / nq_; }
  std::int64_t run_start(std::int64_t run) const { return r_.q0 + run * nq_; }

  void prepare(Scratch& s) const {
    const auto R = static_cast<std::size_t>(rows_pad_), D = static_cast<std::size_t>(p_.D);
    s.q.assign(R * D, 0.f);
    s.s.assign(R * kKeys, 0.f);
    s.o.assign(R * static_cast<std::size_t>(dvp_), 0.f);
    s.kt.assign(D * kKtStride, 0.f);
    s.v.assign(static_cast<std::size_t>(kKeys) * static_cast<std::size_t>(v_stride(dvp_)), 0.f);
    s.tmp.assign(static_cast<std::size_t>(kKeys) * std::max(D, static_cast<std::size_t>(p_.Dv)),
                 0.f);
    s.m.assign(R, -INFINITY);
    s.l.assign(R, 0.f);
    if (dot_) {
      const auto P = static_cast<std::size_t>(qk_pairs_), KP = std::size_t{kKeys / 2};
      s.qb.assign(R * P, 0u);
      s.kb.assign(P * kKeys, 0u);
      s.vb.assign(KP * static_cast<std::size_t>(dvp_), 0u);
      s.pb.assign(R * KP, 0u);
    }
  }

  void run(const Item& it, Scratch& s) const {
    const int nrow_q = rows_of(it);
    load_q(it, nrow_q, s);
    load_state(it, nrow_q, s);
    run_keys(it, nrow_q, 0, 1, s);
    finish(it, nrow_q, s);
  }

  // Split-K: part `part` of `parts` of the item's key tiles, from a fresh
  // (empty) state, its rows' partial state written to `out` (partial_floats
  // floats: m and l of each padded row, then their o).
  std::int64_t partial_floats() const { return static_cast<std::int64_t>(rows_pad_) * (dvp_ + 2); }
  void run_part(const Item& it, int part, int parts, Scratch& s, float* out) const {
    const int nrow_q = rows_of(it);
    load_q(it, nrow_q, s);
    std::fill(s.m.begin(), s.m.end(), -INFINITY);
    std::fill(s.l.begin(), s.l.end(), 0.f);
    std::fill(s.o.begin(), s.o.end(), 0.f);
    run_keys(it, nrow_q, part, parts, s);
    std::copy(s.m.begin(), s.m.begin() + rows_pad_, out);
    std::copy(s.l.begin(), s.l.begin() + rows_pad_, out + rows_pad_);
    std::copy(s.o.begin(), s.o.end(), out + 2 * rows_pad_);
  }
  // The item's starting state (sinks, or the running state) merged with
  // its parts' partial states (core::merge_factors), then its output or
  // running state written.
  void merge_parts(const Item& it, int parts, const float* partials, Scratch& s) const {
    const int nrow_q = rows_of(it);
    load_state(it, nrow_q, s);
    for (int part = 0; part < parts; ++part) {
      const float* pm = partials + part * partial_floats();
      const float* pl = pm + rows_pad_;
      const float* po = pm + 2 * rows_pad_;
      for (int r = 0; r < rows_pad_; ++r) {
        float& m = s.m[static_cast<std::size_t>(r)];
        float& l = s.l[static_cast<std::size_t>(r)];
        const core::MergeFactors f = core::merge_factors(m, pm[r], exp2s);
        l = l * f.a + pl[r] * f.b;
        m = f.m;
        float* o = s.o.data() + r * dvp_;
        const float* q = po + r * dvp_;
        for (int d = 0; d < dvp_; ++d) o[d] = o[d] * f.a + q[d] * f.b;
      }
    }
    finish(it, nrow_q, s);
  }
  // Key tiles of an item's run inside the rectangle.
  std::int64_t key_tiles(const Item& it) const {
    const std::int64_t i_end = std::min(r_.q1, it.i0 + nq_);
    const std::int64_t k_end = std::min(r_.k1, p_.key_end(i_end - 1));
    const std::int64_t k_begin = std::max(r_.k0, p_.key_begin(it.i0));
    return k_end > k_begin ? (k_end - k_begin + kKeys - 1) / kKeys : 0;
  }

 private:
  int rows_of(const Item& it) const {
    return static_cast<int>(std::min(r_.q1, it.i0 + nq_) - it.i0);
  }
  void finish(const Item& it, int nrow_q, const Scratch& s) const {
    if (core::writes_output(mode_))
      write_out(it, nrow_q, s);
    else
      store_state(it, nrow_q, s);
  }

  // The key tiles of part `part` of `parts` (an even share of the tiles)
  // into the state held in s.
  void run_keys(const Item& it, int nrow_q, int part, int parts, Scratch& s) const {
    const std::int64_t i_end = it.i0 + nrow_q;
    // Keys this run of queries can see inside the rectangle: [k_begin,
    // k_end). Every row sees [all_from, all_see), so only tiles reaching
    // outside it need the causal / window rule applied per row.
    const std::int64_t k_end = std::min(r_.k1, p_.key_end(i_end - 1));
    const std::int64_t k_begin = std::max(r_.k0, p_.key_begin(it.i0));
    const std::int64_t all_see = std::min(r_.k1, p_.key_end(it.i0));
    const std::int64_t all_from = p_.key_begin(i_end - 1);
    const std::int64_t tiles = k_end > k_begin ? (k_end - k_begin + kKeys - 1) / kKeys : 0;
    const std::int64_t per = (tiles + parts - 1) / parts;
    const std::int64_t from = k_begin + std::min(tiles, part * per) * kKeys;
    const std::int64_t to = std::min(k_end, k_begin + std::min(tiles, (part + 1) * per) * kKeys);
    for (std::int64_t kb = from; kb < to; kb += kKeys) {
      if (core::planted(core::Fault::drop_chunk) && mode_ == Mode::single_pass &&
          kb + kKeys >= r_.k1)
        continue;  // faults.hpp: the rectangle's last key tile is lost
      const int nk = static_cast<int>(std::min<std::int64_t>(kKeys, k_end - kb));
      // A tile the mask hides from every row of the run adds nothing.
      if (core::mask_hides(p_, it.b, it.g * p_.group, (it.g + 1) * p_.group, it.i0, i_end, kb,
                           kb + nk))
        continue;
      const bool edge = kb + nk > all_see || kb < all_from;
      if (dot_) {
        tile_bf16(it, nrow_q, kb, nk, edge, s);
        continue;
      }
      pack_k(it, kb, nk, s);
      // Only the tile's keys, rounded up to the product's 16 columns, are
      // multiplied (a chunk's or a causal run's last tile is often short):
      // mask_tile sets every score past nk to -inf, so S's columns left
      // from an earlier tile are never read.
      gemm<false>(rows_pad_, round_up(nk, 16), static_cast<int>(p_.D), s.q.data(), p_.D,
                  s.kt.data(), kKtStride, s.s.data(), kKeys);
      mask_tile(it, nrow_q, kb, nk, edge, 0, rows_pad_, s);
      if (!softmax_tile(nk, s)) continue;  // every row fully masked here
      pack_v(it, kb, nk, s);
      gemm<true>(rows_pad_, dvp_, nk, s.s.data(), kKeys, s.v.data(), v_stride(dvp_), s.o.data(),
                 dvp_);
    }
  }

  // One key tile on the bfloat16 products, a block of kRowBlock rows at a
  // time (scores, mask, softmax, P V), so that the block's scores stay in
  // the L1 cache between the steps. V is packed when a first row sees a key.
  void tile_bf16(const Item& it, int nrow_q, std::int64_t kb, int nk, bool edge, Scratch& s) const {
    pack_k_bf16(it, kb, nk, s);
    // The scale to base 2 is applied by the softmax as it loads the scores
    // (saving a pass over them) when the mask only writes -inf, which a
    // positive scale keeps; a soft-cap or an additive mask needs the scaled
    // logit first.
    const bool late =
        p_.scale_log2 > 0 && p_.softcap_log2 == 0 && p_.mask_kind != MaskKind::additive;
    bool v_packed = false;
    for (int r0 = 0; r0 < rows_; r0 += kRowBlock) {  // blocks of padding rows only are skipped
      const int r1 = std::min(r0 + kRowBlock, rows_pad_);
      gemm_qk_bf16(r0, r1, nk, late ? 1.f : p_.scale_log2, s);
      mask_tile(it, nrow_q, kb, nk, edge, r0, r1, s);
      if (!softmax_bf16(r0, r1, late ? p_.scale_log2 : 1.f, s))
        continue;  // every row of the block fully masked here
      if (!v_packed) pack_v_bf16(it, kb, nk, s);
      v_packed = true;
      gemm_pv_bf16(r0, r1, s);
    }
  }

  // Row r of an item is (head h = g*group + r / nq, query i = i0 + r % nq).
  std::int64_t head(const Item& it, int r) const { return it.g * p_.group + r / nq_; }
  std::int64_t query(const Item& it, int r) const { return it.i0 + r % nq_; }
  bool valid(int r, int nrow_q) const { return r < rows_ && r % nq_ < nrow_q; }
  std::int64_t state_index(const Item& it, int r) const {
    return (it.b * p_.Hq + head(it, r)) * st_.rows + (query(it, r) - st_.q0);
  }

  void load_q(const Item& it, int nrow_q, Scratch& s) const {
    if (dot_) return load_q_bf16(it, nrow_q, s);
    const int D = static_cast<int>(p_.D);
    for (int r = 0; r < rows_pad_; ++r) {
      float* dst = s.q.data() + r * D;
      if (!valid(r, nrow_q)) {
        std::fill(dst, dst + D, 0.f);
        continue;
      }
      const std::int64_t off =
          it.b * p_.q_stride[0] + head(it, r) * p_.q_stride[1] + query(it, r) * p_.q_stride[2];
      convert_row(p_.q, off, p_.q_stride[3], p_.dtype, D, dst);
      for (int d = 0; d < D; ++d) dst[d] *= p_.scale_log2;
    }
  }

  void load_state(const Item& it, int nrow_q, Scratch& s) const {
    const bool fresh = !core::reads_state(mode_);
    for (int r = 0; r < rows_pad_; ++r) {
      float* o = s.o.data() + r * dvp_;
      if (!valid(r, nrow_q) || fresh) {
        std::fill(o, o + dvp_, 0.f);
        s.m[static_cast<std::size_t>(r)] = -INFINITY;
        s.l[static_cast<std::size_t>(r)] = 0.f;
        if (valid(r, nrow_q) && p_.sinks) {  // the sink enters once, with the fresh state
          s.m[static_cast<std::size_t>(r)] = core::sink_m(p_.sinks[head(it, r) * p_.sinks_stride]);
          s.l[static_cast<std::size_t>(r)] = 1.f;
        }
        continue;
      }
      const std::int64_t si = state_index(it, r);
      s.m[static_cast<std::size_t>(r)] = st_.m[si];
      s.l[static_cast<std::size_t>(r)] = st_.l[si];
      std::memcpy(o, st_.o + si * p_.Dv, static_cast<std::size_t>(p_.Dv) * 4);
      std::fill(o + p_.Dv, o + dvp_, 0.f);
    }
  }

  void store_state(const Item& it, int nrow_q, const Scratch& s) const {
    for (int r = 0; r < rows_; ++r) {
      if (!valid(r, nrow_q)) continue;
      const std::int64_t si = state_index(it, r);
      st_.m[si] = s.m[static_cast<std::size_t>(r)];
      st_.l[si] = s.l[static_cast<std::size_t>(r)];
      std::memcpy(st_.o + si * p_.Dv, s.o.data() + r * dvp_, static_cast<std::size_t>(p_.Dv) * 4);
    }
  }

  void write_out(const Item& it, int nrow_q, const Scratch& s) const {
    for (int r = 0; r < rows_; ++r) {
      if (!valid(r, nrow_q)) continue;
      const std::int64_t i = query(it, r);
      std::int64_t h = head(it, r);
      const float m = s.m[static_cast<std::size_t>(r)], l = s.l[static_cast<std::size_t>(r)];
      const float inv = core::inv_sum(l);
      // Planted faults (faults.hpp): one row written as zeros, heads 0 and 1 swapped.
      const bool zeroed = core::planted(core::Fault::zero_row) && it.b == 0 && h == 0 &&
                          i == std::min<std::int64_t>(1, p_.Lq - 1);
      if (core::planted(core::Fault::swap_heads) && p_.Hq >= 2 && h < 2) h = 1 - h;
      const std::int64_t off = it.b * p_.o_stride[0] + h * p_.o_stride[1] + i * p_.o_stride[2];
      const float* o = s.o.data() + r * dvp_;
      for (std::int64_t d = 0; d < p_.Dv; ++d)
        core::store_from_float(p_.o, off + d * p_.o_stride[3], p_.dtype, zeroed ? 0.f : o[d] * inv);
      if (p_.lse)
        p_.lse[it.b * p_.lse_stride[0] + h * p_.lse_stride[1] + i * p_.lse_stride[2]] =
            core::lse_base_e(m, l);
    }
  }

  // The bfloat16-pair path (dot_). One row's elements d and d + 1 of a
  // bfloat16 tensor as a pair (zero past `n`).
  static std::uint32_t raw_pair(const void* base, std::int64_t off, std::int64_t stride,
                                std::int64_t d, std::int64_t n) {
    const auto* x = static_cast<const std::uint16_t*>(base) + off;
    const std::uint32_t lo = d < n ? x[d * stride] : 0u, hi = d + 1 < n ? x[(d + 1) * stride] : 0u;
    return lo | (hi << 16);
  }
  // Q rows as pairs, unscaled (S is scaled after the product).
  void load_q_bf16(const Item& it, int nrow_q, Scratch& s) const {
    for (int r = 0; r < rows_pad_; ++r) {
      std::uint32_t* dst = s.qb.data() + r * qk_pairs_;
      if (!valid(r, nrow_q)) {
        std::fill(dst, dst + qk_pairs_, 0u);
        continue;
      }
      const std::int64_t off =
          it.b * p_.q_stride[0] + head(it, r) * p_.q_stride[1] + query(it, r) * p_.q_stride[2];
      for (int dp = 0; dp < dpairs_; ++dp)
        dst[dp] = raw_pair(p_.q, off, p_.q_stride[3], 2 * dp, p_.D);
      std::fill(dst + dpairs_, dst + qk_pairs_, 0u);  // AMX's K padding
    }
  }
  // Kb[dp][j] = (K[kb + j][2 dp], K[kb + j][2 dp + 1]), zero past nk (and,
  // for AMX, in rows dpairs_ .. qk_pairs_, which prepare() zeroed and
  // nothing writes).
  void pack_k_bf16(const Item& it, std::int64_t kb, int nk, Scratch& s) const {
    const std::int64_t base = it.b * p_.k_stride[0] + it.g * p_.k_stride[1];
    if (p_.k_stride[3] == 1 && p_.D % 2 == 0 && p_.k_stride[2] % 2 == 0 &&
        reinterpret_cast<std::uintptr_t>(p_.k) % 4 == 0) {
      // Contiguous rows are already pairs: a 32-bit transpose.
      const auto* words = reinterpret_cast<const float*>(static_cast<const std::uint16_t*>(p_.k) +
                                                         base + kb * p_.k_stride[2]);
      auto* dst = reinterpret_cast<float*>(s.kb.data());
      transpose(words, p_.k_stride[2] / 2, nk, dpairs_, dst, kKeys);
      for (int dp = 0; dp < dpairs_; ++dp)
        std::fill(s.kb.begin() + dp * kKeys + nk, s.kb.begin() + (dp + 1) * kKeys, 0u);
      return;
    }
    for (int j = 0; j < kKeys; ++j) {
      const std::int64_t off = base + (kb + j) * p_.k_stride[2];
      for (int dp = 0; dp < dpairs_; ++dp)
        s.kb[static_cast<std::size_t>(dp * kKeys + j)] =
            j < nk ? raw_pair(p_.k, off, p_.k_stride[3], 2 * dp, p_.D) : 0u;
    }
  }
  // S = Q K^T on rows [r0, r1) and the tile's nk keys (rounded up to the
  // product's column step; as in run_keys, mask_tile sets the rest to
  // -inf), then multiplied by `sc` (the scale to base 2, or 1 when the
  // softmax applies it).
  void gemm_qk_bf16(int r0, int r1, int nk, float sc, Scratch& s) const {
    const std::uint32_t* q = s.qb.data() + r0 * qk_pairs_;
    float* out = s.s.data() + r0 * kKeys;
    const int n = round_up(nk, kAmx ? 32 : 16);
#if defined(LONGATTN_KERNEL_AMX)
    for (int r = 0; r < r1 - r0; r += 32)
      amx_qk_32xkeys(qk_pairs_, q + r * qk_pairs_, qk_pairs_, s.kb.data(), n, out + r * kKeys);
#elif defined(__AVX512BF16__)
    gemm_bf16<false>(r1 - r0, n, dpairs_, q, qk_pairs_, s.kb.data(), kKeys, out, kKeys);
#else
    (void)q;  // builds without bfloat16 products never get here (dot_ is false)
#endif
    if (sc != 1.f)
      for (int r = 0; r < r1 - r0; ++r)
        for (int j = 0; j < n; ++j) out[r * kKeys + j] *= sc;
  }
  // Vb[kp][n] = (V[kb + 2 kp][n], V[kb + 2 kp + 1][n]), zero past nk.
  void pack_v_bf16(const Item& it, std::int64_t kb, int nk, Scratch& s) const {
    const std::int64_t base = it.b * p_.v_stride[0] + it.g * p_.v_stride[1];
    const auto* v = static_cast<const std::uint16_t*>(p_.v);
    for (int kp = 0; kp < kKeys / 2; ++kp) {
      std::uint32_t* dst = s.vb.data() + kp * dvp_;
      const int j = 2 * kp;
      const std::uint16_t* r0 = j < nk ? v + base + (kb + j) * p_.v_stride[2] : nullptr;
      const std::uint16_t* r1 = j + 1 < nk ? v + base + (kb + j + 1) * p_.v_stride[2] : nullptr;
      const int dv = static_cast<int>(p_.Dv);
      if (r0 && r1 && p_.v_stride[3] == 1) {  // the common case, vectorized
        int n = 0;
#if defined(__AVX512BW__)
        // 32 columns at a time: 16-bit interleaves within 128-bit lanes give
        // the pairs of columns 8L..8L+3 (lo) and 8L+4..8L+7 (hi) in lane L,
        // put back in column order by two 64-bit permutes.
        const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
        const __m512i second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
        for (; n + 32 <= dv; n += 32) {
          const __m512i a = _mm512_loadu_si512(r0 + n), b = _mm512_loadu_si512(r1 + n);
          const __m512i lo = _mm512_mask_unpacklo_epi16(a, ~__mmask32{0}, a, b);
          const __m512i hi = _mm512_mask_unpackhi_epi16(a, ~__mmask32{0}, a, b);
          _mm512_storeu_si512(dst + n, _mm512_permutex2var_epi64(lo, first, hi));
          _mm512_storeu_si512(dst + n + 16, _mm512_permutex2var_epi64(lo, second, hi));
        }
#endif
        for (; n < dv; ++n)
          dst[n] = static_cast<std::uint32_t>(r0[n]) | (static_cast<std::uint32_t>(r1[n]) << 16);
      } else {
        for (int n = 0; n < dv; ++n) {
          const std::uint32_t lo = r0 ? r0[n * p_.v_stride[3]] : 0u;
          const std::uint32_t hi = r1 ? r1[n * p_.v_stride[3]] : 0u;
          dst[n] = lo | (hi << 16);
        }
      }
      std::fill(dst + dv, dst + dvp_, 0u);
    }
  }
  // O += P V on rows [r0, r1), P as softmax_bf16 left it (bfloat16 pairs).
  void gemm_pv_bf16(int r0, int r1, Scratch& s) const {
    constexpr int KP = kKeys / 2;
    const std::uint32_t* p = s.pb.data() + r0 * KP;
    float* o = s.o.data() + r0 * dvp_;
#if defined(LONGATTN_KERNEL_AMX)
    for (int r = 0; r < r1 - r0; r += 32) amx_pv_32xn(dvp_, p + r * KP, s.vb.data(), o + r * dvp_);
#elif defined(__AVX512BF16__)
    gemm_bf16<true>(r1 - r0, dvp_, KP, p, KP, s.vb.data(), dvp_, o, dvp_);
#else
    (void)p, (void)o, (void)r1;
#endif
  }

#if defined(__AVX512F__)
  // O's row o *= alpha (dvp_ floats).
  void rescale16(float* o, float alpha) const {
    for (int d = 0; d < dvp_; d += 16)
      _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), _mm512_set1_ps(alpha)));
  }
  // One row's online-softmax step over one tile, on 16-float vectors (both
  // softmaxes): x holds the row's scores, which count as sc * x (sc > 0: 1
  // when already scaled, else the scale to base 2). p receives
  // 2^(sc x - shift), and row r's (m, l) and O row are updated. Returns false,
  // leaving everything untouched, if the row has seen no visible key yet
  // (the caller writes a zero P row). mask_tile set every score past the
  // tile's keys to -inf, whose 2^x is 0.
  //
  // The max is taken on x, not on sc x: a positive factor's rounding is
  // monotone, so max(m, sc * max x) is the largest scaled score exactly,
  // and the scale then rides in the FMA that subtracts the shift. A NaN
  // score needs no compare on the way: its p is NaN (exp2_16 keeps NaN),
  // which makes l and, through P V, every column of O NaN, so the row ends
  // NaN as online_step documents (m itself may stay finite; the output and
  // the LSE are NaN either way). Only a row whose max came out -inf, which
  // would skip the tile, is searched for NaN.
  template <int NV>
  [[gnu::always_inline]] bool online_row16(const v16f (&x)[NV], float sc, int r, Scratch& s,
                                           v16f (&p)[NV]) const {
    static_assert(NV % 2 == 0);  // kKeys % 32 == 0
    float& m = s.m[static_cast<std::size_t>(r)];
    float& l = s.l[static_cast<std::size_t>(r)];
    __m512 mx[2] = {__m512(x[0]), __m512(x[1])};  // two chains
    for (int v = 2; v < NV; ++v) mx[v % 2] = max512(mx[v % 2], __m512(x[v]));
    float m_new = std::max(m, sc * hmax(v16f(max512(mx[0], mx[1]))));
    if (m_new == -INFINITY) {
      if (!any_nan(x)) return false;  // nothing visible yet
      m_new = NAN;
    }
    const core::OnlineStep st = core::online_step(m, m_new, exp2s);
    const __m512 scv = _mm512_set1_ps(sc), neg = _mm512_set1_ps(-st.shift);
    v16f sum = v16f{};
    for (int v = 0; v < NV; ++v) {
      p[v] = exp2_16(v16f(_mm512_fmadd_ps(__m512(x[v]), scv, neg)));
      sum += p[v];
    }
    const float tile_sum = hsum(sum);
    l = l * st.alpha + tile_sum;
    m = m_new;
    if (st.alpha != 1.f) rescale16(s.o.data() + r * dvp_, st.alpha);
    return true;
  }
#endif

  // The online softmax of rows [r0, r1) of one tile for the bfloat16
  // products: as softmax_tile, on 16-float vectors, with P written to s.pb
  // as bfloat16 pairs (round to nearest even; l sums the float32 values).
  // The scores are multiplied by `sc` first (1 when already scaled).
  // Returns false if no row saw any key.
  bool softmax_bf16(int r0, int r1, float sc, Scratch& s) const {
#if defined(__AVX512BF16__)
    constexpr int KP = kKeys / 2, NV = kKeys / 16;  // kKeys % 32 == 0 (kernel_simd.hpp)
    bool any = false;
    for (int r = r0; r < r1; ++r) {
      const float* row = s.s.data() + r * kKeys;
      std::uint32_t* dst = s.pb.data() + r * KP;
      // mask_tile set every score past the tile's keys to -inf.
      v16f x[NV], p[NV];
      for (int v = 0; v < NV; ++v) x[v] = load16(row + 16 * v);
      if (!online_row16(x, sc, r, s, p)) {
        std::fill(dst, dst + KP, 0u);  // P row = 0
        continue;
      }
      any = true;
      for (int v = 0; v < NV; v += 2)
        _mm512_storeu_si512(dst + 8 * v,
                            __m512i(_mm512_cvtne2ps_pbh(__m512(p[v + 1]), __m512(p[v]))));
    }
    return any;
#else
    (void)r0, (void)r1, (void)sc, (void)s;
    return false;
#endif
  }

  // Kt[d][j] = K[kb + j][d] as float32, zero past nk. Contiguous float32
  // rows are transposed straight from the caller's memory.
  void pack_k(const Item& it, std::int64_t kb, int nk, Scratch& s) const {
    const int D = static_cast<int>(p_.D);
    const std::int64_t base = it.b * p_.k_stride[0] + it.g * p_.k_stride[1];
    if (p_.dtype == DType::float32 && p_.k_stride[3] == 1) {
      transpose(static_cast<const float*>(p_.k) + base + kb * p_.k_stride[2], p_.k_stride[2], nk, D,
                s.kt.data(), kKtStride);
      if (nk < kKeys)
        for (int d = 0; d < D; ++d)
          std::fill(s.kt.data() + d * kKtStride + nk, s.kt.data() + d * kKtStride + kKeys, 0.f);
      return;
    }
    for (int j = 0; j < nk; ++j)
      convert_row(p_.k, base + (kb + j) * p_.k_stride[2], p_.k_stride[3], p_.dtype, D,
                  s.tmp.data() + j * D);
    if (nk < kKeys) std::fill(s.tmp.begin() + nk * D, s.tmp.begin() + kKeys * D, 0.f);
    transpose(s.tmp.data(), D, kKeys, D, s.kt.data(), kKtStride);
  }

  // V rows [kb, kb + nk) as float32, dvp columns, padded row stride. Always
  // copied, even for float32: the caller's row stride is usually a power of
  // two, the conflicting case kKtStride's comment describes.
  void pack_v(const Item& it, std::int64_t kb, int nk, Scratch& s) const {
    const std::int64_t base = it.b * p_.v_stride[0] + it.g * p_.v_stride[1];
    for (int j = 0; j < nk; ++j)
      convert_row(p_.v, base + (kb + j) * p_.v_stride[2], p_.v_stride[3], p_.dtype,
                  static_cast<int>(p_.Dv), s.v.data() + j * v_stride(dvp_));
  }

  // Scores past nk, hidden by the causal rule or the window, or dropped by
  // the mask array become -inf; an additive mask is added in base 2. The
  // soft-cap comes first, as the mask is added to the capped logit.
  // `edge`: some row of the run does not see every key of the tile.
  // Rows [r0, r1).
  void mask_tile(const Item& it, int nrow_q, std::int64_t kb, int nk, bool edge, int r0, int r1,
                 Scratch& s) const {
    const bool array = p_.mask_kind != MaskKind::none;
    // The soft-cap is defined on the natural logit s = scale * q.k, but S
    // already holds log2(e) * s (Q was scaled by scale_log2). With
    // c2 = log2(e) * softcap (softcap_log2): S / c2 = s / softcap, and
    // c2 * tanh(S / c2) = log2(e) * softcap * tanh(s / softcap), the capped
    // logit in base 2. Dividing (not multiplying by 1 / c2) keeps S = 0 at 0
    // when c2 is so small that its reciprocal overflows.
    const float cap2 = p_.softcap_log2;
    // The common case has nothing to do: a whole tile that every row sees
    // (no edge, no mask array, no soft-cap) and rows that all hold a query
    // (a full run: valid() is true below rows_), so no row is walked.
    if (!edge && !array && !(cap2 > 0) && nk == kKeys && nrow_q == nq_ && r1 <= rows_) return;
    for (int r = r0; r < r1; ++r) {
      float* row = s.s.data() + r * kKeys;
      if (!valid(r, nrow_q)) {
        std::fill(row, row + kKeys, -INFINITY);
        continue;
      }
      if (cap2 > 0)
        for (int j = 0; j < nk; ++j) row[j] = cap2 * std::tanh(row[j] / cap2);
      std::fill(row + nk, row + kKeys, -INFINITY);
      const std::int64_t i = query(it, r);
      if (edge) {
        const std::int64_t from = std::clamp<std::int64_t>(p_.key_begin(i) - kb, 0, nk);
        const std::int64_t to = std::clamp<std::int64_t>(p_.key_end(i) - kb, from, nk);
        std::fill(row, row + from, -INFINITY);
        std::fill(row + to, row + nk, -INFINITY);
      }
      if (!array) continue;
      const std::int64_t moff =
          it.b * p_.mask_stride[0] + head(it, r) * p_.mask_stride[1] + i * p_.mask_stride[2];
      const std::int64_t ms = p_.mask_stride[3];
      if (p_.mask_kind == MaskKind::boolean) {
        const auto* mk = static_cast<const std::uint8_t*>(p_.mask) + moff;
        for (int j = 0; j < nk; ++j)
          if (!mk[(kb + j) * ms]) row[j] = -INFINITY;
      } else {
        for (int j = 0; j < nk; ++j)
          row[j] +=
              core::load_as_float(p_.mask, moff + (kb + j) * ms, p_.mask_dtype) * core::kLog2e;
      }
    }
  }

  // Online softmax over one tile, in place: S becomes P. Returns false if
  // no row saw any key (then O, m, l are unchanged and P.V can be skipped).
  bool softmax_tile(int nk, Scratch& s) const {
#if defined(__AVX512F__)
    // Whole rows of 16-float vectors (8-float ones, below, took twice the
    // instructions): mask_tile left every score past nk at -inf, whose 2^x
    // is 0.
    (void)nk;
    constexpr int NV = kKeys / 16;
    bool any = false;
    for (int r = 0; r < rows_pad_; ++r) {
      float* row = s.s.data() + r * kKeys;
      v16f x[NV], p[NV];
      for (int v = 0; v < NV; ++v) x[v] = load16(row + 16 * v);
      if (!online_row16(x, 1.f, r, s, p)) {
        std::fill(row, row + kKeys, 0.f);  // P row = 0 (and no P.V)
        continue;
      }
      any = true;
      for (int v = 0; v < NV; ++v) store16(row + 16 * v, p[v]);
    }
    return any;
#else
    bool any = false;
    const int nvec = (nk + 7) / 8;
    for (int r = 0; r < rows_pad_; ++r) {
      float* row = s.s.data() + r * kKeys;
      v8f mx = splat(-INFINITY);
      for (int v = 0; v < nvec; ++v) mx = vmax(mx, load8(row + 8 * v));
      // A NaN score must reach m (and from there l and O): std::max and the
      // vector select both drop NaN, so carry it explicitly.
      v8i unordered = v8i{} == 1;  // all false
      for (int v = 0; v < nvec; ++v) {
        const v8f x = load8(row + 8 * v);
        unordered |= x != x;
      }
      float tile_max = -INFINITY;
      bool nan = false;
      for (int e = 0; e < 8; ++e) {
        tile_max = std::max(tile_max, mx[e]);
        nan |= unordered[e] != 0;
      }
      float& m = s.m[static_cast<std::size_t>(r)];
      float& l = s.l[static_cast<std::size_t>(r)];
      const float m_new = nan ? NAN : std::max(m, tile_max);
      if (m_new == -INFINITY) {  // nothing visible yet: P row = 0 (and no P.V)
        std::fill(row, row + kKeys, 0.f);
        continue;
      }
      any = true;
      const core::OnlineStep st = core::online_step(m, m_new, exp2s);
      const float alpha = st.alpha;
      v8f sum = splat(0.f);
      const v8f mv = splat(st.shift);
      for (int v = 0; v < kKeys / 8; ++v) {
        const v8f pv = v < nvec ? exp2v(load8(row + 8 * v) - mv) : splat(0.f);
        store8(row + 8 * v, pv);
        sum += pv;
      }
      float tile_sum = 0.f;
      for (int e = 0; e < 8; ++e) tile_sum += sum[e];
      l = l * alpha + tile_sum;
      m = m_new;
      if (alpha != 1.f) {
        float* o = s.o.data() + r * dvp_;
        const v8f av = splat(alpha);
        for (int d = 0; d < dvp_; d += 8) store8(o + d, load8(o + d) * av);
      }
    }
    return any;
#endif
  }

  const Problem& p_;
  Rect r_;
  Mode mode_;
  StateView st_;
  int nq_ = 1, rows_ = 1, rows_pad_ = 6, dvp_ = 16;
  bool dot_ = false;    // bfloat16 products (kBf16Dot)
  bool tiles_ = false;  // on AMX tiles (dot_ in the AMX build)
  int dpairs_ = 1;      // bfloat16 pairs of a Q or K row: D / 2 rounded up
  int qk_pairs_ = 1;    // the same padded for AMX (a multiple of 16): Q's row stride in s.qb
};

// The AMX tile configuration, loaded on the thread that constructs it when
// `on` and released when it goes (a no-op in the other builds). Each thread
// of a parallel region holds one for the region: tile configuration and
// tile data are per thread.
class ThreadTiles {
 public:
  explicit ThreadTiles([[maybe_unused]] bool on) {
#if defined(LONGATTN_KERNEL_AMX)
    if (on) tiles_.emplace();
#endif
  }

 private:
#if defined(LONGATTN_KERNEL_AMX)
  std::optional<amx::TileScope> tiles_;
#endif
};

// Item n of a rectangle's items. KV head outermost, so that the threads
// share one head's K and V in cache (all heads' float32 K/V outgrow the L3
// at long lengths); within a head, the largest causal runs first.
Item item_of(const Problem& p, const Rectangle& rect, std::int64_t n) {
  const std::int64_t per_head = rect.items_per_head();
  const std::int64_t bg = n / per_head;
  const std::int64_t run = per_head - 1 - n % per_head;
  return Item{bg / p.Hkv, bg % p.Hkv, rect.run_start(run)};
}

}  // namespace

void LONGATTN_KERNEL_ENTRY(const Problem& p, const Rect& r, Mode mode, const StateView& st,
                           int threads, std::shared_ptr<void>& scratch) {
  if (p.B == 0 || r.q1 <= r.q0) return;
  const Rectangle rect(p, r, mode, st);
  const std::int64_t per_head = rect.items_per_head();
  const std::int64_t n_items = p.B * p.Hkv * per_head;
  // A small dispatch runs on one thread: waking the others (and, on a busy
  // machine, waiting for them at the barrier) costs more than it saves.
  const bool small = p.flops(r.q0, r.q1, r.k0, r.k1) < 4e6;
  const int nt = small ? 1 : threads > 0 ? threads : omp_get_max_threads();
  auto item = [&](std::int64_t n) { return item_of(p, rect, n); };
  // Split-K: fewer items than twice the threads (decode: B x Hkv runs of one
  // query) leave threads idle, so each item's keys are split into parts of
  // at least 8 key tiles, computed side by side into partial states and
  // merged per item afterwards, by the rule every backend uses.
  const std::int64_t tiles = rect.key_tiles(item(0));
  const int parts = nt == 1 || n_items >= 2 * nt
                        ? 1
                        : static_cast<int>(std::clamp<std::int64_t>(
                              std::min((2 * nt + n_items - 1) / n_items, tiles / 8), 1, 64));
  // This build's per-thread scratch, kept by the caller across a call's
  // dispatches (kernel.hpp: run_rect_*'s `scratch`).
  if (!scratch) scratch = std::make_shared<std::vector<Scratch>>();
  std::vector<Scratch>& per_thread = *static_cast<std::vector<Scratch>*>(scratch.get());
  if (per_thread.size() < static_cast<std::size_t>(nt)) per_thread.resize(nt);
  if (parts == 1) {
    // With few items a thread (a budgeted dispatch: 4 of 192 rows a thread
    // at 16 threads), the dispatch waits at its end for the slowest thread
    // by about half an item: on 16 threads of a Xeon VM, 10-15% of the
    // threads' time went idle so, at every budget (docs/BENCHMARKS.md).
    // The earliest queries (under the causal rule the shortest runs, taken
    // last) then run as items of kTailRows rows, about an item a thread of
    // them, so that the last items a thread takes are small. Only the tail:
    // smaller items pack K and V for fewer rows (48-row items throughout
    // cost 7% on a Zen 4). At 2 threads the idle time was under 1%.
    const std::int64_t height = r.q1 - r.q0;
    std::int64_t tail = 0;
    if (nt >= 4 && n_items < 16 * nt && rect.queries_per_item() > 1) {
      const auto tail_q = Rectangle(p, r, mode, st, kTailRows).queries_per_item();
      const std::int64_t q = (nt * rect.queries_per_item() + p.B * p.Hkv - 1) / (p.B * p.Hkv);
      tail = std::min(height, (q + tail_q - 1) / tail_q * tail_q);
    }
    const Rectangle body(p, Rect{r.q0 + tail, r.q1, r.k0, r.k1}, mode, st);
    const Rectangle last(p, Rect{r.q0, r.q0 + tail, r.k0, r.k1}, mode, st, kTailRows);
    const std::int64_t body_items = p.B * p.Hkv * body.items_per_head();
    const std::int64_t units = body_items + p.B * p.Hkv * last.items_per_head();
#pragma omp parallel num_threads(nt) if (units > 1)
    {
      Scratch& s = per_thread[omp_get_thread_num()];
      const Rectangle* prepared = nullptr;
      const ThreadTiles tile_state(body.uses_tiles() || last.uses_tiles());
      // Later query runs see more keys under the causal rule; dynamic
      // scheduling balances them.
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t n = 0; n < units; ++n) {
        const bool in_body = n < body_items;
        const Rectangle& on = in_body ? body : last;
        if (prepared != &on) on.prepare(s);
        prepared = &on;
        on.run(item_of(p, on, in_body ? n : n - body_items), s);
      }
    }
    return;
  }
  std::vector<float> partials(static_cast<std::size_t>(n_items * parts * rect.partial_floats()));
#pragma omp parallel num_threads(nt)
  {
    Scratch& s = per_thread[omp_get_thread_num()];
    rect.prepare(s);
    const ThreadTiles tile_state(rect.uses_tiles());
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t u = 0; u < n_items * parts; ++u)
      rect.run_part(item(u / parts), static_cast<int>(u % parts), parts, s,
                    partials.data() + u * rect.partial_floats());
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < n_items; ++n)
      rect.merge_parts(item(n), parts, partials.data() + n * parts * rect.partial_floats(), s);
  }
}

}  // namespace longattn::cpu::LONGATTN_KERNEL_NS
