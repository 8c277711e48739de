"""Reference greedy translation loop over a TFLite model with `ai_edge_litert` (no TensorFlow).

This is what a device does: tokenize with the vocabulary files, run ``encode`` once, then
``decode_step`` until the end token. Usage::

    python -m seqapps.translate.tflite_runtime trained/translate "¿Dónde está la estación?"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seqapps.export import litert, metadata
from seqapps.translate.text import (
    END_ID,
    PAD_ID,
    RESERVED,
    START_ID,
    UNK_ID,
    py_detokenize,
    py_tokenize,
    read_truecase,
)


def _read_vocab(path):
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


class TFLiteTranslator:
    def __init__(self, model_dir, model_file="model.tflite", num_threads=1):
        # a wrong, incomplete or missing folder: an error that says which
        model_dir = metadata.check_model_folder(
            model_dir,
            "translate",
            ("assets/tokenizer.json", "assets/src_vocab.txt", "assets/tgt_vocab.txt", model_file),
        )
        spec = metadata.read(model_dir / "assets" / "tokenizer.json")
        if "max_src_len" not in spec or "max_tgt_len" not in spec:
            raise ValueError(
                f"{model_dir}/assets/tokenizer.json lacks max_src_len or max_tgt_len: export the model again"
            )
        self.max_src_len, self.max_tgt_len = spec["max_src_len"], spec["max_tgt_len"]
        self.src_vocab = _read_vocab(model_dir / "assets" / "src_vocab.txt")
        self.tgt_vocab = _read_vocab(model_dir / "assets" / "tgt_vocab.txt")
        for name, vocab in (("src_vocab.txt", self.src_vocab), ("tgt_vocab.txt", self.tgt_vocab)):
            if vocab[: len(RESERVED)] != RESERVED:
                raise ValueError(
                    f"{model_dir}/assets/{name} does not start with the reserved tokens {RESERVED}: a damaged or "
                    "foreign vocabulary; export the model again"
                )
        self.src_index = {t: i for i, t in enumerate(self.src_vocab)}
        # the re-casing table of the output ("tom" -> "Tom"); exports before 2026-11-30 have none
        truecase = spec.get("truecase")
        if truecase and not (model_dir / "assets" / truecase).is_file():
            raise ValueError(
                f"{model_dir}/assets/{truecase}, named by tokenizer.json, is missing: export the model again"
            )
        self.truecase = read_truecase(model_dir / "assets" / truecase) if truecase else {}
        self.interp = litert.interpreter(model_dir / model_file, num_threads)
        self._encode = self.interp.get_signature_runner("encode")
        self._step = self.interp.get_signature_runner("decode_step")

    def source_ids(self, sentence: str) -> tuple[np.ndarray, int, bool]:
        tokens = py_tokenize(sentence)
        ids = [self.src_index.get(t, UNK_ID) for t in tokens[: self.max_src_len]]
        arr = np.zeros((1, self.max_src_len), np.int32)
        arr[0, : len(ids)] = ids
        return arr, len(tokens), len(tokens) > self.max_src_len

    def greedy_ids(self, sentence: str, record: list | None = None) -> list[int]:
        """Greedy decoding of at most ``max_tgt_len`` tokens, as `decoding.greedy`; ``record`` (a list) receives
        every signature call as (signature, inputs), the samples that calibrate an int8 variant."""
        ids, n, _ = self.source_ids(sentence)
        enc = self._encode(source_ids=ids)
        if record is not None:
            record.append(("encode", {"source_ids": ids}))
        state, token, out = enc["state"], START_ID, []
        for _ in range(self.max_tgt_len):
            inputs = {
                "token": np.array([token], np.int32),
                "state": state,
                "encoder_outputs": enc["encoder_outputs"],
                "source_mask": enc["source_mask"],
            }
            if record is not None:
                record.append(("decode_step", {k: np.array(v) for k, v in inputs.items()}))
            step = self._step(**inputs)
            state = step["state"]
            token = int(np.argmax(step["logits"][0]))
            if token in (END_ID, PAD_ID):
                break
            out.append(token)
        return out if n else []

    def translate(self, sentence: str) -> str:
        return py_detokenize([self.tgt_vocab[i] for i in self.greedy_ids(sentence)], self.truecase)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m seqapps.translate.tflite_runtime", description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("sentences", nargs="+")
    p.add_argument("--model-file", default="model.tflite")
    args = p.parse_args(argv)
    try:
        t = TFLiteTranslator(args.model_dir, args.model_file)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    for s in args.sentences:
        print(t.translate(s))


if __name__ == "__main__":
    main()
