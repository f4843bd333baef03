// AMX tile instructions for the AMX build of the CPU kernel
// (kernel_amx.cpp), as macros over literal tile numbers 0-7.
//
// Written as inline assembly with a "memory" clobber rather than through
// the compiler's intrinsics: GCC 12's _tile_loadd declares no memory
// operand at all, so the compiler may move the stores that fill a buffer
// past the tile load that reads it, and its _tile_loadconfig names only the
// first 8 of the 64 configuration bytes.
//
// One configuration serves every product of the kernel: all eight tiles are
// 16 rows x 64 bytes (16 float32 columns, or 16 pairs of bfloat16 along K).
// TDPBF16PS c, a, b: for m < 16, n < 16,
//   C[m][n] += sum over k < 16 of A[m].bf16[2k] * B[k].bf16[2n]
//                                + A[m].bf16[2k + 1] * B[k].bf16[2n + 1]
// so A holds rows with K pairs along the row, and B holds K pairs down its
// rows: row k of B is, for each column n, the pair (B[2k][n], B[2k + 1][n]).
//
// LONGATTN_AMX_EMULATE (a CMake option, off by default) replaces the
// instructions by a scalar model with the same configuration rules, so that
// the kernel's tiling (shapes, strides, pair packing) can be tested on a
// machine without AMX. It is a development aid: only real tiles run in a
// normal build, and a machine without AMX skips the path.
#pragma once

#include <cstdint>
#include <cstring>

namespace longattn::cpu::amx {

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};  // bytes per row of tile i
  std::uint8_t rows[16] = {};    // rows of tile i
};
static_assert(sizeof(TileConfig) == 64);

inline constexpr int kTileRows = 16;   // rows of every tile the kernel uses
inline constexpr int kTileBytes = 64;  // bytes per tile row: 16 floats or 16 bf16 pairs

inline TileConfig kernel_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = kTileBytes;
    c.rows[t] = kTileRows;
  }
  return c;
}

#if defined(LONGATTN_AMX_EMULATE)
// The scalar model: per-thread tile registers and configuration.
struct Emulated {
  TileConfig cfg;
  bool configured = false;
  alignas(64) std::uint8_t tile[8][16][64];
};
inline thread_local Emulated emu;

inline float bf16_value(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void emu_check(int t) {
  if (!emu.configured || t < 0 || t > 7 || emu.cfg.rows[t] > 16 || emu.cfg.colsb[t] > 64)
    __builtin_trap();  // the real instruction faults (#UD) here too
}
inline void emu_config(const TileConfig& c) {
  emu.cfg = c;
  emu.configured = c.palette != 0;
  std::memset(emu.tile, 0, sizeof emu.tile);
}
inline void emu_release() {
  emu.configured = false;
  std::memset(emu.tile, 0, sizeof emu.tile);
}
inline void emu_load(int t, const void* base, long stride) {
  emu_check(t);
  std::memset(emu.tile[t], 0, sizeof emu.tile[t]);
  for (int r = 0; r < emu.cfg.rows[t]; ++r)
    std::memcpy(emu.tile[t][r], static_cast<const std::uint8_t*>(base) + r * stride,
                emu.cfg.colsb[t]);
}
inline void emu_store(int t, void* base, long stride) {
  emu_check(t);
  for (int r = 0; r < emu.cfg.rows[t]; ++r)
    std::memcpy(static_cast<std::uint8_t*>(base) + r * stride, emu.tile[t][r], emu.cfg.colsb[t]);
}
inline void emu_zero(int t) {
  emu_check(t);
  std::memset(emu.tile[t], 0, sizeof emu.tile[t]);
}
// The instruction's own shape rules: C is M x N floats, A is M x K pairs,
// B is K x N pairs.
inline void emu_dpbf16ps(int c, int a, int b) {
  emu_check(c), emu_check(a), emu_check(b);
  const int M = emu.cfg.rows[c], N = emu.cfg.colsb[c] / 4, K = emu.cfg.colsb[a] / 4;
  if (emu.cfg.rows[a] != M || emu.cfg.rows[b] != K || emu.cfg.colsb[b] != emu.cfg.colsb[c])
    __builtin_trap();
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      float acc;
      std::memcpy(&acc, &emu.tile[c][m][4 * n], 4);
      for (int k = 0; k < K; ++k)
        for (int e = 0; e < 2; ++e) {
          std::uint16_t x, y;
          std::memcpy(&x, &emu.tile[a][m][4 * k + 2 * e], 2);
          std::memcpy(&y, &emu.tile[b][k][4 * n + 2 * e], 2);
          acc += bf16_value(x) * bf16_value(y);  // the product is exact in float32
        }
      std::memcpy(&emu.tile[c][m][4 * n], &acc, 4);
    }
}
#define LA_TILE_CONFIG(cfg) ::longattn::cpu::amx::emu_config(cfg)
#define LA_TILE_RELEASE() ::longattn::cpu::amx::emu_release()
#define LA_TILE_LOAD(t, base, stride) \
  ::longattn::cpu::amx::emu_load(t, base, static_cast<long>(stride))
#define LA_TILE_STORE(t, base, stride) \
  ::longattn::cpu::amx::emu_store(t, base, static_cast<long>(stride))
#define LA_TILE_ZERO(t) ::longattn::cpu::amx::emu_zero(t)
#define LA_TILE_DPBF16PS(c, a, b) ::longattn::cpu::amx::emu_dpbf16ps(c, a, b)
#else
// AT&T operand order: the destination last (Intel's `tdpbf16ps tmm_c,
// tmm_a, tmm_b` is `tdpbf16ps %tmm_b, %tmm_a, %tmm_c`).
#define LA_TILE_CONFIG(cfg) __asm__ volatile("ldtilecfg %0" ::"m"(cfg) : "memory")
#define LA_TILE_RELEASE() __asm__ volatile("tilerelease" ::: "memory")
#define LA_TILE_LOAD(t, base, stride)                                                     \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(static_cast<const void*>(base)), \
                   "r"(static_cast<long>(stride))                                         \
                   : "memory")
#define LA_TILE_STORE(t, base, stride)                                                  \
  __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(static_cast<void*>(base)), \
                   "r"(static_cast<long>(stride))                                       \
                   : "memory")
#define LA_TILE_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
#define LA_TILE_DPBF16PS(c, a, b) \
  __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
#endif

// The kernel's configuration loaded for this thread while in scope, and the
// tile state released after (TILERELEASE returns it to the initial state,
// so the OS saves and restores no tile data for an idle thread).
class TileScope {
 public:
  TileScope() {
    static const TileConfig cfg = kernel_config();
    LA_TILE_CONFIG(cfg);
  }
  ~TileScope() { LA_TILE_RELEASE(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

// A 32 x 32 block of C held in tiles 0-3: tile 0 its rows 0-15 x columns
// 0-15, tile 1 rows 0-15 x 16-31, tiles 2 and 3 rows 16-31. C and C1 are
// the block's row 0 and row 16, sc bytes a row.
inline void load_32x32(const float* C, const float* C1, long sc) {
  LA_TILE_LOAD(0, C, sc);
  LA_TILE_LOAD(1, C + 16, sc);
  LA_TILE_LOAD(2, C1, sc);
  LA_TILE_LOAD(3, C1 + 16, sc);
}
inline void store_32x32(float* C, float* C1, long sc) {
  LA_TILE_STORE(0, C, sc);
  LA_TILE_STORE(1, C + 16, sc);
  LA_TILE_STORE(2, C1, sc);
  LA_TILE_STORE(3, C1 + 16, sc);
}

// Tiles 0-3 += A . B over kp pairs along K (a multiple of 16): A and A1
// are A's row 0 and row 16 (sa bytes a row, pairs along the row); B is the
// block's first column in pair row 0, b_row pairs from one pair row to the
// next.
inline void add_products_32x32(const std::uint32_t* A, const std::uint32_t* A1, long sa,
                               const std::uint32_t* B, long b_row, int kp) {
  const long sb = 4 * b_row;
  for (int k = 0; k < kp; k += 16) {
    LA_TILE_LOAD(4, A + k, sa);
    LA_TILE_LOAD(5, A1 + k, sa);
    LA_TILE_LOAD(6, B + k * b_row, sb);
    LA_TILE_LOAD(7, B + k * b_row + 16, sb);
    LA_TILE_DPBF16PS(0, 4, 6);
    LA_TILE_DPBF16PS(1, 4, 7);
    LA_TILE_DPBF16PS(2, 5, 6);
    LA_TILE_DPBF16PS(3, 5, 7);
  }
}

// C[32 x 32] = A . B over kp pairs along K (tiles 0-3 zeroed, filled by
// add_products_32x32, stored to C's rows 0 and 16, C and C1, sc bytes a row).
inline void product_32x32(const std::uint32_t* A, const std::uint32_t* A1, long sa,
                          const std::uint32_t* B, long b_row, int kp, float* C, float* C1,
                          long sc) {
  LA_TILE_ZERO(0);
  LA_TILE_ZERO(1);
  LA_TILE_ZERO(2);
  LA_TILE_ZERO(3);
  add_products_32x32(A, A1, sa, B, b_row, kp);
  store_32x32(C, C1, sc);
}

}  // namespace longattn::cpu::amx
