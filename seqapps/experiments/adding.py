"""The adding problem (Hochreiter & Schmidhuber, 1997): long-range memory of SimpleRNN, LSTM, GRU.

Each input step is a pair (value ~ U[0, 1], marker); exactly two markers are 1, one in each half of
the sequence, and the target is the sum of the two marked values. Predicting the mean (1.0) scores
an MSE of about 0.167 (1/6); a model only solves the task by carrying the first value across ~T/2
steps. The script trains each cell (through `seqapps.layers`), reports test MSE, and plots the norm
of the loss gradient reaching each input time step (vanishing gradients, measured at initialisation
and after training).

    python -m seqapps.experiments.adding                 # T=100, writes runs/adding/
    python -m seqapps.experiments.adding --steps 30 --max-iterations 300   # quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from seqapps import native_log


def make_batch(rng, batch: int, steps: int):
    values = rng.uniform(size=(batch, steps)).astype("float32")
    markers = np.zeros((batch, steps), "float32")
    half = steps // 2
    first = rng.integers(0, half, size=batch)
    second = rng.integers(half, steps, size=batch)
    markers[np.arange(batch), first] = 1.0
    markers[np.arange(batch), second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[np.arange(batch), first] + values[np.arange(batch), second])[:, None]
    return x, y


def build(kind: str, units: int, steps: int):
    import keras

    from seqapps import layers as sl

    return keras.Sequential(
        [keras.Input((steps, 2)), sl.RNN(sl.make_cell(kind, units)), keras.layers.Dense(1)], name=kind
    )


def gradient_norms(model, x, y):
    """||dL/dx_t|| averaged over the batch, for every time step t."""
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_mean(tf.square(model(x) - y))
    g = tape.gradient(loss, x)
    return tf.reduce_mean(tf.norm(g, axis=-1), axis=0).numpy()


def train_one(kind, args, test):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build(kind, args.units, args.steps)
    opt = keras.optimizers.Adam(args.learning_rate, clipnorm=1.0)
    grad_before = gradient_norms(model, *test)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    t0 = time.time()
    curve, it = [], 0
    progbar = keras.utils.Progbar(args.max_iterations, stateful_metrics=["test_mse"], verbose=args.verbose)
    mse = float("nan")
    while it < args.max_iterations:
        loss = float(step(*make_batch(rng, args.batch_size, args.steps)))
        it += 1
        if it % args.eval_every == 0 or it == args.max_iterations:
            mse = float(np.mean((model(test[0]).numpy() - test[1]) ** 2))
            curve.append((it, mse))
            if mse < args.target / 2:  # comfortably solved
                progbar.update(it, [("loss", loss), ("test_mse", mse)], finalize=True)
                break
        progbar.update(it, [("loss", loss), ("test_mse", mse)])
    mse = float(np.mean((model(test[0]).numpy() - test[1]) ** 2))
    return {
        "cell": kind,
        "test_mse": mse,
        "solved": mse < args.target,
        "iterations": it,
        "seconds": round(time.time() - t0, 1),
        "curve": curve,
        "grad_norm_init": grad_before.tolist(),
        "grad_norm_trained": gradient_norms(model, *test).tolist(),
    }


def plot(results, steps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for r in results:
        t = np.arange(steps)
        axes[0].semilogy(t, np.maximum(r["grad_norm_init"], 1e-30), label=r["cell"])
        axes[1].semilogy(t, np.maximum(r["grad_norm_trained"], 1e-30), label=r["cell"])
        it, mse = zip(*r["curve"]) if r["curve"] else ([], [])
        axes[2].semilogy(it, mse, label=f"{r['cell']} ({r['test_mse']:.4f})")
    axes[0].set_title("gradient norm reaching step t (initialisation)")
    axes[1].set_title("gradient norm reaching step t (after training)")
    axes[2].axhline(1 / 6, color="grey", ls="--", label="predict the mean (0.167)")
    axes[2].axhline(0.01, color="black", ls=":", label="target 0.01")
    axes[2].set_title(f"test MSE, adding problem T={steps}")
    for ax, xl in zip(axes, ("time step t", "time step t", "iteration")):
        ax.set_xlabel(xl)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m seqapps.experiments.adding",
        description="Adding problem for SimpleRNN, LSTM and GRU (seqapps.layers).",
    )
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells to train (default: all three)")
    p.add_argument("--units", type=int, default=64, help="recurrent units (default 64)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per step (default 64)")
    p.add_argument("--learning-rate", type=float, default=2e-3, help="Adam learning rate (default 0.002)")
    p.add_argument("--max-iterations", type=int, default=4000, help="training steps per cell at most (default 4000)")
    p.add_argument("--eval-every", type=int, default=100, help="steps between test-MSE checks (default 100)")
    p.add_argument("--target", type=float, default=0.01, help="test MSE that counts as solved (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out", type=Path, default=Path("runs/adding"), help="folder for results and plots (default runs/adding)"
    )
    p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress (default 1)")
    args = p.parse_args(argv)
    native_log.init_devices()  # TensorFlow's start-up errors about nothing wrong stay hidden
    import seqapps  # noqa: F401

    test = make_batch(np.random.default_rng(10_000 + args.seed), 1000, args.steps)
    results = [train_one(kind, args, test) for kind in args.cells.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"T": args.steps, "results": results}, indent=1))
    plot(results, args.steps, args.out / "gradient_norms.png")
    print(f"\nAdding problem, T={args.steps} (predicting the mean: MSE ~0.167; target < {args.target}):")
    print("| cell | test MSE | solved | iterations | seconds |\n|---|---:|---|---:|---:|")
    for r in results:
        print(
            f"| {r['cell']} | {r['test_mse']:.4f} | {'yes' if r['solved'] else 'no'} | {r['iterations']} | "
            f"{r['seconds']} |"
        )
    print(f"plot: {args.out / 'gradient_norms.png'}")
    return results


if __name__ == "__main__":
    main()
