"""Used by test_distribute.py: one small training run under a tf.distribute strategy.

argv: distribute out_dir [logical_cpus]
"""

import json
import os
import sys

import tensorflow as tf

distribute, out_dir = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[3]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import seqapps  # noqa: E402,F401
from seqapps import layers as sl  # noqa: E402
from seqapps import training  # noqa: E402
from seqapps.config import TrainConfig  # noqa: E402

cfg = TrainConfig(epochs=3, batch_size=16, patience=0, verbose=0, distribute=distribute, learning_rate=0.01)
training.set_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 6, 3)).astype("float32")
y = x.sum(axis=(1, 2))[:, None].astype("float32")
strategy = training.strategy(cfg)
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 3)), sl.GRU(8), keras.layers.Dense(1)])
    model.compile(training.make_optimizer(cfg), "mse")
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg.batch_size)
history = training.fit(model, ds, None, cfg, os.path.join(out_dir, "run"))
task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
if task == 0:  # the chief saves the model
    model.save(os.path.join(out_dir, "model.keras"))
with open(os.path.join(out_dir, f"result-{task}.json"), "w") as f:
    json.dump({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"]}, f)
