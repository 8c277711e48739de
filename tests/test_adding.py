import numpy as np

from seqapps.experiments import adding


def test_batch_has_one_marker_in_each_half_and_sum_target():
    x, y = adding.make_batch(np.random.default_rng(0), 50, 20)
    markers = x[:, :, 1]
    assert np.all(markers[:, :10].sum(1) == 1) and np.all(markers[:, 10:].sum(1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * markers).sum(1), rtol=1e-6)
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.05  # the "predict the mean" baseline


def test_gru_learns_short_adding_problem(tmp_path):
    results = adding.main(
        [
            "--steps",
            "20",
            "--cells",
            "gru,rnn",
            "--max-iterations",
            "500",
            "--units",
            "32",
            "--eval-every",
            "50",
            "--verbose",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    by = {r["cell"]: r for r in results}
    assert by["gru"]["test_mse"] < 0.05  # well below the 0.167 of predicting the mean
    # vanishing gradients: at initialisation SimpleRNN's gradient shrinks going back in time
    g = np.array(by["rnn"]["grad_norm_init"])
    assert g[0] < 0.5 * g[-1] and g[:5].mean() < g[-5:].mean()
    assert (tmp_path / "gradient_norms.png").stat().st_size > 10_000
    assert (tmp_path / "results.json").exists()
