import keras
import numpy as np
import pytest

from seqapps import layers as sl
from tests.helpers import max_diff


@pytest.mark.parametrize(
    "attn",
    [sl.BahdanauAttention(8), sl.LuongAttention(), sl.LuongAttention(scale=True)],
    ids=["bahdanau", "luong", "luong-scaled"],
)
def test_weights_are_a_masked_distribution(attn):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, 6)).astype("float32")
    v = rng.normal(size=(2, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    context, weights = attn(q, v, mask=mask)
    w = np.asarray(weights)
    assert context.shape == (2, 3, 6) and w.shape == (2, 3, 5)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(w[0, :, 3:] < 1e-6)
    assert max_diff(context, np.einsum("bqt,btd->bqd", w, v)) < 1e-5
    # a single decoder step (rank-2 query) equals the same row of the sequence version
    c1, w1 = attn(q[:, 1], v, mask=mask)
    assert max_diff(c1, np.asarray(context)[:, 1]) < 1e-5 and max_diff(w1, w[:, 1]) < 1e-5


def test_bahdanau_matches_equation():
    attn = sl.BahdanauAttention(4)
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, 2, 3)).astype("float32")
    v = rng.normal(size=(1, 4, 5)).astype("float32")
    _, w = attn(q, v)
    wq = attn.query_dense.kernel.numpy()
    wk, bk = attn.key_dense.kernel.numpy(), attn.key_dense.bias.numpy()
    vv = attn.score_dense.kernel.numpy()[:, 0]
    scores = np.tanh((q @ wq)[:, :, None, :] + (v @ wk + bk)[:, None, :, :]) @ vv
    expected = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    assert max_diff(w, expected) < 1e-5


def test_luong_dot_needs_equal_sizes_and_serialises():
    with pytest.raises(ValueError, match="same size"):
        sl.LuongAttention(score="dot")(np.zeros((1, 2, 3), "float32"), np.zeros((1, 4, 5), "float32"))
    with pytest.raises(ValueError, match="general"):
        sl.LuongAttention(score="concat")
    layer = sl.LuongAttention(score="dot", scale=True)
    assert sl.LuongAttention.from_config(layer.get_config()).get_config() == layer.get_config()
    b = sl.BahdanauAttention(7)
    assert sl.BahdanauAttention.from_config(b.get_config()).units == 7
    with pytest.raises(ValueError, match=r"\(batch, Tv, Dv\)"):
        b(np.zeros((1, 3), "float32"), np.zeros((1, 3), "float32"))
    assert keras.saving.get_registered_object("seqapps>BahdanauAttention") is sl.BahdanauAttention


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("kind", ["bahdanau", "luong"])
def test_masked_attention_in_float16_is_finite_and_matches_float32(kind, mixed_float16):
    """Mixed precision: -1e9 is -inf in float16, and the mask once multiplied it by 0, which made every score NaN."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, 6)).astype("float32")
    v = rng.normal(size=(2, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    half = sl.BahdanauAttention(8) if kind == "bahdanau" else sl.LuongAttention()
    context, weights = half(q, v, mask=mask)
    assert weights.dtype == "float16"
    keras.mixed_precision.set_global_policy("float32")
    full = sl.BahdanauAttention(8) if kind == "bahdanau" else sl.LuongAttention()
    full(q, v)
    full.set_weights(half.get_weights())
    ref_context, ref_weights = full(q, v, mask=mask)
    w = np.float32(weights)
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(np.float32(context))) and np.all(w[0, :, 3:] == 0)
    assert max_diff(w, ref_weights) < 5e-3 and max_diff(np.float32(context), ref_context) < 1e-2


def test_mask_bias_keeps_padding_below_every_real_value_in_each_float_dtype():
    x = np.array([[-4096.0, 2.0, -1.0]], "float32")  # exact in every dtype
    keep = np.array([[True, True, False]])
    for dtype in ("float16", "bfloat16", "float32"):
        out = np.float32(keras.ops.cast(x, dtype) + sl.mask_bias(keep, dtype))
        assert np.all(np.isfinite(out)) and out[0, 2] < x.min() and np.all(out[0, :2] == x[0, :2]), dtype


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_attention_computes_in_its_own_dtype_policy(policy, mixed_float16):
    """A float32 attention inside a mixed-precision model scores in float32 (its Dense sublayers too), and a
    mixed_float16 one in float16 whatever the global policy."""
    keras.mixed_precision.set_global_policy("float32" if policy == "mixed_float16" else "mixed_float16")
    rng = np.random.default_rng(0)
    q, v = rng.normal(size=(2, 3, 6)).astype("float32"), rng.normal(size=(2, 5, 6)).astype("float32")
    attn = sl.BahdanauAttention(8, dtype=policy)
    context, weights = attn(q, v, mask=np.array([[1, 1, 1, 0, 0], [1] * 5], bool))
    assert attn.compute_dtype == attn.query_dense.compute_dtype == attn.score_dense.compute_dtype
    assert context.dtype == weights.dtype == attn.compute_dtype
