"""Speech app: WAV reading, front end vs a numpy oracle, streaming == clip model, speaker splits, SavedModel
robustness to bad bytes, and a tiny end-to-end train -> export -> predict/evaluate through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from seqapps.speech import audio, data, serving
from seqapps.speech import model as model_lib
from seqapps.speech.config import SpeechConfig, tiny

ROOT = Path(__file__).resolve().parents[1]


def tone(seconds=0.5, rate=16000, freq=440.0, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --------------------------------------------------------------------------- audio I/O
@pytest.mark.parametrize("bits,tol", [(8, 1e-2), (16, 1e-4), (24, 1e-6), (32, 1e-8), (-32, 0.0)])
def test_wav_round_trip_every_sample_format(bits, tol):
    x = tone()
    y, rate = audio.decode_wav(audio.encode_wav(x, 16000, bits))
    assert rate == 16000 and y.shape == (len(x), 1)
    assert np.abs(y[:, 0] - x).max() <= tol + 1e-7


def test_stereo_48k_is_mixed_down_and_resampled(tmp_path):
    left, right = tone(1.0, 48000, 440, 0.4), tone(1.0, 48000, 440, 0.2)
    (tmp_path / "s.wav").write_bytes(audio.encode_wav(np.stack([left, right], 1), 48000, 16))
    y = audio.load_audio(tmp_path / "s.wav")
    assert y.shape == (16000,)
    np.testing.assert_allclose(y[200:-200], tone(1.0, 16000, 440, 0.3)[200:-200], atol=2e-3)


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"", "empty"),
        (b"ID3\x03 this is an mp3", "not a WAV file"),
        (b"RIFF\0\0\0\0WAVEjunk", "no valid 'fmt '"),
    ],
)
def test_bad_wav_bytes_give_clear_errors(payload, message):
    with pytest.raises(audio.AudioError, match=message):
        audio.decode_wav(payload, "clip.wav")


@pytest.mark.parametrize("rate", [999, 520109696, 4294967291])
def test_a_sample_rate_no_recording_has_is_a_corrupt_header(rate):
    """One flipped byte made 16 kHz read as 520 MHz: the clip resampled to nearly nothing and was labelled
    _silence_; 4294967291 Hz asked scipy for 640 GiB. The SavedModel's WAV parser already refused both."""
    blob = bytearray(audio.encode_wav(tone(1.0, 16000, 440, 0.3), 16000, 16))
    blob[24:28] = rate.to_bytes(4, "little")
    with pytest.raises(audio.AudioError, match=rf"clip.wav: corrupt WAV header \(channels=1, rate={rate} Hz"):
        audio.decode_wav(bytes(blob), "clip.wav")
    blob[24:28] = (1000).to_bytes(4, "little")
    assert audio.decode_wav(bytes(blob), "clip.wav")[1] == 1000


def test_compressed_wav_and_too_long_are_refused(tmp_path):
    blob = bytearray(audio.encode_wav(tone()))
    blob[20:22] = (0x55).to_bytes(2, "little")  # MP3-in-WAV format tag
    with pytest.raises(audio.AudioError, match="compressed WAV"):
        audio.decode_wav(bytes(blob))
    with pytest.raises(audio.AudioError, match="longer than the limit"):
        audio.load_audio(audio.encode_wav(tone(2.0)), max_seconds=1.0)


def test_int8_calibration_clips_are_trainings_seeded_draw_not_the_first_clips():
    """An export without run/ calibrated on the first clips of the training split, which the readers sort by
    word; it now draws what training drew (the second draw of its seeded generator)."""
    from seqapps.speech.app import _calibration_clips

    xtr = np.arange(300, dtype=np.float32)[:, None]  # clip i: the i-th of a sorted training split
    cfg = SpeechConfig(int8_calibration_clips=20)
    rng = np.random.default_rng(cfg.seed)
    rng.permutation(300)  # training's first draw adapts the front end
    np.testing.assert_array_equal(_calibration_clips(xtr, cfg), xtr[rng.permutation(300)[:20]])
    assert _calibration_clips(xtr, cfg).max() > 100  # spread over the split, not its first 20


def test_fit_clip_pads_centred_and_trims_to_the_loudest_second():
    x = np.ones(8000, np.float32)
    y = audio.fit_clip(x)
    assert y.shape == (16000,) and y[:4000].sum() == 0 and y[4000:12000].min() == 1
    long = np.zeros(64000, np.float32)
    long[40000:44000] = 1.0
    z = audio.fit_clip(long)
    assert z.sum() == 4000  # the burst is inside the chosen second


def test_espeak_synthesis_offline():
    x = audio.synthesize("yes", "en-us+f3", 160, 60)
    assert 2000 < x.size < 16000 and np.abs(x).max() > 0.05


def test_synthetic_clips_are_cached_whole_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQAPPS_CACHE", str(tmp_path))
    first = data.synthetic(["yes", "no", "_silence_", "_unknown_"], 1, 1, 2, seed=3, verbose=False)
    files = [p.name for p in (tmp_path / "speech").iterdir()]
    assert len(files) == 1 and files[0].startswith("synthetic-") and files[0].endswith(".npz")  # no temporary left
    again = data.synthetic(["yes", "no", "_silence_", "_unknown_"], 1, 1, 2, seed=3, verbose=False)
    np.testing.assert_array_equal(again.waveforms, first.waveforms)
    assert again.words == first.words == ["yes", "no", "_unknown_", "_silence_", "_silence_"]
    assert again.speakers == first.speakers


# --------------------------------------------------------------------------- front end and streaming
def test_frontend_matches_numpy_oracle():
    fe = model_lib.LogMelFrontEnd(num_mel=20)
    fe.build((None, 16000))
    x = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32) * 0.1
    got = fe(tf.constant(x)).numpy()
    padded = np.concatenate([np.zeros((2, 320), np.float32), x], axis=1)
    frames = np.stack([padded[:, t * 320 : t * 320 + 640] for t in range(50)], axis=1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(640) / 640)
    power = np.abs(np.fft.rfft(frames * window, n=1024)) ** 2
    mel = tf.signal.linear_to_mel_weight_matrix(20, 513, 16000, 20.0, 7600.0).numpy()
    want = np.log(power @ mel + 1e-6)
    assert got.shape == (2, 50, 20)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)


def test_dynamic_range_tflite_keeps_the_mel_product_in_float():
    """Quantized, the mel product quantizes the power spectrum (~10 decades) to int8 and the log-mel frames fall
    apart; traced in small blocks (mel_in_small_blocks) its weights stay float and the frames match Keras."""
    import keras

    from seqapps.export import tflite
    from seqapps.export.saved_model import KerasModule

    inp = keras.Input((16000,), batch_size=1)
    model = keras.Model(inp, model_lib.LogMelFrontEnd(name="frontend")(inp))
    x = (np.random.default_rng(0).standard_normal((1, 16000)) * np.linspace(0.001, 0.5, 16000)).astype(np.float32)
    want = model(x).numpy()

    def dynamic_frames():
        module = KerasModule(model)
        module.fn = tf.function(lambda w: {"logmel": model(w)}, input_signature=[tf.TensorSpec([1, 16000])])
        blob = tflite.convert_module(module, {"serving_default": module.fn.get_concrete_function()}, "dynamic")
        interp = tflite.interpreter(blob)
        return np.array(tflite.run(interp, "serving_default", w=x)["logmel"])

    with model_lib.mel_in_small_blocks(model):
        np.testing.assert_allclose(model(x).numpy(), want, atol=1e-4)  # same function in Keras
        blocked = dynamic_frames()
    assert model.get_layer("frontend")._mel_in_blocks is False  # restored
    plain = dynamic_frames()
    assert np.abs(blocked - want).max() < 1e-3
    assert np.abs(plain - want).max() > 0.1  # what the blocks prevent


@pytest.mark.parametrize("cell,conv", [("gru", 8), ("lstm", 0)])
def test_streaming_steps_equal_the_clip_model(cell, conv):
    cfg = SpeechConfig(num_mel=12, conv_filters=conv, conv_kernel=3, units=10, rnn_layers=2, cell=cell, dropout=0.0)
    model = model_lib.build_model(cfg, 5)
    x = np.random.default_rng(1).standard_normal((2, 16000)).astype(np.float32) * 0.3
    model_lib.adapt_frontend(model, x)
    want = model(x).numpy()
    step = model_lib.StreamingStep(model)
    state = step.initial_state(2)
    for t in range(50):
        logits, state = step(tf.constant(x[:, t * 320 : (t + 1) * 320]), state)
    assert np.abs(want).max() > 1e-2
    np.testing.assert_allclose(logits.numpy(), want, atol=1e-5)


def test_specaugment_masks_only_in_training():
    layer = model_lib.SpecAugment(2, 5, 2, 4, seed=3)
    x = tf.ones((4, 50, 20))
    assert np.array_equal(layer(x).numpy(), x.numpy())
    y = layer(x, training=True).numpy()
    assert 0 < (y == 0).mean() < 0.5


# --------------------------------------------------------------------------- data specs and splits
def _write_folder(root, layout):
    for rel in layout:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        audio.write_wav(p, tone(0.3, 16000, 300 + 10 * len(rel)))


def test_speech_commands_layout_split_by_speaker(tmp_path):
    names = [f"{w}/{s:08x}_nohash_{n}.wav" for w in ("yes", "no") for s in range(12) for n in range(2)]
    names += [f"_unknown_/bed_{s:08x}_nohash_0.wav.wav" for s in range(12)] + [f"_silence_/{i}.wav" for i in range(6)]
    _write_folder(tmp_path, names)
    clips = data.load_folder(tmp_path)
    assert len(clips) == len(names) and clips.waveforms.shape[1] == 16000
    assert clips.speakers[clips.words.index("_unknown_")] in {f"{s:08x}" for s in range(12)}
    splits = data.split_by_speaker(clips, 0.2, 0.2)
    groups = [{clips.speakers[i] for i in splits[k]} for k in ("train", "val", "test")]
    assert all(len(g) for g in groups)
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert data.resolve_labels("auto", clips) == ["_silence_", "_unknown_", "no", "yes"]
    assert list(data.label_ids(["yes", "cat"], ["yes", "_unknown_"])) == [0, 1]


def test_flat_folder_labels_from_file_name_prefix(tmp_path):
    _write_folder(tmp_path, [f"{d}_{spk}_{i}.wav" for d in range(3) for spk in ("ann", "bob", "cy") for i in range(2)])
    clips = data.load_folder(tmp_path)
    assert sorted(set(clips.words)) == ["0", "1", "2"] and sorted(set(clips.speakers)) == ["ann", "bob", "cy"]
    splits = data.split_by_speaker(clips, 0.3, 0.3)
    assert all(len({clips.speakers[i] for i in splits[k]}) == 1 for k in ("train", "val", "test"))


def test_label_folders_of_fsdd_names_split_by_speaker(tmp_path, capsys):
    """FSDD kept in one folder per digit (0/0_jackson_0.wav) is split by speaker, as the flat layout is."""
    _write_folder(
        tmp_path, [f"{d}/{d}_{spk}_{i}.wav" for d in range(2) for spk in ("ann", "bob", "cy") for i in range(2)]
    )
    clips = data.load_folder(tmp_path)
    assert sorted(set(clips.speakers)) == ["ann", "bob", "cy"] and "no speaker" not in capsys.readouterr().out
    nameless = tmp_path / "nameless"
    _write_folder(nameless, [f"{w}/{i}.wav" for w in ("yes", "no") for i in range(3)])
    data.load_folder(nameless)
    assert "no speaker in the file names" in capsys.readouterr().out  # said, not hidden


def test_wav_suffix_in_any_case_is_read_and_a_label_folder_without_wavs_is_named(tmp_path, capsys):
    """.WAV and .Wav files are WAV files too (glob("*.wav") skipped them, and with them a label folder that held
    only such files); a label folder left with no WAV at all is named rather than dropped unsaid."""
    _write_folder(tmp_path, [f"yes/{s}_nohash_0.WAV" for s in ("aa", "bb")] + ["no/aa_nohash_0.Wav", "no/b.wav"])
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "aa_nohash_0.mp3").write_bytes(b"ID3")
    clips = data.load_folder(tmp_path)
    assert sorted(clips.words) == ["no", "no", "yes", "yes"]
    out = capsys.readouterr().out
    assert "no .wav files in 1 label folder(s) (up)" in out and "ffmpeg" in out
    data.load_folder(tmp_path, verbose=False)
    assert capsys.readouterr().out == ""


def test_a_folder_of_unreadable_wavs_names_one(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "a_nohash_0.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match=r"none of the 1 .wav files could be read, e.g. .*a_nohash_0.wav"):
        data.load_folder(tmp_path)


def test_too_few_speakers_and_missing_folder_are_clear(tmp_path):
    _write_folder(tmp_path, ["yes/aaaa_nohash_0.wav", "no/aaaa_nohash_1.wav"])
    with pytest.raises(ValueError, match="only 1 speaker"):
        data.split_by_speaker(data.load_folder(tmp_path), 0.1, 0.1)
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_folder(tmp_path / "nope")


def test_augmentation_keeps_shapes_and_is_deterministic():
    cfg = SpeechConfig()
    x = np.tile(tone(1.0)[None], (5, 1))
    ds = data.AugmentedClips(
        x,
        np.arange(5) % 2,
        cfg,
        noise=[np.random.default_rng(0).standard_normal(40000)],
        augment=True,
        batch_size=4,
        seed=7,
    )
    a, ya = ds[0]
    b, _ = data.AugmentedClips(
        x,
        np.arange(5) % 2,
        cfg,
        noise=[np.random.default_rng(0).standard_normal(40000)],
        augment=True,
        batch_size=4,
        seed=7,
    )[0]
    assert a.shape == (4, 16000) and np.abs(a).max() <= 1.0 and not np.allclose(a, x[:4])
    np.testing.assert_array_equal(a, b)


def test_a_resumed_training_gets_the_augmented_batches_the_uninterrupted_one_got(tmp_path):
    """The augmented batches draw each epoch's order and augmentation from the epoch's number, which a fresh
    process would count from 0: `training.fit` tells a resumed run's batches the epochs already finished."""
    import keras

    from seqapps import training
    from tests.helpers import assert_resume_is_uninterrupted

    x = np.tile(tone(1.0)[None], (24, 1)) * np.linspace(0.2, 0.9, 24)[:, None]
    y = np.arange(24) % 3

    def model():
        training.set_seed(0)
        m = keras.Sequential(
            [
                keras.Input((16000,)),
                keras.layers.Reshape((100, 160)),
                keras.layers.GlobalAveragePooling1D(),
                keras.layers.Dense(3),
            ]
        )
        m.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    def clips():
        return data.AugmentedClips(x, y, SpeechConfig(), augment=True, batch_size=8, seed=7)

    assert_resume_is_uninterrupted(model, clips, tmp_path)


# --------------------------------------------------------------------------- SavedModel WAV parsing (graph)
def test_graph_wav_parser_never_raises():
    fn = tf.function(serving.parse_wav, input_signature=[tf.TensorSpec([], tf.string)])
    good = audio.encode_wav(np.stack([tone(), tone()], 1), 44100, 24)
    samples, rate, err = fn(good)
    assert err.numpy() == b"" and int(rate) == 44100 and samples.shape == (len(tone()),)
    np.testing.assert_allclose(samples.numpy(), tone(), atol=1e-6)
    for bad, msg in [
        (b"", b"empty"),
        (b"hello world", b"not a WAV"),
        (good[:40], b"no 'data'"),
        (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + b"\0" * 16, b"no 'data'"),
    ]:
        assert msg in fn(bad)[2].numpy()


def test_a_data_chunk_of_size_zero_is_the_rest_of_the_file():
    """Streaming writers leave the data size 0: both WAV readers take the rest of the file (it read as empty)."""
    good = audio.encode_wav(tone(), 16000, 16)
    at = good.index(b"data")
    streamed = good[: at + 4] + b"\0\0\0\0" + good[at + 8 :]
    x, rate = audio.decode_wav(streamed, "s.wav")
    np.testing.assert_array_equal(x, audio.decode_wav(good, "g.wav")[0])
    samples, _, err = tf.function(serving.parse_wav, input_signature=[tf.TensorSpec([], tf.string)])(streamed)
    assert err.numpy() == b"" and samples.shape == (len(tone()),)


def test_graph_resample_matches_a_tone():
    y = serving.resample(tf.constant(tone(1.0, 8000, 300)), tf.constant(8000, tf.int64)).numpy()
    assert y.shape == (16000,)
    np.testing.assert_allclose(y[300:-300], tone(1.0, 16000, 300)[300:-300], atol=5e-3)


def test_graph_resample_positions_are_exact_beyond_float32():
    """Output sample i reads the input at i * rate / target. In float32 those positions snapped to multiples of
    2 or 4 samples beyond 2**24 input samples (~350 s at 48 kHz; 1,200 s are allowed): the last second of a
    400 s sine fell from 56 dB to 21 dB SNR. Integer arithmetic is exact at any length."""
    for rate in (44100, 48000, 22050, 8000):
        first = 1200 * 16000 - 4000  # the end of the longest clip allowed
        i0, w = serving.source_positions(first, 4000, tf.constant(rate, tf.int64))
        num = np.arange(first, first + 4000, dtype=np.int64) * rate
        np.testing.assert_array_equal(i0.numpy(), num // 16000)
        np.testing.assert_allclose(w.numpy(), (num % 16000) / 16000, atol=1e-7)
        old = np.arange(first, first + 4000).astype(np.float32) / np.float32(16000 / rate)  # the former positions
        if rate > 16000:  # positions past 2**24
            assert np.abs(old.astype(np.float64) - num / 16000).max() > 0.5, rate


def test_graph_resample_equals_numpy_float64_interpolation():
    x = np.random.default_rng(0).standard_normal(44100 // 5).astype(np.float32) * 0.3
    y = serving.resample(tf.constant(x), tf.constant(44100, tf.int64)).numpy()
    cutoff, t = 0.95 * 16000 / 44100, np.arange(-32, 33)  # the same low-pass, then np.interp in float64
    h = cutoff * np.sinc(cutoff * t) * (0.54 + 0.46 * np.cos(np.pi * t / 33))
    filtered = np.convolve(x.astype(np.float64), h / h.sum(), mode="same")
    n_out = len(x) * 16000 // 44100
    want = np.interp(np.arange(n_out) * 44100 / 16000, np.arange(len(x)), filtered)
    assert y.shape == (n_out,)
    np.testing.assert_allclose(y, want, atol=1e-5)


# --------------------------------------------------------------------------- end to end (CLI)
def _cli(*args, check=True):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "seqapps", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"seqapps {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from seqapps import config as config_lib
    from seqapps.speech.app import SpeechApp

    root = tmp_path_factory.mktemp("speech")
    with pytest.MonkeyPatch.context() as mp:  # restored after this file: test files share a process
        mp.setenv("SEQAPPS_CACHE", str(root / "cache"))
        cfg = tiny()
        cfg_file = root / "tiny.yaml"
        config_lib.save(cfg, cfg_file)
        SpeechApp().train(cfg, root / "model")
        yield root / "model"


def test_trained_model_artifacts_and_parity(trained):
    meta = json.loads((trained / "metadata.json").read_text())
    checks = meta["export_checks"]
    assert checks["saved_model"]["max_abs_diff"] < 1e-5
    assert checks["float32"]["max_abs_diff_vs_keras"] < 1e-4
    assert checks["stream"]["final_step_max_abs_diff_vs_keras_clip"] < 1e-4
    assert "FLEX" not in " ".join(checks["float32"]["ops"] + checks["stream"]["ops"] + checks["int8"]["ops"])
    assert {"RFFT2D", "COMPLEX_ABS"} <= set(checks["float32"]["ops"])
    assert "int8_accuracy_change" in checks
    assert checks["dynamic"]["max_abs_diff_vs_keras"] < 0.1 and "FLEX" not in " ".join(checks["dynamic"]["ops"])
    for name in ("model.tflite", "model_dynamic.tflite", "model_int8.tflite", "stream.tflite", "MODEL_CARD.md"):
        assert (trained / name).is_file(), name


def test_reexport_of_a_shipped_folder_keeps_its_training_figures(trained, tmp_path):
    """A folder exported again without its run/ (as trained/speech is shipped) keeps the accuracies measured
    when it was trained, in metadata.json and in the model card."""
    from seqapps import cli

    shipped = tmp_path / "shipped"
    shutil.copytree(trained, shipped, ignore=shutil.ignore_patterns("run"))
    assert cli.main(["export", "speech", "--model", str(shipped), "--out", str(tmp_path / "again")]) == 0
    meta = json.loads((trained / "metadata.json").read_text())
    again = json.loads((tmp_path / "again" / "metadata.json").read_text())
    assert meta["training"]["val"]["clips"] > 0 and again["training"] == meta["training"]
    card = (tmp_path / "again" / "MODEL_CARD.md").read_text()
    assert "n/a" not in card and "None" not in card
    test = meta["training"]["test"]
    assert f"{100 * np.trace(test['confusion']) / np.sum(test['confusion']):.1f}% on {test['clips']} clips" in card


def test_stream_tflite_over_a_clip_equals_clip_tflite(trained):
    from seqapps.export import tflite
    from seqapps.speech.tflite_runtime import StreamRunner, window_scores

    x = audio.fit_clip(audio.synthesize("up", "en-gb-x-rp+m3", 170, 40) * 0.6)
    clip = tflite.run(tflite.interpreter(trained / "model.tflite"), "classify", waveform=x[None])["probabilities"][0]
    runner = StreamRunner(trained / "stream.tflite")
    steps = runner.run_clip(x)
    assert steps.shape == (50, len(clip))
    np.testing.assert_allclose(steps[-1], clip, atol=1e-5)
    longer, state = np.concatenate([x, x[:100]]), runner.initial_state()
    for start in range(0, len(longer), runner.hop):  # the README's device loop: the last hop is 100 samples
        p, state = runner.step(longer[start : start + runner.hop], state)
    np.testing.assert_allclose(p, runner.run_clip(np.pad(longer, (0, 220)))[-1], atol=1e-6)
    # staggered windows: the window that ends at 1 s is exactly this clip
    ends, scores = window_scores(runner, np.concatenate([x, np.zeros(8000, np.float32)]), streams=4)
    np.testing.assert_allclose(scores[list(ends).index(16000)], clip, atol=1e-5)
    # the end of a recording is scored too: a window ends at its last sample (zeros after it)
    ends, _ = window_scores(runner, np.concatenate([x, x[:3200]]), streams=4)  # 1.2 s
    assert ends[-1] == 19200 and ends[-2] < 19200
    # shorter than a second: one window, padded as the clip model pads it
    short = x[4000:12000]
    ends, scores = window_scores(runner, short, streams=4)
    want = tflite.run(tflite.interpreter(trained / "model.tflite"), "classify", waveform=audio.fit_clip(short)[None])
    assert list(ends) == [8000]
    np.testing.assert_allclose(scores[0], want["probabilities"][0], atol=1e-5)


def test_saved_model_runs_without_seqapps_and_handles_bad_wavs(trained):
    from seqapps.export import saved_model, tflite
    from seqapps.speech.tflite_runtime import StreamRunner

    path = saved_model.latest(trained)
    x = np.zeros((2, 16000), np.float32)
    x[1] = np.nan  # non-finite input is sanitised, never a crash
    out = saved_model.run_isolated(path, {"waveform": x})
    assert out["probabilities"].shape == (2, 6) and np.isfinite(out["probabilities"]).all()
    loaded = tf.saved_model.load(str(path))
    none = loaded.signatures["serving_default"](waveform=tf.zeros([0, 16000]))  # an empty batch: empty answers
    assert none["probabilities"].shape == (0, 6) and none["label"].shape == (0,)
    for shape in ([1, 32000], [32000], [1, 8000]):  # two seconds gave two labels; half a second a reshape error
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"is not compatible with expected shape \[\?,16000\]"):
            loaded.signatures["serving_default"](waveform=tf.zeros(shape))
    # the TFLite files read a NaN sample as 0 too: the clip models and, streaming, every later step
    silent = x[:1].copy()
    silent[0, 100] = np.nan
    for name in sorted(p.name for p in trained.glob("model*.tflite")):  # int8 too where the export made one
        got = tflite.run(tflite.interpreter(trained / name), "classify", waveform=silent)["probabilities"]
        want = tflite.run(tflite.interpreter(trained / name), "classify", waveform=x[:1])["probabilities"]
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)
    runner = StreamRunner(trained / "stream.tflite")
    assert np.isfinite(runner.run_clip(silent)).all()
    wav = loaded.signatures["classify_wav"]
    ok = wav(wav=tf.constant(audio.encode_wav(tone(3.0, 48000), 48000, 8)))
    assert ok["error"].numpy() == b"" and int(ok["sample_rate"]) == 48000 and ok["label"].numpy()[0] != b""
    np.testing.assert_allclose(ok["probabilities"].numpy().sum(), 1.0, atol=1e-5)
    for bad in (b"", b"not audio at all", audio.encode_wav(tone())[:30]):
        res = wav(wav=tf.constant(bad))
        assert res["error"].numpy() != b"" and res["label"].numpy()[0] == b""
        assert not res["probabilities"].numpy().any()
    empty = wav(wav=tf.constant(audio.encode_wav(np.zeros(0, np.float32))))  # zero-length clip: classified as is
    assert empty["error"].numpy() == b"" and float(empty["seconds"]) == 0.0
    assert b"empty" in wav(wav=tf.constant(b""))["error"].numpy()


class _LoudnessRunner:
    """A stand-in for StreamRunner: a state that remembers the loudest sample since its reset, and the keyword
    "go" as soon as it has heard one."""

    hop, state_size = 320, 1

    def initial_state(self):
        return np.zeros((1, 1), np.float32)

    def step(self, audio_hop, state):
        s = np.maximum(state, np.abs(audio_hop).max())
        return np.array([1 - s[0, 0], s[0, 0]]), s


def test_a_detection_in_the_last_window_starts_a_second_before_that_window_ends():
    """The last window reaches past the recording's end (zeros): its detection starts a second before the
    window's own end, not before the recording's (it was reported up to a quarter second early)."""
    from seqapps.speech.tflite_runtime import detect, window_scores

    x = np.zeros(20000, np.float32)
    x[19900:] = 1.0  # heard only by the last window, which ends at 24000 (75 hops), clipped to 20000
    starts, ends, _ = window_scores(_LoudnessRunner(), x, with_starts=True)
    assert ends[-1] == 20000 and starts[-1] == 8000 and list(starts[:3]) == [0, 3840, 8000 - 16000 + 16000]
    (event,) = detect(_LoudnessRunner(), x, ["_silence_", "go"], threshold=0.5)
    assert event["label"] == "go" and event["start"] == 0.5 and event["end"] == 1.25


def _recording_runner(hop=320):
    """A StreamRunner whose TFLite signature is a stand-in that records the audio it is given."""
    from seqapps.speech.tflite_runtime import StreamRunner

    runner = StreamRunner.__new__(StreamRunner)
    runner.hop, runner.state_size, runner.fed = hop, 1, []

    def signature(audio, state):
        runner.fed.append(audio.copy())
        return {"probabilities": np.array([[0.5, 0.5]], np.float32), "state": state + 1}

    runner.runner = signature
    return runner


def test_stream_runner_pads_a_short_last_hop_and_refuses_a_long_one():
    """The README's device loop feeds hops of 320 samples, the last one shorter when the audio is not a multiple
    of 320: that hop is zero-padded (it was 'cannot reshape array of size 100 into shape (1,320)')."""
    runner = _recording_runner()
    audio_in = tone(0.0225)  # 360 samples: a hop of 320, then 40
    state = runner.initial_state()
    for start in range(0, len(audio_in), runner.hop):
        _, state = runner.step(audio_in[start : start + runner.hop], state)
    assert [a.shape for a in runner.fed] == [(1, 320), (1, 320)] and float(state[0, 0]) == 2
    np.testing.assert_array_equal(runner.fed[1][0], np.pad(audio_in[320:], (0, 280)))
    with pytest.raises(ValueError, match="audio hop of 321 samples: this model steps 320 samples at a time"):
        runner.step(np.zeros(321, np.float32), state)


def test_stream_runtime_refuses_int16_scaled_samples():
    """The models read float32 PCM in [-1, 1]: raw int16 values gave confident, wrong labels without a word."""
    from seqapps.speech.tflite_runtime import check_waveform, detect, window_scores

    runner = _recording_runner()
    loud = tone(1.0, amp=20000.0)
    for call in (
        lambda: runner.step(loud[:320], runner.initial_state()),
        lambda: runner.run_clip(loud),
        lambda: window_scores(runner, loud),
        lambda: detect(runner, loud, ["_silence_", "go"]),
    ):
        with pytest.raises(ValueError, match=r"outside \[-1, 1\].*float32 PCM.*divide int16 samples by 32768"):
            call()
    assert not runner.fed  # refused before anything ran
    with pytest.raises(ValueError, match="magnitude 20000"):  # a NaN sample does not hide the others
        check_waveform(np.array([np.nan, 20000.0, 1.0]))
    edge = np.array([-1.0, 32767 / 32768, np.nan, np.inf, -np.inf], np.float32)  # full scale; non-finite reads as 0
    np.testing.assert_array_equal(check_waveform(edge), edge)
    runner.step(edge, runner.initial_state())
    with pytest.raises(ValueError, match="streams=0: give how many staggered recurrent states"):
        window_scores(runner, tone(1.0), streams=0)


def _float_wav(x, rate=16000):
    """A 32-bit float WAV holding ``x`` as it is (`audio.encode_wav` clips to [-1, 1])."""
    import struct

    raw = np.asarray(x, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, 4 * rate, 4, 32)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_predict_refuses_a_float_wav_on_the_int16_scale_and_clips_a_little_overshoot(tmp_path):
    from seqapps.speech.app import _readable

    (tmp_path / "int16.wav").write_bytes(_float_wav(tone(amp=20000.0)))
    (tmp_path / "hot.wav").write_bytes(_float_wav(tone(amp=1.2)))
    failed = []
    read = list(_readable([tmp_path / "int16.wav", tmp_path / "hot.wav"], failed))
    assert [f.name for f, _ in read] == ["hot.wav"] and np.abs(read[0][1]).max() == 1.0
    assert len(failed) == 1 and "int16.wav: float samples up to 20000" in failed[0] and "32768" in failed[0]


def test_speech_config_refuses_other_sample_rates_and_no_stream(tmp_path):
    """sample_rate != 16000 gave different answers through serving_default (data read at 16 kHz) and
    classify_wav; stream_resets=0 passed the range checks and then crashed predict --stream."""
    import argparse

    from seqapps import config as config_lib
    from seqapps.speech import config as speech_config
    from seqapps.speech.app import SpeechApp

    speech_config.check(SpeechConfig(conv_filters=0))  # the defaults (and no conv front end) pass
    assert config_lib.load(SpeechConfig(), None, ["conv_filters=0"]).conv_filters == 0  # 0: no conv, as documented
    with pytest.raises(config_lib.ConfigError, match="conv_filters=-1 must be >= 0"):
        config_lib.load(SpeechConfig(), None, ["conv_filters=-1"])
    with pytest.raises(config_lib.ConfigError, match="sample_rate=22050: the speech app runs at 16000 Hz only"):
        SpeechApp().train(SpeechConfig(sample_rate=22050), tmp_path / "out")  # before any data is read
    with pytest.raises(config_lib.ConfigError, match=r"stream_resets=0 must be >= 1.*--set stream_resets=4"):
        speech_config.check(SpeechConfig(stream_resets=0))
    (tmp_path / "model" / "assets").mkdir(parents=True)  # a model trained before the check
    (tmp_path / "model" / "assets" / "labels.txt").write_text("_silence_\ngo\n")
    config_lib.save(SpeechConfig(stream_resets=0), tmp_path / "model" / "config.yaml")
    args = argparse.Namespace(files=[tmp_path / "x.wav"], top=1, stream=True, threshold=None)
    with pytest.raises(config_lib.ConfigError, match="stream_resets=0"):
        SpeechApp().predict(tmp_path / "model", args)


def test_cli_predict_stream_and_evaluate(trained, tmp_path):
    clip = tmp_path / "up.wav"
    x48 = audio.resample(audio.fit_clip(audio.synthesize("up", "en-us+m1", 160, 50)), 16000, 48000)
    audio.write_wav(clip, x48, 48000, bits=8)  # an 8-bit 48 kHz file
    long = tmp_path / "long.wav"
    audio.write_wav(
        long,
        np.concatenate([np.zeros(16000), audio.fit_clip(audio.synthesize("yes", "en-us", 150)), np.zeros(24000)]),
        16000,
        24,
    )
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    out = _cli("predict", "speech", "--model", str(trained), str(clip), "--top", "2").stdout
    assert out.startswith(f"{clip}: ") and out.count("(") == 1
    args = (str(long), str(tmp_path / "gone.wav"), "--stream", "--threshold", "0.0")
    res = _cli("predict", "speech", "--model", str(trained), *args, check=False)
    assert "3.50 s" in res.stdout and "detection(s)" in res.stdout  # streamed although the next file is missing
    assert res.returncode == 2 and "1 of 2 file(s) could not be read: " in res.stderr and "gone.wav" in res.stderr
    # an unreadable file among readable ones: the others are still classified, the command fails naming it
    bad = _cli("predict", "speech", "--model", str(trained), str(tmp_path / "bad.wav"), str(clip), check=False)
    assert bad.returncode == 2 and bad.stdout.startswith(f"{clip}: ") and bad.stdout.count("\n") == 1
    assert "1 of 2 file(s) could not be read" in bad.stderr and "bad.wav: not a WAV file" in bad.stderr
    for option, expected in (
        (["--top", "0"], "--top 0: give how many"),
        (["--stream", "--threshold", "1.5"], "in [0, 1]"),
    ):
        res = _cli("predict", "speech", "--model", str(trained), str(clip), *option, check=False)
        assert res.returncode == 2 and expected in res.stderr and not res.stdout, res.stderr[-500:]
    res = _cli("evaluate", "speech", "--model", str(trained), check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert '"accuracy"' in res.stdout and "true\\pred" in res.stdout
    # a folder named Yes was scored as _unknown_ without a word
    own = tmp_path / "own"
    for word, folder in (("yes", "Yes"), ("yes", "Yes"), ("zebra", "zebra"), ("up", "up")):
        (own / folder).mkdir(parents=True, exist_ok=True)
        n = len(list((own / folder).iterdir()))
        audio.write_wav(own / folder / f"s{n}_nohash_0.wav", audio.fit_clip(audio.synthesize(word, "en-us")), 16000)
    res = _cli("evaluate", "speech", "--model", str(trained), "--data", str(own), check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (
        "note: 3 clip(s) of 2 word(s) that are not labels of the model are scored as _unknown_: Yes (2), zebra (1)"
        in res.stderr
    )
    assert "note: Yes differs from the label yes only in case or underscores: rename it yes" in res.stderr
    assert '"scored_as_unknown": {' in res.stdout


def test_bench_rows(trained):
    from seqapps.speech.app import SpeechApp

    rows = SpeechApp().bench(trained, quick=True)
    step = next(r for r in rows if "per 20 ms step" in r["benchmark"])
    assert step["unit"] == "ms" and step["value"] > 0 and step["baseline"] == 20.0
    assert all({"benchmark", "value", "unit", "baseline", "ratio"} <= set(r) for r in rows)
    streamed = next(r for r in rows if "streamed" in r["benchmark"])
    assert streamed["value"] > 0 and streamed["baseline"] > 0 and "–" in streamed["range"]


def test_notebook_runs(trained):
    from tests.notebooks_util import execute_notebook

    nb = execute_notebook("speech.ipynb", env={"SPEECH_MODEL_DIR": str(trained)})
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    images = sum(
        "image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "max |stream after 50 hops - clip model|" in text and images >= 4


def test_tfds_clips_and_folders_are_not_mixed():
    """tfds speech_commands clips have no speaker id: mixed with a folder, held-out speakers would reach the
    training split, so the mix is refused before anything loads (synthetic clips mix with either)."""
    for main, extra in (("some/folder", ["tfds:speech_commands"]), ("tfds:speech_commands", ["some/folder"])):
        with pytest.raises(ValueError, match="carry no speaker"):
            data.check_sources(main, extra)
    data.check_sources("tfds:speech_commands", ["synthetic"])
    data.check_sources("some/folder", ["other/folder", "synthetic"])


def test_extra_train_adds_clips_to_training_only_and_drops_held_out_speakers(tmp_path):
    from seqapps.speech.app import SpeechApp

    main, extra = tmp_path / "main", tmp_path / "extra"
    speakers = [f"{s:08x}" for s in range(10)]
    _write_folder(main, [f"{w}/{s}_nohash_0.wav" for w in ("yes", "no") for s in speakers])
    # the extra folder: the same ten speakers (other takes) and a new one, plus a word that is not a label
    _write_folder(extra, [f"{w}/{s}_nohash_1.wav" for w in ("yes", "no") for s in [*speakers, "newvoice"]])
    _write_folder(extra, ["cat/newvoice_nohash_0.wav"])
    cfg = SpeechConfig(data=str(main), extra_train=str(extra), labels="yes,no", val_fraction=0.2, test_fraction=0.2)
    parts, labels, _, info = SpeechApp().prepare(cfg, verbose=False)
    clips = data.load_folder(main, verbose=False)
    splits = data.split_by_speaker(clips, 0.2, 0.2)
    held_out = {clips.speakers[i] for k in ("val", "test") for i in splits[k]}
    kept_speakers = len(speakers) - len(held_out) + 1  # the training speakers and the new voice, two words each
    assert info["extra_train"][str(extra)] == {
        "added": 2 * kept_speakers,
        "dropped_held_out_speakers_or_labels": 2 * len(held_out) + 1,
    }
    assert len(parts["train"][1]) == len(splits["train"]) + 2 * kept_speakers
    assert (len(parts["val"][1]), len(parts["test"][1])) == (len(splits["val"]), len(splits["test"]))
