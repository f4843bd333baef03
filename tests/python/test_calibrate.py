"""DeviceProfile.calibrate and attention_flops: what they return and refuse."""
import pytest

import longattn


def test_calibrate_measures_every_rate_key_of_the_cpu():
    lines = []
    p = longattn.DeviceProfile.calibrate(
        backend="cpu", dtypes=["float32", "bfloat16"], head_dims=[32], heads=4, q_len=64,
        k_len=256, reps=1, threads=1, log=lines.append)
    assert p.backend == "cpu" and p.device_name
    assert p.invalid_field() == ""
    for dtype in ("float32", "bfloat16"):
        for causal, masked in ((False, False), (True, False), (False, True)):
            key = longattn.DeviceProfile.rate_key(dtype, 32, causal, masked)
            assert p.gflops[key] > 0, key
    assert lines and lines[0].startswith("longattn calibrate: cpu")
    assert p.dispatch_overhead_ms + p.submission_overhead_ms > 0


@pytest.mark.parametrize("kwargs, message, error", [
    (dict(reps=0), "reps = 0", longattn.InvalidArgument),
    (dict(dtypes=[]), "dtypes is empty", longattn.InvalidArgument),
    (dict(dtypes=["int8"]), "'int8'", longattn.InvalidArgument),
    (dict(backend="tpu"), "backend = 'tpu'", longattn.InvalidArgument),
    (dict(head_dims=[300]), "head_dims 300", longattn.Unsupported),
])
def test_calibrate_refuses_bad_options_by_name(kwargs, message, error):
    args = dict(backend="cpu", dtypes=["float32"], head_dims=[32], q_len=64, k_len=256, reps=1)
    args.update(kwargs)
    with pytest.raises(error, match=message.replace("(", r"\(")):
        longattn.DeviceProfile.calibrate(**args)


def test_attention_flops_counts_visible_pairs():
    # 4 x 4 causal: 10 visible pairs; 2 * (D + Dv) per pair and head.
    assert longattn.attention_flops(1, 1, 4, 4, 8, 8, True) == 10 * 2 * 16
    assert longattn.attention_flops(2, 3, 5, 7, 8, 4, False) == 2 * 3 * 35 * 2 * 12
    # bottom-right: 2 queries over 5 keys see 4 and 5 keys
    assert longattn.attention_flops(1, 1, 2, 5, 1, 1, True) == 9 * 4
