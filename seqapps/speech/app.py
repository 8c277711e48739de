"""The speech command app: train, evaluate, predict (clip or streaming), export, bench."""

from __future__ import annotations

import collections
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from seqapps import config as config_lib
from seqapps.app import App, drop_previous_export, previous_export
from seqapps.data import same_spec
from seqapps.export.metadata import json_text
from seqapps.registry import register_app
from seqapps.speech.config import SpeechConfig, check, tiny

CLIP = 16000


def confusion(y_true, y_pred, n):
    m = np.zeros((n, n), dtype=int)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def format_confusion(m, labels) -> str:
    short = [lb[:6] for lb in labels]
    lines = ["true\\pred " + " ".join(f"{s:>6}" for s in short)]
    for lb, row in zip(short, m):
        lines.append(f"{lb:>9} " + " ".join(f"{v:>6d}" for v in row))
    return "\n".join(lines)


def read_labels(model_dir) -> list[str]:
    path = Path(model_dir) / "assets" / "labels.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {model_dir} a trained speech model?")
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln]


def _calibration_clips(xtr, cfg):
    """The training clips that calibrate ``model_int8.tflite``: training's seeded draw (the second of its random
    generator, after the front end's), which an export without ``run/`` draws again. The first clips would be
    those of one word, as the readers sort them."""
    rng = np.random.default_rng(cfg.seed)
    rng.permutation(len(xtr))  # the draw that adapts the front end
    return xtr[rng.permutation(len(xtr))[: cfg.int8_calibration_clips]]


@register_app("speech")
class SpeechApp(App):
    config_class = SpeechConfig
    default_model_dir = Path("trained/speech")
    export_settings = (
        "tflite_eval_examples", "stream_resets", "detect_threshold", "verbose", "data",
    )  # fmt: skip

    def tiny_config(self):
        return tiny()

    # ------------------------------------------------------------------ data
    def prepare(self, cfg, verbose=True):
        """Load the data spec, split it by speaker, add ``extra_train`` to the training split only."""
        from seqapps.speech import data

        t0 = time.time()
        extras = [s.strip() for s in cfg.extra_train.split(",") if s.strip()]
        data.check_sources(cfg.data, extras)
        clips = data.load(cfg.data, cfg, verbose=verbose)
        labels = data.resolve_labels(cfg.labels, None if cfg.data in ("default", "synthetic") else clips)
        if cfg.data in ("default", "synthetic") and cfg.labels != "auto":
            clips = data.load(cfg.data, cfg, label_hint=labels, verbose=verbose)
        splits = data.split_by_speaker(clips, cfg.val_fraction, cfg.test_fraction)
        y = data.label_ids(clips.words, labels)
        held_out = {clips.speakers[i] for k in ("val", "test") for i in splits[k]}
        parts = {k: (clips.waveforms[idx[y[idx] >= 0]], y[idx[y[idx] >= 0]]) for k, idx in splits.items()}
        noise = list(clips.noise) + [clips.waveforms[i] for i in splits["train"] if clips.words[i] == data.SILENCE]
        info = {
            "spec": clips.spec,
            "clips": len(clips),
            "speakers": len(set(clips.speakers)),
            "split": {k: int(len(v[1])) for k, v in parts.items()},
            "extra_train": {},
        }
        for spec in extras:
            extra = data.load(spec, cfg, label_hint=labels, verbose=verbose)
            ye = data.label_ids(extra.words, labels)
            keep = np.array([ye[i] >= 0 and extra.speakers[i] not in held_out for i in range(len(extra))], bool)
            xs, ys = parts["train"]
            parts["train"] = (np.concatenate([xs, extra.waveforms[keep]]), np.concatenate([ys, ye[keep]]))
            noise += list(extra.noise)
            info["extra_train"][spec] = {
                "added": int(keep.sum()),
                "dropped_held_out_speakers_or_labels": int((~keep).sum()),
            }
        for k, (_, ys) in parts.items():
            if k != "test" and len(ys) == 0:
                raise ValueError(f"{cfg.data}: the {k} split is empty; use more data or other split fractions")
        info["train_clips"] = int(len(parts["train"][1]))
        info["class_counts_train"] = {lb: int((parts["train"][1] == i).sum()) for i, lb in enumerate(labels)}
        if verbose:
            print(
                f"[speech] data {clips.spec}: {len(clips)} clips, {info['speakers']} speakers -> train "
                f"{len(parts['train'][1])} / val {len(parts['val'][1])} / test {len(parts['test'][1])} clips "
                f"(split by speaker); labels {labels}; {time.time() - t0:.1f}s"
            )
        return parts, labels, noise, info

    # ------------------------------------------------------------------ train
    def train(self, cfg, out_dir, resume=False):
        previous = previous_export(out_dir)  # the files of the model out_dir holds, if any
        import keras

        from seqapps import training
        from seqapps.speech import data
        from seqapps.speech import model as model_lib

        out_dir = Path(out_dir)
        check(cfg)
        training.set_seed(cfg.seed)
        parts, labels, noise, info = self.prepare(cfg)
        (xtr, ytr), (xva, yva), (xte, yte) = parts["train"], parts["val"], parts["test"]
        silence_id = labels.index(data.SILENCE) if data.SILENCE in labels else -1
        if cfg.distribute == "multiworker":
            raise ValueError(
                "speech trains from a Python data pipeline (on-the-fly augmentation), which the multi-worker "
                "loop cannot shard; use distribute=mirrored (all the GPUs of one machine) or none"
            )
        training.set_precision(cfg)
        strategy = training.strategy(cfg)  # cfg.distribute: build and compile under this one strategy
        with strategy.scope():
            model = model_lib.build_model(cfg, len(labels), CLIP)
        rng = np.random.default_rng(cfg.seed)
        model_lib.adapt_frontend(model, xtr[rng.permutation(len(xtr))[:2000]])
        n = len(labels)

        def onehot(ds):
            class OneHot(keras.utils.PyDataset):
                def __len__(self):
                    return len(ds)

                def __getitem__(self, i):
                    x, y = ds[i]
                    return x, np.eye(n, dtype=np.float32)[y]

                def on_epoch_end(self):
                    ds.on_epoch_end()

                def set_epoch(self, epoch):  # a resumed training continues the epochs' orders (training.fit)
                    ds.set_epoch(epoch)

            return OneHot()

        train_ds = onehot(data.AugmentedClips(xtr, ytr, cfg, noise, True, cfg.batch_size, cfg.seed, silence_id))
        val_ds = onehot(data.AugmentedClips(xva, yva, cfg, (), False, 256))
        steps = (cfg.steps_per_epoch or len(train_ds)) * cfg.epochs
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=0.02)
        with strategy.scope():
            model.compile(
                optimizer=training.make_optimizer(cfg, schedule),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
                metrics=["categorical_accuracy"],
            )
        print(
            f"[speech] model: {model.count_params():,} parameters ({cfg.num_mel} log-mel, conv {cfg.conv_filters}x"
            f"{cfg.conv_kernel}, {cfg.rnn_layers}x{cfg.cell.upper()} {cfg.units})"
        )
        history = training.fit(
            model,
            train_ds,
            val_ds,
            cfg,
            out_dir / "run",
            resume=resume,
            monitor="val_categorical_accuracy" if cfg.patience else "val_loss",
        )
        model = training.in_float32(model, lambda: model_lib.build_model(cfg, len(labels), CLIP))

        out_dir.mkdir(parents=True, exist_ok=True)
        drop_previous_export(out_dir, previous)  # the old model's files go before the new model's arrive
        (out_dir / "assets").mkdir(exist_ok=True)
        model.save(out_dir / "model.keras")
        config_lib.save(cfg, out_dir / "config.yaml")
        (out_dir / "assets" / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        calib = _calibration_clips(xtr, cfg)
        np.savez_compressed(
            out_dir / "run" / "eval_clips.npz", test_x=xte, test_y=yte, val_x=xva, val_y=yva, calib=calib
        )
        scores = {
            "val": self._score(model, xva, yva, labels, "val"),
            "test": self._score(model, xte, yte, labels, "test"),
        }
        hist = history.history
        train_info = {
            "data": info,
            "epochs_run": len(hist.get("loss", [])),
            "train_seconds": round(history.train_seconds, 1),
            "final": {k: float(v[-1]) for k, v in hist.items()},
            **scores,
        }
        (out_dir / "run" / "train_info.json").write_text(json_text(train_info, indent=2))
        training.clear_backup(out_dir / "run")
        self.export_trained(out_dir, previous, model=model, cfg=cfg)
        keras.backend.clear_session()
        return scores

    def _score(self, model, x, y, labels, name):
        if len(y) == 0:
            return {"clips": 0}
        logits = np.concatenate([model.predict_on_batch(x[i : i + 256]) for i in range(0, len(x), 256)])
        pred = logits.argmax(-1)
        m = confusion(y, pred, len(labels))
        acc = float((pred == y).mean())
        print(
            f"[speech] {name} accuracy (speaker-disjoint): {acc:.4f} on {len(y)} clips\n{format_confusion(m, labels)}"
        )
        return {"clips": int(len(y)), "accuracy": round(acc, 4), "confusion": m.tolist(), "labels": labels}

    # ------------------------------------------------------------------ export
    def export(self, model_dir, out_dir=None, model=None, cfg=None):
        import keras
        import tensorflow as tf

        from seqapps.export import atomic, gpu, metadata, saved_model, tflite
        from seqapps.speech import model as model_lib  # noqa: F401  (registers the custom layers)
        from seqapps.speech.serving import ClipTFLite, SpeechModule, StreamTFLite
        from seqapps.speech.tflite_runtime import StreamRunner

        model_dir = Path(model_dir)
        out_dir = Path(out_dir or model_dir)
        if not (model_dir / "model.keras").is_file():
            raise FileNotFoundError(f"{model_dir / 'model.keras'} not found; train first (make train-speech)")
        cfg = cfg or config_lib.read(SpeechConfig, model_dir / "config.yaml")
        check(cfg, "export")
        model = model or keras.saving.load_model(model_dir / "model.keras", compile=False)
        labels = read_labels(model_dir)
        if out_dir.resolve() != model_dir.resolve():
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(model_dir / "assets", out_dir / "assets", dirs_exist_ok=True)
            shutil.copy2(model_dir / "model.keras", out_dir / "model.keras")
        config_lib.save(cfg, out_dir / "config.yaml")  # the config this export was made with (--set)
        clips_file = model_dir / "run" / "eval_clips.npz"
        if clips_file.is_file():
            z = np.load(clips_file)
            xte, yte, calib = z["test_x"], z["test_y"], z["calib"]
        else:
            parts, _, _, _ = self.prepare(cfg, verbose=False)
            (xte, yte), calib = parts["test"], _calibration_clips(parts["train"][0], cfg)
        if cfg.tflite_eval_examples:
            xte, yte = xte[: cfg.tflite_eval_examples], yte[: cfg.tflite_eval_examples]
        train_info = metadata.training_info(model_dir)  # kept when a shipped folder is exported again

        keras_probs = tf.nn.softmax(
            np.concatenate([model.predict_on_batch(xte[i : i + 256]) for i in range(0, len(xte), 256)])
            if len(xte)
            else np.zeros((0, len(labels)), np.float32)
        ).numpy()
        keras_acc = float((keras_probs.argmax(-1) == yte).mean()) if len(yte) else None
        report = {"eval_clips": int(len(yte)), "keras_accuracy": keras_acc}

        module = SpeechModule(model, labels, CLIP, cfg.sample_rate)
        sm_path = saved_model.write(module, out_dir, module.signatures(), version=1)
        loaded = tf.saved_model.load(str(sm_path))
        sm_probs = (
            np.concatenate(
                [
                    loaded.signatures["serving_default"](waveform=tf.constant(xte[i : i + 256]))[
                        "probabilities"
                    ].numpy()
                    for i in range(0, len(xte), 256)
                ]
            )
            if len(xte)
            else keras_probs
        )
        report["saved_model"] = {
            "max_abs_diff": float(np.abs(sm_probs - keras_probs).max()) if len(xte) else 0.0,
            "accuracy": float((sm_probs.argmax(-1) == yte).mean()) if len(yte) else None,
        }
        metadata.check_parity("the SavedModel", report["saved_model"]["max_abs_diff"])
        print(
            f"[speech] SavedModel -> {sm_path.relative_to(out_dir)} (max |diff| vs Keras {report['saved_model']['max_abs_diff']:.2e})"
        )

        # TFLite: clip classifier float32, dynamic-range, int8 and GPU (float16); streaming step float32
        clip_mod = ClipTFLite(model, CLIP)

        for variant in ("float32", "dynamic", "int8", "gpu"):
            if variant == "int8":
                from seqapps.speech.serving import int8_model

                blob = int8_model(model, calib, CLIP)
            elif variant == "dynamic":  # int8 weights; the log-mel front end stays float
                with model_lib.mel_in_small_blocks(model):
                    dyn_mod = ClipTFLite(model, CLIP)  # a fresh module: traced with the blocked product
                    blob = tflite.convert_module(dyn_mod, dyn_mod.signatures(), variant)
            elif variant == "gpu":  # float16, the RNN unrolled over the clip's frames: for GPU delegates
                blob = tflite.convert_unrolled(model, lambda: ClipTFLite(model, CLIP))
            else:
                blob = tflite.convert_module(clip_mod, clip_mod.signatures(), variant)
            path = out_dir / tflite.FILE_NAMES[variant]
            atomic.atomic_write_bytes(path, blob)
            interp = tflite.interpreter(path)
            probs = (
                np.concatenate([tflite.run(interp, "classify", waveform=x[None])["probabilities"] for x in xte])
                if len(xte)
                else keras_probs
            )
            acc = float((probs.argmax(-1) == yte).mean()) if len(yte) else None
            report[variant] = {
                "file": path.name,
                "bytes": path.stat().st_size,
                "ops": sorted(tflite.op_names(blob)),
                "accuracy": acc,
                "max_abs_diff_vs_keras": float(np.abs(probs - keras_probs).max()) if len(xte) else 0.0,
            }
            print(
                f"[speech] TFLite {variant}: {path.name} {path.stat().st_size / 1e3:.0f} kB, accuracy {acc} "
                f"(Keras {keras_acc}), max |diff| {report[variant]['max_abs_diff_vs_keras']:.2e}"
            )
            if variant == "float32":
                metadata.check_parity(path.name, report[variant]["max_abs_diff_vs_keras"])
        if keras_acc is not None:
            report["int8_accuracy_change"] = round(report["int8"]["accuracy"] - report["float32"]["accuracy"], 4)

        stream_mod = StreamTFLite(model)
        blob = tflite.convert_module(stream_mod, stream_mod.signatures(), "float32")
        path = out_dir / "stream.tflite"
        atomic.atomic_write_bytes(path, blob)
        runner = StreamRunner(path)
        n_stream = min(len(xte), 20)
        diffs = [float(np.abs(runner.run_clip(x)[-1] - keras_probs[i]).max()) for i, x in enumerate(xte[:n_stream])]
        report["stream"] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "ops": sorted(tflite.op_names(blob)),
            "hop_samples": runner.hop,
            "state_size": runner.state_size,
            "clips_checked": n_stream,
            "final_step_max_abs_diff_vs_keras_clip": max(diffs, default=0.0),
        }
        print(
            f"[speech] TFLite stream: {path.name} {path.stat().st_size / 1e3:.0f} kB, hop {runner.hop}, state "
            f"{runner.state_size}; streaming over {n_stream} clips vs clip model max |diff| "
            f"{report['stream']['final_step_max_abs_diff_vs_keras_clip']:.2e}"
        )
        metadata.check_parity(
            f"{path.name} (after the last hop)", report["stream"]["final_step_max_abs_diff_vs_keras_clip"]
        )
        meta = metadata.write(
            out_dir / "metadata.json",
            app="speech",
            config=cfg,
            data_spec=cfg.data,
            extra_train=cfg.extra_train,
            labels=labels,
            training=train_info,
            export_checks=report,
            saved_model={
                "path": str(sm_path.relative_to(out_dir)),
                "signatures": {
                    "serving_default": "waveform (float32 [None, 16000], 16 kHz) -> probabilities (float32 [None, L]), "
                    "label (string [None])",
                    "classify_wav": "wav (string [], WAV bytes) -> probabilities [1, L], label [1], error [], "
                    "sample_rate [], seconds []",
                },
            },
            tflite={
                "model.tflite / model_dynamic.tflite / model_int8.tflite / model_gpu.tflite": "classify: waveform "
                "float32 [1, 16000] -> "
                "probabilities [1, L]",
                "stream.tflite": f"step: audio float32 [1, {runner.hop}] + state float32 [1, "
                f"{runner.state_size}] -> probabilities [1, L], state [1, {runner.state_size}]",
            },
            gpu_compatibility=gpu.summarize(out_dir),
            files=metadata.file_sizes(out_dir),
        )
        self._model_card(out_dir, meta)
        return sm_path

    def _model_card(self, out_dir, meta):
        from seqapps.export import atomic

        cfg, tr, ex = meta["config"], meta.get("training") or {}, meta["export_checks"]

        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f}%"

        def accuracy(part):  # from the confusion matrix when kept (the stored figure is rounded to 4 places)
            m = part.get("confusion")
            return float(np.trace(m) / np.sum(m)) if m else part.get("accuracy")

        val, test = tr.get("val") or {}, tr.get("test") or {}
        val_acc, test_acc = accuracy(val), accuracy(test)
        held_n = (val.get("clips") or 0) + (test.get("clips") or 0)
        held_acc = None
        if held_n and val_acc is not None and test_acc is not None:
            held_acc = (val_acc * val["clips"] + test_acc * test["clips"]) / held_n
        lines = [
            "# Speech commands keyword spotter (seqapps)",
            "",
            f"Raw 16 kHz waveform in, one of {len(meta['labels'])} labels out: {', '.join(meta['labels'])}.",
            f"Front end inside the model: causal {2 * cfg['hop']}-sample frames every {cfg['hop']} samples "
            f"({1000 * cfg['hop'] / cfg['sample_rate']:.0f} ms), {cfg['num_mel']} log-mel channels; "
            + (f"causal Conv1D {cfg['conv_filters']}x{cfg['conv_kernel']}, " if cfg["conv_filters"] else "no conv, ")
            + f"{cfg['rnn_layers']} x "
            f"{cfg['cell'].upper()} {cfg['units']} (seqapps.layers), dense softmax on the last step.",
            "",
            "## Data",
            "",
            f"- data spec: `{meta['data_spec']}`"
            + (f"; extra training data: `{meta['extra_train']}`" if meta.get("extra_train") else ""),
            f"- splits by speaker (hash of the speaker id): {json.dumps((tr.get('data') or {}).get('split'))}",
            "",
            "## Measured (speaker-disjoint, this folder's export checks)",
            "",
            f"- validation accuracy: {pct(val_acc)} on {val.get('clips')} clips",
            f"- test accuracy (Keras): {pct(test_acc)} on {test.get('clips')} clips",
            f"- validation + test together: {pct(held_acc)} on {held_n} clips of speakers never seen in training",
            f"- TFLite float32: {pct(ex['float32']['accuracy'])}, int8: {pct(ex['int8']['accuracy'])} "
            f"(change {ex.get('int8_accuracy_change')})"
            + (
                f", dynamic-range (`model_dynamic.tflite`, int8 weights, float front end): "
                f"{pct(ex['dynamic']['accuracy'])}"
                if "dynamic" in ex
                else ""
            )
            + f", on {ex['eval_clips']} test clips"
            + (
                f"; GPU variant (`model_gpu.tflite`, float16, RNN unrolled): {pct(ex['gpu']['accuracy'])} "
                "(GPU-delegate report: `gpu_compatibility.json`)"
                if "gpu" in ex
                else ""
            ),
            f"- SavedModel max |diff| vs Keras: {ex['saved_model']['max_abs_diff']:.2e}; streaming TFLite after the "
            f"last hop vs clip model: {ex['stream']['final_step_max_abs_diff_vs_keras_clip']:.2e}",
            f"- training time: {tr.get('train_seconds')} s, {tr.get('epochs_run')} epochs (2-core CPU)",
            "",
        ]
        if (tr.get("test") or {}).get("confusion"):
            lines += [
                "Test confusion matrix (rows: true, columns: predicted):",
                "",
                "```",
                format_confusion(np.array(tr["test"]["confusion"]), meta["labels"]),
                "```",
                "",
            ]
        lines += [
            "## Limitations",
            "",
            "- Trained on about two thousand clips (half of the official v0.02 test clips); accuracy on other "
            "microphones, accents and noise levels will be lower than on the held-out speakers above.",
            "- One keyword per second of audio; `--stream` runs staggered one-second windows and resets the "
            "recurrent state every second.",
            "- Not a speaker or wake-word security feature.",
            "",
            "Reproduce, from the folder the data path in `config.yaml` is relative to (the checkout's root for the "
            f"shipped model): `seqapps train speech --config {atomic.destination(out_dir) / 'config.yaml'} --out "
            "runs/speech` (this folder's config; `seqapps/speech/configs/speech_commands.yaml` is the shipped "
            "recipe).",
        ]
        atomic.atomic_write_text(Path(out_dir) / "MODEL_CARD.md", "\n".join(lines) + "\n")

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, model_dir, data=None, **options):
        import tensorflow as tf

        from seqapps.export import saved_model
        from seqapps.speech import data as data_lib

        model_dir = Path(model_dir)
        trained = config_lib.read(SpeechConfig, model_dir / "config.yaml")
        split = options.pop("split", None)
        check(trained, str(model_dir / "config.yaml"))
        cfg = config_lib.override(trained, options, "evaluate --set")
        check(cfg, "evaluate --set")
        labels = read_labels(model_dir)
        same = data is None or same_spec(data, cfg.data)
        config_lib.check_split_kept(
            trained, cfg, same and same_spec(cfg.data, trained.data), ("val_fraction", "test_fraction")
        )  # speakers split by a hash
        spec = cfg.data if data is None else data
        clips = data_lib.load(spec, cfg, label_hint=labels)
        split = split or ("test" if same else "all")
        if split == "all":
            idx = np.arange(len(clips))
        elif split in ("train", "val", "test"):
            idx = data_lib.split_by_speaker(clips, cfg.val_fraction, cfg.test_fraction)[split]
        else:
            raise ValueError(f"split must be train, val, test or all, got {split!r}")
        if len(idx) == 0:
            raise ValueError(
                f"{spec}: the {split} split is empty (test_fraction={cfg.test_fraction:g}); pass --set split=val or all"
            )
        words = [clips.words[i] for i in idx]
        y = data_lib.label_ids(words, labels)
        others = collections.Counter(w for w in words if w not in labels)
        if others and data_lib.UNKNOWN in labels:
            _note_unknown_words(others, labels)
        keep = y >= 0
        x, y = clips.waveforms[idx][keep], y[keep]
        if len(y) == 0:
            raise ValueError(f"{spec}: no clips with the model's labels ({', '.join(labels)})")
        fn = tf.saved_model.load(str(saved_model.latest(model_dir))).signatures["serving_default"]
        t0 = time.time()
        probs = np.concatenate(
            [fn(waveform=tf.constant(x[i : i + 256]))["probabilities"].numpy() for i in range(0, len(x), 256)]
        )
        elapsed = time.time() - t0
        pred = probs.argmax(-1)
        m = confusion(y, pred, len(labels))
        res = {
            "data": spec,
            "split": split,
            "clips": int(len(y)),
            "dropped_other_labels": int((~keep).sum()),
            "scored_as_unknown": dict(others.most_common()) if data_lib.UNKNOWN in labels else {},
            "accuracy": round(float((pred == y).mean()), 4),
            "per_label_recall": {lb: round(float(m[i, i] / max(m[i].sum(), 1)), 3) for i, lb in enumerate(labels)},
            "clips_per_s": round(len(y) / elapsed, 1),
        }
        print(json.dumps(res, indent=2))
        print(format_confusion(m, labels))
        res["confusion"] = m.tolist()
        return res

    # ------------------------------------------------------------------ predict
    def add_predict_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path, help="WAV files (any rate, channels, 8/16/24/32-bit)")
        parser.add_argument("--top", type=int, default=3, help="scores to print per clip")
        parser.add_argument(
            "--stream",
            action="store_true",
            help="run the streaming TFLite model over the whole recording and print detections",
        )
        parser.add_argument("--threshold", type=float, default=None, help="detection threshold for --stream")

    def predict(self, model_dir, args):
        from seqapps.speech import audio

        if args.top < 1:
            raise ValueError(f"--top {args.top}: give how many scores to print per clip, 1 or more")
        if args.threshold is not None and not 0 <= args.threshold <= 1:
            raise ValueError(f"--threshold {args.threshold:g}: a detection probability, in [0, 1], e.g. 0.6")
        labels = read_labels(model_dir)
        if args.stream:
            return self._predict_stream(model_dir, args, labels)
        import tensorflow as tf

        from seqapps.export import saved_model

        clips, names, failed = [], [], []
        for f, x in _readable(args.files, failed):
            if x.size == 0:
                print(f"note: {f} has no samples; classifying silence", file=sys.stderr)
            elif np.abs(x).max() < 1e-4:
                print(f"note: {f} is silent (peak {np.abs(x).max():.1e})", file=sys.stderr)
            if x.size > int(1.5 * CLIP):
                print(
                    f"note: {f} is {x.size / CLIP:.1f} s long; classifying its loudest second "
                    "(use --stream for detections over time)",
                    file=sys.stderr,
                )
            clips.append(audio.fit_clip(x))
            names.append(str(f))
        if clips:
            fn = tf.saved_model.load(str(saved_model.latest(model_dir))).signatures["serving_default"]
            out = fn(waveform=tf.constant(np.stack(clips)))
            probs = out["probabilities"].numpy()
            for name, label, p in zip(names, out["label"].numpy(), probs):
                top = np.argsort(-p)[: args.top]
                print(f"{name}: {label.decode()}  (" + ", ".join(f"{labels[i]} {p[i]:.3f}" for i in top) + ")")
        _raise_unread(failed, len(args.files))

    def _predict_stream(self, model_dir, args, labels):
        from seqapps.speech import audio
        from seqapps.speech.tflite_runtime import StreamRunner, detect

        cfg = config_lib.read(SpeechConfig, Path(model_dir) / "config.yaml")
        check(cfg, str(Path(model_dir) / "config.yaml"))
        path = Path(model_dir) / "stream.tflite"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; export the model first (seqapps export speech)")
        runner = StreamRunner(path)
        threshold = cfg.detect_threshold if args.threshold is None else args.threshold
        failed = []
        for f, x in _readable(args.files, failed):
            t0 = time.time()
            events = detect(runner, x, labels, threshold, cfg.stream_resets)
            took = time.time() - t0
            print(
                f"{f}: {x.size / audio.SAMPLE_RATE:.2f} s, {len(events)} detection(s) "
                f"(threshold {threshold}, {took:.2f} s to stream)"
            )
            for ev in events:
                print(f"  {ev['start']:7.2f} s - {ev['end']:7.2f} s  {ev['label']:<10} {ev['score']:.3f}")
        _raise_unread(failed, len(args.files))

    # ------------------------------------------------------------------ bench
    def bench(self, model_dir, quick: bool = False):
        import tensorflow as tf

        from seqapps.bench import interleaved_times, median_seconds, medians, ratio_range
        from seqapps.export import saved_model, tflite
        from seqapps.speech.tflite_runtime import StreamRunner

        model_dir = Path(model_dir)
        rng = np.random.default_rng(0)
        clip = (rng.standard_normal((1, CLIP)) * 0.05).astype(np.float32)
        rows = []

        runner = StreamRunner(model_dir / "stream.tflite")
        state = runner.initial_state()
        hop = clip[:, : runner.hop]
        reps = 10 if quick else 50
        step_s = median_seconds(lambda: runner.step(hop, state), 10 * reps)
        budget_ms = 1000.0 * runner.hop / 16000
        rows.append(
            {
                "benchmark": "speech stream.tflite latency per 20 ms step",
                "value": round(step_s * 1e3, 4),
                "unit": "ms",
                "baseline": budget_ms,
                "ratio": round(step_s * 1e3 / budget_ms, 4),
            }
        )
        f32 = tflite.interpreter(model_dir / "model.tflite")
        # one second streamed hop by hop, the state fed back as a device does, against one clip call
        times = interleaved_times(
            {"clip": lambda: tflite.run(f32, "classify", waveform=clip), "stream": lambda: runner.run_clip(clip)},
            rounds=reps // 5,
        )
        t = medians(times)
        f32_s, stream_s = t["clip"], t["stream"]
        rows.append(
            {
                "benchmark": "speech model.tflite (float32) latency per 1 s clip",
                "value": round(f32_s * 1e3, 3),
                "unit": "ms",
                "baseline": None,
                "ratio": None,
            }
        )
        if (model_dir / "model_int8.tflite").is_file():
            i8 = tflite.interpreter(model_dir / "model_int8.tflite")
            i8_s = median_seconds(lambda: tflite.run(i8, "classify", waveform=clip), reps)
            rows.append(
                {
                    "benchmark": "speech model_int8.tflite latency per 1 s clip (baseline: float32)",
                    "value": round(i8_s * 1e3, 3),
                    "unit": "ms",
                    "baseline": round(f32_s * 1e3, 3),
                    "ratio": round(i8_s / f32_s, 3),
                }
            )
        rows.append(
            {
                "benchmark": "speech 1 s streamed in 20 ms steps, state fed back (stream.tflite) vs one clip call "
                "(model.tflite)",
                "value": round(stream_s * 1e3, 3),
                "unit": "ms",
                "baseline": round(f32_s * 1e3, 3),
                "ratio": round(stream_s / f32_s, 3),
                "range": ratio_range(times, "stream", "clip"),
            }
        )
        fn = tf.saved_model.load(str(saved_model.latest(model_dir))).signatures["serving_default"]
        batch = tf.constant(np.repeat(clip, 64, axis=0))
        sm_s = median_seconds(lambda: fn(waveform=batch), 2 if quick else 5)
        rows.append(
            {
                "benchmark": "speech SavedModel throughput (batch 64)",
                "value": round(64 / sm_s, 1),
                "unit": "clips/s",
                "baseline": None,
                "ratio": None,
            }
        )
        return rows


def _note_unknown_words(others: collections.Counter, labels) -> None:
    """Say which words evaluation scores as `_unknown_` (a folder ``Yes`` is not the label ``yes``)."""
    from seqapps.speech.data import UNKNOWN

    listed = ", ".join(f"{w} ({n})" for w, n in others.most_common(10)) + (", ..." if len(others) > 10 else "")
    print(
        f"note: {sum(others.values())} clip(s) of {len(others)} word(s) that are not labels of the model are "
        f"scored as {UNKNOWN}: {listed}",
        file=sys.stderr,
    )
    for w in others:
        for lb in labels:
            if w.strip("_").lower() == lb.strip("_").lower():
                print(
                    f"note: {w} differs from the label {lb} only in case or underscores: rename it {lb}",
                    file=sys.stderr,
                )


def _readable(files, failed: list[str]):
    """(file, samples in [-1, 1]) for each file that can be read, one at a time; what is wrong with each other
    file is appended to ``failed``, so that one unreadable file does not stop the others.

    Integer PCM reads into [-1, 1]; resampling can overshoot it a little and a float WAV may be a little over full
    scale: such samples are clipped (as in training). A float WAV far outside [-1, 1] holds samples on another
    scale (int16 values written as floats, say), which the models would label confidently and wrongly: refused."""
    from seqapps.speech import audio

    for f in files:
        try:
            x = audio.load_audio(f)
        except (OSError, ValueError) as exc:
            failed.append(str(exc))
            continue
        peak = float(np.abs(x).max(initial=0.0))  # load_audio's samples are finite
        if peak > 2.0:
            failed.append(
                f"{f}: float samples up to {peak:g}, far outside [-1, 1]; a float WAV must hold samples in [-1, 1] "
                "(int16 values stored as floats: divide them by 32768)"
            )
            continue
        yield f, np.clip(x, -1.0, 1.0)


def _raise_unread(failed: list[str], total: int) -> None:
    """After the readable files were classified: an error naming every file that could not be read."""
    if failed:
        raise ValueError(f"{len(failed)} of {total} file(s) could not be read: " + "; ".join(failed))
