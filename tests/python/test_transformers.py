"""longattn.integrations.transformers: attn_implementation="longattn" in tiny
randomly initialised models (no downloads) against "sdpa" (and "eager" for
gpt-oss's sinks): logits with and without left padding, greedy generate()
through prefill and cached decode, a sliding window (in transformers' masks,
and from sliding_window alone where no mask comes), GQA, a chunked policy;
and the attention function itself against transformers' sdpa function."""

import copy

import pytest

from support import graph_recorder, output_error, tolerance, torch

if torch is None:  # pragma: no cover - the test stage installs torch
    pytest.skip("torch is not installed", allow_module_level=True)
transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    AttentionInterface,
    AutoModelForCausalLM,
    GptOssConfig,
    LlamaConfig,
    Qwen2Config,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402

import longattn  # noqa: E402
import longattn.integrations.transformers as lat  # noqa: E402

SMALL = dict(
    num_hidden_layers=2,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=256,
    pad_token_id=0,
)
CONFIGS = {
    "llama": lambda: LlamaConfig(**SMALL),
    "qwen2": lambda: Qwen2Config(**SMALL),
    # both layers slide over 6 keys: prompts of 12 tokens reach past it
    "qwen2_sliding": lambda: Qwen2Config(
        use_sliding_window=True, sliding_window=6, max_window_layers=0, **SMALL
    ),
}
PROMPT = 12
PAD = 5  # left padding of the second sequence


@pytest.fixture(scope="module")
def name():
    return lat.register()


class Spy:
    """Records the calls of a registered attention function: (queries, keys,
    whether a mask came)."""

    def __init__(self, key):
        self.key = key
        self.calls = []

    def __enter__(self):
        self.inner = AttentionInterface._global_mapping[self.key]

        def spy(module, query, key, value, attention_mask, *args, **kwargs):
            self.calls.append((query.shape[-2], key.shape[-2], attention_mask is not None))
            return self.inner(module, query, key, value, attention_mask, *args, **kwargs)

        AttentionInterface._global_mapping[self.key] = spy
        return self

    def __exit__(self, *exc):
        AttentionInterface._global_mapping[self.key] = self.inner


def models(config, impls, dtype=torch.float32):
    """One model per attn_implementation, all with the same random weights."""
    torch.manual_seed(0)
    out = {}
    for impl in impls:
        m = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=impl)
        if out:
            m.load_state_dict(next(iter(out.values())).state_dict())
        out[impl] = m.to(dtype).eval()
    for impl, m in out.items():
        assert m.config._attn_implementation == impl
    return out


def prompt(padded):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 128, (2, PROMPT), generator=g)
    mask = torch.ones(2, PROMPT, dtype=torch.long)
    if padded:
        ids[1, :PAD] = 0
        mask[1, :PAD] = 0
    return ids, mask


def assert_close(got, want, dtype):
    # A whole model's logits, rows over the vocabulary: the attention
    # tolerance of the dtype (bfloat16 measured at about half of it).
    tol = tolerance(dtype)
    err = output_error(got, want.double().numpy())
    assert err <= tol, f"logits differ by {err:.3g} > {tol:.3g} ({dtype})"


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("model", list(CONFIGS))
def test_logits_match_sdpa(name, model, dtype, padded):
    ms = models(CONFIGS[model](), ["sdpa", name], getattr(torch, dtype))
    ids, mask = prompt(padded)
    with torch.no_grad():
        want = ms["sdpa"](ids, attention_mask=mask).logits
        with Spy(name) as spy:
            got = ms[name](ids, attention_mask=mask).logits
    assert got.dtype == want.dtype
    # every layer ran through longattn, with a mask exactly where padding or
    # a window needs one (else causal by is_causal)
    needs_mask = padded or model == "qwen2_sliding"
    assert spy.calls == [(PROMPT, PROMPT, needs_mask)] * 2
    assert_close(got.float(), want.float(), dtype)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
@pytest.mark.parametrize("model", list(CONFIGS))
def test_generate_matches_sdpa(name, model, padded):
    """Greedy decoding of 10 tokens: prefill, then 9 cached decode steps of
    one query each, all through longattn; the same tokens as sdpa."""
    ms = models(CONFIGS[model](), ["sdpa", name])
    ids, mask = prompt(padded)
    kw = dict(attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        want = ms["sdpa"].generate(ids, **kw)
        with Spy(name) as spy:
            got = ms[name].generate(ids, **kw)
    assert got.shape == (2, PROMPT + 10)
    assert torch.equal(got, want)
    decode = [c for c in spy.calls if c[0] == 1]
    assert len(spy.calls) == 2 * 10 and len(decode) == 2 * 9
    # keys seen by each decode step: the whole cache, or the sliding-window
    # cache's last 6 keys
    cap = 6 if model == "qwen2_sliding" else PROMPT + 10
    assert [c[1] for c in decode[::2]] == [min(n, cap) for n in range(PROMPT + 1, PROMPT + 10)]
    # decode steps carry a mask when padding or the window hides keys
    assert any(c[2] for c in decode) == (padded or model == "qwen2_sliding")


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
def test_generate_with_a_static_cache(name, padded):
    """A static cache: the prefill's keys include the cache's empty slots,
    and without padding transformers passes no mask (sdpa's top-left
    is_causal hides them); then masked decode steps."""
    ms = models(CONFIGS["llama"](), ["sdpa", name])
    ids, mask = prompt(padded)
    kw = dict(attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        want = ms["sdpa"].generate(ids, cache_implementation="static", **kw)
        with Spy(name) as spy:
            got = ms[name].generate(ids, cache_implementation="static", **kw)
    assert torch.equal(got, want)
    lq, lk, masked = spy.calls[0]
    assert lq == PROMPT and lk > PROMPT and masked == padded


def test_chunked_policy_in_a_model(name):
    """A model whose attention runs in many submissions (fixed 4 x 4 tiles,
    a budget below any dispatch) gives the single-pass logits."""
    policy = longattn.Policy(fixed_query_rows=4, fixed_chunk_keys=4)
    chunked = lat.register("longattn_chunked", policy=policy, budget_ms=1e-4)
    ms = models(CONFIGS["llama"](), ["sdpa", chunked])
    ids, mask = prompt(True)
    with torch.no_grad():
        want = ms["sdpa"](ids, attention_mask=mask).logits
        got = ms[chunked](ids, attention_mask=mask).logits
    assert_close(got, want, "float32")


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
def test_compiled_model(name, padded):
    """torch.compile(fullgraph=True) traces the whole model, transformers'
    mask building included, with every attention as the op."""
    ms = models(CONFIGS["llama"](), ["sdpa", name])
    ids, mask = prompt(padded)
    graphs = []
    backend = graph_recorder(graphs)
    torch._dynamo.reset()
    with torch.no_grad():
        got = torch.compile(ms[name], fullgraph=True, backend=backend)(ids, attention_mask=mask)
        want = ms["sdpa"](ids, attention_mask=mask)
    assert len(graphs) == 1 and graphs[0].count("longattn.attention") == 2
    assert_close(got.logits, want.logits, "float32")


def test_reports(name):
    """register(on_report=...) hands over every attention call's run report."""
    reports = []
    with_reports = lat.register("longattn_reports", budget_ms=25, on_report=reports.append)
    ms = models(CONFIGS["llama"](), [with_reports])
    with torch.no_grad():
        ms[with_reports](*prompt(True))
    assert len(reports) == 2  # one a layer
    assert all(isinstance(r, longattn.RunReport) and r.completed for r in reports)
    assert all(r.budget_ms == 25 and r.submissions for r in reports)


def gpt_oss_config():
    return GptOssConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=64,
        head_dim=16,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        vocab_size=128,
        sliding_window=6,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0,
    )


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
def test_gpt_oss_sinks_match_eager(name, padded):
    """gpt-oss passes its sinks as s_aux (sdpa cannot run it; eager is its
    reference), with one sliding and one full layer."""
    ms = models(gpt_oss_config(), ["eager", name])
    with torch.no_grad():
        sinks = torch.linspace(-1.5, 2.5, 4)  # large enough to matter
        for m in ms.values():
            for layer in m.model.layers:
                layer.self_attn.sinks.copy_(sinks)
    ids, mask = prompt(padded)
    kw = dict(attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    with torch.no_grad():
        want = ms["eager"](ids, attention_mask=mask).logits
        got = ms[name](ids, attention_mask=mask).logits
        assert_close(got, want, "float32")
        assert torch.equal(ms[name].generate(ids, **kw), ms["eager"].generate(ids, **kw))


# ---- the attention function against transformers' sdpa function -----------------


class Module(torch.nn.Module):
    def __init__(self, groups, causal=True):
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = causal


def qkv(B, Hq, Hkv, Lq, Lk, D=16):
    g = torch.Generator().manual_seed(Lq * 100 + Lk)
    return (
        torch.randn(B, Hq, Lq, D, generator=g),
        torch.randn(B, Hkv, Lk, D, generator=g),
        torch.randn(B, Hkv, Lk, D, generator=g),
    )


FORWARD_CASES = {
    "causal_prefill": dict(Lq=9, Lk=9),
    # an empty static cache: keys past the prompt are hidden by the top-left
    # diagonal (transformers leaves the mask out for exactly this)
    "static_cache_prefill": dict(Lq=5, Lk=12),
    "decode": dict(Lq=1, Lk=20),
    "bool_mask": dict(Lq=6, Lk=15, mask="bool"),
    "float_mask": dict(Lq=6, Lk=15, mask="float"),
    "position_bias": dict(Lq=7, Lk=7, bias=True),
    "position_bias_and_mask": dict(Lq=7, Lk=7, bias=True, mask="bool"),
    "not_causal": dict(Lq=6, Lk=11, causal=False),
    "scaling": dict(Lq=4, Lk=10, scaling=0.7),
    "mqa": dict(Lq=5, Lk=5, Hkv=1),
}


@pytest.mark.parametrize("case", list(FORWARD_CASES))
def test_attention_forward_matches_sdpa_forward(case):
    c = dict(FORWARD_CASES[case])
    Hq, Hkv = 4, c.pop("Hkv", 2)
    q, k, v = qkv(2, Hq, Hkv, c["Lq"], c["Lk"])
    g = torch.Generator().manual_seed(7)
    mask = {
        None: None,
        "bool": torch.rand(2, 1, c["Lq"], c["Lk"], generator=g) > 0.3,
        "float": torch.randn(2, 1, c["Lq"], c["Lk"], generator=g),
    }[c.get("mask")]
    kw = dict(scaling=c.get("scaling", 0.25), dropout=0.0)
    if c.get("bias"):
        kw["position_bias"] = torch.randn(1, Hq, c["Lq"], c["Lk"], generator=g)
    module = Module(Hq // Hkv, c.get("causal", True))
    want, _ = sdpa_attention_forward(module, q, k, v, mask, **kw)
    got, weights = lat.attention_forward(module, q, k, v, mask, **kw)
    assert weights is None
    assert got.shape == want.shape == (2, c["Lq"], Hq, 16) and got.is_contiguous()
    err = output_error(got, want.double().numpy())
    assert err <= tolerance("float32", c["Lk"]), err


def sliding_mask(causal, window, Lq, Lk, q_offset=0):
    """transformers' own boolean mask of a sliding-window layer (sdpa_mask,
    never skipped), queries at positions q_offset + i."""
    from transformers.masking_utils import (
        sdpa_mask,
        sliding_window_bidirectional_mask_function,
        sliding_window_causal_mask_function,
    )

    fn = (
        sliding_window_causal_mask_function
        if causal
        else sliding_window_bidirectional_mask_function
    )(window)
    return sdpa_mask(
        batch_size=2, q_length=Lq, kv_length=Lk, q_offset=q_offset, mask_function=fn,
        allow_is_causal_skip=False,
    )  # fmt: skip


# (causal module, Lq, Lk): prefill (Lq = Lk), an empty static cache's
# prefill (top-left), a decode step (the query is the last position), a
# bidirectional layer; every one with keys outside the window of 4
WINDOW_CASES = [(True, 11, 11), (True, 5, 12), (True, 1, 9), (False, 10, 10)]


@pytest.mark.parametrize("bias", [False, True], ids=["plain", "position_bias"])
@pytest.mark.parametrize("causal,Lq,Lk", WINDOW_CASES)
def test_sliding_window_without_a_mask(causal, Lq, Lk, bias):
    """sliding_window with no mask is the window of transformers' own masks:
    the same as sdpa given the mask sdpa_mask builds for the layer."""
    W = 4
    module = Module(2, causal)
    q, k, v = qkv(2, 4, 2, Lq, Lk)
    mask = sliding_mask(causal, W, Lq, Lk, q_offset=Lk - 1 if Lq == 1 else 0)
    assert not mask.all()  # the window hides keys
    kw = dict(scaling=0.25)
    if bias:
        kw["position_bias"] = torch.randn(1, 4, Lq, Lk, generator=torch.Generator().manual_seed(3))
    want, _ = sdpa_attention_forward(module, q, k, v, mask, **kw)
    got, _ = lat.attention_forward(module, q, k, v, None, sliding_window=W, **kw)
    assert output_error(got, want.double().numpy()) <= 1e-5
    # with the mask, the mask is the window (applied once, not twice)
    got, _ = lat.attention_forward(module, q, k, v, mask, sliding_window=W, **kw)
    assert output_error(got, want.double().numpy()) <= 1e-5


def test_sliding_window_that_hides_nothing():
    """A window wider than the keys changes nothing (where transformers'
    sdpa_mask leaves the mask out): the plain causal call."""
    module = Module(2)
    # 6 keys; 3 queries on the top-left diagonal of 12 keys see keys 0..2
    for Lq, Lk in ((6, 6), (3, 12)):
        q, k, v = qkv(1, 4, 2, Lq, Lk)
        want, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.25)
        got, _ = lat.attention_forward(module, q, k, v, None, scaling=0.25, sliding_window=6)
        assert output_error(got, want.double().numpy()) <= 1e-5


@pytest.fixture(scope="module")
def maskless():
    """The longattn attention function under a name whose mask builder
    returns None (as flash attention's does without padding): every layer's
    call, sliding ones included, comes without a mask."""
    from transformers import AttentionMaskInterface

    name = lat.register("longattn_maskless")
    AttentionMaskInterface.register(name, lambda *args, **kwargs: None)
    return name


def test_sliding_model_without_masks(name, maskless):
    """qwen2 with both layers sliding over 6 keys, its 12-token prompt
    reaching past them, and no mask passed: the window comes from
    sliding_window alone; logits and greedy tokens are sdpa's (with masks)."""
    ms = models(CONFIGS["qwen2_sliding"](), ["sdpa", maskless])
    ids, mask = prompt(False)
    kw = dict(attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        want = ms["sdpa"](ids, attention_mask=mask).logits
        with Spy(maskless) as spy:
            got = ms[maskless](ids, attention_mask=mask).logits
        assert spy.calls == [(PROMPT, PROMPT, False)] * 2
        assert_close(got, want, "float32")
        with Spy(maskless) as spy:
            tokens = ms[maskless].generate(ids, **kw)
        assert not any(c[2] for c in spy.calls)
        assert torch.equal(tokens, ms["sdpa"].generate(ids, **kw))


def test_gpt_oss_without_masks(maskless):
    """gpt-oss (one sliding layer, one full, sinks) with no masks passed."""
    ms = models(gpt_oss_config(), ["eager", maskless])
    ids, mask = prompt(False)
    with torch.no_grad():
        want = ms["eager"](ids, attention_mask=mask).logits
        got = ms[maskless](ids, attention_mask=mask).logits
    assert_close(got, want, "float32")


def test_compiled_sliding_model_without_masks(maskless):
    """torch.compile(fullgraph=True) traces the maskless sliding model: the
    window rides in the op's arguments."""
    ms = models(CONFIGS["qwen2_sliding"](), ["sdpa", maskless])
    ids, mask = prompt(False)
    graphs = []
    backend = graph_recorder(graphs)
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(ms[maskless], fullgraph=True, backend=backend)
        got = compiled(ids, attention_mask=mask)
        want = ms["sdpa"](ids, attention_mask=mask)
    assert len(graphs) == 1 and graphs[0].count("longattn.attention") == 2
    assert_close(got.logits, want.logits, "float32")


@pytest.mark.parametrize("mask", [False, True], ids=["causal", "bool_mask"])
def test_softcap_caps_the_logits(mask):
    """Gemma 2's attn_logit_softcapping: softcap * tanh(logit / softcap)
    before the mask, against the float64 definition (sdpa has no cap)."""
    module = Module(2)
    q, k, v = qkv(1, 4, 2, 6, 6)
    q = q * 4  # logits of a few tens, where a cap of 5 bends them
    g = torch.Generator().manual_seed(3)
    m = torch.rand(1, 1, 6, 6, generator=g) > 0.3 if mask else None
    got, _ = lat.attention_forward(module, q, k, v, m, scaling=0.25, softcap=5.0)
    kk, vv = (t.repeat_interleave(2, dim=1).double() for t in (k, v))
    s = 5.0 * torch.tanh(q.double() @ kk.transpose(-1, -2) * 0.25 / 5.0)
    keep = torch.ones(6, 6, dtype=torch.bool).tril() if m is None else m[0, 0]
    s = s.masked_fill(~keep, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    want = (p @ vv).transpose(1, 2)
    assert (got.double() - want).abs().max().item() < 1e-5
    plain, _ = lat.attention_forward(module, q, k, v, m, scaling=0.25)
    assert (plain.double() - want).abs().max().item() > 1e-2  # the cap mattered


def test_refusals():
    module = Module(2)
    q, k, v = qkv(1, 4, 2, 3, 3)
    with pytest.raises(ValueError, match="dropout = 0.1"):
        lat.attention_forward(module, q, k, v, None, dropout=0.1)
    with pytest.warns(UserWarning, match="attention weights"):
        lat.attention_forward(module, q, k, v, None, output_attentions=True)
    with pytest.raises(TypeError, match="policy"):
        lat.register("x", policy={"budget_ms": 1})
    with pytest.raises(TypeError, match="on_report"):
        lat.register("x", on_report=[])


def test_registered_entries(name):
    from transformers import AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    assert name == "longattn"
    assert AttentionMaskInterface._global_mapping[name] is sdpa_mask
    assert AttentionInterface._global_mapping[name].__doc__ == lat.attention_forward.__doc__


def test_docstrings_and_lazy_import():
    import inspect
    import subprocess
    import sys

    for fn in (lat.attention_forward, lat.register):
        doc = inspect.getdoc(fn)
        for param in inspect.signature(fn).parameters:
            assert f"\n    {param}: " in doc, (fn.__name__, param)
    assert "sliding" in inspect.getdoc(lat) and inspect.getdoc(longattn.integrations)
    # importing the module imports neither transformers nor torch; register() does
    code = (
        "import sys, longattn.integrations.transformers; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
