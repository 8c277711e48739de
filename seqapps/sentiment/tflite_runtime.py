"""Reference classifier over the TFLite model with `ai_edge_litert` and the pure-Python tokenizer (no TensorFlow).

This is what a device does::

    python -m seqapps.sentiment.tflite_runtime trained/sentiment "A wonderful, moving film."
"""

from __future__ import annotations

import argparse

import numpy as np

from seqapps.export import litert, metadata
from seqapps.sentiment.tokenizer import Tokenizer, read_lines


class TFLiteClassifier:
    def __init__(self, model_dir, model_file="model.tflite", num_threads=1):
        # a wrong, incomplete or missing folder: an error that says which
        model_dir = metadata.check_model_folder(
            model_dir, "sentiment", ("assets/tokenizer.json", "assets/vocab.txt", "assets/labels.txt", model_file)
        )
        self.tokenizer = Tokenizer.from_dir(model_dir)
        self.labels = read_lines(model_dir / "assets" / "labels.txt")
        self.interp = litert.interpreter(model_dir / model_file, num_threads)
        self._run = self.interp.get_signature_runner("classify")

    def probabilities(self, text: str | bytes) -> np.ndarray:
        """The class probabilities; uniform for a text without tokens, as the SavedModel gives (the network
        would give its bias on an all-padding row)."""
        ids, n, _ = self.tokenizer.encode(text)
        if n == 0:
            return np.full(len(self.labels), 1.0 / len(self.labels), np.float32)
        return self._run(token_ids=np.array([ids], np.int32))["probabilities"][0]

    def classify(self, text: str | bytes) -> tuple[str, float]:
        """(label, probability); ("", 1/classes) for a text without tokens."""
        if self.tokenizer.encode(text)[1] == 0:
            return "", 1.0 / len(self.labels)
        p = self.probabilities(text)
        return self.labels[int(np.argmax(p))], float(np.max(p))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m seqapps.sentiment.tflite_runtime", description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("texts", nargs="+")
    p.add_argument("--model-file", default="model.tflite")
    args = p.parse_args(argv)
    try:
        clf = TFLiteClassifier(args.model_dir, args.model_file)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    for t in args.texts:
        label, prob = clf.classify(t)
        print(f"{label or '(empty)'}\t{prob:.3f}\t{t[:70]}")


if __name__ == "__main__":
    main()
