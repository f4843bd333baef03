"""CUDA tensors (skipped without a GPU): values, the caller's stream and
device, CUDA graph capture, zero copy, and the CUDA backend's limits."""

import numpy as np
import pytest

import longattn
from support import as_float64, check, randn, reference, requires_cuda, torch

pytestmark = [
    requires_cuda,
    pytest.mark.skipif(not longattn.cuda_built(), reason="this build has no CUDA backend"),
]


def cuda_case(rng, dtype, shape, layout="bhsd"):
    """(q, k, v on cuda:0 in `layout`, the reference (O, LSE))."""
    B, Hq, Hkv, Lq, Lk, D, causal = shape
    host = [
        randn(rng, (B, Hq, Lq, D), "float32"),
        randn(rng, (B, Hkv, Lk, D), "float32"),
        randn(rng, (B, Hkv, Lk, D), "float32"),
    ]
    tdt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    dev = [torch.from_numpy(x).to("cuda", tdt) for x in host]
    ref = reference(*(as_float64(t) for t in dev), causal=causal)
    if layout == "bshd":
        dev = [t.transpose(1, 2).contiguous() for t in dev]
    return dev, ref


SHAPES = {
    "prefill": (1, 8, 2, 300, 300, 128, True),
    "decode": (2, 32, 8, 1, 4000, 128, True),
    "long_cache": (1, 4, 4, 64, 2000, 64, True),
}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("shape", SHAPES)
def test_values(rng, dtype, layout, shape):
    (q, k, v), want = cuda_case(rng, dtype, SHAPES[shape], layout)
    out, lse = longattn.attention(q, k, v, causal=SHAPES[shape][-1], layout=layout, return_lse=True)
    assert out.is_cuda and out.device == q.device and out.dtype == q.dtype and lse.is_cuda
    torch.cuda.synchronize()
    got = as_float64(out)
    check(got.transpose(0, 2, 1, 3) if layout == "bshd" else got, want, dtype, lse=lse)


def test_runs_on_the_current_stream(rng):
    """A call made under torch.cuda.stream(s) is ordered on s: the inputs
    are produced on s and the output read after s alone is synchronized."""
    (q, k, v), want = cuda_case(rng, "float16", SHAPES["decode"])
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        q2, k2, v2 = q * 1, k * 1, v * 1  # made on s
        out = longattn.attention(q2, k2, v2, causal=True)
    s.synchronize()
    check(out, want, "float16")


def test_explicit_stream(rng):
    (q, k, v), want = cuda_case(rng, "bfloat16", SHAPES["decode"])
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    out = longattn.attention(q, k, v, causal=True, stream=s)
    s.synchronize()
    check(out, want, "bfloat16")
    out = longattn.attention(q, k, v, causal=True, stream=s.cuda_stream)  # the int handle
    s.synchronize()
    check(out, want, "bfloat16")


def test_cuda_graph_capture(rng):
    """A decode call (one small submission, no report, no progress) is only
    enqueued on the current stream, so it can be captured and replayed."""
    (q, k, v), want = cuda_case(rng, "float16", SHAPES["decode"])
    out = torch.empty_like(q)
    longattn.attention(q, k, v, causal=True, out=out)  # warm-up outside the capture
    torch.cuda.synchronize()
    out.zero_()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        longattn.attention(q, k, v, causal=True, out=out)
    g.replay()
    torch.cuda.synchronize()
    check(out, want, "float16")


def test_out_in_place_and_report(rng):
    (q, k, v), want = cuda_case(rng, "bfloat16", SHAPES["long_cache"])
    out = torch.empty_like(q)
    ptr = out.data_ptr()
    result, rep = longattn.attention(
        q, k, v, causal=True, out=out, report=True,
        policy=longattn.Policy(fixed_chunk_keys=256, fixed_query_rows=64),
    )
    assert result is out and out.data_ptr() == ptr
    assert rep.backend == "cuda" and rep.completed and len(rep.submissions) >= 1
    check(out, want, "bfloat16")


def test_no_copy_of_cuda_inputs(rng):
    """Only the outputs are allocated on the device."""
    (q, k, v), _ = cuda_case(rng, "float16", SHAPES["long_cache"])
    out = torch.empty_like(q)
    longattn.attention(q, k, v, causal=True, out=out)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    longattn.attention(q, k[:, :, 7:], v[:, :, 7:], causal=True, out=out)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - before < k.numel() * k.element_size() // 4


@pytest.mark.skipif(
    torch is None or not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="needs two GPUs",
)
def test_second_device(rng):
    """Tensors on cuda:1 while cuda:0 is current: the call runs on cuda:1."""
    (q, k, v), want = cuda_case(rng, "float16", SHAPES["prefill"])
    q1, k1, v1 = (t.to("cuda:1") for t in (q, k, v))
    assert torch.cuda.current_device() == 0
    out = longattn.attention(q1, k1, v1, causal=True)
    assert out.device == q1.device and torch.cuda.current_device() == 0
    torch.cuda.synchronize(1)
    check(out, want, "float16")


@pytest.mark.parametrize("d, dv", [(40, 40), (72, 72), (128, 64), (33, 96)])
def test_narrow_and_unequal_head_dims(rng, d, dv):
    """Heads without their own kernel width run padded; Dv may differ."""
    (q, k, v), _ = cuda_case(rng, "bfloat16", (1, 4, 2, 200, 300, 128, True))
    q, k, v = q[..., :d], k[..., :d], v[..., :dv]
    want = reference(*(as_float64(t) for t in (q, k, v)), causal=True)
    out, lse = longattn.attention(q, k, v, causal=True, return_lse=True)
    assert out.shape == (1, 4, 200, dv)
    check(as_float64(out), want, "bfloat16", lse=lse)


def test_cuda_errors(rng):
    (q, k, v), _ = cuda_case(rng, "float16", SHAPES["prefill"])
    wide = torch.zeros(1, 1, 4, 300, device=q.device, dtype=q.dtype)
    with pytest.raises(longattn.InvalidArgument, match=r"q.shape.3. = 300 .*must be in \[1, 256\]"):
        longattn.attention(wide, wide, wide)
    with pytest.raises(longattn.InvalidArgument, match="k.device = cpu differs from q.device = cuda"):
        longattn.attention(q, k.cpu(), v)
    with pytest.raises(longattn.InvalidArgument, match="merge_states runs on the CPU"):
        lse = torch.zeros(q.shape[:3], device="cuda")
        longattn.merge_states([(q, lse)])


def test_cancel_on_cuda(rng):
    """Cancelled once the first query group is final: its rows are right."""
    (q, k, v), want = cuda_case(rng, "float16", (1, 4, 4, 512, 2000, 64, True))
    policy = longattn.Policy(fixed_chunk_keys=256, fixed_query_rows=128, budget_ms=1e-3)
    with pytest.raises(longattn.Cancelled) as info:
        longattn.attention(q, k, v, causal=True, policy=policy, progress=lambda d, t, r: d == 0)
    e = info.value
    assert not e.report.completed and e.report.backend == "cuda"
    assert len(e.finished_rows) == 1 and e.finished_rows[0][0] == 0 and e.finished_rows[0][1] < 512
    rows = slice(*e.finished_rows[0])
    got = as_float64(e.out)[:, :, rows]
    check(got, (want[0][:, :, rows], want[1][:, :, rows]), "float16")
    assert np.isfinite(got).all()
