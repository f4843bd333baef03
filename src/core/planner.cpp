// The planner: a pure host function (problem, device profile, policy) -> Plan.
//
// Worked example (the CPU benchmark's case). B = 1, Hq = 32, Hkv = 8,
// Lq = Lk = 16384, D = Dv = 128, causal, float32. Profile: 60 GFLOP/s,
// 0.02 ms per dispatch, 0.05 ms per submission, state traffic 20 GB/s,
// fill_rows 192, query tile 48, key tile 64. Policy: budget 50 ms, safety 0.8,
// so every submission must be predicted under 40 ms.
//
//  1. Route. The whole call is 2*32*256 * 16384*16385/2 = 2.2e12 FLOP, about
//     36.7 s at 60 GFLOP/s: far over 40 ms, so the chunked path.
//  2. Query-group height G. The device is full with 192 rows, i.e.
//     ceil(192 / (B*Hq)) = 6 queries, rounded up to the query tile: G = 48.
//     One key column for 48 rows costs 48*32*256*2 = 786432 FLOP = 13.1 us,
//     and reading + writing the group's state (48 rows * 16640 B each way)
//     costs 0.08 ms. Keys per dispatch: (40 - 0.05 - 0.02 - 0.08) / 0.0131
//     = 3040, fewer than Lk, so G stays 48 (a taller group would only shorten
//     the key range and raise the state traffic per FLOP).
//  3. Key chunks. Group q = [0, 48) sees keys [0, 48): one single-pass
//     dispatch, no state. Group [8160, 8208) sees keys [0, 8208): chunks of at
//     most 3040 keys rounded down to the key tile (3008), the last one over
//     the diagonal is cheaper and may stretch: init [0, 3008), accumulate
//     [3008, 6016), finalize [6016, 8208). Keys past the diagonal are never
//     planned (causal skipping).
//  4. Submissions. Dispatches are packed in order while their predicted sum
//     stays under 40 ms, so the many short groups near q = 0 share a
//     submission, and no submission needs more than one group's worth of
//     state: workspace = 48 * 16640 B = 0.8 MB, under the 1 GiB limit.
//  5. The probe. All of the above assumed the profile had measured the rate
//     for "float32/d128/causal". On a first call it has not, and 60 GFLOP/s
//     is a guess that may be many times too fast (a new device, a mask kind
//     its kernels run slowly: 11x on an H200). Then the plan starts with a
//     ramp of smaller submissions. First a probe whose work, even
//     kRatePessimism = 32 times slower, fits beside its fixed costs:
//     0.07 + (40 - 0.07) / 32 = 1.32 ms: the single pass of group [0, 48)
//     (0.34 ms) and the first key tile of group [48, 96) (init, 0.87 ms),
//     1.26 ms with the submission's cost. Then a quarter of the target,
//     10 ms, then 40 ms. The executor times the probe, puts the rate it
//     shows in the profile and re-plans the rest from it, a quarter first
//     again (RateTrust::probed), in case the probe ran faster than the work
//     after it; the next call of this kind plans full size at once. A call
//     that fits the target even 32 times slower than the guess stays one
//     single pass.
// Sliding window: group [q0, q1) sees keys [key_begin(q0), key_end(q1 - 1))
// only (its start rounded down to the key tile). A 1M-token prefill with a
// 4K left window, in groups of 48, plans about 4K + 48 keys per group, so
// the whole call costs about 1M x 4K pairs, not 1M x 1M / 2.
// If instead one group could take every key in budget (small Lk, or a fast
// GPU), G grows until a whole-key dispatch just fits and every group runs as
// a single pass: splitting queries needs no running state at all.
#include "core/planner.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "core/int_math.hpp"

namespace longattn::core {
namespace {

// Everything the planner derives once from (problem, profile, policy).
struct Costs {
  const Problem& p;
  const DeviceProfile& prof;
  double ms_per_flop;
  double target_ms;  // per-submission limit, budget * safety; inf without budget
  std::int64_t max_chunk =
      0;  // > 0: keys per dispatch capped (chunk_threshold_keys forced chunking)
  // Smallest dispatch worth running (ms, overhead included): see
  // dispatch_floor_ms().
  double floor_ms = 0;
  const char* op = "longattn::plan_attention";  // the API call, for messages
  // The ramp: limits (ms, budget * safety or less) of the plan's first
  // submissions, each sized by its own dispatches (see make_plan); the
  // submissions after it are planned to target_ms.
  std::vector<double> ramp;

  double dispatch(const Rect& r, Mode m) const {
    const double rows = static_cast<double>(r.q1 - r.q0);
    const double state_once =
        rows * static_cast<double>(state_row_bytes(p)) / (prof.state_gbps * 1e6);
    double state = 0;
    if (m == Mode::accumulate || m == Mode::finalize) state += state_once;  // read
    if (m == Mode::init || m == Mode::accumulate) state += state_once;      // write
    return prof.dispatch_overhead_ms + p.flops(r.q0, r.q1, r.k0, r.k1) * ms_per_flop + state;
  }
  // Budget left for one dispatch alone in an otherwise empty submission,
  // but never below the floor.
  double dispatch_target() const {
    return std::max(target_ms - prof.submission_overhead_ms, floor_ms);
  }
};

// A dispatch's work should be at least this many times its fixed cost, or
// the fixed costs dominate and the run slows down for no gain in latency.
constexpr double kAmortize = 4;

// The smallest sensible dispatch (ms, fixed cost included) for `work_ms` of
// remaining work: its fixed cost amortized, and no more than kMaxDispatches
// of them (times `relax`, which grows when a plan still has too many). A
// budget below this is not kept: the plan runs at this size and says so,
// rather than shattering into slivers that cost more than they bound.
double dispatch_floor_ms(const DeviceProfile& prof, double work_ms, double relax) {
  return prof.dispatch_overhead_ms * (1 + kAmortize) +
         relax * work_ms / static_cast<double>(kMaxDispatches);
}

// Keys the group [q0, q1) sees at all: [group_key_begin, key_end(q1 - 1)).
// The start is the first row's first visible key (the window's left edge),
// rounded down to the key tile, so that chunks stay on the tile grid the
// kernels use; keys left of it are hidden from every row of the group.
std::int64_t group_key_end(const Problem& p, std::int64_t q1) { return p.key_end(q1 - 1); }
std::int64_t group_key_begin(const Problem& p, std::int64_t q0, std::int64_t q1,
                             std::int64_t tile) {
  const std::int64_t b = std::min(p.key_begin(q0), group_key_end(p, q1));
  return b / tile * tile;
}

// Largest k1 in (k0, kend] (on key-tile boundaries, or kend) whose dispatch
// fits `target` ms; at least one tile even if that alone is over budget.
// `hint`: the previous chunk's length in tiles (0: none).
std::int64_t chunk_end(const Costs& c, std::int64_t q0, std::int64_t q1, std::int64_t k0,
                       std::int64_t kend, Mode mode_if_last, Mode mode_if_more, std::int64_t tile,
                       std::int64_t hint, double target) {
  auto fits = [&](std::int64_t k1) {
    const Mode m = k1 == kend ? mode_if_last : mode_if_more;
    return c.dispatch({q0, q1, k0, k1}, m) <= target;
  };
  if (fits(kend)) return kend;
  std::int64_t lo = 1, hi = ceil_div(kend - k0, tile);  // in tiles; lo always accepted
  auto fits_tiles = [&](std::int64_t n) { return k0 + n * tile < kend && fits(k0 + n * tile); };
  // Most chunks repeat the previous one's length: two tries settle those,
  // where the search below takes log2(keys / tile) (planning stays at
  // milliseconds for 65,536 dispatches).
  if (hint > 1 && hint < hi) {
    if (!fits_tiles(hint)) {
      hi = hint - 1;
    } else if (!fits_tiles(hint + 1)) {
      return k0 + hint * tile;
    } else {
      lo = hint + 1;
    }
  }
  while (lo < hi) {
    const std::int64_t mid = (lo + hi + 1) / 2;
    if (fits_tiles(mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return std::min(kend, k0 + std::max<std::int64_t>(lo, 1) * tile);
}

// Query-group height: fill the device, bounded by the workspace; grow when a
// whole-key dispatch fits the budget (no state needed then).
// `stateless`: no running state is allowed (a workspace limit below one
// row), so every group takes all its keys in one single-pass dispatch and
// only its height can bound the time.
// Waves of the device a group of `rows` query rows takes: B*Hq*ceil(rows/qt)
// tiles, fill_rows/qt at a time.
std::int64_t group_waves(const Costs& c, std::int64_t rows) {
  const std::int64_t qt = std::max<std::int64_t>(1, c.prof.query_tile);
  const std::int64_t wave = std::max<std::int64_t>(1, c.prof.fill_rows / qt);
  return ceil_div(c.p.B * c.p.Hq * ceil_div(rows, qt), wave);
}

std::int64_t group_height(const Costs& c, const Policy& pol, std::int64_t rows_left,
                          std::int64_t max_rows_ws, bool stateless) {
  const Problem& p = c.p;
  const std::int64_t qt = std::max<std::int64_t>(1, c.prof.query_tile);
  if (pol.fixed_query_rows > 0) return std::min({pol.fixed_query_rows, rows_left, max_rows_ws});
  // Wave quantization: a dispatch runs B*Hq*ceil(G/qt) tiles, fill_rows/qt
  // at a time. 17 tiles of 32 heads on a 264-tile device take 3 waves but do
  // the work of 2.06, so heights are chosen as whole tiles with the most work
  // per wave: of T in [T/2, T] the best T / waves(T), ties to the larger.
  const std::int64_t heads = p.B * p.Hq;
  auto best_tiles = [&](std::int64_t top) {
    auto waves = [&](std::int64_t t) { return group_waves(c, t * qt); };
    std::int64_t best = top;
    // At most 256 candidates: past that many tiles a wave is a rounding
    // error, and the scan must stay cheap for any profile.
    for (std::int64_t t = top - 1; t >= std::max<std::int64_t>({1, top / 2, top - 256}); --t)
      if (t * waves(best) > best * waves(t)) best = t;
    return best;
  };
  const std::int64_t fill = ceil_div(std::max<std::int64_t>(1, c.prof.fill_rows), heads);
  std::int64_t g = std::min({best_tiles(ceil_div(fill, qt)) * qt, rows_left, max_rows_ws});
  if (pol.fixed_chunk_keys > 0 || !std::isfinite(c.target_ms)) {
    // No time limit on a group: the tallest group the workspace allows keeps
    // the number of dispatches (and state passes) lowest.
    return std::min(rows_left, max_rows_ws);
  }
  // Does the worst group of height g (the one that sees the most keys) fit
  // with all its keys in one dispatch? Grow g while it does (doubling, then
  // a binary search on tile multiples).
  const std::int64_t kt = std::max<std::int64_t>(1, c.prof.key_tile);
  // The last group sees the most keys under the causal rule. (Under a
  // window that is not causal, a middle group may see a few more: the chunk
  // loop then splits its keys, so the budget still holds.)
  auto whole_fits = [&](std::int64_t h) {
    const std::int64_t q0 = p.Lq - h, k0 = group_key_begin(p, q0, p.Lq, kt);
    const std::int64_t kend = group_key_end(p, p.Lq);
    if (!stateless && c.max_chunk > 0 && kend - k0 > c.max_chunk) return false;
    return c.dispatch({q0, p.Lq, k0, kend}, Mode::single_pass) <= c.dispatch_target();
  };
  if (!whole_fits(g)) {
    // Even one key tile over a full-device group may be over budget (a tiny
    // budget, a slow device): then trade device fill for the budget.
    // The first key tile is the dearest: under the causal rule every row
    // that sees anything sees it.
    auto tile_fits = [&](std::int64_t h) {
      const std::int64_t kend = group_key_end(p, p.Lq);
      const std::int64_t k0 = group_key_begin(p, p.Lq - h, p.Lq, kt);
      return c.dispatch({p.Lq - h, p.Lq, k0, std::min(k0 + kt, kend)}, Mode::accumulate) <=
             c.dispatch_target();
    };
    const auto fits = [&](std::int64_t h) { return stateless ? whole_fits(h) : tile_fits(h); };
    while (g > 1 && !fits(g)) g = g > qt ? (g / 2 + qt - 1) / qt * qt : g / 2;
    return std::max<std::int64_t>(1, g);
  }
  const std::int64_t cap = std::min({rows_left, p.Lq, max_rows_ws});
  std::int64_t lo = g, hi = g;
  while (hi < cap && whole_fits(std::min(cap, hi * 2))) hi = std::min(cap, hi * 2);
  if (hi == cap) return hi;  // the rest of the rows fit in one group
  if (hi > lo) {
    std::int64_t top = std::min(cap, hi * 2);  // does not fit
    while (top - hi > qt) {
      const std::int64_t mid = hi + (top - hi) / 2 / qt * qt;
      if (mid <= hi) break;
      (whole_fits(mid) ? hi : top) = mid;
    }
  }
  return hi >= qt ? best_tiles(hi / qt) * qt : hi;
}

// The rows left spread evenly over the groups of height `height` they take,
// in whole query tiles and never taller, so that no group is a short
// remainder: the last group (under the causal rule the one with the most
// keys) had been one, e.g. 1024 of 16384 rows after five of 3072, which
// left a CPU dispatch too few items for its threads. Only where the even
// groups take no more waves of the device in all (group_height chose the
// height for its waves: on a GPU of 264 tiles a wave, 32 heads in 3 groups
// of 33 tiles and one of 1 take 13 waves, in 4 groups of 25 they take 16).
std::int64_t even_groups(const Costs& c, std::int64_t height, std::int64_t rows_left) {
  if (height >= rows_left) return height;
  const std::int64_t qt = std::max<std::int64_t>(1, c.prof.query_tile);
  const std::int64_t groups = ceil_div(rows_left, height);
  const std::int64_t even = std::min(height, ceil_div(ceil_div(rows_left, groups), qt) * qt);
  auto waves = [&](std::int64_t h) {  // of `groups` groups of h rows and the rest
    return (groups - 1) * group_waves(c, h) + group_waves(c, rows_left - (groups - 1) * h);
  };
  return waves(even) <= waves(height) ? even : height;
}

}  // namespace

std::int64_t state_row_bytes(const Problem& p) { return p.B * p.Hq * (p.Dv + 2) * 4; }

std::string rate_key(const Problem& p) {
  return DeviceProfile::rate_key(p.dtype, p.D, p.causal, p.mask_kind != MaskKind::none);
}

namespace {

// Work left from the cursor, in FLOPs: the rows from q_begin on, less the
// keys the live group already holds.
double remaining_flops(const Problem& p, const Cursor& from) {
  double f = p.flops(from.q_begin, p.Lq, 0, p.Lk);
  if (from.live_rows > 0)
    f -= p.flops(from.q_begin, std::min(p.Lq, from.q_begin + from.live_rows), 0, from.k_next);
  return std::max(0.0, f);
}

// Steps 2-4 of the header comment for the chunked route. Returns false,
// leaving `plan` unusable, when the plan would need more than kMaxDispatches;
// `covered` is then the share of the query rows it had planned by then.
bool chunked_plan(const Costs& c, const Policy& pol, const Cursor& from, Plan& plan,
                  double& covered, double& one_tile_ms) {
  const Problem& p = c.p;
  const DeviceProfile& profile = c.prof;
  const std::int64_t key_tile = std::max<std::int64_t>(1, profile.key_tile);
  const bool timed = std::isfinite(c.target_ms);

  // 2. Workspace bound on the group height.
  const std::int64_t row_bytes = state_row_bytes(p);
  // Below one row of state, groups run as single passes: the workspace
  // limit is kept, and the budget only as far as a group's height allows.
  // Fixed key chunks need state, so they cannot be honoured then.
  const std::int64_t ws_rows =
      std::max<std::int64_t>(0, pol.workspace_limit_bytes / std::max<std::int64_t>(1, row_bytes));
  const bool stateless = ws_rows < 1;
  if (stateless && pol.fixed_chunk_keys > 0)
    throw InvalidArgument(std::string("[") + c.op +
                          "] policy.fixed_chunk_keys = " + std::to_string(pol.fixed_chunk_keys) +
                          " needs a running state, but policy.workspace_limit_bytes = " +
                          std::to_string(pol.workspace_limit_bytes) +
                          " is below the state of one query row (" + std::to_string(row_bytes) +
                          " bytes)");
  const std::int64_t max_rows_ws = stateless ? p.Lq : ws_rows;

  // 3. Walk the query groups (outer) and their key chunks (inner). Every
  // full-height group has the same height, so it is sized once (and again
  // after a group the ramp made shorter).
  std::vector<Dispatch> dispatches;
  std::int64_t max_state_rows = 0;
  std::int64_t q0 = from.q_begin;
  std::int64_t height = 0;
  std::int64_t hint = 0;  // the last chunk's length in key tiles

  // The ramp's submissions are sized as they are walked: each dispatch
  // gets what is left of its submission's limit (`room`), so a probe is
  // small because its dispatches are, not only because few are packed
  // together. A ramp submission closes when the next dispatch no longer fits
  // and it already holds some work; `breaks` records where (dispatch
  // indices), for step 4.
  const bool ramped = timed && pol.fixed_chunk_keys <= 0 && !c.ramp.empty();
  std::size_t ramp_i = 0;  // the ramp submission being filled
  double ramp_ms = 0;      // its dispatches' predicted time so far
  bool ramp_work = false;  // whether one of them has FLOPs (is worth measuring)
  std::vector<std::size_t> breaks;
  auto in_ramp = [&] { return ramped && ramp_i < c.ramp.size(); };
  // Room left in the open ramp submission, and what its next dispatch may
  // take: at least the smallest sensible dispatch, so that what is measured
  // is well above the fixed costs.
  const double least = dispatch_floor_ms(profile, 0, 1);
  auto room = [&] { return c.ramp[ramp_i] - profile.submission_overhead_ms - ramp_ms; };
  auto ramp_target = [&] { return std::max(room(), least); };
  auto close_ramp = [&] {
    breaks.push_back(dispatches.size());
    ++ramp_i;
    ramp_ms = 0;
    ramp_work = false;
  };
  auto place = [&](const Dispatch& d) {
    dispatches.push_back(d);
    if (!in_ramp()) return;
    ramp_ms += d.predicted_ms;
    ramp_work = ramp_work || d.flops > 0;
  };

  while (q0 < p.Lq) {
    const bool live = q0 == from.q_begin && from.live_rows > 0;
    if (!live && height == 0) {
      height = group_height(c, pol, p.Lq - q0, max_rows_ws, stateless);
      // Fixed query rows stay as asked, remainder and all.
      if (pol.fixed_query_rows <= 0) height = even_groups(c, height, p.Lq - q0);
    }
    std::int64_t g = live ? from.live_rows : std::min(height, p.Lq - q0);
    if (!live && in_ramp()) {
      // A new group in the ramp: its smallest dispatch (one key tile, or
      // all its keys where there is no state) must fit the room. If it
      // does not, close a ramp submission that already holds work; in an
      // empty one, make the group shorter (the probe must stay small
      // whatever group height the target allows).
      const std::int64_t qt = std::max<std::int64_t>(1, profile.query_tile);
      auto smallest_ms = [&](std::int64_t h) {
        const std::int64_t kb = group_key_begin(p, q0, q0 + h, key_tile);
        const std::int64_t ke = std::max(kb, group_key_end(p, q0 + h));
        const std::int64_t k1 = stateless ? ke : std::min(ke, kb + key_tile);
        return c.dispatch({q0, q0 + h, kb, k1}, k1 == ke ? Mode::single_pass : Mode::init);
      };
      if (ramp_work && smallest_ms(g) > room()) close_ramp();
      if (in_ramp())
        while (g > 1 && smallest_ms(g) > ramp_target())
          g = g > qt ? (g / 2 + qt - 1) / qt * qt : g / 2;
      // The rows after a group the ramp made shorter are spread anew.
      if (g < std::min(height, p.Lq - q0)) height = 0;
    }
    const std::int64_t q1 = std::min(p.Lq, q0 + g);
    const std::int64_t kend = group_key_end(p, q1);
    plan.query_rows = std::max(plan.query_rows, q1 - q0);
    // Keys left of the group's window are never planned (window skipping).
    std::int64_t k = live ? from.k_next : group_key_begin(p, q0, q1, key_tile);
    const std::int64_t k_first = k;
    bool started = live;
    if (kend <= k) {
      // No (more) visible keys: finalize an empty range so the rows get
      // O = 0 / LSE = -inf (or the sink), never left unwritten.
      const Mode m = started ? Mode::finalize : Mode::single_pass;
      const Dispatch d{{q0, q1, k, k}, m, 0, c.dispatch({q0, q1, k, k}, m)};
      if (in_ramp() && ramp_work && d.predicted_ms > room()) close_ramp();
      place(d);
      if (started) max_state_rows = std::max(max_state_rows, q1 - q0);
    }
    while (k < kend) {
      std::int64_t k1;
      const bool ramp_now = in_ramp();
      if (stateless) {
        k1 = kend;
      } else if (pol.fixed_chunk_keys > 0) {
        k1 = std::min(kend, k + pol.fixed_chunk_keys);
      } else if (!timed) {
        k1 = c.max_chunk > 0 ? std::min(kend, k + c.max_chunk) : kend;
      } else {
        const std::int64_t cap = c.max_chunk > 0 ? std::min(kend, k + c.max_chunk) : kend;
        k1 = chunk_end(c, q0, q1, k, cap,
                       cap == kend ? (started ? Mode::finalize : Mode::single_pass)
                                   : (started ? Mode::accumulate : Mode::init),
                       started ? Mode::accumulate : Mode::init, key_tile, hint,
                       ramp_now ? ramp_target() : c.dispatch_target());
      }
      const bool last = k1 == kend;
      const Mode m = started ? (last ? Mode::finalize : Mode::accumulate)
                             : (last ? Mode::single_pass : Mode::init);
      const Rect r{q0, q1, k, k1};
      const Dispatch d{r, m, p.flops(r.q0, r.q1, r.k0, r.k1), c.dispatch(r, m)};
      if (ramp_now && ramp_work && d.predicted_ms > room()) {
        close_ramp();  // and size this chunk again, for the next submission
        continue;
      }
      place(d);
      // A single key tile over its target: the dispatch's fixed costs
      // (state traffic, overhead) alone are over it.
      if (k1 - k <= key_tile && k1 < kend && d.predicted_ms > c.dispatch_target())
        one_tile_ms = std::max(one_tile_ms, d.predicted_ms);
      if (m != Mode::single_pass) max_state_rows = std::max(max_state_rows, q1 - q0);
      plan.chunk_keys = std::max(plan.chunk_keys, k1 - k);
      hint = (k1 - k) / key_tile;
      started = true;
      k = k1;
      if (static_cast<std::int64_t>(dispatches.size()) > kMaxDispatches && k < kend) {
        // Over the limit inside a group (one tall group of many keys, a
        // decode over tiny key tiles): the share planned counts this
        // group's keys too, so that the next try's floor rises by what is
        // really missing (a share of rows alone said 0 or 1 here, and the
        // floor crept up by 2x a try: eight tries of 65,536 dispatches).
        const double keys = static_cast<double>(k - k_first) / static_cast<double>(kend - k_first);
        covered = (static_cast<double>(q0 - from.q_begin) + keys * static_cast<double>(q1 - q0)) /
                  static_cast<double>(p.Lq - from.q_begin);
        return false;
      }
    }
    if (static_cast<std::int64_t>(dispatches.size()) > kMaxDispatches) {
      covered = static_cast<double>(q1 - from.q_begin) / static_cast<double>(p.Lq - from.q_begin);
      return false;
    }
    q0 = q1;
  }

  // 4. Pack dispatches into submissions under the per-submission target:
  // the ramp's submissions as the walk closed them, the rest greedily.
  Submission cur;
  auto flush = [&] {
    if (cur.dispatches.empty()) return;
    cur.predicted_ms += profile.submission_overhead_ms;
    plan.predicted_ms += cur.predicted_ms;
    plan.submissions.push_back(std::move(cur));
    cur = {};
  };
  // Dispatches from this index on are packed greedily: after the last
  // ramp submission, or none if the ramp never closed them all.
  const std::size_t greedy_from = !ramped                   ? 0
                                  : ramp_i >= c.ramp.size() ? breaks.back()
                                                            : dispatches.size();
  std::size_t next_break = 0;
  for (std::size_t i = 0; i < dispatches.size(); ++i) {
    const Dispatch& d = dispatches[i];
    if (next_break < breaks.size() && breaks[next_break] == i) {
      flush();
      ++next_break;
    } else if (i > greedy_from && !cur.dispatches.empty() &&
               (!timed ||
                cur.predicted_ms + d.predicted_ms + profile.submission_overhead_ms > c.target_ms)) {
      flush();
    }
    cur.dispatches.push_back(d);
    cur.predicted_ms += d.predicted_ms;
    plan.total_flops += d.flops;
  }
  flush();
  plan.workspace_bytes = max_state_rows * row_bytes;
  return true;
}

}  // namespace

Plan make_plan(const Problem& p, const DeviceProfile& profile, const Policy& pol,
               const Cursor& from, const char* op, RateTrust trust) {
  Plan plan;
  if (p.B == 0 || from.q_begin >= p.Lq) {
    plan.reason = "nothing to compute: no query rows";
    return plan;
  }
  const std::string key = rate_key(p);
  const double rate = profile.rate_gflops(key);
  // A rate the profile has not measured for this key is a guess, which can
  // be many times too fast (kRatePessimism): plans from it must keep the
  // budget even then.
  const bool guessed = trust == RateTrust::profile && !profile.gflops.count(key);
  const double ms_per_flop = 1.0 / (rate * 1e6);
  const double target =
      pol.budget_ms > 0 ? pol.budget_ms * pol.safety : std::numeric_limits<double>::infinity();
  // A key length at or over the threshold forces chunking, in chunks of at
  // most the threshold.
  const bool forced_keys = pol.chunk_threshold_keys > 0 && p.Lk >= pol.chunk_threshold_keys;
  Costs c{p, profile, ms_per_flop, target, forced_keys ? pol.chunk_threshold_keys : 0, 0, op, {}};

  // 1. Route: one single-pass dispatch when nothing forces chunking.
  const bool fresh = from.q_begin == 0 && from.live_rows == 0;
  const Rect all{0, p.Lq, 0, p.Lk};
  const double single_ms = c.dispatch(all, Mode::single_pass) + profile.submission_overhead_ms;
  // On a guessed rate, a single pass must fit even kRatePessimism times
  // slower: it is then its own probe, and a call that small (decode, a
  // short prefill: a 32nd of the target or less at the guess) stays one
  // dispatch with no state.
  const double single_worst =
      guessed ? single_ms + (kRatePessimism - 1) * p.flops(0, p.Lq, 0, p.Lk) * ms_per_flop
              : single_ms;
  const bool fixed = pol.fixed_chunk_keys > 0 || pol.fixed_query_rows > 0;
  std::ostringstream why;
  if (fresh && !fixed && !forced_keys && single_worst <= target) {
    plan.query_rows = p.Lq;
    plan.submissions.push_back({{{all, Mode::single_pass, p.flops(0, p.Lq, 0, p.Lk),
                                  single_ms - profile.submission_overhead_ms}},
                                single_ms});
    plan.total_flops = plan.submissions[0].dispatches[0].flops;
    plan.predicted_ms = single_ms;
    why << "single pass: predicted " << single_ms << " ms"
        << (pol.budget_ms > 0 ? " fits the budget" : " (no budget)");
    plan.reason = why.str();
    return plan;
  }
  if (forced_keys)
    why << "chunked: Lk = " << p.Lk << " >= threshold " << pol.chunk_threshold_keys;
  else if (fixed)
    why << "chunked: fixed chunk/group size requested";
  else if (fresh && single_ms > target)
    why << "chunked: single pass predicted " << single_ms << " ms > budget*safety " << target
        << " ms";
  else if (fresh)
    why << "chunked: single pass predicted " << single_ms << " ms, but the rate for " << key
        << " is a guess";
  else
    why << "re-planned from query row " << from.q_begin;

  // The ramp: the first submissions of a plan whose rate is a guess or
  // measured once are planned below the target, each one measured and the
  // rest re-planned from it (executor.cpp).
  //  - guessed: a probe whose compute, kRatePessimism times slower than
  //    the guess, still fits the target beside one submission's and one
  //    dispatch's fixed costs (more dispatches leave it less compute); then
  //    a quarter of the target (below).
  //  - probed (the re-plan after the probe): a quarter of the target, so
  //    that a probe that ran up to 4x faster than the work after it (a
  //    warm cache, a lighter corner of the mask) keeps the budget; its
  //    measurement re-plans the full-size rest if it disagrees.
  if (std::isfinite(target) && !fixed) {
    if (guessed) {
      const double fixed_ms = profile.submission_overhead_ms + profile.dispatch_overhead_ms;
      const double probe_ms = fixed_ms + std::max(0.0, target - fixed_ms) / kRatePessimism;
      c.ramp = {probe_ms, target / 4};
      why << "; starts with a probe of " << probe_ms << " ms at the guessed " << rate
          << " GFLOP/s for " << key << " (within budget even " << kRatePessimism
          << "x slower), the rest re-planned from its measurement";
    } else if (trust == RateTrust::probed) {
      c.ramp = {target / 4};
      why << "; the rate for " << key << " measured once: the next submission to a quarter";
    }
  }

  // Fixed sizes are taken as asked, so a plan that would need too many
  // dispatches is refused. A budget is a wish: the dispatch floor rises
  // until the plan is small enough. Each try stops at kMaxDispatches, and
  // the next one's floor is raised by how far the last one fell short
  // (1.5 / the share of rows it had planned, 2x to 16x), so few tries are
  // needed and none overshoots far.
  const double work_ms = remaining_flops(p, from) * ms_per_flop;
  // A try whose single key tiles were already over the target (their fixed
  // costs alone) raises the floor past two of them at once: relaxing from
  // the work's share would take a dozen tries of 65,536 dispatches to get
  // there (a decode over 1-key tiles with a slow running state once took
  // 700 ms to plan).
  double floor_at_least = 0;
  for (double relax = 1;;) {
    Plan attempt;
    attempt.chunked = true;
    c.floor_ms = pol.fixed_chunk_keys > 0
                     ? 0
                     : std::max(dispatch_floor_ms(profile, work_ms, relax), floor_at_least);
    double covered = 1, one_tile_ms = 0;
    if (chunked_plan(c, pol, from, attempt, covered, one_tile_ms)) {
      plan = std::move(attempt);
      break;
    }
    floor_at_least = std::max(2 * floor_at_least, 2 * one_tile_ms);
    relax *= std::clamp(1.5 / std::max(covered, 1e-9), 2.0, 16.0);
    // Past a floor 1e7 times the work's share, what is left is what the
    // policy pinned: the chunk sizes, the key threshold or the workspace.
    if (fixed || relax > 1e7) {
      // Name only what the caller set: those are what pinned the plan.
      std::ostringstream set;
      auto name = [&](const char* field, std::int64_t v, bool is_set) {
        if (is_set) set << (set.tellp() > 0 ? ", " : "") << "policy." << field << " = " << v;
      };
      name("fixed_chunk_keys", pol.fixed_chunk_keys, pol.fixed_chunk_keys > 0);
      name("fixed_query_rows", pol.fixed_query_rows, pol.fixed_query_rows > 0);
      name("chunk_threshold_keys", pol.chunk_threshold_keys, pol.chunk_threshold_keys > 0);
      name("workspace_limit_bytes", pol.workspace_limit_bytes,
           pol.workspace_limit_bytes < AttentionOptions::default_policy().workspace_limit_bytes ||
               set.tellp() == 0);
      throw InvalidArgument(std::string("[") + op + "] the plan needs more than " +
                            std::to_string(kMaxDispatches) + " dispatches with " + set.str() +
                            ": raise them (or leave them unset)");
    }
  }
  plan.reason = why.str();

  // Say once when the budget cannot be kept: some submission is predicted
  // over budget * safety (the floor, or one key tile of one row, is dearer).
  double worst = 0;
  for (const Submission& s : plan.submissions) worst = std::max(worst, s.predicted_ms);
  if (std::isfinite(target) && !fixed && worst > target * (1 + 1e-9)) {
    plan.budget_kept = false;
    std::ostringstream w;
    w << "budget_ms = " << pol.budget_ms << " cannot be kept on this device ("
      << profile.device_name << (profile.device_name.empty() ? "" : ", ") << rate << " GFLOP/s, "
      << profile.dispatch_overhead_ms << " ms fixed cost per dispatch): "
      << "submissions are planned at the smallest sensible size, up to " << worst << " ms each";
    plan.warnings.push_back(w.str());
  }
  return plan;
}

}  // namespace longattn::core
