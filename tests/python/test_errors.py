"""Errors: every C++ error type as its Python exception (a subclass of the
built-in one) with the C++ message, and bad input from Python answered with
a clear error naming the argument, never a crash."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import longattn
from longattn import _core
from support import FakeDevice, randn, requires_torch, to_torch, torch

BUILTIN = {
    "invalid_argument": (longattn.InvalidArgument, ValueError),
    "unsupported": (longattn.Unsupported, NotImplementedError),
    "out_of_memory": (longattn.OutOfMemory, MemoryError),
    "backend": (longattn.BackendError, RuntimeError),
    "io": (longattn.IoError, OSError),
    "cancelled": (longattn.Cancelled, longattn.Error),
}


@pytest.mark.parametrize("code", BUILTIN)
def test_every_error_code_translates(code):
    cls, builtin = BUILTIN[code]
    with pytest.raises(cls) as info:
        _core._raise_error(code, f"[longattn::test] the {code} message")
    e = info.value
    assert isinstance(e, builtin) and isinstance(e, longattn.Error)
    assert str(e) == f"[longattn::test] the {code} message"
    if code != "cancelled":
        assert e.report is None and e.finished_rows == []
    with pytest.raises(cls) as info:
        _core._raise_error(code, "stopped part way", rows=7)
    assert info.value.report.backend == "test" and info.value.finished_rows == [(0, 7)]


@pytest.fixture
def qkv(rng):
    return (
        randn(rng, (1, 4, 8, 16), "float32"),
        randn(rng, (1, 2, 20, 16), "float32"),
        randn(rng, (1, 2, 20, 16), "float32"),
    )


def bad_calls(q, k, v):
    """(id, call, message fragment) of calls that must raise InvalidArgument."""
    a = longattn.attention
    f16 = q.astype(np.float16)
    return [
        ("heads", lambda: a(q, k[:, :1].repeat(3, axis=1), v[:, :1].repeat(3, axis=1)),
         "[longattn::attention] k.shape[1] = 3 does not divide q.shape[1] = 4"),
        ("rank_3", lambda: a(q[0], k[0], v[0]), "q.rank = 3 but must be 4"),
        ("rank_5", lambda: a(q[None], k, v), "q.ndim = 5"),
        ("mixed_dtypes", lambda: a(q, k.astype(np.float16), v), "k.dtype = float16 differs from q.dtype"),
        ("float64", lambda: a(q.astype(np.float64), k, v), "q.dtype = float64"),
        ("int_mask", lambda: a(q, k, v, mask=np.ones((8, 20), np.int32)), "mask.dtype = int32"),
        ("mask_broadcast", lambda: a(q, k, v, mask=np.ones((5, 20), bool)),
         "mask.shape[2] = 5 does not broadcast to Lq = 8 (mask of shape [5, 20] is read as [1, 1, 5, 20])"),
        ("head_dim", lambda: a(q, k[..., :8], v), "k.shape[3] = 8 but must equal q.shape[3] = 16"),
        ("v_length", lambda: a(q, k, v[:, :, :19]), "v.shape[2] = 19 but must equal k.shape[2] = 20"),
        ("out_shape", lambda: a(q, k, v, out=np.empty((1, 4, 8, 8), np.float32)), "out.shape[3] = 8"),
        ("out_dtype", lambda: a(q, k, v, out=f16.copy()), "out.dtype = float16 differs"),
        ("out_read_only", lambda: a(q, k, v, out=np.broadcast_to(q, q.shape)), "out of type ndarray is read-only"),
        ("out_aliases_q", lambda: a(q, k, v, out=q), "out overlaps q in memory"),
        ("negative_strides", lambda: a(q, k[:, :, ::-1], v), "k.strides[2] = -16 is negative"),
        ("sinks_dtype", lambda: a(q, k, v, sinks=np.zeros(4, np.float16)), "sinks.dtype = float16 must be float32"),
        ("sinks_shape", lambda: a(q, k, v, sinks=np.zeros(3, np.float32)), "sinks.shape[0] = 3"),
        ("not_an_array", lambda: a([[1.0]], k, v), "q of type list is not an array longattn can read"),
        ("layout", lambda: a(q, k, v, layout="bsdh"), "layout = 'bsdh' must be 'bhsd'"),
        ("causal_type", lambda: a(q, k, v, causal="yes"), "causal = 'yes' must be True, False, 'bottom_right' or 'top_left'"),
        ("causal_number", lambda: a(q, k, v, causal=2), "causal = 2 must be True or False"),
        ("scale_type", lambda: a(q, k, v, scale="big"), "scale = 'big' must be a number"),
        ("scale_value", lambda: a(q, k, v, scale=float("inf")), "scale = inf must be finite"),
        ("threads_type", lambda: a(q, k, v, threads=1.5), "threads = 1.5 must be an integer"),
        ("threads_value", lambda: a(q, k, v, threads=-1), "threads = -1 must be in [0,"),
        ("budget", lambda: a(q, k, v, budget_ms=-1), "policy.budget_ms = -1 must be finite and >= 0"),
        ("safety", lambda: a(q, k, v, policy=longattn.Policy(safety=2)), "policy.safety = 2 must be in (0, 1]"),
        ("policy_type", lambda: a(q, k, v, policy={"budget_ms": 5}), "policy = {'budget_ms': 5} must be a longattn.Policy"),
        ("profile_type", lambda: a(q, k, v, profile="fast"), "profile = 'fast' must be a longattn.DeviceProfile"),
        ("progress_type", lambda: a(q, k, v, progress=3), "progress = 3 must be callable"),
        ("stream_type", lambda: a(q, k, v, stream="s"), "stream = 's' must be a CUDA stream"),
        ("bshd_heads", lambda: a(q.transpose(0, 2, 1, 3), k[:, :1].repeat(3, axis=1).transpose(0, 2, 1, 3),
                                  v[:, :1].repeat(3, axis=1).transpose(0, 2, 1, 3), layout="bshd"),
         "k.shape[1] = 3 does not divide q.shape[1] = 4 (layout 'bshd': arrays of shape [B, S, H, D] "
         "are read as [B, H, S, D]"),
    ]


_rng = np.random.default_rng(11)
BAD_CALLS = bad_calls(*(randn(_rng, s, "float32") for s in [(1, 4, 8, 16), (1, 2, 20, 16), (1, 2, 20, 16)]))


@pytest.mark.parametrize("call,fragment", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_invalid_argument(call, fragment):
    with pytest.raises(longattn.InvalidArgument) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value), str(info.value)


def test_invalid_profile_and_policy_values(qkv):
    q, k, v = qkv
    prof = longattn.default_profile()
    prof.fill_rows = 0
    with pytest.raises(longattn.InvalidArgument, match=r"profile->fill_rows = 0"):
        longattn.attention(q, k, v, profile=prof)
    with pytest.raises(longattn.InvalidArgument, match="policy.fixed_chunk_keys = -4"):
        longattn.plan(q, k, v, policy=longattn.Policy(fixed_chunk_keys=-4))


def test_merge_states_errors(qkv):
    q, k, v = qkv
    o = q.copy()
    lse = np.zeros((1, 4, 8), np.float32)
    with pytest.raises(longattn.InvalidArgument, match=r"parts.size\(\) = 0"):
        longattn.merge_states([])
    with pytest.raises(longattn.InvalidArgument, match=r"parts\[1\] must be a pair"):
        longattn.merge_states([(o, lse), o])
    with pytest.raises(longattn.InvalidArgument, match=r"parts\[1\].lse.dtype = float16"):
        longattn.merge_states([(o, lse), (o, lse.astype(np.float16))])
    with pytest.raises(longattn.InvalidArgument, match=r"parts\[0\].o.shape\[2\] = 8 but must be 4"):
        longattn.merge_states([(o, lse)], out=np.empty((1, 4, 4, 16), np.float32))


def test_devices_without_the_memory(qkv):
    """Arrays in other memory are refused by name before any is read: an
    unsupported device type, CUDA arrays on two devices, CUDA arrays when
    this build has no CUDA backend (or plans for them when it has one)."""
    q, k, v = qkv
    with pytest.raises(longattn.Unsupported, match=r"q is in Metal memory \(DLPack device type 8\)"):
        longattn.attention(FakeDevice(q, 8), k, v)
    cuda = [FakeDevice(x, 2, 0) for x in (q, k, v)]
    with pytest.raises(longattn.InvalidArgument, match="v is on cuda:1 but q is on cuda:0"):
        longattn.plan(cuda[0], cuda[1], FakeDevice(v, 2, 1))
    with pytest.raises(longattn.InvalidArgument, match="k.device = cpu differs from q.device = cuda"):
        longattn.plan(cuda[0], k, v)
    if not longattn.cuda_built():
        with pytest.raises(longattn.Unsupported, match="this build of longattn has no CUDA backend"):
            longattn.plan(*cuda)
    else:
        wide = [FakeDevice(np.zeros(x.shape[:3] + (300,), x.dtype), 2, 0) for x in (q, k, v)]
        with pytest.raises(longattn.InvalidArgument, match=r"q.shape.3. = 300 .*must be in \[1, 256\]"):
            longattn.plan(*wide)


@pytest.mark.skipif(
    longattn.cuda_built() and (torch is None or torch.cuda.is_available()),
    reason="a GPU may be present: CUDA kernels would read host memory",
)
def test_cuda_arrays_without_a_gpu(rng):
    """attention() on CUDA arrays: Unsupported, naming why (no CUDA backend
    in this build, or no CUDA device)."""
    q, k = randn(rng, (1, 4, 8, 64), "float16"), randn(rng, (1, 2, 20, 64), "float16")
    cuda = [FakeDevice(x, 2, 0) for x in (q, k, k, np.empty_like(q))]
    with pytest.raises(longattn.Unsupported, match="no CUDA backend|no CUDA device is available"):
        longattn.attention(*cuda[:3], out=cuda[3])


@requires_torch
def test_exporter_refusal_is_quoted(qkv):
    """An array whose own DLPack export fails: the error names the argument
    and quotes the exporter's reason."""
    q, k, v = (to_torch(x, "float32") for x in qkv)
    with pytest.raises(longattn.InvalidArgument) as info:
        longattn.attention(q, k.to_sparse(), v)
    msg = str(info.value)
    assert msg.startswith("[longattn.attention] k of type torch.Tensor is not an array longattn can read")
    assert "its __dlpack__() raised BufferError" in msg and "layout" in msg


@requires_torch
def test_torch_requires_grad(qkv):
    q, k, v = (to_torch(x, "float32") for x in qkv)
    q.requires_grad_(True)
    with pytest.raises(longattn.Unsupported, match="q requires grad: longattn has no backward"):
        longattn.attention(q, k, v)
    with torch.no_grad():
        out = longattn.attention(q, k, v)
    assert not out.requires_grad


def test_io_error(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(longattn.IoError) as info:
        longattn.DeviceProfile.load(str(missing))
    assert isinstance(info.value, OSError) and str(missing) in str(info.value)
    with pytest.raises(longattn.IoError):
        longattn.DeviceProfile.load(str(tmp_path))  # a directory


def test_out_of_memory():
    """A running state larger than the memory left: OutOfMemory (a
    MemoryError), in a child process under an address-space limit."""
    code = textwrap.dedent(
        """
        import resource, numpy as np, longattn
        def vm():
            return int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        B, H, Lq, Lk, D = 1, 8, 1 << 20, 64, 2
        z = np.zeros((1, 1, 1, D), np.float16)
        q = np.broadcast_to(z, (B, H, Lq, D))        # no memory behind these
        k = np.broadcast_to(z, (B, 1, Lk, D))
        out = np.zeros((B, H, Lq, D), np.float16)    # 32 MiB
        # The running state of one query group of all Lq rows: 128 MiB.
        policy = longattn.Policy(fixed_query_rows=Lq, fixed_chunk_keys=32,
                                 workspace_limit_bytes=1 << 40)
        resource.setrlimit(resource.RLIMIT_AS, (vm() + (64 << 20), resource.RLIM_INFINITY))
        try:
            longattn.attention(q, k, k, out=out, threads=1, policy=policy)
            print("no error")
        except MemoryError as e:
            print(type(e).__name__, isinstance(e, longattn.Error), e)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OutOfMemory True [longattn::attention] running state of"), r.stdout
