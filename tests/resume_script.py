"""Used by test_training.py: a tiny training that logs each epoch and can be killed and resumed."""

import sys
import time

import keras
import numpy as np
import tensorflow as tf

import seqapps  # noqa: F401
from seqapps import layers as sl
from seqapps import training
from seqapps.config import TrainConfig

run_dir, log, resume, sleep = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
cfg = TrainConfig(epochs=6, batch_size=8, patience=0, verbose=0)
training.set_seed(0)
x = np.random.default_rng(0).normal(size=(32, 5, 3)).astype("float32")
y = x.sum(axis=(1, 2))[:, None]
model = keras.Sequential([keras.Input((5, 3)), sl.GRU(4), keras.layers.Dense(1)])
model.compile(training.make_optimizer(cfg), "mse")


class Log(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        with open(log, "a") as f:
            f.write(f"{epoch}\n")
        time.sleep(sleep)


ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg.batch_size)
history = training.fit(model, ds, None, cfg, run_dir, resume=resume, callbacks=[Log()])
with open(log, "a") as f:
    f.write("done\n")
