"""The shared recurrent cells against Keras's built-in layers (the oracle), step use, serialisation."""

import contextlib
import json
import os
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from seqapps import layers as sl
from seqapps.layers import base as sl_base
from tests.helpers import max_diff, outputs_list, run_python

CASES = [
    (sl.SimpleRNN, keras.layers.SimpleRNN, {}),
    (sl.SimpleRNN, keras.layers.SimpleRNN, {"activation": "relu", "use_bias": False}),
    (sl.LSTM, keras.layers.LSTM, {}),
    (sl.LSTM, keras.layers.LSTM, {"unit_forget_bias": False, "recurrent_activation": "hard_sigmoid"}),
    (sl.GRU, keras.layers.GRU, {}),
    (sl.GRU, keras.layers.GRU, {"reset_after": False}),
    (sl.GRU, keras.layers.GRU, {"use_bias": False}),
]
IDS = ["rnn", "rnn-relu-nobias", "lstm", "lstm-options", "gru", "gru-reset-before", "gru-nobias"]


def _data(batch=3, steps=7, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    mask = np.ones((batch, steps), bool)
    mask[1, steps - 2 :] = False
    mask[-1, 3:] = False
    return x, mask


def _randomize(layer):
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()])


def _projection(name):
    """The loop of `seqapps.layers.RNN`: per step and gate (what TensorFlow's CPU training uses), per step
    with one product for all gates (JAX and PyTorch on CPU), or whole-sequence (GPU, exports)."""
    if name == "per_step_whole":
        return mock.patch.object(sl_base, "_loop_kind", lambda unroll: "sequence" if unroll else "step")
    return sl.sequence_projection() if name == "sequence" else contextlib.nullcontext()


@pytest.mark.parametrize("ours,theirs,options", CASES, ids=IDS)
@pytest.mark.parametrize("shape", [(3, 7, 5, 6), (2, 11, 3, 16)], ids=["small", "wide"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("projection", ["per_step", "per_step_whole", "sequence"])
def test_matches_keras_builtin(ours, theirs, options, shape, go_backwards, projection):
    batch, steps, features, units = shape
    x, mask = _data(batch, steps, features)
    kw = dict(return_sequences=True, return_state=True, go_backwards=go_backwards, **options)
    ref, mine = theirs(units, **kw), ours(units, **kw)
    ref(x), mine(x)
    _randomize(ref)
    mine.set_weights(ref.get_weights())
    assert [w.shape for w in mine.weights] == [w.shape for w in ref.weights]
    assert [w.name for w in mine.weights] == [w.name for w in ref.weights]
    for m in (None, mask):
        with _projection(projection):
            b = outputs_list(mine(x, mask=m))
        a = outputs_list(ref(x, mask=m))
        assert len(a) == len(b)
        for ra, rb in zip(a, b):
            assert max_diff(ra, rb) < 1e-5


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bidirectional_and_stacked_match_keras(kind):
    pairs = {
        "rnn": (sl.SimpleRNN, keras.layers.SimpleRNN),
        "lstm": (sl.LSTM, keras.layers.LSTM),
        "gru": (sl.GRU, keras.layers.GRU),
    }
    ours, theirs = pairs[kind]
    x, mask = _data()

    def build(layer_cls):
        inp = keras.Input((7, 5))
        m = keras.Input((7,), dtype="bool")
        h = keras.layers.Bidirectional(layer_cls(6, return_sequences=True))(inp, mask=m)
        out = layer_cls(4)(h, mask=m)
        return keras.Model([inp, m], out)

    ref, mine = build(theirs), build(ours)
    _randomize(ref)
    mine.set_weights(ref.get_weights())
    assert max_diff(ref([x, mask]), mine([x, mask])) < 1e-5


@pytest.mark.parametrize("cell_cls", [sl.SimpleRNNCell, sl.LSTMCell, sl.GRUCell])
def test_cell_in_plain_keras_rnn_equals_fast_path(cell_cls):
    x, mask = _data()
    plain = keras.layers.RNN(cell_cls(6), return_sequences=True)
    fast = sl.RNN(cell_cls(6), return_sequences=True)
    plain(x)
    fast(x)
    fast.set_weights(plain.get_weights())
    assert max_diff(plain(x, mask=mask), fast(x, mask=mask)) < 1e-6


def test_stacked_rnn_cells_match_keras():
    x, _ = _data()
    ref = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.GRUCell(6), keras.layers.LSTMCell(4)]))
    mine = keras.layers.RNN(keras.layers.StackedRNNCells([sl.GRUCell(6), sl.LSTMCell(4)]))
    ref(x), mine(x)
    _randomize(ref)
    mine.set_weights(ref.get_weights())
    assert max_diff(ref(x), mine(x)) < 1e-5


@pytest.mark.parametrize("cell_cls", [sl.SimpleRNNCell, sl.LSTMCell, sl.GRUCell])
def test_stepping_equals_full_sequence(cell_cls):
    x, _ = _data()
    layer = sl.RNN(cell_cls(6), return_sequences=True, return_state=True)
    full = outputs_list(layer(x))
    seq = full[0]
    cell = layer.cell
    states = cell.get_initial_state(batch_size=x.shape[0])
    for t in range(x.shape[1]):
        h, states = cell(x[:, t], states)
        assert max_diff(h, seq[:, t]) < 1e-6, f"step {t}"
    for s_step, s_full in zip(states, full[1:]):
        assert max_diff(s_step, s_full) < 1e-6


@pytest.mark.parametrize("layer_cls", [sl.SimpleRNN, sl.LSTM, sl.GRU])
def test_stateful_chunks_equal_the_whole_sequence_until_reset(layer_cls):
    x, _ = _data()
    whole = layer_cls(6, return_sequences=True)
    expected = np.asarray(whole(x))
    chunked = layer_cls(6, return_sequences=True, stateful=True)
    chunked.build((x.shape[0], None, x.shape[2]))
    chunked.set_weights(whole.get_weights())
    first = np.asarray(chunked(x[:, :3]))
    out = np.concatenate([first, np.asarray(chunked(x[:, 3:5])), np.asarray(chunked(x[:, 5:]))], axis=1)
    assert max_diff(out, expected) < 1e-6
    chunked.reset_states()
    assert max_diff(chunked(x[:, :3]), first) < 1e-6


@pytest.mark.parametrize("layer_cls", [sl.SimpleRNN, sl.LSTM, sl.GRU])
def test_dropout_only_in_training(layer_cls):
    x, _ = _data()
    layer = layer_cls(8, dropout=0.5, recurrent_dropout=0.5, seed=3, return_sequences=True)
    inference = [np.asarray(layer(x, training=False)) for _ in range(2)]
    assert max_diff(*inference) == 0.0
    train = np.asarray(layer(x, training=True))
    assert max_diff(train, inference[0]) > 1e-3
    # the plain Keras RNN wrapper (step-by-step path) also handles the masks
    plain = keras.layers.RNN(layer_cls.cell_class(8, dropout=0.5, recurrent_dropout=0.5, seed=3))
    assert np.all(np.isfinite(plain(x, training=True)))


@pytest.mark.parametrize(
    "layer_cls,options",
    [(sl.SimpleRNN, {}), (sl.LSTM, {}), (sl.GRU, {}), (sl.GRU, {"reset_after": False})],
    ids=["rnn", "lstm", "gru", "gru-reset-before"],
)
def test_both_loops_apply_the_same_dropout_and_gradients(layer_cls, options):
    """Training (dropout masks, gradients) is the same through the per-step and the whole-sequence loop."""
    x, mask = _data()
    results = []
    for projection in ("per_step", "sequence"):
        layer = layer_cls(6, dropout=0.3, recurrent_dropout=0.2, seed=7, return_sequences=True, **options)
        layer(x)
        _randomize(layer)
        with _projection(projection), tf.GradientTape() as tape:
            y = layer(x, mask=mask, training=True)
            loss = tf.reduce_sum(y * y)
        results.append([y, *tape.gradient(loss, layer.trainable_weights)])
    for a, b in zip(*results):
        assert max_diff(a, b) < 1e-5


def _while_body_matmuls(fn) -> list[int]:
    """MatMul count in each while-loop body of a traced function's graph."""
    lib = fn.get_concrete_function().graph.as_graph_def().library.function
    return [sum(n.op == "MatMul" for n in f.node_def) for f in lib if "while_body" in f.signature.name]


def test_exports_trace_the_whole_sequence_projection(tmp_path):
    """On CPU the loop projects each step gate by gate (4 input + 4 recurrent products for an LSTM);
    SavedModels and TFLite files are traced with one recurrent product per step (GPU servers, devices)."""
    from seqapps.export import saved_model

    layer = sl.LSTM(8)
    x = np.zeros((2, 5, 3), "float32")
    layer(x)
    fn = tf.function(lambda a: layer(a), input_signature=[tf.TensorSpec([None, 5, 3])])
    assert _while_body_matmuls(fn) == [8]
    with sl.sequence_projection():
        fn = tf.function(lambda a: layer(a), input_signature=[tf.TensorSpec([None, 5, 3])])
        assert _while_body_matmuls(fn) == [1]

    module = tf.Module()
    module.layer = layer
    module.serve = tf.function(lambda a: {"h": layer(a)}, input_signature=[tf.TensorSpec([None, 5, 3], name="a")])
    path = saved_model.write(module, tmp_path, {"serving_default": module.serve})
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"]
    bodies = [f for f in loaded.graph.as_graph_def().library.function if "while_body" in f.signature.name]
    assert bodies and all(sum(n.op == "MatMul" for n in f.node_def) == 1 for f in bodies)
    assert max_diff(loaded(a=tf.constant(x + 1))["h"], layer(x + 1)) < 1e-6


@pytest.mark.parametrize("layer_cls", [sl.SimpleRNN, sl.LSTM, sl.GRU])
def test_get_config_round_trip(layer_cls):
    layer = layer_cls(5, dropout=0.1, return_sequences=True, go_backwards=True, activation="relu")
    clone = layer_cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    cell = layer.cell
    assert type(cell).from_config(cell.get_config()).get_config() == cell.get_config()


@pytest.mark.parametrize("ours,theirs", [(sl.SimpleRNN, keras.layers.SimpleRNN), (sl.GRU, keras.layers.GRU)])
def test_built_in_configs_load_and_constraints_hold(ours, theirs):
    """A Keras built-in layer's config builds the seqapps layer (constraints included), and the constraints
    act after each update as Keras's do."""
    config = theirs(4, kernel_constraint="non_neg", recurrent_constraint="non_neg", bias_constraint="non_neg")
    layer = ours.from_config(config.get_config())
    assert layer.get_config() == ours.from_config(layer.get_config()).get_config()
    x, _ = _data()
    layer(x)
    opt = keras.optimizers.SGD(1.0)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(layer(x))  # pushes weights both ways
    opt.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
    assert all(np.all(np.asarray(w) >= 0) for w in layer.get_weights())


def test_keras_file_reloads_in_fresh_process(tmp_path):
    x, mask = _data()
    inp = keras.Input((7, 5))
    h = keras.layers.Bidirectional(sl.GRU(6, return_sequences=True))(inp)
    h = sl.RNN(sl.LSTMCell(5), return_sequences=True)(h)
    context, _ = sl.BahdanauAttention(4)(h, h)
    out = sl.SimpleRNN(3)(context)
    out2, _ = sl.LuongAttention()(keras.layers.Dense(3)(out), h)
    model = keras.Model(inp, [out, out2])
    path = tmp_path / "m.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    expected = [np.asarray(o) for o in model(x)]
    np.save(tmp_path / "y0.npy", expected[0])
    np.save(tmp_path / "y1.npy", expected[1])
    out = run_python(f"""
        import numpy as np, keras, seqapps
        m = keras.saving.load_model(r"{path}")
        y = m(np.load(r"{tmp_path / "x.npy"}"))
        print(max(float(np.abs(np.asarray(a) - np.load(r"{tmp_path}/y%d.npy" % i)).max()) for i, a in enumerate(y)))
    """)
    assert float(out.strip().splitlines()[-1]) < 1e-6


def test_clear_errors_for_bad_shapes():
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\)"):
        sl.GRU(4)(np.zeros((2, 3), "float32"))
    cell = sl.LSTMCell(4)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        cell(np.zeros((2, 3), "float32"), [np.zeros((2, 5), "float32"), np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match="2 state tensor"):
        cell(np.zeros((2, 3), "float32"), [np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        sl.GRUCell(4)(np.zeros((2, 3, 3), "float32"), [np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match="positive integer"):
        sl.GRUCell(0)
    with pytest.raises(ValueError, match="dropout"):
        sl.LSTMCell(3, dropout=1.5)
    with pytest.raises(ValueError, match="Unknown cell type"):
        sl.make_cell("transformer", 3)
    with pytest.raises(ValueError, match=r"needs a known feature size.*\(batch, None, None\)"):
        keras.Sequential([keras.Input((None, None)), sl.GRU(4)])


@pytest.mark.parametrize("cell_policy,layer_policy", [("float32", "mixed_float16"), ("mixed_float16", "float32")])
@pytest.mark.parametrize("projection", ["per_step", "sequence"])
def test_a_cell_runs_in_its_own_dtype_policy_as_in_keras_loop(cell_policy, layer_policy, projection):
    """The fast loop runs the cell in the cell's dtype policy (a float32 recurrence inside a mixed_float16
    model, the usual recipe), like `keras.layers.RNN` does; it raised a dtype error. Dropout masks made in the
    layer's dtype are cast to the cell's."""
    x, mask = _data()
    for cell_cls in (sl.SimpleRNNCell, sl.LSTMCell, sl.GRUCell):
        ref = keras.layers.RNN(cell_cls(6, dtype=cell_policy), dtype=layer_policy, return_sequences=True)
        mine = sl.RNN(cell_cls(6, dtype=cell_policy), dtype=layer_policy, return_sequences=True)
        ref(x), mine(x)
        _randomize(ref)
        mine.set_weights(ref.get_weights())
        with _projection(projection):
            out = mine(x, mask=mask)
            dropped = sl.RNN(cell_cls(6, dtype=cell_policy, dropout=0.2, recurrent_dropout=0.2), dtype=layer_policy)
            assert np.all(np.isfinite(np.float32(dropped(x, training=True))))
        assert out.dtype == mine.compute_dtype, cell_cls.__name__
        assert max_diff(np.float32(out), np.float32(ref(x, mask=mask))) < 5e-3, cell_cls.__name__


def test_trains_in_model_fit():
    x, _ = _data(batch=16)
    y = x.sum(axis=(1, 2))[:, None]
    model = keras.Sequential([keras.Input((7, 5)), sl.LSTM(8), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    hist = model.fit(x, y, epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


@pytest.mark.parametrize("policy,tol", [("mixed_float16", 5e-3), ("mixed_bfloat16", 5e-2)])
@pytest.mark.parametrize("projection", ["per_step", "sequence"])
def test_mixed_precision_computes_in_half_keeps_float32_weights_and_matches_keras(policy, tol, projection):
    """`--set mixed_precision=...` (GPU training): the cells compute in the policy's dtype with float32 weights,
    like Keras's layers under the same policy, and train with loss scaling."""
    x, mask = _data()
    keras.mixed_precision.set_global_policy(policy)
    try:
        for (ours, theirs, options), name in zip(CASES, IDS):
            ref, mine = theirs(6, return_sequences=True, **options), ours(6, return_sequences=True, **options)
            ref(x), mine(x)
            _randomize(ref)
            mine.set_weights(ref.get_weights())
            with _projection(projection):
                out = mine(x, mask=mask)
            assert out.dtype == ref.compute_dtype == mine.compute_dtype != "float32", name
            assert {w.dtype for w in mine.weights} == {"float32"}, name
            assert max_diff(np.float32(out), np.float32(ref(x, mask=mask))) < tol, name
        model = keras.Sequential([keras.Input((7, 5)), sl.GRU(8), keras.layers.Dense(1, dtype="float32")])
        model.compile("adam", "mse")
        # batches of 1: the loss scale starts at 2**15 and halves on each overflowing step (skipped), as with Keras's
        # own layers, so the first few updates do nothing
        hist = model.fit(x, x.sum(axis=(1, 2))[:, None], epochs=6, batch_size=1, verbose=0)
        assert np.all(np.isfinite(hist.history["loss"])) and hist.history["loss"][-1] < hist.history["loss"][0]
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
def test_unknown_length_with_known_batch_runs_every_step(kind, go_backwards):
    """A graph traced with a static batch and an unknown length (what `reduce_retracing` gives for
    bucketed text batches) must run all the steps, not stop after ``batch`` of them."""
    import tensorflow as tf

    x, mask = _data(batch=3, steps=9, features=4)
    layer = sl.RNN(sl.make_cell(kind, 5), return_sequences=True, go_backwards=go_backwards)
    want = [layer(x).numpy(), layer(x, mask=mask).numpy()]
    spec_x, spec_m = tf.TensorSpec([3, None, 4]), tf.TensorSpec([3, None], tf.bool)
    plain = tf.function(lambda a: layer(a), input_signature=[spec_x])
    masked = tf.function(lambda a, m: layer(a, mask=m), input_signature=[spec_x, spec_m])
    assert max_diff(plain(x).numpy(), want[0]) < 1e-6
    assert max_diff(masked(x, mask).numpy(), want[1]) < 1e-6


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unrolled_masked_bidirectional_equals_the_loop(kind):
    """TFLite exports trace the layers unrolled; Keras's unrolled loop misplaces the outputs of a masked
    backward layer (keras.layers.GRU too, Keras 3.15), so seqapps.layers reverse the sequence themselves."""
    import keras

    x, mask = _data(batch=3, steps=7, features=4)
    bi = keras.layers.Bidirectional(sl.RNN(sl.make_cell(kind, 5), return_sequences=True, return_state=True))
    want = bi(x, mask=mask)
    for layer in (bi.forward_layer, bi.backward_layer):
        layer.unroll = True
    got = bi(x, mask=mask)
    for a, b in zip(want, got):
        assert max_diff(a, b) < 1e-6


# ------------------------------------------------------------------------------------ cuDNN path and backends
def _recording_backend(monkeypatch, name, result=None):
    """Replace Keras's fused backend function ``name`` (``lstm``/``gru``) with one that records its
    arguments and, like the real one on a CPU, raises NotImplementedError (or returns ``result``)."""
    calls = []

    def fused(*args, **kwargs):
        calls.append((args, kwargs))
        if result is None:
            raise NotImplementedError
        return result(*args, **kwargs)

    monkeypatch.setattr(keras.src.backend, name, fused)
    return calls


@pytest.mark.parametrize(
    "ours,theirs,name,options",
    [
        (sl.LSTM, keras.layers.LSTM, "lstm", {}),
        (sl.GRU, keras.layers.GRU, "gru", {"return_sequences": True}),
        (sl.LSTM, keras.layers.LSTM, "lstm", {"go_backwards": True, "return_sequences": True}),
        (sl.GRU, keras.layers.GRU, "gru", {"go_backwards": True, "dropout": 0.3}),
    ],
    ids=["lstm", "gru-sequences", "lstm-backwards", "gru-backwards-dropout"],
)
def test_cudnn_path_gets_what_keras_gives_it(monkeypatch, ours, theirs, name, options):
    """On a GPU the layers hand their weights to Keras's cuDNN kernel: the same call, argument for argument, as
    the built-in layer with the same weights makes, except that a backward layer reverses its input itself
    (outputs in processing order on every backend). Here a pretend GPU and a recorder stand in for the kernel;
    it declines, as on a CPU, and both layers then run their loops."""
    monkeypatch.setattr(sl_base, "gpu_available", lambda: True)
    calls = _recording_backend(monkeypatch, name)
    x, _ = _data()
    ref, mine = theirs(4, **options), ours(4, **options)
    ref(x), mine(x)
    _randomize(ref)
    mine.set_weights(ref.get_weights())
    calls.clear()
    training = bool(options.get("dropout"))
    keras.utils.set_random_seed(7)
    expected = outputs_list(ref(x, training=training))
    keras.utils.set_random_seed(7)
    got = outputs_list(mine(x, training=training))
    assert len(calls) == 2
    (ref_args, ref_kwargs), (my_args, my_kwargs) = calls
    assert sorted(ref_kwargs) == sorted(my_kwargs)
    backwards = options.get("go_backwards", False)
    assert ref_kwargs.pop("go_backwards") is backwards and my_kwargs.pop("go_backwards") is False
    ref_inputs, my_inputs = np.asarray(ref_args[0]), np.asarray(my_args[0])
    if training:  # one input dropout mask per sample, shared by every step, as in Keras (masks differ by seed)
        kept = my_inputs != 0
        assert np.all(kept == kept[:, :1]) and 0 < kept.mean() < 1
        scaled = (x[:, ::-1] if backwards else x) / (1 - options["dropout"])
        assert max_diff(my_inputs[kept], scaled[kept]) < 1e-5
    else:
        assert max_diff(my_inputs, ref_inputs[:, ::-1] if backwards else ref_inputs) == 0
    for a, b in zip(ref_args[1:], my_args[1:]):  # initial states, mask (None)
        assert (a is None and b is None) or max_diff(a, b) == 0
    for key, value in ref_kwargs.items():
        if key in ("kernel", "recurrent_kernel", "bias"):
            assert max_diff(value, my_kwargs[key]) == 0, key
        else:
            assert my_kwargs[key] == value, key
    if not training:
        assert max_diff(got[0], expected[0]) < 1e-5


def test_cudnn_path_only_where_cudnn_runs_it(monkeypatch):
    """No GPU, a mask (Keras's TensorFlow kernel asserts on rows with no step, e.g. an empty text), settings
    cuDNN lacks, use_cudnn=False or an export: the layer's own loop, never the kernel."""
    x, mask = _data()
    calls = _recording_backend(monkeypatch, "lstm")
    gru_calls = _recording_backend(monkeypatch, "gru")
    sl.LSTM(4)(x)
    assert calls == []  # this CPU
    monkeypatch.setattr(sl_base, "gpu_available", lambda: True)
    sl.LSTM(4)(x, mask=mask)
    sl.LSTM(4, recurrent_dropout=0.2)(x, training=True)
    sl.LSTM(4, unroll=True)(x)
    sl.LSTM(4, recurrent_activation="hard_sigmoid")(x)
    sl.LSTM(4, use_bias=False)(x)
    sl.LSTM(4, use_cudnn=False)(x)
    sl.GRU(4, reset_after=False)(x)
    with sl.sequence_projection():
        sl.LSTM(4)(x)
    assert calls == [] and gru_calls == []
    sl.LSTM(4)(x)
    assert len(calls) == 1


def _forward_kernel(name):
    """A stand-in for Keras's cuDNN function ``name`` that computes for real: Keras's own loop (forward only, as
    the layers call it), so that outputs and states of the cuDNN path can be checked on a CPU."""
    calls = []

    def kernel(inputs, *states_and_mask, kernel, recurrent_kernel, bias, return_sequences, go_backwards, **kwargs):
        assert go_backwards is False and states_and_mask[-1] is None
        calls.append(1)
        units = recurrent_kernel.shape[0]
        cls = keras.layers.LSTM if name == "lstm" else keras.layers.GRU
        ref = cls(units, return_sequences=True, return_state=True, use_cudnn=False)
        ref(inputs)
        ref.set_weights([np.asarray(kernel), np.asarray(recurrent_kernel), np.asarray(bias)])
        outputs, *states = ref(inputs, initial_state=list(states_and_mask[:-1]))
        return outputs[:, -1], outputs if return_sequences else outputs[:, -1:], states

    return kernel, calls


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize(
    "options",
    [{"go_backwards": True, "return_sequences": True}, {"go_backwards": True}, {"return_sequences": True}],
    ids=["backwards-sequences", "backwards-last", "forwards-sequences"],
)
def test_cudnn_path_outputs_and_states_match_the_loop(monkeypatch, name, options):
    """Through the cuDNN path (a pretend GPU, Keras's own loop standing in for the kernel) the layers give the
    outputs, in processing order, and the states of their own loop: with an initial state, and stateful."""
    kernel, calls = _forward_kernel(name)
    monkeypatch.setattr(sl_base, "gpu_available", lambda: True)
    monkeypatch.setattr(keras.src.backend, name, kernel)
    cls = sl.LSTM if name == "lstm" else sl.GRU
    x, _ = _data()
    fused, loop = cls(4, return_state=True, **options), cls(4, return_state=True, use_cudnn=False, **options)
    fused(x), loop(x)
    _randomize(fused)
    loop.set_weights(fused.get_weights())
    calls.clear()
    initial = [np.full((3, 4), 0.3, "float32")] * (2 if name == "lstm" else 1)
    for kwargs in ({}, {"initial_state": initial}):
        expected, got = outputs_list(loop(x, **kwargs)), outputs_list(fused(x, **kwargs))
        assert len(got) == len(expected) and max(max_diff(a, b) for a, b in zip(got, expected)) < 1e-5
    assert len(calls) == 2
    stateful = [cls(4, stateful=True, **options), cls(4, stateful=True, use_cudnn=False, **options)]
    for layer in stateful:
        layer(x)
    stateful[1].set_weights(stateful[0].get_weights())
    for layer in stateful:
        layer.reset_states()
    for _ in range(2):  # the second call starts from the state the first left
        assert max_diff(stateful[0](x), stateful[1](x)) < 1e-5


def test_cudnn_path_output_is_used(monkeypatch):
    monkeypatch.setattr(sl_base, "gpu_available", lambda: True)
    x, _ = _data()

    def kernel(inputs, h, c, mask, **kwargs):  # what a cuDNN kernel returns: (last, outputs, [h, c])
        seven = keras.ops.full((inputs.shape[0], 4), 7.0)
        return seven, keras.ops.full((inputs.shape[0], inputs.shape[1], 4), 7.0), [seven, seven]

    _recording_backend(monkeypatch, "lstm", kernel)
    layer = sl.LSTM(4)
    # cuDNN ops do not compile with XLA: like keras.layers.LSTM, the layer says so when made, before a model
    # resolves jit_compile
    assert layer.supports_jit is False and sl.LSTM(4, use_cudnn=False).supports_jit is True
    assert np.all(np.asarray(layer(x)) == 7.0)
    assert np.all(np.asarray(sl.LSTM(4, use_cudnn=False)(x)) != 7.0)


def test_own_loops_for_xla(monkeypatch):
    """`--set jit_compile=true`: a model's layers skip cuDNN (which XLA cannot compile) and run their own loops,
    which it can; without that Keras would turn XLA off on a GPU, as for its own LSTM and GRU."""
    monkeypatch.setattr(sl_base, "gpu_available", lambda: True)
    calls = _recording_backend(monkeypatch, "gru")
    x, _ = _data()
    model = keras.Sequential([keras.Input((7, 5)), keras.layers.Bidirectional(sl.GRU(4)), keras.layers.Dense(1)])
    assert not all(layer.supports_jit for layer in model._flatten_layers())
    assert sl.own_loops_for_xla(model) == 2  # the Bidirectional's forward and backward layers
    assert all(layer.supports_jit for layer in model._flatten_layers())
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    assert model.jit_compile is True
    model.fit(x, np.zeros((3, 1), "float32"), epochs=1, verbose=0)
    assert calls == []
    config = model.layers[0].forward_layer.get_config()
    assert config["use_cudnn"] == "auto" and "_for_xla" not in config  # saved models are unchanged


def test_use_cudnn_option():
    x, _ = _data()
    layer = sl.GRU(4, use_cudnn=True)
    with pytest.raises(ValueError, match="It needs a GPU.*use_cudnn='auto'"):  # this CPU has no cuDNN kernel
        layer(x)
    with pytest.raises(ValueError, match="`use_cudnn` must be 'auto', True or False"):
        sl.LSTM(4, use_cudnn="yes")
    for value in ("auto", False):
        layer = sl.LSTM(4, use_cudnn=value)
        assert layer.get_config()["use_cudnn"] == value
        assert sl.LSTM.from_config(layer.get_config()).use_cudnn == value
    config = sl.GRU(4).get_config()
    del config["use_cudnn"]  # models saved before the option load with the default
    assert sl.GRU.from_config(config).use_cudnn == "auto"


def test_layers_run_on_jax_backend():
    """The layers on Keras's JAX backend (a fresh interpreter): outputs, states and gradients against the
    built-ins, a save and load, a few `fit` steps. A GPU machine runs the same script on JAX and PyTorch."""
    script = os.path.join(os.path.dirname(__file__), "backend_script.py")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax" and report["gpu"] is False
    assert max(max(v) if isinstance(v, list) else v for v in report["max_diff"].values()) < 1e-5
    assert report["fit_losses"][-1] < report["fit_losses"][0]
    assert len(report["mixed_precision"]) == 12 and max(report["mixed_precision"].values()) < 5e-2


def test_loop_kinds_experiment(tmp_path, capsys):
    """`python -m seqapps.experiments.loop_kinds` (tiny and one round): every loop kind and the default path
    timed against the built-ins, and a clear error for a malformed size."""
    from seqapps.experiments import loop_kinds

    out = tmp_path / "kinds.md"
    assert loop_kinds.main(["--sizes", "4x5x3x8", "--rounds", "1", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 4x5x3x8 |")]
    assert len(rows) == 6  # SimpleRNN, LSTM, GRU x train, inference
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ratios = cells[5:] if cells[1] == "SimpleRNN" else cells[4:]
        assert len(ratios) == (3 if cells[1] == "SimpleRNN" else 4) and all(float(r) > 0 for r in ratios), row
    with pytest.raises(SystemExit):
        loop_kinds.main(["--sizes", "4x5x3", "--out", str(out)])
    assert "four positive integers" in capsys.readouterr().err
