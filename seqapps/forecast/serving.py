"""What ships: raw window in, quantiles in target units out (feature engineering and scaling inside).

SavedModel ``serving_default``
    window    float32 [None, W, C]  raw values, columns in ``metadata.json`` ``input_columns`` order
    -> quantiles float32 [None, H, Q]  forecasts of the target for steps 1..H (prices for stocks)
       valid     bool    [None]        false where the window has NaN/inf (or a price <= 0): its quantiles are NaN
TFLite (builtin ops, batch 1): window [1, W, C] -> quantiles [1, H, Q], valid [1], the same way: a bad window
never gets a plausible forecast (its values are replaced by 1 inside, to keep NaN out of the RNN state)
"""

from __future__ import annotations

import tensorflow as tf

from seqapps.export.saved_model import KerasModule
from seqapps.forecast import features


class ForecastModule(KerasModule):
    def __init__(self, model, spec: features.FeatureSpec, batch=None):
        super().__init__(model)
        self.spec = spec
        C = len(spec.columns)
        self.forecast = tf.function(
            self._forecast, input_signature=[tf.TensorSpec([batch, spec.window, C], tf.float32, name="window")]
        )

    def _forecast(self, window):
        spec = self.spec
        ok = features.valid(window, spec)
        clean = tf.where(tf.math.is_finite(window), window, tf.ones_like(window))  # never NaN inside the RNN
        x, anchor, scale = features.engineer(clean, spec)
        z = self.model(x, training=False)
        q = features.decode(z, anchor, scale, spec)
        q = tf.where(ok[:, None, None], q, tf.fill(tf.shape(q), float("nan")))
        return {"quantiles": q, "valid": ok}

    def signatures(self):
        return {"serving_default": self.forecast}
