"""GPRat-compatible API against GPRat's own known-good results.

The expected values come from GPRat itself (``shared/data/gprat_msd_1024/output.json``, produced
by GPRat's ``test/src/output_correctness.cpp``): n_train = n_test = 128, n_tiles = 4, n_reg = 8,
kernel_params [1, 1, 0.1], Adam lr 0.1, betas 0.9/0.999, eps 1e-8, 3 iterations. Cholesky and
the predictions are taken at the initial parameters, then the three losses come from optimize().
"""

import json
import math
from pathlib import Path

import gprat
import numpy as np
import pytest
import reference as ref

DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MSD_DIR = DATA_ROOT / "gprat_msd_1024"

N_TRAIN = 128
N_TEST = 128
N_TILES = 4
N_REG = 8
OPT_ITER = 3
RTOL = 1e-10

needs_gprat_data = pytest.mark.skipif(
    not (MSD_DIR / "output.json").is_file(),
    reason=f"GPRat reference data not found at {MSD_DIR} (expected ../shared/data next to the repo)",
)


@pytest.fixture(scope="module")
def expected():
    with open(MSD_DIR / "output.json") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def gprat_run():
    """Run GPRat's correctness scenario once through the compatibility API."""
    n_tile_size = gprat.compute_train_tile_size(N_TRAIN, N_TILES)
    m_tiles, m_tile_size = gprat.compute_test_tiles(N_TEST, N_TILES, n_tile_size)
    hpar = gprat.AdamParams(learning_rate=0.1, beta1=0.9, beta2=0.999, epsilon=1e-8, opt_iter=OPT_ITER)
    train_in = gprat.GP_data(str(MSD_DIR / "training_input.txt"), N_TRAIN, N_REG)
    train_out = gprat.GP_data(str(MSD_DIR / "training_output.txt"), N_TRAIN, N_REG)
    test_in = gprat.GP_data(str(MSD_DIR / "test_input.txt"), N_TEST, N_REG)
    gp = gprat.GP(
        train_in.data,
        train_out.data,
        N_TILES,
        n_tile_size,
        n_reg=N_REG,
        kernel_params=[1.0, 1.0, 0.1],
        trainable=[True, True, True],
    )
    gprat.start_hpx([], 2)
    try:
        results = {
            "cholesky": gp.cholesky(),
            "sum": gp.predict_with_uncertainty(test_in.data, m_tiles, m_tile_size),
            "full": gp.predict_with_full_cov(test_in.data, m_tiles, m_tile_size),
            "pred": gp.predict(test_in.data, m_tiles, m_tile_size),
            "losses": gp.optimize(hpar),
        }
    finally:
        gprat.stop_hpx()
    return results


# --- GPRat's known-good results ----------------------------------------------------------------


@needs_gprat_data
def test_cholesky_tiles_match_gprat(gprat_run, expected):
    tiles, expected_tiles = gprat_run["cholesky"], expected["cholesky"]
    assert len(tiles) == len(expected_tiles) == N_TILES * N_TILES
    nb = N_TRAIN // N_TILES
    lower = np.tril(np.ones((nb, nb), dtype=bool))
    for index, (tile, reference) in enumerate(zip(tiles, expected_tiles)):
        i, j = divmod(index, N_TILES)
        if j > i:
            assert tile == [] and reference == []
            continue
        got = np.asarray(tile).reshape(nb, nb)
        want = np.asarray(reference).reshape(nb, nb)
        # GPRat's diagonal tiles still hold K above the diagonal: compare the lower triangle.
        mask = lower if i == j else np.ones_like(lower)
        np.testing.assert_allclose(got[mask], want[mask], rtol=RTOL, atol=0, err_msg=f"tile ({i},{j})")
        if i == j:
            assert np.all(got[~lower] == 0.0)


@needs_gprat_data
def test_losses_match_gprat(gprat_run, expected):
    assert len(gprat_run["losses"]) == OPT_ITER
    np.testing.assert_allclose(gprat_run["losses"], expected["losses"], rtol=RTOL, atol=0)


@needs_gprat_data
def test_numpy_adam_reference_reproduces_gprat(expected):
    # The NumPy Adam of tests/reference.py, written from DESIGN.md, is the oracle of the Adam
    # tests below: here it is checked against GPRat's own losses, without gprat.GP involved.
    pad = [0.0] * (N_REG - 1)  # GP_data pads inputs and outputs alike

    def series(name):
        with open(MSD_DIR / name) as handle:
            return pad + [float(line) for line in handle][:N_TRAIN]

    X, y = ref.gprat_samples(series("training_input.txt"), series("training_output.txt"), N_TRAIN, N_REG)
    losses, _ = ref.gprat_adam(X, y, [1.0, 1.0, 0.1], [True] * 3, 0.1, 0.9, 0.999, 1e-8, OPT_ITER)
    np.testing.assert_allclose(losses, expected["losses"], rtol=RTOL, atol=0)


@needs_gprat_data
@pytest.mark.parametrize("key", ["sum", "full"])
def test_mean_and_variance_match_gprat(gprat_run, expected, key):
    mean, variance = gprat_run[key]
    assert len(mean) == len(variance) == N_TEST
    np.testing.assert_allclose(mean, expected[key][0], rtol=RTOL, atol=0)
    np.testing.assert_allclose(variance, expected[key][1], rtol=RTOL, atol=0)


@needs_gprat_data
def test_predict_matches_gprat(gprat_run, expected):
    assert len(gprat_run["pred"]) == N_TEST
    np.testing.assert_allclose(gprat_run["pred"], expected["pred"], rtol=RTOL, atol=0)


@needs_gprat_data
def test_results_are_plain_lists(gprat_run):
    assert isinstance(gprat_run["pred"], list) and isinstance(gprat_run["pred"][0], float)
    assert isinstance(gprat_run["losses"][0], float)
    assert isinstance(gprat_run["sum"], list) and len(gprat_run["sum"]) == 2


# --- GPRat semantics ---------------------------------------------------------------------------


@needs_gprat_data
def test_gp_data_pads_with_leading_zeros():
    data = gprat.GP_data(str(MSD_DIR / "training_input.txt"), 10, N_REG)
    with open(MSD_DIR / "training_input.txt") as handle:
        first = [float(next(handle)) for _ in range(10)]
    assert data.n_samples == 10 and data.n_regressors == N_REG
    assert data.file_path == str(MSD_DIR / "training_input.txt")
    assert data.data == [0.0] * (N_REG - 1) + first


def test_gp_data_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        gprat.GP_data(str(tmp_path / "missing.txt"), 4, 2)
    short = tmp_path / "short.txt"
    short.write_text("1.0\n2.0\n")
    with pytest.raises(ValueError, match="holds 2 numbers; expected at least n_samples=3"):
        gprat.GP_data(str(short), 3, 2)
    bad = tmp_path / "bad.txt"
    bad.write_text("1.0\nabc\n")
    with pytest.raises(ValueError, match="line 2"):
        gprat.GP_data(str(bad), 2, 2)


def test_tile_helpers_follow_gprat_rules():
    assert gprat.compute_train_tile_size(128, 4) == 32
    assert gprat.compute_train_tile_size(130, 4) == 32  # GPRat drops the remainder
    assert gprat.compute_test_tiles(128, 4, 32) == (4, 32)  # multiple of the tile size
    assert gprat.compute_test_tiles(64, 4, 32) == (2, 32)
    assert gprat.compute_test_tiles(100, 4, 32) == (4, 25)  # otherwise n_tiles tiles
    assert gprat.compute_test_tiles(10, 4, 32) == (4, 2)
    with pytest.raises(ValueError, match="n_tiles must be a positive integer"):
        gprat.compute_train_tile_size(128, 0)


def test_adam_params_defaults():
    params = gprat.AdamParams()
    assert (params.learning_rate, params.beta1, params.beta2, params.epsilon, params.opt_iter) == (
        0.001,
        0.9,
        0.999,
        1e-8,
        0,
    )
    params.learning_rate = 0.1
    assert "learning_rate=0.1" in repr(params)


def _small_series():
    rng = np.random.default_rng(0)
    series_in = [0.0] * 3 + rng.standard_normal(16).tolist()
    series_out = [0.0] * 3 + np.sin(np.arange(16)).tolist()
    return series_in, series_out


def _small_gp(**kwargs):
    return gprat.GP(*_small_series(), 4, 4, n_reg=4, **kwargs)


def _small_samples():
    """(X, y) of _small_gp() built by tests/reference.py from GPRat's windowing rule."""
    return ref.gprat_samples(*_small_series(), 16, 4)


#: gprat.GP against the dense NumPy reference (LAPACK Cholesky, closed-form gradient): both are
#: backward stable on these 16 x 16 matrices (condition number < 100), so losses and parameters
#: agree to ~1e-13; 1e-10 leaves room for the 3 Adam steps to amplify rounding.
REF_RTOL = 1e-10


def test_gp_defaults_and_attributes():
    gp = _small_gp()
    assert gp.n_reg == 4
    assert gp.kernel_params == [1.0, 1.0, 0.1]
    assert len(gp.get_input_data()) == 19 and len(gp.get_output_data()) == 19
    assert "lengthscale=1.000000000000" in repr(gp)


def test_untrainable_parameters_stay_fixed():
    gp = _small_gp(trainable=[True, False, False])
    losses = gp.optimize(gprat.AdamParams(learning_rate=0.1, opt_iter=2))
    assert len(losses) == 2
    l, v, s = gp.kernel_params
    assert l != 1.0 and v == 1.0 and s == 0.1
    ref_losses, ref_params = ref.gprat_adam(*_small_samples(), [1.0, 1.0, 0.1], [True, False, False],
                                            0.1, 0.9, 0.999, 1e-8, 2)
    np.testing.assert_allclose(losses, ref_losses, rtol=REF_RTOL, atol=0)
    np.testing.assert_allclose(gp.kernel_params, ref_params, rtol=REF_RTOL, atol=0)


def test_optimize_and_optimize_step_follow_numpy_adam():
    # Both are compared with the NumPy Adam of tests/reference.py (checked against GPRat's own
    # losses in test_numpy_adam_reference_reproduces_gprat), not only with each other.
    a, b = _small_gp(), _small_gp()
    params = gprat.AdamParams(learning_rate=0.05, opt_iter=3)
    losses = a.optimize(params)
    steps = [b.optimize_step(params, i) for i in range(3)]
    X, y = _small_samples()
    ref_losses, ref_params = ref.gprat_adam(X, y, [1.0, 1.0, 0.1], [True] * 3, 0.05, 0.9, 0.999, 1e-8, 3)
    np.testing.assert_allclose(losses, ref_losses, rtol=REF_RTOL, atol=0, err_msg="optimize losses")
    np.testing.assert_allclose(steps, ref_losses, rtol=REF_RTOL, atol=0, err_msg="optimize_step losses")
    np.testing.assert_allclose(a.kernel_params, ref_params, rtol=REF_RTOL, atol=0, err_msg="optimize params")
    np.testing.assert_allclose(b.kernel_params, ref_params, rtol=REF_RTOL, atol=0, err_msg="optimize_step params")
    # The two paths run the same steps: they agree to rounding.
    assert losses == pytest.approx(steps, rel=1e-14)
    assert a.kernel_params == pytest.approx(b.kernel_params, rel=1e-14)
    # Each loss is the one at the parameters before its step; the loss now is at the final ones.
    assert b.compute_loss() == pytest.approx(ref.gprat_loss(X, y, ref_params), rel=REF_RTOL)
    assert b.compute_loss() != steps[-1]


def test_first_adam_step_moves_each_parameter_by_the_learning_rate():
    # With zero moments, Adam's first step is lr * g / (|g| + eps / sqrt(1 - beta2)): about lr
    # in the softplus space, whatever the gradient's size.
    gp = _small_gp()
    before = gp.kernel_params
    gp.optimize_step(gprat.AdamParams(learning_rate=0.1), 0)
    for old, new, jitter in zip(before, gp.kernel_params, (0.0, 0.0, 1e-6)):
        p_old = math.log(math.expm1(old - jitter))
        p_new = math.log(math.expm1(new - jitter))
        assert abs(p_new - p_old) == pytest.approx(0.1, rel=1e-3)


@pytest.mark.parametrize("kernel_params", [[1.0, 1.0, 0.1], [0.7, 1.9, 0.03]])
def test_compute_loss_is_per_sample_nlml(kernel_params):
    # Distinct l, v, s in the second case: a swapped parameter would not go unseen.
    gp = _small_gp(kernel_params=kernel_params)
    loss = gp.compute_loss()
    assert loss == pytest.approx(ref.gprat_loss(*_small_samples(), kernel_params), rel=REF_RTOL)
    assert loss == pytest.approx(gp.optimize(gprat.AdamParams(opt_iter=1))[0], rel=1e-14)


def test_gp_rejects_short_series_and_bad_parameters():
    with pytest.raises(ValueError, match="input_data is too short"):
        gprat.GP([0.0] * 10, [0.0] * 20, 4, 4, n_reg=4)
    with pytest.raises(ValueError, match="output_data is too short"):
        gprat.GP([0.0] * 30, [0.0] * 10, 4, 4, n_reg=4)
    with pytest.raises(ValueError, match="noise_variance must be positive"):
        gprat.GP([0.0] * 30, [0.0] * 30, 4, 4, n_reg=4, kernel_params=[1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="test_data is too short"):
        _small_gp().predict([0.0] * 5, 2, 2)


@pytest.mark.skipif(gprat.compiled_with_cuda(), reason="this build has CUDA")
def test_gpu_arguments_without_cuda():
    assert gprat.gpu_count() == 0
    with pytest.raises(gprat.BackendUnavailableError, match="no CUDA backend"):
        _small_gp(gpu_id=0, n_units=1)


def test_runtime_control_functions():
    # A fresh GP each time: its fit runs on the runtime in the state just set.
    expected = ref.gprat_loss(*_small_samples(), [1.0, 1.0, 0.1])
    suspended = False
    try:
        gprat.start_hpx(["gprat"], 1)
        assert gprat.num_threads() == 1 and gprat.is_running()
        assert _small_gp().compute_loss() == pytest.approx(expected, rel=REF_RTOL), "after start_hpx"
        gprat.suspend_hpx()
        suspended = True
        with pytest.raises(gprat.RuntimeStateError, match="suspended"):
            _small_gp().compute_loss()
        gprat.resume_hpx()
        suspended = False
        assert _small_gp().compute_loss() == pytest.approx(expected, rel=REF_RTOL), "after resume_hpx"
        gprat.stop_hpx()
        assert not gprat.is_running()
        assert _small_gp().compute_loss() == pytest.approx(expected, rel=REF_RTOL), "after stop_hpx (lazy start)"
    finally:
        if suspended:  # never leave the runtime suspended for the tests that follow
            gprat.resume_hpx()
