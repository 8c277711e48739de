"""NB-weighted logistic regression on hashed n-grams (NBSVM-style): the "nblr" bag member.

Wang & Manning, "Baselines and bigrams: simple, good sentiment and topic classification", ACL 2012.
Features are the *set* of n-grams (1 to ``order`` tokens) of a review's token ids, hashed into
``vocab_size + buckets`` rows:

    unigram  w        -> w                                            (ids 1..vocab_size-1)
    bigram   (a, b)   -> vocab_size + (a * V + b) mod buckets
    trigram  (a, b, c)-> vocab_size + (((a * V + b) mod P) * V + c) mod buckets,  P = (2**31 - 1 - V) // V

(every product stays below 2**31, so the graph computes them in int32: the dtype TFLite devices
feed). An n-gram that touches padding (id 0) is dropped. Each class c gets the log-count ratio
``r_c = log((p / |p|_1) / (q / |q|_1))`` (p, q: smoothed feature counts in and outside the class) and
a liblinear logistic regression on the binary features scaled by ``r_c``; the deployed model is then
linear in the binary features, one weight per row and class: ``table[f, c] = coef_c[f] * r_c[f]``.

`ngram_rows` (NumPy) and `seqapps.sentiment.model.HashedNgramLogits` (graph) compute the same rows;
a test checks it.
"""

from __future__ import annotations

import time

import numpy as np

MAX_ORDER = 3


def trigram_prime(vocab_size: int) -> int:
    """The modulus P of the trigram hash's first stage (``P * V + c`` < 2**31)."""
    return (2**31 - 1 - vocab_size) // vocab_size


def check(vocab_size: int, buckets: int, order: int) -> None:
    from seqapps.sentiment.model import MAX_NGRAM_VOCAB

    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"ngram_order must be 1, 2 or 3, got {order}")
    if buckets <= 0:
        raise ValueError(f"ngram_buckets must be positive for the nblr bag, got {buckets}")
    if vocab_size > MAX_NGRAM_VOCAB:
        raise ValueError(
            f"vocab_size {vocab_size} is too large for int32 n-gram ids; use vocab_size <= {MAX_NGRAM_VOCAB}"
        )


def ngram_rows(seq, vocab_size: int, buckets: int, order: int) -> np.ndarray:
    """Sorted unique table rows of one id sequence (padding = 0 anywhere is skipped)."""
    s = np.asarray(seq, np.int64)
    v = vocab_size
    parts = [s[s > 0]]
    if order >= 2 and len(s) > 1:
        a, b = s[:-1], s[1:]
        parts.append((v + (a * v + b) % buckets)[(a > 0) & (b > 0)])
    if order >= 3 and len(s) > 2:
        a, b, c = s[:-2], s[1:-1], s[2:]
        h = v + (((a * v + b) % trigram_prime(v)) * v + c) % buckets
        parts.append(h[(a > 0) & (b > 0) & (c > 0)])
    return np.unique(np.concatenate(parts))


def features(seqs, vocab_size: int, buckets: int, order: int):
    """Binary (examples, vocab_size + buckets) CSR matrix of the n-gram sets."""
    from scipy import sparse

    rows = [ngram_rows(s, vocab_size, buckets, order) for s in seqs]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    data = np.ones(len(indices), np.float32)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(seqs), vocab_size + buckets))


def fit(seqs, labels, num_classes: int, vocab_size: int, buckets: int, order: int, c: float = 0.1):
    """(table (rows, outputs), bias (outputs,), info). ``outputs`` = 1 for two classes (the logit of
    class 1), else one one-vs-rest logit per class."""
    check(vocab_size, buckets, order)
    t0 = time.time()
    table, bias, info = fit_features(features(seqs, vocab_size, buckets, order), labels, num_classes, c)
    info["fit_seconds"] = round(time.time() - t0, 1)
    return table, bias, info


def fit_features(x, labels, num_classes: int, c: float = 0.1):
    """`fit` on a feature matrix from `features` (what cross-fitting reuses instead of hashing again)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels)
    targets = [1] if num_classes == 2 else list(range(num_classes))
    table = np.zeros((x.shape[1], len(targets)), np.float32)
    bias = np.zeros(len(targets), np.float32)
    for j, cls in enumerate(targets):
        pos = y == cls
        if pos.all() or not pos.any():
            raise ValueError(f"class {cls} has no training example on one side; the nblr bag cannot be fitted")
        p = 1.0 + np.asarray(x[pos].sum(0)).ravel()
        q = 1.0 + np.asarray(x[~pos].sum(0)).ravel()
        r = np.log((p / p.sum()) / (q / q.sum()))
        clf = LogisticRegression(C=c, solver="liblinear", dual=True, max_iter=2000)
        clf.fit(x.multiply(r).tocsr(), pos.astype(np.int32))
        table[:, j] = clf.coef_.ravel() * r
        bias[j] = clf.intercept_[0]
    table[0] = 0.0  # row 0 is padding
    info = {
        "features": int(x.shape[1]),
        "active_rows": int((np.abs(table).sum(1) > 0).sum()),
        "mean_ngrams_per_example": round(float(x.getnnz(axis=1).mean()), 1),
        "c": c,
    }
    return table, bias, info


def logits(x, table, bias) -> np.ndarray:
    """Class logits of a feature matrix from `features`, as the graph layer gives them (two classes:
    ``[0, z]``); the NumPy twin of `seqapps.sentiment.model.HashedNgramClassifier`."""
    z = np.asarray(x @ table) + bias
    return np.concatenate([np.zeros_like(z), z], axis=1) if z.shape[1] == 1 else z


def out_of_fold_logits(x, labels, num_classes: int, c: float = 0.1, folds: int = 5, seed: int = 0, groups=None):
    """Class logits of every row of the feature matrix ``x`` from a model fitted without its fold (what the
    n-gram model says about reviews it has not seen: the residual the recurrent member learns to correct).
    ``groups`` (one key per row, e.g. the split's groups: a block of IMDB ids, a sentence and its phrases) keeps
    each group in one fold, as the split keeps it on one side: with rows drawn one by one, a phrase's sentence
    and other reviews of the same block sat in the other folds (on SST-2: 90.2% out of fold against 82.1% on validation;
    by group 79.6%)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if groups is None:
        fold = rng.permutation(x.shape[0]) % folds
    else:
        keys: dict = {}  # group -> its number, in order of first row (a NumPy string array of whole texts would
        row_key = np.array([keys.setdefault(g, len(keys)) for g in groups])  # take rows x longest text x 4 bytes)
        fold = (rng.permutation(len(keys)) % folds)[row_key]
    out = np.zeros((x.shape[0], num_classes), np.float32)
    for k in range(folds):
        train, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        table, bias, _ = fit_features(x[train], labels[train], num_classes, c)
        out[held] = logits(x[held], table, bias)
    return out


def softmax(z) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
