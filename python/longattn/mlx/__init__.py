"""MLX drop-in: longattn.mlx.scaled_dot_product_attention takes the arguments
of mx.fast.scaled_dot_product_attention (MLX 0.32) and returns its results,
split so that no submission runs longer than a time budget.

    import longattn.mlx as lmx
    out = lmx.scaled_dot_product_attention(q, k, v, scale=scale, mask="causal")

On a Mac, MLX's fused attention over a long context is one Metal command
buffer, which the macOS GPU watchdog kills after about 5 s. Here the work
runs in submissions of at most `budget_ms` (default DEFAULT_BUDGET_MS =
250 ms), planned by longattn's planner from a profile of the device:

- on MLX's CPU device: longattn's C++ CPU backend, reading the evaluated
  MLX arrays in place (_native.py);
- on a GPU stream (Metal; CUDA with mlx[cuda13]): DESIGN.md's chunked
  algorithm as MLX operations on that stream, evaluated at every
  submission boundary (_executor.py; the math in _state.py). Short problems
  take MLX's fused kernel in one call.

Plus what MLX lacks: the log-sum-exp (return_lse=True), the run report
(report=True), and a progress callback that can cancel. calibrate()
measures the profile of an MLX device; default_profile() shows the one in
use. Importing this module imports mlx.core.
"""

from ._profile import calibrate, default_profile
from ._sdpa import DEFAULT_BUDGET_MS, scaled_dot_product_attention

__all__ = ["scaled_dot_product_attention", "calibrate", "default_profile", "DEFAULT_BUDGET_MS"]
