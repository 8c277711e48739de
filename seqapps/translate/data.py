"""Translation data: corpus specs, parsing with clear errors, grouped splits, vocabularies, tf.data.

Data specs (``cfg.data``):
    default | embedded      the embedded synthetic English–Spanish corpus (offline, see corpus.py)
    PATH                    a Tatoeba/Anki file: ``English<TAB>Other[<TAB>attribution]`` per line
    anki:spa-eng            the canonical spa-eng file of the TF NMT tutorial (downloaded and cached, needs internet)
    tfds:NAME               a tensorflow-datasets translation set, e.g. tfds:ted_hrlr_translate/pt_to_en
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqapps.data import decode_utf8, not_found, text_lines
from seqapps.translate import corpus, text

ANKI_URLS = {"spa-eng": "http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip"}


@dataclasses.dataclass
class Corpus:
    pairs: list  # (source, target)
    spec: str
    skipped_lines: int = 0


def _direction(direction: str) -> tuple[str, str]:
    parts = [p.strip() for p in direction.split("->")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"direction must look like 'spa->eng' or 'eng->spa', got {direction!r}")
    return parts[0], parts[1]


# The languages of the Tatoeba/Anki files (manythings.org/anki), each named after its code: spa.txt, fra.txt, ...
ANKI_LANGUAGES = frozenset(
    "afr ara aze bel ben ber bos bre bul cat cbk ceb ces cha chv cmn dan deu dtp ell epo est eus fin fra fry gle glg "
    "heb hin hrv hun hye ina ind isl ita jbo jpn kab kat kaz khm kor kur lfn lit lvs mal mar mhr mkd mon mri nds nld "
    "nob oci pam pes pol por ron rus slk slv sqi srp swc swe tat tgl tha tuk tur uig ukr urd uzb vie war yue zsm".split()
)


def _check_anki_direction(direction: str, other: str | None, what: str) -> None:
    """An Anki/Tatoeba file pairs English with one other language (its name: spa.txt, fra.txt): ``direction``
    must name English and that language, so that the columns are not read as a language they are not."""
    src, tgt = _direction(direction)
    if src.startswith("en") == tgt.startswith("en"):
        raise ValueError(
            f"direction {direction!r}: {what} pairs English with another language, so one side must be English "
            f"(eng), e.g. {other or 'spa'}->eng or eng->{other or 'spa'}"
        )
    lang = tgt if src.startswith("en") else src
    if other is not None and len(lang) == 3 and lang != other:  # a two-letter code (es->en) is not compared
        raise ValueError(
            f"direction {direction!r}, but {what} pairs English with {other!r}: set direction to {other}->eng or "
            f"eng->{other}"
        )


def read_anki(path, on_bad_lines: str = "error") -> tuple[list[tuple[str, str]], int]:
    """(english, other) pairs of a Tatoeba/Anki file; malformed lines raise or are skipped and counted."""
    if on_bad_lines not in ("error", "skip"):
        raise ValueError(f"on_bad_lines must be 'error' or 'skip', got {on_bad_lines!r}")
    path = Path(path)
    if not path.is_file():
        raise not_found("corpus file", path)
    content = decode_utf8(
        path.read_bytes(),
        path,
        f"convert it, e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}",
    )
    pairs, skipped = [], 0
    for n, line in enumerate(text_lines(content), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            if on_bad_lines == "error":
                raise ValueError(
                    f"{path}:{n}: expected 'English<TAB>Translation[<TAB>attribution]', got {line[:80]!r}; "
                    f"fix the line or pass --set on_bad_lines=skip"
                )
            skipped += 1
            continue
        pairs.append((fields[0].strip(), fields[1].strip()))
    if not pairs:
        raise ValueError(f"{path}: no sentence pairs found")
    return pairs, skipped


def load_corpus(cfg) -> Corpus:
    src_lang, _ = _direction(cfg.direction)
    spec = cfg.data
    skipped = 0
    if spec in ("default", "embedded"):
        _check_anki_direction(cfg.direction, "spa", "the embedded corpus")
        en_other = corpus.generate(cfg.embedded_pairs, seed=1234)
    elif spec.startswith("anki:"):
        name = spec.split(":", 1)[1]
        if name not in ANKI_URLS:
            raise ValueError(f"unknown Anki corpus {name!r}; known: {sorted(ANKI_URLS)} (or give a file path)")
        _check_anki_direction(cfg.direction, name.split("-")[0], spec)  # before the download
        import keras

        try:
            archive = keras.utils.get_file(f"{name}.zip", origin=ANKI_URLS[name], extract=True)
        except Exception as exc:  # noqa: BLE001 - network errors have many types
            raise ValueError(f"could not download {ANKI_URLS[name]} ({exc}); pass a local file path instead") from None
        root = Path(archive)  # Keras 3 returns the folder it extracted to (older versions: the archive)
        wanted = f"{name.split('-')[0]}.txt"
        files = sorted((root if root.is_dir() else root.parent).rglob(wanted))
        if not files:
            raise ValueError(f"{root}: the downloaded archive holds no {wanted}; delete it to download it again")
        en_other, skipped = read_anki(files[0], cfg.on_bad_lines)
    elif spec.startswith("tfds:"):  # already (source, target) in the configured direction
        pairs = _load_tfds(spec[5:], cfg.direction)
        return Corpus(pairs[: cfg.max_examples] if cfg.max_examples else pairs, spec)
    else:
        stem = Path(spec).stem  # Anki's files are named after their other language: spa.txt, fra.txt, deu.txt
        _check_anki_direction(cfg.direction, stem if stem in ANKI_LANGUAGES else None, Path(spec).name)
        en_other, skipped = read_anki(spec, cfg.on_bad_lines)
    if src_lang.startswith("en"):
        pairs = en_other
    else:
        pairs = [(other, en) for en, other in en_other]
    if cfg.max_examples:
        pairs = pairs[: cfg.max_examples]
    return Corpus(pairs, spec, skipped)


def _load_tfds(name: str, direction: str):
    import tensorflow_datasets as tfds

    src, tgt = _direction(direction)
    try:
        ds = tfds.load(name, split="train+validation+test")
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"tensorflow-datasets could not load {name!r} ({exc}); this needs internet or a prepared cache"
        ) from None
    pairs = []
    for ex in tfds.as_numpy(ds):
        if src not in ex or tgt not in ex:
            raise ValueError(f"tfds:{name} has fields {sorted(ex)}; set direction to two of them, e.g. pt->en")
        pairs.append((ex[src].decode("utf-8"), ex[tgt].decode("utf-8")))
    return pairs


def split_of(source: str, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split by a hash of the standardised source: a source is never in two splits.

    The key keeps invisible format characters, which the tokenizer deletes since 2026-11-30: deleting them here
    too would move a pair of the shipped model's training split (Tatoeba's one sentence with zero-width
    spaces) into its test split."""
    key = " ".join(text.py_tokenize(source, keep_format=True)).encode("utf-8")
    u = int.from_bytes(hashlib.md5(key).digest()[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def split_pairs(pairs, val_fraction, test_fraction) -> dict[str, list]:
    out = {"train": [], "val": [], "test": []}
    for pair in pairs:
        out[split_of(pair[0], val_fraction, test_fraction)].append(pair)
    for name, items in out.items():
        if not items:
            raise ValueError(f"the {name} split is empty ({len(pairs)} pairs); use more data or larger fractions")
    return out


def tokenize_all(sentences: list[str], batch: int = 8192) -> list[list[str]]:
    out = []
    for i in range(0, len(sentences), batch):
        rt = text.tokenize(tf.constant(sentences[i : i + batch]))
        out.extend([[t.decode("utf-8") for t in row] for row in rt.to_list()])
    return out


def encode(tokens: list[list[str]], vocab: list[str], add_start_end: bool = False) -> list[np.ndarray]:
    index = {t: i for i, t in enumerate(vocab)}
    out = []
    for toks in tokens:
        ids = [index.get(t, text.UNK_ID) for t in toks]
        if add_start_end:
            ids = [text.START_ID] + ids + [text.END_ID]
        out.append(np.array(ids, np.int32))
    return out


BUCKET_BOUNDARIES = [5, 7, 9, 11, 14, 18]  # training batches: max(source, target - 1) tokens


def bucketed_batches(src_ids, tgt_ids, batch_size: int) -> int:
    """How many batches `make_dataset(..., shuffle=True)` yields: every length bucket ends with one partial
    batch, whatever the order."""
    keys = np.maximum([len(s) for s in src_ids], np.array([len(t) for t in tgt_ids]) - 1)
    counts = np.bincount(np.searchsorted(BUCKET_BOUNDARIES, keys, side="right"), minlength=len(BUCKET_BOUNDARIES) + 1)
    return int(sum(-(-int(c) // batch_size) for c in counts))


def make_dataset(src_ids, tgt_ids, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """((source, target_in), target_out) batches padded to the longest sequence of each batch.

    Training batches are bucketed by length (sentences of similar length together), which cuts the
    padded time steps the recurrent loops run over by about half on Tatoeba-like data.
    """

    spec = tf.TensorSpec([None], tf.int32)
    ds = tf.data.Dataset.from_generator(lambda: zip(src_ids, tgt_ids), output_signature=(spec, spec))
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(src_ids)))
    if shuffle:
        ds = ds.shuffle(len(src_ids), seed=seed, reshuffle_each_iteration=True)
        ds = ds.bucket_by_sequence_length(
            lambda s, t: tf.maximum(tf.shape(s)[0], tf.shape(t)[0] - 1),
            bucket_boundaries=BUCKET_BOUNDARIES,
            bucket_batch_sizes=[batch_size] * (len(BUCKET_BOUNDARIES) + 1),
            pad_to_bucket_boundary=False,
        )
        # bucketing hides the number of batches from Keras (no progress bar total in the first epoch, and a
        # "ran out of data" warning at its end); it depends only on the lengths, so it is stated (and checked)
        ds = ds.apply(tf.data.experimental.assert_cardinality(bucketed_batches(src_ids, tgt_ids, batch_size)))
        # bucket_by_sequence_length pads dense; shuffle whole batches so lengths are mixed over an epoch
        ds = ds.shuffle(64, seed=seed)
    else:
        ds = ds.padded_batch(batch_size)

    def split(src, tgt):
        return (src, tgt[:, :-1]), tgt[:, 1:]

    return ds.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
