"""Every shipped SavedModel loads and answers its example request in a process without seqapps."""

import numpy as np
import pytest

from seqapps.export import examples

OUTPUTS = {
    "translate": {"translation"},
    "sentiment": {"probabilities", "label"},
    "speech": {"probabilities", "label"},
    "forecast": {"quantiles"},
    "weather": {"quantiles"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", examples.shipped())
def test_example_request(name):
    inputs, outputs = examples.run(name)
    assert OUTPUTS[name] <= set(outputs), sorted(outputs)
    n = len(next(iter(inputs.values())))
    for key in OUTPUTS[name]:
        assert len(outputs[key]) == n
        if outputs[key].dtype.kind == "f":
            assert np.all(np.isfinite(outputs[key]))
    req, resp = examples.rest(inputs, outputs)
    assert len(req["instances"]) == n and len(resp["predictions"]) == n


def test_all_apps_ship_a_model():
    assert set(examples.EXAMPLES) == set(examples.shipped())
