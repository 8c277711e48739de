"""The translation app: train, evaluate, predict, export."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

from seqapps import config as config_lib
from seqapps.app import App, drop_previous_export, previous_export
from seqapps.data import same_spec, spread
from seqapps.export.metadata import json_text
from seqapps.registry import register_app
from seqapps.translate.config import TranslateConfig, tiny

SAMPLES = [
    "¿Dónde está la estación?",
    "Tengo hambre.",
    "Ella no come las manzanas rojas.",
    "¿Compraste el coche nuevo?",
    "Los gatos negros son pequeños.",
]


# settings that change what the exported model outputs: an evaluation measured with others no longer holds
DECODING_KEYS = ("beam_width", "length_penalty", "max_src_len", "max_tgt_len")
# What `evaluate --set` may change: which test pairs are read and how many are scored. The others (the direction,
# the network, its vocabularies) are the trained model's; scored with another direction, its "test split" is also
# another set of pairs. The decoding keys have their own message.
EVALUATE_SETTINGS = (
    "eval_examples", "data", "val_fraction", "test_fraction", "on_bad_lines", "embedded_pairs", "max_examples",
    "verbose", "split",
)  # fmt: skip
# The rules that turn output tokens into text (`text.detokenize`): a figure measured with other rules is not kept.
# 3: re-casing table (assets/truecase.tsv), a capital for every sentence, quotes, hyphens, numbers and a.m. joined.
DETOKENIZER = 3


def detokenizer_id(truecase: dict) -> str:
    """`DETOKENIZER` and a digest of the re-casing table, recorded with every BLEU figure: a figure measured with
    other rules or another table is not kept (``metadata.json`` → ``detokenizer``)."""
    import hashlib

    table = "".join(f"{k}\t{v}\n" for k, v in truecase.items()).encode("utf-8")
    return f"{DETOKENIZER}/{hashlib.sha256(table).hexdigest()[:12]}"


@register_app("translate")
class TranslateApp(App):
    config_class = TranslateConfig
    default_model_dir = Path("trained/translate")
    export_settings = (
        *DECODING_KEYS, "tflite_eval_examples", "int8_calibration_sentences", "verbose", "data", "on_bad_lines",
    )  # fmt: skip

    def tiny_config(self):
        return tiny()

    # ------------------------------------------------------------------ data
    def prepare(self, cfg):
        from seqapps.translate import data, text

        t0 = time.time()
        corp = data.load_corpus(cfg)
        splits = data.split_pairs(corp.pairs, cfg.val_fraction, cfg.test_fraction)
        train_src = data.tokenize_all([s for s, _ in splits["train"]])
        train_tgt = data.tokenize_all([t for _, t in splits["train"]])
        src_vocab = text.build_vocabulary(train_src, cfg.src_vocab_size)
        tgt_vocab = text.build_vocabulary(train_tgt, cfg.tgt_vocab_size)

        def encoded(pairs, src_tok=None, tgt_tok=None):
            src_tok = src_tok or data.tokenize_all([s for s, _ in pairs])
            tgt_tok = tgt_tok or data.tokenize_all([t for _, t in pairs])
            keep = [
                i
                for i, (s, t) in enumerate(zip(src_tok, tgt_tok))
                if 0 < len(s) <= cfg.max_src_len and 0 < len(t) <= cfg.max_tgt_len
            ]
            src = data.encode([src_tok[i] for i in keep], src_vocab)
            tgt = data.encode([tgt_tok[i] for i in keep], tgt_vocab, add_start_end=True)
            return src, tgt, len(pairs) - len(keep)

        tr_src, tr_tgt, tr_drop = encoded(splits["train"], train_src, train_tgt)
        va_src, va_tgt, va_drop = encoded(splits["val"])
        for name, kept, dropped in (("training", tr_src, tr_drop), ("validation", va_src, va_drop)):
            if not len(kept):
                raise ValueError(
                    f"{corp.spec}: none of the {dropped} {name} pairs fits max_src_len={cfg.max_src_len} and "
                    f"max_tgt_len={cfg.max_tgt_len} tokens (or each has an empty side): raise them (e.g. --set "
                    f"max_src_len={TranslateConfig.max_src_len} --set max_tgt_len={TranslateConfig.max_tgt_len})"
                )
        info = {
            "spec": corp.spec,
            "pairs": len(corp.pairs),
            "skipped_lines": corp.skipped_lines,
            "train_pairs": len(splits["train"]),
            "val_pairs": len(splits["val"]),
            "test_pairs": len(splits["test"]),
            "train_pairs_dropped_too_long": tr_drop,
            "src_vocab": len(src_vocab),
            "tgt_vocab": len(tgt_vocab),
        }
        print(
            f"[translate] data {corp.spec}: {len(corp.pairs)} pairs -> train {len(splits['train'])} / "
            f"val {len(splits['val'])} / test {len(splits['test'])} (grouped by source sentence); "
            f"vocab {len(src_vocab)}/{len(tgt_vocab)}; {time.time() - t0:.1f}s"
            + (f"; skipped {corp.skipped_lines} malformed lines" if corp.skipped_lines else "")
        )
        train_ds = data.make_dataset(tr_src, tr_tgt, cfg.batch_size, shuffle=True, seed=cfg.seed)
        val_ds = data.make_dataset(va_src, va_tgt, cfg.batch_size, shuffle=False, seed=cfg.seed)
        return splits, src_vocab, tgt_vocab, train_ds, val_ds, info

    # ------------------------------------------------------------------ train
    def train(self, cfg, out_dir, resume=False):
        previous = previous_export(out_dir)  # the files of the model out_dir holds, if any
        import keras

        from seqapps import training
        from seqapps.translate import model as model_lib
        from seqapps.translate import text

        out_dir = Path(out_dir)
        training.set_seed(cfg.seed)
        splits, src_vocab, tgt_vocab, train_ds, val_ds, info = self.prepare(cfg)
        training.set_precision(cfg)
        with training.strategy(cfg).scope():
            model = model_lib.build_model(cfg, len(src_vocab), len(tgt_vocab))
            model.compile(
                optimizer=training.make_optimizer(cfg), loss=model_lib.masked_loss, metrics=[model_lib.masked_accuracy]
            )
        print(
            f"[translate] model: {model.count_params():,} parameters (GRU units {cfg.units}, {cfg.attention} attention)"
        )
        history = training.fit(model, train_ds, val_ds, cfg, out_dir / "run", resume=resume)
        model = training.in_float32(model, lambda: model_lib.build_model(cfg, len(src_vocab), len(tgt_vocab)))

        out_dir.mkdir(parents=True, exist_ok=True)
        drop_previous_export(out_dir, previous)  # the old model's files go before the new model's arrive
        (out_dir / "assets").mkdir(exist_ok=True)
        model.save(out_dir / "model.keras")
        config_lib.save(cfg, out_dir / "config.yaml")
        text.write_vocab(out_dir / "assets" / "src_vocab.txt", src_vocab)
        text.write_vocab(out_dir / "assets" / "tgt_vocab.txt", tgt_vocab)
        truecase = text.build_truecase([t for _, t in splits["train"]], tgt_vocab)
        text.write_truecase(out_dir / "assets" / "truecase.tsv", truecase)
        test = spread(splits["test"], cfg.eval_examples)  # over the whole split: Tatoeba's is sorted by length
        (out_dir / "run" / "test_pairs.json").write_text(json.dumps(test, ensure_ascii=False))
        scores = self._score(self._module(model, cfg, src_vocab, tgt_vocab, truecase), test, cfg)
        scores["detokenizer"] = detokenizer_id(truecase)
        train_info = {
            "data": info,
            "epochs_run": len(history.history.get("loss", [])),
            "train_seconds": round(history.train_seconds, 1),
            "final": {k: float(v[-1]) for k, v in history.history.items()},
            "test": scores,
        }
        (out_dir / "run" / "train_info.json").write_text(json_text(train_info, indent=2))
        training.clear_backup(out_dir / "run")
        self.export_trained(
            out_dir, previous, model=model, cfg=cfg, test_pairs=test, train_info=train_info, train_pairs=splits["train"]
        )
        keras.backend.clear_session()
        return scores

    # ------------------------------------------------------------------ helpers
    def _module(self, model, cfg, src_vocab, tgt_vocab, truecase=None):
        from seqapps.translate.serving import TranslateModule

        return TranslateModule(
            model, src_vocab, tgt_vocab, cfg.max_src_len, cfg.max_tgt_len, cfg.beam_width, cfg.length_penalty, truecase
        )

    @staticmethod
    def _truecase(model_dir, tgt_vocab, train_pairs) -> dict:
        """The re-casing table of ``model_dir`` (``assets/truecase.tsv``). A model trained before the table existed
        gets one built from its training split (``train_pairs()``), when the training data can be read; else
        none, with a note."""
        from seqapps.translate import text

        path = Path(model_dir) / "assets" / "truecase.tsv"
        if path.is_file():
            return text.read_truecase(path)  # a damaged file: an error that says to delete it
        try:
            train_pairs = train_pairs()
        except (OSError, ValueError) as exc:
            print(
                f"[translate] note: no assets/truecase.tsv and the training data cannot be read ({exc}); the "
                "export's output stays lower-case but for the first letter of each sentence and 'I'",
                file=sys.stderr,
            )
            return {}
        table = text.build_truecase([t for _, t in train_pairs], tgt_vocab)
        print(f"[translate] re-casing table built from {len(train_pairs)} training pairs: {len(table)} tokens")
        return table

    @staticmethod
    def translate_batch(fn, sentences, batch_size=64, key="translation", title=None):
        """``fn`` over ``sentences`` in batches; with a ``title``, a progress bar at a terminal."""
        import tensorflow as tf

        from seqapps.app import progress_bar

        bar = progress_bar(len(sentences), "sentence", title) if title else None
        out = []
        for i in range(0, len(sentences), batch_size):
            res = fn(tf.constant(sentences[i : i + batch_size]))
            out.extend(x.decode("utf-8") for x in res[key].numpy())
            if bar is not None:
                bar.update(len(out))
        return out

    def _score(self, module, pairs, cfg, samples=5):
        import sacrebleu

        sources = [s for s, _ in pairs]
        refs = [t for _, t in pairs]
        self.translate_batch(module.translate, sources[:1])  # not timed: the first call traces the graph
        t0 = time.time()
        beam = self.translate_batch(module.translate, sources)
        beam_s = time.time() - t0
        greedy = self.translate_batch(module.translate_details, sources)
        result = {
            "examples": len(pairs),
            "beam_width": cfg.beam_width,
            "bleu_beam": round(sacrebleu.corpus_bleu(beam, [refs]).score, 2),
            "bleu_beam_lowercase": round(sacrebleu.corpus_bleu(beam, [refs], lowercase=True).score, 2),
            "chrf_beam": round(sacrebleu.corpus_chrf(beam, [refs]).score, 2),
            "bleu_greedy": round(sacrebleu.corpus_bleu(greedy, [refs]).score, 2),
            "chrf_greedy": round(sacrebleu.corpus_chrf(greedy, [refs]).score, 2),
            "beam_sentences_per_s": round(len(pairs) / max(beam_s, 1e-9), 1),
        }
        print(
            f"[translate] test split ({len(pairs)} pairs): sacreBLEU {result['bleu_beam']} (beam {cfg.beam_width}), "
            f"{result['bleu_greedy']} (greedy); chrF {result['chrf_beam']}"
        )
        for s, r, h in list(zip(sources, refs, beam))[:samples]:
            print(f"  src: {s}\n  ref: {r}\n  out: {h}")
        return result

    # ------------------------------------------------------------------ export
    @staticmethod
    def _write_tokenizer_spec(out_dir, cfg, truecase):
        """``assets/tokenizer.json``, what a device's tokenizer and decoding loop need: written by every export,
        so that lengths changed at export (``--set max_src_len=...``) reach the TFLite runtime too."""
        from seqapps.export.atomic import atomic_write_text
        from seqapps.translate import text

        spec = {
            "max_src_len": cfg.max_src_len,
            "max_tgt_len": cfg.max_tgt_len,
            # the steps of text.py_tokenize, in order (that function is the reference implementation)
            "steps": [
                "compose a Latin letter and a combining accent (U+0300-U+036F) into the accented letter, for the "
                "letters of Latin-1 and Latin Extended-A (text._COMPOSE); no other Unicode normalisation",
                "replace U+0000 by a space",
                "delete invisible format characters: " + text.FORMAT_CHARACTERS,
                "lower-case",
                "replace the apostrophes U+2018, U+2019 and U+02BC by '",
                "split off every character that is not a letter, digit, apostrophe or space as a token of its own, "
                "then split at spaces",
            ],
            "lowercase": True,
            "pad_id": text.PAD_ID,
            "unk_id": text.UNK_ID,
            "start_id": text.START_ID,
            "end_id": text.END_ID,
            # output: tokens re-cased with this table (lower-case token TAB cased form), then text.py_detokenize
            "truecase": "truecase.tsv" if truecase else None,
            "detokenizer": DETOKENIZER,
        }
        atomic_write_text(Path(out_dir) / "assets" / "tokenizer.json", json.dumps(spec, indent=2) + "\n")

    @staticmethod
    def _calibration_sentences(cfg, train) -> list[str]:
        """``cfg.int8_calibration_sentences`` source sentences of the training split ``train``, a fixed random
        sample."""
        pick = np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.int8_calibration_sentences]
        return [train[i][0] for i in pick]

    def export(self, model_dir, out_dir=None, model=None, cfg=None, test_pairs=None, train_info=None, train_pairs=None):
        import sacrebleu
        import tensorflow as tf

        from seqapps.export import gpu, metadata, saved_model, tflite
        from seqapps.translate import model as _model  # (also registers Translator for load_model)
        from seqapps.translate import text
        from seqapps.translate.serving import TFLiteModule
        from seqapps.translate.tflite_runtime import TFLiteTranslator

        model_dir = Path(model_dir)
        out_dir = Path(out_dir or model_dir)
        if model is None:
            saved_model.require_trained(model_dir, "make train-translate")
        cfg = cfg or config_lib.read(TranslateConfig, model_dir / "config.yaml")
        src_vocab = text.read_vocab(model_dir / "assets" / "src_vocab.txt")
        tgt_vocab = text.read_vocab(model_dir / "assets" / "tgt_vocab.txt")
        # re-export of a trained folder (no model passed in): its whole-test-split evaluation still holds, as
        # long as the settings that decode were those it was measured with
        previous = (
            metadata.read(model_dir / "metadata.json")
            if model is None and (model_dir / "metadata.json").is_file()
            else {}
        )
        if any(previous.get("config", {}).get(k) != getattr(cfg, k) for k in DECODING_KEYS):
            previous.pop("evaluation", None)
        model = model or saved_model.load_keras_model(
            model_dir, lambda: _model.build_model(cfg, len(src_vocab), len(tgt_vocab)), "make train-translate"
        )

        @functools.cache
        def data_splits():  # the training data's splits, read at most once, and only when a step needs them
            from seqapps.translate import data as data_lib

            return data_lib.split_pairs(data_lib.load_corpus(cfg).pairs, cfg.val_fraction, cfg.test_fraction)

        def training_pairs():
            return train_pairs if train_pairs is not None else data_splits()["train"]

        if test_pairs is None:
            if (model_dir / "run" / "test_pairs.json").is_file():
                test_pairs = json.loads((model_dir / "run" / "test_pairs.json").read_text())
            else:  # re-create the held-out split from the training data
                test_pairs = spread(data_splits()["test"], cfg.eval_examples)  # the pairs a training scores and keeps
        if train_info is None:  # kept when a shipped folder is exported again
            train_info = metadata.training_info(model_dir)
        truecase = self._truecase(model_dir, tgt_vocab, training_pairs)
        if previous.get("detokenizer") != detokenizer_id(truecase):
            previous.pop("evaluation", None)
        if out_dir.resolve() != model_dir.resolve():
            import shutil

            shutil.copytree(model_dir / "assets", out_dir / "assets", dirs_exist_ok=True)
        config_lib.save(cfg, out_dir / "config.yaml")  # the config this export was made with (--set), read back
        if truecase:  # by evaluate and export
            text.write_truecase(out_dir / "assets" / "truecase.tsv", truecase)
        self._write_tokenizer_spec(out_dir, cfg, truecase)

        module = self._module(model, cfg, src_vocab, tgt_vocab, truecase)
        sm_path = saved_model.write(module, out_dir, module.signatures(), version=1)
        print(f"[translate] SavedModel -> {sm_path.relative_to(out_dir)}")

        # TFLite: float32, dynamic-range, int8 and GPU (float16), checked against the Keras greedy decoder
        test_pairs = spread(test_pairs, cfg.tflite_eval_examples)
        sentences, refs = [s for s, _ in test_pairs], [t for _, t in test_pairs]
        keras_greedy = self._keras_greedy_ids(module, sentences)
        lite_module = TFLiteModule(model, cfg.max_src_len)
        report = {}
        variants = (
            ("float32", "dynamic", "int8", "gpu") if cfg.int8_calibration_sentences else ("float32", "dynamic", "gpu")
        )
        tflite.remove_other_variants(out_dir, variants)  # an int8 file of an earlier export holds other weights
        for variant in variants:
            if variant == "gpu":  # float16, the encoder unrolled over max_src_len: for GPU delegates
                blob = tflite.convert_unrolled(model, lambda: TFLiteModule(model, cfg.max_src_len))
            elif variant == "int8":  # calibrated on training sentences run through the float32 file
                from seqapps.translate.serving import int8_model

                float_runner = TFLiteTranslator(out_dir, tflite.FILE_NAMES["float32"])
                blob = int8_model(
                    model, cfg.max_src_len, float_runner, self._calibration_sentences(cfg, training_pairs())
                )
            else:
                blob = tflite.convert_module(lite_module, lite_module.signatures(), variant)
            path = out_dir / tflite.FILE_NAMES[variant]
            from seqapps.export.atomic import atomic_write_bytes

            atomic_write_bytes(path, blob)
            runner = TFLiteTranslator(out_dir, path.name)
            ids = [runner.greedy_ids(s) for s in sentences]
            hyps = [text.py_detokenize([tgt_vocab[i] for i in seq], truecase) for seq in ids]
            same = sum(a == b for a, b in zip(ids, keras_greedy))
            enc_ids, _, _ = runner.source_ids(sentences[0])
            k_enc = lite_module.encode(tf.constant(enc_ids))
            l_enc = runner._encode(source_ids=enc_ids)
            diff = float(np.max(np.abs(k_enc["encoder_outputs"].numpy() - l_enc["encoder_outputs"])))
            report[variant] = {
                "file": path.name,
                "bytes": path.stat().st_size,
                "ops": sorted(tflite.op_names(blob)),
                "greedy_identical_to_keras": f"{same}/{len(sentences)}",
                "encoder_max_abs_diff": diff,
                "bleu_greedy": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            }
            print(
                f"[translate] TFLite {variant}: {path.name} {path.stat().st_size / 1e6:.1f} MB, greedy output "
                f"identical to Keras on {same}/{len(sentences)} sentences, BLEU {report[variant]['bleu_greedy']}, "
                f"encoder max |diff| {diff:.2e}"
            )
            if variant == "float32":
                metadata.check_parity(f"{path.name} (encoder outputs)", diff)
        keras_bleu = sacrebleu.corpus_bleu(
            [text.py_detokenize([tgt_vocab[i] for i in seq], truecase) for seq in keras_greedy], [refs]
        ).score
        report["keras_greedy_bleu_same_sentences"] = round(keras_bleu, 2)
        for variant in ("dynamic", "int8"):
            if variant in report:
                change = report[variant]["bleu_greedy"] - report["float32"]["bleu_greedy"]
                report[f"{variant}_bleu_change"] = round(change, 2)
        metadata.write(
            out_dir / "metadata.json",
            app="translate",
            config=cfg,
            data_spec=cfg.data,
            direction=cfg.direction,
            detokenizer=detokenizer_id(truecase),
            truecase_tokens=len(truecase),
            training=train_info,
            tflite=report,
            gpu_compatibility=gpu.summarize(out_dir),
            saved_model={
                "path": str(sm_path.relative_to(out_dir)),
                "signatures": {
                    "serving_default": "text (string [None]) -> translation (string [None])",
                    "translate_details": "text -> translation, tokens, attention, source_tokens, truncated",
                },
            },
            files=metadata.file_sizes(out_dir),
            **({"evaluation": previous["evaluation"]} if "evaluation" in previous else {}),
        )
        self.write_model_card(out_dir)
        return sm_path

    @staticmethod
    def write_model_card(model_dir):
        """MODEL_CARD.md from metadata.json: every figure in it is one the export measured."""
        from seqapps.export.atomic import atomic_write_text, destination

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
        cfg, training_info, lite = meta["config"], meta.get("training") or {}, meta["tflite"]
        test, data = training_info.get("test", {}), training_info.get("data", {})
        synthetic = cfg["data"] in ("default", "embedded")
        lines = [
            f"# Model card: translate ({cfg['direction']})",
            "",
            "Encoder-decoder GRU with attention built from `seqapps.layers` "
            f"(embedding {cfg['embedding_dim']}, bidirectional GRU encoder and GRU decoder of {cfg['units']} units, "
            f"{cfg['attention']} attention); vocabularies of {data.get('src_vocab', '?')} source and "
            f"{data.get('tgt_vocab', '?')} target tokens. The model works in lower case; "
            + (
                f"its output is re-cased with a table of {meta['truecase_tokens']} tokens learned from the training "
                "targets (`assets/truecase.tsv`: tom -> Tom, tv -> TV), and every sentence starts with a capital."
                if meta.get("truecase_tokens")
                else "its output starts every sentence with a capital."
            ),
            "",
            "## Data",
            "",
            f"- Spec: `{cfg['data']}`"
            + (
                " — **synthetic** sentences generated by the project's own grammar "
                "(`seqapps/translate/corpus.py`); not a general translator."
                if synthetic
                else ""
            ),
            f"- {data.get('pairs', '?')} pairs; splits grouped by source sentence: train {data.get('train_pairs', '?')}, "
            f"validation {data.get('val_pairs', '?')}, test {data.get('test_pairs', '?')}; "
            f"{data.get('train_pairs_dropped_too_long', 0)} training pairs dropped (a side longer than training's "
            "length limits, or empty).",
            "",
            "## Measured",
            "",
            *(
                []
                if "total" in training_info
                else [
                    f"- Training: {training_info.get('epochs_run', '?')} epochs, {training_info.get('train_seconds', '?')} s "
                    "on a 2-core CPU."
                ]
            ),
            # the note of a subset ("first 3000 test pairs in file order (...); see 'evaluation' ..."), to its ";"
            f"- Test split at the end of training ({test.get('examples', '?')} pairs"
            f"{': ' + test['note'].split(';')[0] if test.get('note') else ''}"
            f"{'' if test.get('detokenizer') == meta.get('detokenizer') else '; scored with the output text of that time'}"
            "): sacreBLEU "
            f"**{test.get('bleu_beam', '?')}** with beam search (width {test.get('beam_width', cfg['beam_width'])}), "
            f"{test.get('bleu_greedy', '?')} greedy; chrF {test.get('chrf_beam', '?')} (beam).",
            *(
                [
                    f"- {meta['evaluation']['split'][0].upper()}{meta['evaluation']['split'][1:]} "
                    f"({meta['evaluation']['test_pairs']} pairs, `{meta['evaluation']['command']}`): "
                    f"sacreBLEU **{meta['evaluation']['bleu_beam']}** beam, {meta['evaluation']['bleu_greedy']} greedy; chrF "
                    f"{meta['evaluation']['chrf_beam']} beam; {meta['evaluation']['sentences_per_s_beam']} sentences/s."
                ]
                if "evaluation" in meta
                else []
            ),
            *(
                [
                    f"- Total training: {training_info['total']['epochs']} epochs, {training_info['total']['train_seconds']} s "
                    f"({training_info['total']['note']})."
                ]
                if "total" in training_info
                else []
            ),
            f"- TFLite float32 (`{lite['float32']['file']}`, {lite['float32']['bytes'] / 1e6:.1f} MB): greedy output "
            f"identical to Keras on {lite['float32']['greedy_identical_to_keras']} test sentences; encoder max |diff| "
            f"{lite['float32']['encoder_max_abs_diff']:.1e}; BLEU {lite['float32']['bleu_greedy']} (greedy).",
            f"- TFLite dynamic-range (`{lite['dynamic']['file']}`, {lite['dynamic']['bytes'] / 1e6:.1f} MB): greedy "
            f"output identical on {lite['dynamic']['greedy_identical_to_keras']}; BLEU {lite['dynamic']['bleu_greedy']}, "
            f"change {lite['dynamic_bleu_change']:+.2f} against float32 on the same sentences.",
            *(
                [
                    f"- TFLite int8 (`{lite['int8']['file']}`, {lite['int8']['bytes'] / 1e6:.1f} MB; int8 weights and "
                    "activations calibrated on training sentences, attention in float, encoder unrolled): greedy output "
                    f"identical on {lite['int8']['greedy_identical_to_keras']}; BLEU {lite['int8']['bleu_greedy']}, "
                    f"change {lite['int8_bleu_change']:+.2f} against float32 on the same sentences.",
                ]
                if "int8" in lite
                else []
            ),
            *(
                [
                    f"- TFLite GPU variant (`{lite['gpu']['file']}`, {lite['gpu']['bytes'] / 1e6:.1f} MB; float16 weights, "
                    f"encoder unrolled, no WHILE): greedy output identical on {lite['gpu']['greedy_identical_to_keras']}; "
                    f"BLEU {lite['gpu']['bleu_greedy']}. GPU-delegate report: `gpu_compatibility.json`.",
                ]
                if "gpu" in lite
                else []
            ),
            "",
            "## Reproduce",
            "",
            "```bash",
            "make train-translate"
            + ("" if synthetic else " CONFIG=seqapps/translate/configs/spa_eng.yaml OUT=trained/translate"),
            meta.get("evaluation", {}).get("command", f"seqapps evaluate translate --model {destination(model_dir)}"),
            "```",
            "",
            "## Limitations",
            "",
            f"- Sentences up to {cfg['max_src_len']} tokens (longer input is truncated, and `predict` says so); "
            "short everyday sentences like those of Tatoeba. Names and acronyms are re-cased where the training "
            "targets spell them so; a word whose case depends on its sense (May, Polish) keeps its usual one, and "
            "an unknown word comes out as [UNK].",
            "- BLEU is measured on held-out Tatoeba pairs with one reference each; Tatoeba has many near-duplicate "
            "sentences, so scores are higher than on news or web text.",
        ]
        atomic_write_text(model_dir / "MODEL_CARD.md", "\n".join(lines) + "\n")

    def _keras_greedy_ids(self, module, sentences):
        import tensorflow as tf

        from seqapps.translate import decoding

        # one sentence at a time, as the device loop runs them; traced once (eagerly, each took about 0.6 s)
        decode = tf.function(
            lambda ids: decoding.greedy(module.model, ids, module.max_tgt_len)[0],
            input_signature=[tf.TensorSpec([None, None], tf.int32)],
        )
        ids, _, lengths, _ = module.prepare(tf.constant(sentences, tf.string))  # each padded to max_src_len
        out = []
        for i, length in enumerate(lengths.numpy()):
            seq = [int(t) for t in decode(ids[i : i + 1]).numpy()[0] if t != 0]
            out.append(seq if length else [])
        return out

    # ------------------------------------------------------------------ bench
    def bench(self, model_dir, quick: bool = False):
        """SavedModel latency (beam search) at batch 1 and 32, TFLite greedy latency per sentence."""
        import tensorflow as tf

        from seqapps.bench import interleaved_times, medians, ratio_range
        from seqapps.export import tflite
        from seqapps.translate.tflite_runtime import TFLiteTranslator

        model_dir = Path(model_dir)
        served = self._load_serving(model_dir)
        fn = served.signatures["serving_default"]
        one = tf.constant(SAMPLES[:1])
        batch = tf.constant((SAMPLES * 7)[:32])
        files = {
            v: tflite.FILE_NAMES[v]
            for v in ("float32", "dynamic", "int8")
            if (model_dir / tflite.FILE_NAMES[v]).is_file()
        }
        lite = {v: TFLiteTranslator(model_dir, f) for v, f in files.items()}
        times = interleaved_times(
            {
                "sm1": lambda: fn(text=one),
                "sm32": lambda: fn(text=batch),
                **{v: (lambda r=r: r.translate(SAMPLES[0])) for v, r in lite.items()},
            },
            rounds=2 if quick else 7,
        )
        t = medians(times)
        sizes = {v: (model_dir / f).stat().st_size / 1e6 for v, f in files.items()}
        names = {"dynamic": "dynamic-range", "int8": "int8 (weights and activations)"}
        return [
            {"benchmark": "SavedModel beam search, batch 1 (ms per request)", "value": t["sm1"] * 1e3, "unit": "ms"},
            {
                "benchmark": "SavedModel beam search, batch 32 (ms per sentence)",
                "value": t["sm32"] * 1e3 / 32,
                "unit": "ms",
                "baseline": t["sm1"] * 1e3,
                "ratio": t["sm32"] / 32 / t["sm1"],
                "range": ratio_range({"b": [x / 32 for x in times["sm32"]], "one": times["sm1"]}, "b", "one"),
            },
            {
                "benchmark": f"TFLite float32 greedy, 1 thread ({sizes['float32']:.1f} MB)",
                "value": t["float32"] * 1e3,
                "unit": "ms/sentence",
            },
            *(
                {
                    "benchmark": f"TFLite {names[v]} greedy, 1 thread ({sizes[v]:.1f} MB)",
                    "value": t[v] * 1e3,
                    "unit": "ms/sentence",
                    "baseline": t["float32"] * 1e3,
                    "ratio": t[v] / t["float32"],
                    "range": ratio_range(times, v, "float32"),
                }
                for v in ("dynamic", "int8")
                if v in lite
            ),
        ]

    # ------------------------------------------------------------------ evaluate / predict
    def _load_serving(self, model_dir):
        import tensorflow as tf

        from seqapps.export import saved_model

        return tf.saved_model.load(str(saved_model.latest(model_dir)))

    def evaluate(self, model_dir, data=None, **options):
        import sacrebleu

        from seqapps.translate import data as data_lib

        model_dir = Path(model_dir)
        write = config_lib.pop_flag(options, "write", "true stores the scores in metadata.json")
        if write:  # checked before the minutes of decoding
            other = sorted(set(options) - {"eval_examples"}) + (["--data"] if data else [])
            if other:
                raise ValueError(
                    "evaluate --set write=true stores the scores of the model's own test split, as exported: only "
                    f"eval_examples may be given with it, not {', '.join(other)}"
                )
            detokenizer = self._check_stored_detokenizer(model_dir)
        which = options.pop("split", None)  # after the check above: write=true scores the test split only
        trained = config_lib.read(TranslateConfig, model_dir / "config.yaml")
        cfg = config_lib.override(trained, options, "evaluate --set")
        # before the decoding keys' message, which advises an export that would refuse these
        takes = f"evaluate takes {', '.join(EVALUATE_SETTINGS)}"
        config_lib.refuse_fixed(trained, cfg, EVALUATE_SETTINGS, "evaluate --set", takes, skip=DECODING_KEYS)
        fixed = config_lib.changed(trained, cfg, DECODING_KEYS)
        if fixed:
            raise ValueError(
                f"evaluate --set {config_lib.settings_text(cfg, fixed)}: the SavedModel decodes with "
                f"the settings it was exported with ({config_lib.settings_text(trained, fixed)}); "
                "to score others, export a copy with them (seqapps export translate --model DIR --out NEW --set "
                "...) and evaluate NEW"
            )
        if data:
            cfg = config_lib.apply(cfg, {"data": data}, "--data")
        config_lib.check_split_kept(
            trained, cfg, same_spec(cfg.data, trained.data), ("val_fraction", "test_fraction")
        )  # pairs split by a hash of the source
        corp = data_lib.load_corpus(cfg)
        # the test split by default, for other data too: pairs are split by a hash of the source sentence, so
        # its test pairs cannot be among the sentences the model trained on, whichever file holds them
        which = which or "test"
        if which == "all":
            split = corp.pairs
        elif which in ("train", "val", "test"):
            split = [p for p in corp.pairs if data_lib.split_of(p[0], cfg.val_fraction, cfg.test_fraction) == which]
        else:
            raise ValueError(f"split must be train, val, test or all, got {which!r}")
        if not split:
            raise ValueError(
                f"{cfg.data}: the {which} split is empty ({len(corp.pairs)} pairs); pass --set split=all to score "
                "every pair (those that fall in the train and val splits may be sentences the model trained on)"
            )
        pairs = spread(split, cfg.eval_examples)
        served = self._load_serving(model_dir)
        sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
        self.translate_batch(served.signatures["serving_default"], sources[:1])  # not timed: the first call traces
        t0 = time.time()
        beam = self.translate_batch(
            served.signatures["serving_default"], sources, title=f"beam search on {len(sources)} {which} sentences:"
        )
        elapsed = time.time() - t0
        greedy = self.translate_batch(served.signatures["translate_details"], sources, title="greedy decoding:")
        res = {
            "data": cfg.data,
            "split": which,
            "test_pairs": len(pairs),
            "bleu_beam": round(sacrebleu.corpus_bleu(beam, [refs]).score, 2),
            "chrf_beam": round(sacrebleu.corpus_chrf(beam, [refs]).score, 2),
            "bleu_greedy": round(sacrebleu.corpus_bleu(greedy, [refs]).score, 2),
            "chrf_greedy": round(sacrebleu.corpus_chrf(greedy, [refs]).score, 2),
            "sentences_per_s_beam": round(len(pairs) / elapsed, 1),
        }
        print(json.dumps(res, indent=2))
        if write:
            self._store_evaluation(model_dir, res, len(split), options, detokenizer)
        return res

    @staticmethod
    def _check_stored_detokenizer(model_dir) -> str:
        """The ``detokenizer`` of ``model_dir``'s metadata.json, when it is this version's rules with the folder's
        re-casing table (the text its SavedModel writes); else an error that says to export again."""
        from seqapps.export import metadata
        from seqapps.translate import text

        model_dir = Path(model_dir)
        path = model_dir / "assets" / "truecase.tsv"
        current = detokenizer_id(text.read_truecase(path) if path.is_file() else {})
        if metadata.read(model_dir / "metadata.json").get("detokenizer") != current:
            raise ValueError(
                f"{model_dir} was exported with other detokenizing rules or another re-casing table than this "
                f"version's: export it again (seqapps export translate --model {model_dir}) before storing scores"
            )
        return current

    def _store_evaluation(self, model_dir, res, split_pairs, options, detokenizer):
        """``evaluate --set write=true``: the scores into metadata.json's ``evaluation`` and MODEL_CARD.md, both
        replaced together (staged, as ``seqapps export`` does)."""
        import shlex

        from seqapps.export import metadata
        from seqapps.export.atomic import atomic_write_text, destination, staged_dir

        meta = metadata.read(model_dir / "metadata.json")
        command = f"seqapps evaluate translate --model {shlex.quote(str(destination(model_dir)))}"
        command += "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in options.items())
        meta["evaluation"] = {
            "command": command,
            "split": "whole test split, grouped by source sentence"
            if res["test_pairs"] == split_pairs
            else f"test split, grouped by source sentence: {res['test_pairs']} of its {split_pairs} pairs spread over it",
            **{k: v for k, v in res.items() if k != "split"},  # the test split, described above
            "detokenizer": detokenizer,  # checked against the folder before decoding
        }
        with staged_dir(model_dir) as staging:
            atomic_write_text(staging / "metadata.json", json_text(meta, indent=2, ensure_ascii=False) + "\n")
            self.write_model_card(staging)
        print(f"[translate] scores stored in {model_dir / 'metadata.json'} and MODEL_CARD.md")

    def add_predict_arguments(self, parser):
        parser.add_argument("sentences", nargs="*", help="sentences to translate")
        parser.add_argument(
            "--file", type=Path, help="a UTF-8 text file, one sentence per line; - reads standard input"
        )
        parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of beam search")
        parser.add_argument(
            "--attention", action="store_true", help="print the attention of each output token (greedy decoding)"
        )

    def predict(self, model_dir, args):
        from seqapps.data import argument_text

        sentences = [argument_text(s) for s in args.sentences]
        if args.file:
            from seqapps.data import decode_utf8, input_name, read_input_file, text_lines

            raw = read_input_file(args.file, "sentence")
            hint = "save it as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)"
            sentences += text_lines(decode_utf8(raw, input_name(args.file), hint))
        if not sentences:
            raise ValueError("nothing to translate: give sentences or --file")
        served = self._load_serving(model_dir)
        import tensorflow as tf

        from seqapps.translate import text

        if args.greedy or args.attention:
            details = served.signatures["translate_details"](text=tf.constant(sentences))
            outs = [x.decode("utf-8") for x in details["translation"].numpy()]
        else:  # beam search in batches; the truncation notes come from the Python twin of the graph's tokenizer
            outs = self.translate_batch(served.signatures["serving_default"], sentences)
        max_src = config_lib.read(TranslateConfig, Path(model_dir) / "config.yaml").max_src_len
        for i, (s, o) in enumerate(zip(sentences, outs)):
            tokens = text.py_tokenize(s)
            if not tokens:  # blank, or only characters the tokenizer drops (a zero-width space, ...)
                print("(empty input)", file=sys.stderr)
            if len(tokens) > max_src:
                kept = tokens[:max_src]
                print(
                    f"note: input longer than the model's limit of {len(kept)} tokens; translated its first "
                    f"{len(kept)} only, up to {' '.join(kept[-4:])!r}",
                    file=sys.stderr,
                )
            print(o)
            if args.attention:
                src = [t.decode() for t in details["source_tokens"][i].numpy() if t]
                for tok, row in zip(details["tokens"][i].numpy(), details["attention"][i].numpy()):
                    if not tok:
                        break
                    j = int(np.argmax(row[: len(src)])) if src else 0
                    print(f"  {tok.decode():>12} <- {src[j] if src else ''} ({row[j]:.2f})")
