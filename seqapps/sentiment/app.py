"""The sentiment app: train, evaluate, predict, export, bench."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from seqapps import config as config_lib
from seqapps.app import App, drop_previous_export, previous_export, progress_bar
from seqapps.data import same_spec
from seqapps.export.atomic import atomic_write_text
from seqapps.export.metadata import json_text
from seqapps.registry import register_app
from seqapps.sentiment.config import SentimentConfig, tiny

MAX_PREDICT_CHARS = 1_000_000  # a longer line is cut (and said) before it reaches the model
QUANT_NAMES = {
    "float32": "none (float32)",
    "gpu": "float16 weights, RNN unrolled (no WHILE; for GPU delegates)",
    "dynamic": "int8 weights, float activations (dynamic range)",
    "full": "full int8 (weights and activations, calibrated; RNN unrolled)",
}


def compiled_predict(model):
    """``model(ids)`` as a graph function (eager calls would run the recurrent loop step by step in Python)."""
    import tensorflow as tf

    return tf.function(lambda ids: model(ids, training=False), reduce_retracing=True)


def _weight_search(combine, ys, tie_break) -> dict:
    """Validation accuracy of ``combine(w)`` (class scores) for w = 0, 0.1, ..., 1, and the best w."""
    grid = [round(0.1 * i, 1) for i in range(11)]
    acc = {w: float((combine(w).argmax(-1) == ys).mean()) for w in grid}
    best = max(grid, key=lambda w: (acc[w], tie_break(w)))
    return {"validation_accuracy": {str(w): round(a, 5) for w, a in acc.items()}, "chosen": best}


# What `evaluate --set` may change: the data read and which of its rows are scored. The others are the model's.
EVALUATE_SETTINGS = (
    "data", "text_column", "label_column", "encoding", "on_bad_rows", "labels", "seed", "val_fraction",
    "test_fraction", "max_examples", "verbose",
)  # fmt: skip


def check(cfg, where: str = "train") -> None:
    """The settings that name a choice, checked before any data is read: a typo stopped the run only at the export,
    after the whole training (``int8_mode``), or trained the other choice without a word (``truncate: Head``)."""
    from seqapps.layers import CELLS
    from seqapps.sentiment.model import WIDE_KINDS, MaskedPooling

    for key, allowed in (
        ("truncate", ("head", "tail")),
        ("cell", tuple(CELLS)),
        ("pooling", MaskedPooling.MODES),
        ("wide", WIDE_KINDS),
        ("int8_mode", ("dynamic", "full")),
    ):
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"{key}={getattr(cfg, key)!r} must be one of {', '.join(allowed)}")
    if cfg.int8_mode == "full" and cfg.representative_examples < 1 and where == "train":  # export: its own check
        raise ValueError(
            "int8_mode=full calibrates model_int8.tflite on training texts: give representative_examples >= 1 "
            "(e.g. --set representative_examples=200), or int8_mode=dynamic"
        )


def _representative(ds, idx, cfg) -> list[str]:
    """The training texts that calibrate ``model_int8.tflite``: a seeded sample of the training split. Its
    first texts would be those of one class and a few films, as the readers sort them (IMDB: neg/ first)."""
    chosen = np.random.default_rng(cfg.seed).permutation(idx["train"])[: cfg.representative_examples]
    return [ds.texts[i] for i in chosen]


@register_app("sentiment")
class SentimentApp(App):
    config_class = SentimentConfig
    default_model_dir = Path("trained/sentiment")
    # the serving length (max_len, truncate: the SavedModel and TFLite files read that many tokens), the quantized
    # files and where the data is read
    export_settings = (
        "max_len", "truncate", "int8_mode", "tflite_eval_examples", "verbose", "data",
        "text_column", "label_column", "encoding", "on_bad_rows",
    )  # fmt: skip

    def tiny_config(self):
        return tiny()

    # ------------------------------------------------------------------ data
    def prepare(self, cfg):
        from seqapps.sentiment import data, text

        t0 = time.time()
        ds = data.load(cfg)
        for note in ds.notes:
            print(f"[sentiment] note: {note}")
        allowed = [x.strip() for x in cfg.labels.split(",") if x.strip()]
        labels = allowed or sorted(set(ds.labels))
        if len(labels) < 2:
            raise ValueError(f"{ds.spec}: found only the label(s) {labels}; a classifier needs at least 2")
        idx = data.split(ds, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        if not idx["train"] or not idx["val"]:
            raise ValueError(f"{ds.spec}: too few examples ({len(ds.texts)}) for a train/validation split")
        label_id = {lab: i for i, lab in enumerate(labels)}
        tokens = data.tokenize_all(ds.texts)
        vocab = text.build_vocabulary([tokens[i] for i in idx["train"]], cfg.vocab_size, cfg.min_count)
        seqs = data.encode(tokens, vocab, cfg.max_len, cfg.truncate)
        y = np.array([label_id[lab] for lab in ds.labels], np.int32)
        lengths = np.array([len(t) for t in tokens])
        counts = {lab: int((y[idx["train"]] == i).sum()) for lab, i in label_id.items()}
        info = {
            "spec": ds.spec,
            "examples": len(ds.texts),
            "skipped_rows": ds.skipped,
            "labels": labels,
            "train_examples": len(idx["train"]),
            "val_examples": len(idx["val"]),
            "test_examples": len(idx["test"]),
            "train_label_counts": counts,
            "vocab": len(vocab),
            "tokens_median": float(np.median(lengths)),
            "truncated_fraction": round(float((lengths > cfg.max_len).mean()), 4),
        }
        print(
            f"[sentiment] data {ds.spec}: {len(ds.texts)} texts -> train {len(idx['train'])} / val "
            f"{len(idx['val'])} / test {len(idx['test'])}; labels {counts}; vocab {len(vocab)}; median "
            f"{info['tokens_median']:.0f} tokens, {100 * info['truncated_fraction']:.1f}% truncated to "
            f"{cfg.max_len} ({cfg.truncate}); {time.time() - t0:.1f}s"
        )
        return ds, idx, labels, vocab, seqs, y, info

    # ------------------------------------------------------------------ train
    def train(self, cfg, out_dir, resume=False):
        previous = previous_export(out_dir)  # the files of the model out_dir holds, if any
        import keras

        from seqapps import training
        from seqapps.sentiment import data, metrics, text
        from seqapps.sentiment import model as model_lib

        out_dir = Path(out_dir)
        check(cfg)
        training.set_seed(cfg.seed)
        ds, idx, labels, vocab, seqs, y, info = self.prepare(cfg)
        training.set_precision(cfg)
        with training.strategy(cfg).scope():  # cfg.distribute: build and compile under the strategy
            model = model_lib.build_model(cfg, len(vocab), len(labels))
            residual = model_lib.residual_training_model(model)
            fit_model, outputs = (residual, 1) if residual is not None else model_lib.training_model(model)
            if outputs > 1:  # deep+wide ensemble: each member learns from its own loss, the mean is reported
                fit_model.compile(
                    optimizer=training.make_optimizer(cfg),
                    loss=["sparse_categorical_crossentropy"] * outputs,
                    loss_weights=[0.0] + [1.0] * (outputs - 1),
                    metrics=[["accuracy"]] + [[]] * (outputs - 1),
                )
            else:
                fit_model.compile(
                    optimizer=training.make_optimizer(cfg), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
                )
        nblr_info, offsets = None, {"train": None, "val": None}
        if residual is not None:  # nblr: fit the n-gram model, then train the recurrent member on its residual
            # the split's groups (IMDB: a block of 30 ids of one label; SST-2: a sentence and its phrases; else the
            # text) keep the out-of-fold folds apart
            groups = [(ds.groups[i] if ds.groups else ds.texts[i]) for i in idx["train"]]
            nblr_info, offsets = self._fit_nblr(model, cfg, seqs, y, idx, len(labels), groups)
        train_ds, val_ds = (
            data.make_dataset(
                [seqs[i] for i in idx[split]],
                y[idx[split]],
                cfg.batch_size,
                split == "train",
                cfg.seed,
                cfg.bucket_width,
                offsets=offsets[split],
            )
            for split in ("train", "val")
        )
        if outputs > 1:
            set_epoch = train_ds.set_epoch  # what a resumed training tells the batches (training.fit)
            train_ds, val_ds = (d.map(lambda x, t: (x, (t,) * outputs)) for d in (train_ds, val_ds))
            train_ds.set_epoch = set_epoch
        print(
            f"[sentiment] model: {model.count_params():,} parameters ({'Bi' if cfg.bidirectional else ''}"
            f"{cfg.cell.upper()} {cfg.units} x {cfg.layers}, {cfg.pooling} pooling, {len(labels)} classes)"
        )
        extra = [model_lib.BestMemberWeights(model)] if outputs > 1 else []
        # ensemble: each member keeps its own best epoch (BestMemberWeights); stop when the bag stops improving
        monitor = f"val_{model_lib.WIDE}_loss" if extra else "val_loss"
        history = training.fit(
            fit_model, train_ds, val_ds, cfg, out_dir / "run", resume=resume, monitor=monitor, callbacks=extra
        )
        model = training.in_float32(model, lambda: model_lib.build_model(cfg, len(vocab), len(labels)))
        weight_search = None
        if residual is not None and cfg.deep_weight < 0:  # the weight of the correction, on validation
            weight_search = self._choose_correction_weight(model, [seqs[i] for i in idx["val"]], y[idx["val"]], cfg)
        elif extra and cfg.deep_weight < 0:  # "auto": the weight with the best validation accuracy
            weight_search = self._choose_deep_weight(fit_model, val_ds)
        if weight_search is not None:
            cfg = dataclasses.replace(cfg, deep_weight=weight_search["chosen"])
            model.get_layer("probabilities").weight = cfg.deep_weight
            print(f"[sentiment] ensemble weight of the recurrent member, chosen on validation: {cfg.deep_weight}")

        out_dir.mkdir(parents=True, exist_ok=True)
        drop_previous_export(out_dir, previous)  # the old model's files go before the new model's arrive
        (out_dir / "assets").mkdir(exist_ok=True)
        model.save(out_dir / "model.keras")
        config_lib.save(cfg, out_dir / "config.yaml")
        text.write_lines(out_dir / "assets" / "vocab.txt", vocab)
        text.write_lines(out_dir / "assets" / "labels.txt", labels)  # tokenizer.json: export writes it from cfg

        predict_fn = compiled_predict(model)

        def keras_report(split):
            if not idx[split]:
                return None
            xs = [seqs[i] for i in idx[split]]
            ev = data.make_dataset(xs, y[idx[split]], 128, False, cfg.seed, cfg.bucket_width)
            probs, ys = [], []
            for xb, yb in ev:
                probs.append(predict_fn(xb).numpy())
                ys.append(yb.numpy())
            return metrics.report(np.concatenate(ys), np.concatenate(probs).argmax(-1), labels)

        val_rep, test_rep = keras_report("val"), keras_report("test")
        print(f"[sentiment] validation: accuracy {val_rep['accuracy']:.4f}, macro F1 {val_rep['macro_f1']:.4f}")
        if test_rep:
            print(f"[sentiment] test split (held out):\n{metrics.format_report(test_rep)}")
        held = idx["test"] or idx["val"]
        heldout = {
            "split": "test" if idx["test"] else "val",
            "texts": [ds.texts[i] for i in held],
            "labels": [ds.labels[i] for i in held],
        }
        atomic_write_text(out_dir / "run" / "heldout.json", json.dumps(heldout, ensure_ascii=False))
        atomic_write_text(
            out_dir / "run" / "representative.json", json.dumps(_representative(ds, idx, cfg), ensure_ascii=False)
        )
        train_info = {
            "data": info,
            "epochs_run": len(history.history.get("loss", [])),
            "train_seconds": round(history.train_seconds, 1),
            "history": {k: [round(float(x), 5) for x in v] for k, v in history.history.items()},
            "member_best_epochs": extra[0].best_epochs if extra else None,
            "nblr": nblr_info,
            "deep_weight_search": weight_search,
            "validation": val_rep,
            "test": test_rep,
        }
        (out_dir / "run" / "train_info.json").write_text(json_text(train_info, indent=2))
        training.clear_backup(out_dir / "run")
        self.export_trained(out_dir, previous, model=model, cfg=cfg)
        keras.backend.clear_session()
        return {"validation": val_rep, "test": test_rep, "train_seconds": train_info["train_seconds"]}

    @staticmethod
    def _fit_nblr(model, cfg, seqs, y, idx, num_classes, groups=None) -> tuple[dict, dict]:
        """Fits the n-gram model of an nblr model (closed form, before the recurrent member trains).

        Returns (info, base logits per split): out-of-fold logits for the training split (5 folds, each
        training row's group in one fold), the fitted model's logits for validation."""
        from seqapps.sentiment import model as model_lib
        from seqapps.sentiment import nblr

        layer = model.get_layer(model_lib.NBLR)

        def features(split):
            return nblr.features([seqs[i] for i in idx[split]], layer.vocab_size, cfg.ngram_buckets, cfg.ngram_order)

        t0 = time.time()
        x = {"train": features("train")}
        table, bias, info = nblr.fit_features(x["train"], y[idx["train"]], num_classes, cfg.nb_c)
        info["fit_seconds"] = round(time.time() - t0, 1)
        x["val"] = features("val")
        layer.set_weights([table, bias])
        offsets = {
            "train": nblr.out_of_fold_logits(
                x["train"], y[idx["train"]], num_classes, cfg.nb_c, seed=cfg.seed, groups=groups
            ),
            "val": nblr.logits(x["val"], table, bias),
        }
        acc = {k: float((offsets[k].argmax(1) == y[idx[k]]).mean()) for k in offsets}
        info.update({"out_of_fold_train_accuracy": round(acc["train"], 5), "validation_accuracy": round(acc["val"], 5)})
        print(
            f"[sentiment] nblr: 1-{cfg.ngram_order}-grams, {info['mean_ngrams_per_example']} per example, "
            f"{info['active_rows']:,} of {info['features']:,} rows used; validation accuracy {acc['val']:.4f}, "
            f"out-of-fold training accuracy {acc['train']:.4f}"
        )
        return info, offsets

    @staticmethod
    def _choose_correction_weight(model, val_seqs, val_y, cfg) -> dict:
        """Validation accuracy of ``softmax(ngram + w * correction)`` for w = 0, 0.1, ..., 1; the best w."""
        import keras
        import tensorflow as tf

        from seqapps.sentiment import data
        from seqapps.sentiment import model as model_lib

        parts = keras.Model(model.input, [model.get_layer(n).output for n in (model_lib.NBLR, model_lib.DEEP_LOGITS)])
        run = tf.function(lambda x: parts(x, training=False), reduce_retracing=True)
        base, corr, ys = [], [], []
        for xb, yb in data.make_dataset(val_seqs, val_y, 128, False, cfg.seed, cfg.bucket_width):
            b, c = run(xb)
            base.append(b.numpy())
            corr.append(c.numpy())
            ys.append(yb.numpy())
        base, corr, ys = np.concatenate(base), np.concatenate(corr), np.concatenate(ys)
        return _weight_search(lambda w: base + w * corr, ys, tie_break=lambda w: w)  # ties: the larger correction

    @staticmethod
    def _choose_deep_weight(fit_model, val_ds) -> dict:
        """Validation accuracy of ``w * deep + (1 - w) * wide`` for w = 0, 0.1, ..., 1; the best w."""
        import tensorflow as tf

        members = tf.function(lambda x: fit_model(x, training=False)[1:], reduce_retracing=True)
        deep, wide, ys = [], [], []
        for xb, yb in val_ds:
            d, w = members(xb)
            deep.append(d.numpy())
            wide.append(w.numpy())
            ys.append(np.asarray(yb[0] if isinstance(yb, tuple) else yb))
        deep, wide, ys = np.concatenate(deep), np.concatenate(wide), np.concatenate(ys)
        # ties: the more balanced mix
        return _weight_search(lambda w: w * deep + (1 - w) * wide, ys, tie_break=lambda w: -abs(w - 0.5))

    @staticmethod
    def tokenizer_spec(cfg) -> dict:
        return {
            "max_len": cfg.max_len,
            "truncate": cfg.truncate,
            "pad_id": 0,
            "unk_id": 1,
            "implementation": "seqapps.sentiment.tokenizer (pure Python) == seqapps.sentiment.text (TF ops)",
            "steps": [
                "decode UTF-8, invalid bytes -> U+FFFD",
                "<br />, <br>, <br/> (any case) -> space",
                "whitespace, control, format, private-use characters and U+FFFD -> space",
                "lower-case",
                "remove apostrophes ' \u2018 \u2019 \u02bc `",
                "every character that is not a letter, digit or combining mark is a token of its own",
                "split on spaces",
                "ids = line numbers in vocab.txt (0 padding, 1 [UNK])",
                f"keep the {'first' if cfg.truncate == 'head' else 'last'} max_len tokens, pad with 0",
            ],
        }

    # ------------------------------------------------------------------ export
    def _module(self, model, cfg, vocab, labels):
        from seqapps.sentiment.serving import SentimentModule

        return SentimentModule(model, vocab, labels, cfg.max_len, cfg.truncate)

    def export(self, model_dir, out_dir=None, model=None, cfg=None):
        import shutil

        import tensorflow as tf

        from seqapps.export import gpu, metadata, saved_model, tflite
        from seqapps.export.atomic import atomic_write_bytes
        from seqapps.sentiment import data, text
        from seqapps.sentiment.serving import tflite_blob
        from seqapps.sentiment.tflite_runtime import TFLiteClassifier
        from seqapps.sentiment.tokenizer import Tokenizer, read_lines

        model_dir = Path(model_dir)
        out_dir = Path(out_dir or model_dir)
        if model is None:
            saved_model.require_trained(model_dir, "make train-sentiment")
        cfg = cfg or config_lib.read(SentimentConfig, model_dir / "config.yaml")
        check(cfg, "export")  # before anything is written
        from seqapps.sentiment import model as model_lib  # (registers MaskedPooling etc. for load_model)

        vocab = text.read_vocab(model_dir / "assets" / "vocab.txt")
        labels = read_lines(model_dir / "assets" / "labels.txt")
        model = model or saved_model.load_keras_model(
            model_dir, lambda: model_lib.build_model(cfg, len(vocab), len(labels)), "make train-sentiment"
        )
        run = model_dir / "run"
        if (run / "heldout.json").is_file():
            heldout = json.loads((run / "heldout.json").read_text(encoding="utf-8"))
            rep_texts = json.loads((run / "representative.json").read_text(encoding="utf-8"))
        else:  # re-create the split of the training data
            ds = data.load(cfg)
            idx = data.split(ds, cfg.val_fraction, cfg.test_fraction, cfg.seed)
            held = idx["test"] or idx["val"]
            heldout = {
                "split": "test" if idx["test"] else "val",
                "texts": [ds.texts[i] for i in held],
                "labels": [ds.labels[i] for i in held],
            }
            rep_texts = _representative(ds, idx, cfg)
        if cfg.int8_mode == "full" and not rep_texts:  # before anything is written
            raise ValueError(
                "int8_mode=full calibrates model_int8.tflite on training texts, and this model was trained to keep "
                "none (representative_examples: 0): export with --set int8_mode=dynamic, or retrain with "
                "representative_examples >= 1"
            )
        train_info = metadata.training_info(model_dir)  # kept when a shipped folder is exported again
        if out_dir.resolve() != model_dir.resolve():
            shutil.copytree(model_dir / "assets", out_dir / "assets", dirs_exist_ok=True)
        # the config and tokenizer this export was made with (--set max_len=... changes both), which evaluate and
        # the device runtime read from the folder
        config_lib.save(cfg, out_dir / "config.yaml")
        atomic_write_text(out_dir / "assets" / "tokenizer.json", json.dumps(self.tokenizer_spec(cfg), indent=2) + "\n")

        n_eval = cfg.tflite_eval_examples or len(heldout["texts"])
        rng = np.random.default_rng(cfg.seed)
        pick = sorted(rng.permutation(len(heldout["texts"]))[:n_eval].tolist())
        texts = [heldout["texts"][i] for i in pick]
        label_id = {lab: i for i, lab in enumerate(labels)}
        y = np.array([label_id.get(heldout["labels"][i], -1) for i in pick])

        # --- SavedModel, checked against the Keras model on the held-out texts
        module = self._module(model, cfg, vocab, labels)
        sm_path = saved_model.write(module, out_dir, module.signatures(), version=1)
        tok = Tokenizer(vocab, cfg.max_len, cfg.truncate)
        encoded = [tok.encode(t) for t in texts]
        ids = np.array([e[0] for e in encoded], np.int32)
        predict_fn = compiled_predict(model)
        keras_probs = np.concatenate([predict_fn(ids[i : i + 64]).numpy() for i in range(0, len(ids), 64)])
        # what the SavedModel answers: uniform probabilities for a text without tokens ("<br />", a zero-width space)
        served = np.where(np.array([e[1] == 0 for e in encoded])[:, None], 1.0 / len(labels), keras_probs)
        loaded = tf.saved_model.load(str(sm_path))
        sm_probs = np.concatenate(
            [
                loaded.signatures["serving_default"](text=tf.constant(texts[i : i + 64]))["probabilities"].numpy()
                for i in range(0, len(texts), 64)
            ]
        )
        sm_ids = np.concatenate(
            [
                loaded.signatures["classify_details"](text=tf.constant(texts[i : i + 64]))["token_ids"].numpy()
                for i in range(0, len(texts), 64)
            ]
        )
        keras_acc = float((keras_probs.argmax(-1) == y).mean())
        report = {
            "heldout_split": heldout["split"],
            "examples": len(texts),
            "keras_accuracy": keras_acc,
            "saved_model": {
                "max_abs_diff_vs_keras": float(np.abs(sm_probs - served).max()),
                "accuracy": float((sm_probs.argmax(-1) == y).mean()),
                "python_tokenizer_ids_identical": f"{int((sm_ids == ids).all(1).sum())}/{len(ids)}",
            },
        }
        iso = saved_model.run_isolated(sm_path.resolve(), {"text": texts[:4] + ["", "\u00e9t\u00e9 \U0001f600"]})
        report["saved_model"]["isolated_max_abs_diff"] = float(np.abs(iso["probabilities"][:4] - sm_probs[:4]).max())
        print(
            f"[sentiment] SavedModel -> {sm_path.relative_to(out_dir)}: max |diff| vs Keras {report['saved_model']['max_abs_diff_vs_keras']:.2e} "
            f"on {len(texts)} held-out texts; tokenizer ids identical {report['saved_model']['python_tokenizer_ids_identical']}"
        )
        metadata.check_parity("the SavedModel", report["saved_model"]["max_abs_diff_vs_keras"])

        # --- TFLite float32, dynamic-range, full int8 (int8_mode: full) and GPU, checked against Keras on the same texts
        rep_ids = [np.array([tok.encode(t)[0]], np.int32) for t in rep_texts]
        files = {}
        variants = ("float32", "dynamic", "full", "gpu") if cfg.int8_mode == "full" else ("float32", "dynamic", "gpu")
        tflite.remove_other_variants(out_dir, [{"full": "int8"}.get(v, v) for v in variants])
        for variant in variants:
            blob = tflite_blob(model, cfg, len(vocab), len(labels), variant, rep_ids)
            key = {"full": "int8"}.get(variant, variant)
            path = out_dir / tflite.FILE_NAMES[key]
            atomic_write_bytes(path, blob)
            files[key] = path.name
            clf = TFLiteClassifier(out_dir, path.name)
            t0 = time.time()
            probs = np.stack([clf._run(token_ids=ids[i : i + 1])["probabilities"][0] for i in range(len(ids))])
            ms = 1000 * (time.time() - t0) / len(ids)
            acc = float((probs.argmax(-1) == y).mean())
            ops = sorted(tflite.op_names(blob))
            report[key] = {
                "file": path.name,
                "quantization": QUANT_NAMES[variant],
                "bytes": path.stat().st_size,
                "ops": ops,
                "accuracy": acc,
                "accuracy_change_vs_keras_points": round(100 * (acc - keras_acc), 2),
                "max_abs_diff_vs_keras": float(np.abs(probs - keras_probs).max()),
                "same_label_as_keras": f"{int((probs.argmax(-1) == keras_probs.argmax(-1)).sum())}/{len(ids)}",
                "ms_per_text_1_thread": round(ms, 2),
            }
            print(
                f"[sentiment] TFLite {key} ({QUANT_NAMES[variant]}): {path.name} {path.stat().st_size / 1e6:.2f} MB, "
                f"accuracy {acc:.4f} (Keras {keras_acc:.4f}), max |diff| {report[key]['max_abs_diff_vs_keras']:.2e}, "
                f"{ms:.1f} ms/text"
            )
            if any("Flex" in op for op in ops):
                raise tflite.ExportError(f"{variant}: not builtin-only: {ops}")
            if variant == "float32":
                metadata.check_parity(path.name, report[key]["max_abs_diff_vs_keras"])
        metadata.write(
            out_dir / "metadata.json",
            app="sentiment",
            config=cfg,
            data_spec=cfg.data,
            labels=labels,
            training=train_info,
            parity=report,
            tokenizer=self.tokenizer_spec(cfg),
            saved_model={
                "path": str(sm_path.relative_to(out_dir)),
                "signatures": {
                    "serving_default": "text (string [None]) -> probabilities (float32 [None, "
                    f"{len(labels)}]), label (string [None])",
                    "classify_details": "text -> probabilities, label, token_ids (int32 [None, "
                    f"{cfg.max_len}]), num_tokens, truncated, empty",
                },
            },
            tflite={
                "signature": f"classify: token_ids (int32 [1, {cfg.max_len}]) -> probabilities (float32 [1, "
                f"{len(labels)}])",
                "files": files,
            },
            gpu_compatibility=gpu.summarize(out_dir),
            files=metadata.file_sizes(out_dir),
        )
        return sm_path

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, model_dir, data=None, **options):
        import tensorflow as tf

        from seqapps.export import saved_model
        from seqapps.sentiment import data as data_lib
        from seqapps.sentiment import metrics
        from seqapps.sentiment.tokenizer import read_lines

        model_dir = Path(model_dir)
        if not (model_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{model_dir}: no trained model (config.yaml missing); train or pass --model")
        split_opt = options.pop("split", "auto")
        label_map = options.pop("label_map", "")
        trained = config_lib.read(SentimentConfig, model_dir / "config.yaml")
        trained_spec = trained.data
        cfg = config_lib.override(dataclasses.replace(trained, max_examples=0), options, "evaluate --set")
        # the SavedModel reads max_len tokens from the end it was exported with, whatever is set
        takes = (
            f"evaluate takes {', '.join(EVALUATE_SETTINGS)}, split and label_map (to score another length, export "
            "a copy with --set max_len=N and evaluate that)"
        )
        config_lib.refuse_fixed(trained, cfg, EVALUATE_SETTINGS, "evaluate --set", takes, model="exported")
        if data:
            cfg = config_lib.apply(cfg, {"data": data}, "--data")
        if "labels" not in options and not same_spec(cfg.data, trained_spec):
            cfg = dataclasses.replace(cfg, labels="")  # other data: all its labels (the training data: as trained)
        config_lib.check_split_kept(
            trained, cfg, same_spec(cfg.data, trained_spec), ("seed", "val_fraction", "test_fraction")
        )
        labels = read_lines(model_dir / "assets" / "labels.txt")
        ds = data_lib.load(cfg)
        for note in ds.notes:
            print(f"[sentiment] note: {note}")
        idx = data_lib.split(ds, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        has_official = ds.split is not None and "test" in ds.split
        if split_opt == "auto":
            split_opt = "test" if (has_official or same_spec(cfg.data, trained_spec)) else "all"
        if split_opt == "all":
            rows = list(range(len(ds.texts)))
        elif split_opt in idx:
            rows = idx[split_opt]
        else:
            raise ValueError(f"split must be auto, all, train, val or test, got {split_opt!r}")
        if not rows:
            raise ValueError(f"{ds.spec}: the {split_opt} split is empty; pass --set split=all")
        mapping = self._label_mapping(sorted(set(ds.labels[i] for i in rows)), labels, label_map)
        served = tf.saved_model.load(str(saved_model.latest(model_dir)))
        fn = served.signatures["classify_details"]
        texts = [ds.texts[i] for i in rows]
        y = np.array([labels.index(mapping[ds.labels[i]]) for i in rows])
        preds, truncated, empty = [], 0, 0
        bar = progress_bar(len(texts), "text", f"classifying {len(texts)} texts:")
        t0 = time.time()
        for i in range(0, len(texts), 128):
            out = fn(text=tf.constant(texts[i : i + 128]))
            preds.append(np.where(out["empty"].numpy(), -1, out["probabilities"].numpy().argmax(-1)))  # -1: none
            truncated += int(out["truncated"].numpy().sum())
            empty += int(out["empty"].numpy().sum())
            if bar is not None:
                bar.update(min(i + 128, len(texts)))
        elapsed = time.time() - t0
        rep = metrics.report(y, np.concatenate(preds), labels)
        rep.update(
            {
                "data": ds.spec,
                "split": split_opt,
                "truncated_texts": truncated,
                "empty_texts": empty,
                "texts_per_s": round(len(texts) / elapsed, 1),
            }
        )
        print(f"[sentiment] {ds.spec} ({split_opt} split), model {model_dir}")
        print(metrics.format_report(rep))
        if truncated:
            print(f"{truncated} texts truncated to {cfg.max_len} tokens")
        return rep

    @staticmethod
    def _label_mapping(data_labels, model_labels, label_map: str) -> dict:
        from seqapps.sentiment.data import CANONICAL

        mapping = {}
        for item in filter(None, (x.strip() for x in str(label_map).split(","))):
            if ":" not in item:
                raise ValueError(
                    f"label_map: expected data_label:model_label pairs, e.g. 0:negative,1:positive; got {item!r}"
                )
            k, v = item.split(":", 1)
            mapping[k.strip()] = v.strip()
        # 0 and 1 stand for negative and positive only where they are the data's only numbers: in ratings of
        # 1 to 5 stars, 1 is the worst
        numbers = {lab for lab in data_labels if lab.strip().lstrip("+-").isdigit()}
        binary = numbers <= {"0", "1"}
        out, unknown = {}, []
        for lab in data_labels:
            target = mapping.get(lab, lab)
            if target not in model_labels and (binary or target not in numbers):
                target = CANONICAL.get(target.lower(), target)
            if target not in model_labels:
                unknown.append(lab)
            out[lab] = target
        if unknown:
            why = (
                ""
                if binary
                else f" (numbers are read as negative/positive only where they are 0 and 1; here {sorted(numbers)})"
            )
            raise ValueError(
                f"data labels {unknown} are not labels of the model {model_labels}{why}; map them with "
                f"--set label_map=DATA:MODEL,... or drop them (--set labels=... --set on_bad_rows=skip)"
            )
        return out

    # ------------------------------------------------------------------ predict
    def add_predict_arguments(self, parser):
        parser.add_argument("texts", nargs="*", help="texts to classify")
        parser.add_argument(
            "--file",
            type=Path,
            help="a text file, one text per line (UTF-8; invalid bytes replaced); - reads standard input",
        )
        parser.add_argument("--all", action="store_true", help="print the probability of every label")

    def predict(self, model_dir, args):
        import tensorflow as tf

        from seqapps.data import argument_text
        from seqapps.export import metadata, saved_model

        texts = [argument_text(t) for t in args.texts]
        if args.file:
            from seqapps.data import input_name, invalid_utf8_lines, read_input_file, text_lines

            raw = read_input_file(args.file, "review")
            lines = text_lines(raw.decode("utf-8-sig", errors="replace"))  # a BOM is not part of the first text
            bad = invalid_utf8_lines(raw)
            if bad > 0:
                print(
                    f"note: {input_name(args.file)}: {bad} line(s) are not valid UTF-8; invalid bytes replaced by U+FFFD",
                    file=sys.stderr,
                )
            texts += lines
        if not texts:
            raise ValueError("nothing to classify: give texts or --file FILE (one text per line)")
        path = saved_model.latest(model_dir)  # no SavedModel: that error first
        spec = metadata.read(Path(model_dir) / "assets" / "tokenizer.json")
        max_len, head = spec["max_len"], spec["truncate"] == "head"
        kept = "first" if head else "last"  # the end the model reads (truncate: head or tail)
        for i, t in enumerate(texts):
            if len(t) > MAX_PREDICT_CHARS:
                print(
                    f"note: text {i + 1} has {len(t):,} characters; only its {kept} {MAX_PREDICT_CHARS:,} are read "
                    f"(the model keeps the {kept} {max_len} tokens)",
                    file=sys.stderr,
                )
                texts[i] = t[:MAX_PREDICT_CHARS] if head else t[-MAX_PREDICT_CHARS:]
        served = tf.saved_model.load(str(path))
        from seqapps.sentiment.tokenizer import read_lines

        labels = read_lines(Path(model_dir) / "assets" / "labels.txt")
        fn = served.signatures["classify_details"]
        for i in range(0, len(texts), 64):
            out = fn(text=tf.constant(texts[i : i + 64]))
            for j, t in enumerate(texts[i : i + 64]):
                probs = out["probabilities"][j].numpy()
                short = t.replace("\t", " ")[:70] + ("..." if len(t) > 70 else "")
                if bool(out["empty"][j]):
                    print(f"(empty)\t-\t{short}")
                    print(f"note: text {i + j + 1} is empty or has no words; no prediction", file=sys.stderr)
                    continue
                if bool(out["truncated"][j]):
                    print(
                        f"note: text {i + j + 1} has {int(out['num_tokens'][j]):,} tokens; the model read "
                        f"the {kept} {max_len} of them (truncated)",
                        file=sys.stderr,
                    )
                label = out["label"][j].numpy().decode("utf-8")
                extra = ("\t" + " ".join(f"{lab}={p:.3f}" for lab, p in zip(labels, probs))) if args.all else ""
                print(f"{label}\t{probs.max():.3f}\t{short}{extra}")

    # ------------------------------------------------------------------ bench
    def bench(
        self, model_dir=None, quick: bool = False, steps: int | None = None, batch_size: int = 64, length: int = 256
    ) -> list[dict]:
        """Training samples/s of the sentiment model with seqapps.layers cells vs keras.layers built-ins,
        side by side in one process (same shapes, same random batches, alternating to share the machine's noise).
        Neither is XLA-compiled: Keras's "auto" would compile ours but not its own on a GPU (its cuDNN layers
        do not support XLA), and training runs without XLA too."""
        if steps is None:
            steps = 3 if quick else 15
        import keras

        from seqapps.bench import interleaved_times, medians, ratio_range
        from seqapps.sentiment import model as model_lib

        cfg = SentimentConfig()
        if model_dir is not None and (Path(model_dir) / "config.yaml").is_file():
            cfg = config_lib.read(SentimentConfig, Path(model_dir) / "config.yaml")
        rng = np.random.default_rng(0)
        x = rng.integers(1, cfg.vocab_size, (batch_size, length)).astype("int32")
        x[: batch_size // 2, length // 2 :] = 0  # half the batch padded: the mask path is exercised
        y = rng.integers(0, 2, batch_size).astype("int32")
        models = {}
        for impl in ("seqapps", "keras"):
            keras.utils.set_random_seed(0)
            m = model_lib.build_model(cfg, cfg.vocab_size, 2, impl=impl)
            m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", jit_compile=False)
            m.train_on_batch(x, y)  # trace + warm up
            models[impl] = m
        times = interleaved_times({impl: (lambda m=m: m.train_on_batch(x, y)) for impl, m in models.items()}, steps, 1)
        sps = {k: batch_size / v for k, v in medians(times).items()}
        name = (
            f"sentiment train {'Bi' if cfg.bidirectional else ''}{cfg.cell.upper()}{cfg.units}x{cfg.layers} "
            f"B={batch_size} T={length}: seqapps.layers vs keras.layers"
        )
        keras.backend.clear_session()
        return [
            {
                "benchmark": name,
                "value": round(sps["seqapps"], 1),
                "unit": "samples/s",
                "baseline": round(sps["keras"], 1),
                "ratio": round(sps["seqapps"] / sps["keras"], 3),
                "range": ratio_range(times, "seqapps", "keras", speed=True),
            }
        ]
