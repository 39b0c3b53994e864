"""Model files with composed kernels (format version 4, ``kernel_tree``).

Predictions of saved and loaded models are checked against a dense NumPy GP built from the
tree description (tests/kernel_reference.py, written from scikit-learn's definitions), and the
loaded model must predict bitwise what the saved one did. Malformed tree descriptions must fail
at load with a ModelFileError naming the node's place in the tree.
"""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import kernel_reference as kref
from checks import rewrite_archive
from gprat import kernels
from gprat.io import FORMAT_VERSION, GPModel, ModelFileError, load_model

FAMILY_PARAMS = {
    "SquaredExponential": ("lengthscale", "signal_variance"), "Matern12": ("lengthscale", "signal_variance"),
    "Matern32": ("lengthscale", "signal_variance"), "Matern52": ("lengthscale", "signal_variance"),
    "RationalQuadratic": ("lengthscale", "alpha"), "Periodic": ("lengthscale", "period"), "Linear": ("sigma_0",),
    "Constant": ("constant_value",), "White": ("noise_level",),
}
D = 3


def random_leaf(rng):
    """(kernel_reference description, fixed names) of a random family leaf."""
    name = str(rng.choice(list(FAMILY_PARAMS)))
    dims = None
    if name not in ("Constant", "White") and rng.random() < 0.5:
        dims = sorted(rng.choice(D, size=rng.integers(1, D + 1), replace=False).tolist())
    if name == "Periodic" and (dims is None or len(dims) > 1):
        dims = [int(rng.integers(D))]  # periodic on one feature (PSD on a Euclidean distance in 1-D)
    n = len(FAMILY_PARAMS[name])
    if name in kref.STATIONARY and rng.random() < 0.5:  # ARD
        n = (len(dims) if dims else D) + 1
    fixed = tuple(p for p in FAMILY_PARAMS[name] if rng.random() < 0.25)
    return (name, rng.uniform(0.5, 2.0, size=n).tolist(), dims), fixed


def random_tree(rng, leaves):
    if leaves == 1:
        return random_leaf(rng)
    left = int(rng.integers(1, leaves))
    (a, fa), (b, fb) = random_tree(rng, left), random_tree(rng, leaves - left)
    op = "Sum" if rng.random() < 0.5 else "Product"
    return (op, a, b), (fa, fb)


def to_gprat(desc, fixed):
    if desc[0] in ("Sum", "Product"):
        a, b = to_gprat(desc[1], fixed[0]), to_gprat(desc[2], fixed[1])
        return a + b if desc[0] == "Sum" else a * b
    name, p, dims = desc
    cls = getattr(kernels, name)
    if name in kref.STATIONARY:
        ls = p[0] if len(p) == 2 else np.array(p[:-1])
        return cls(lengthscale=ls, signal_variance=p[-1], active_dims=dims, fixed=fixed)
    return cls(*p, active_dims=dims, fixed=fixed)


def make_data(seed, n=30):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 3.0, size=(n, D))
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1] * X[:, 2] + 0.05 * rng.standard_normal(n)
    return X, y, rng.uniform(-2.0, 3.0, size=(7, D))


def make_model(kernel, X, y, noise=1e-2, **extra):
    return GPModel(kernel, None, None, noise, X, y, x_mean=X.mean(axis=0), x_scale=X.std(axis=0),
                   y_mean=float(y.mean()), y_scale=float(y.std()), **extra)


def reference_prediction(desc, model, Xq, noise_fixed=None):
    """Dense posterior mean and latent std in data units (R&W Alg. 2.1, kernel_reference)."""
    Z = (model.X_train - model.x_mean) / model.x_scale
    Zq = (Xq - model.x_mean) / model.x_scale
    t = (model.y_train - model.y_mean) / model.y_scale
    noise = model.noise_variance + (0.0 if noise_fixed is None else noise_fixed)
    K = kref.matrix(desc, Z) + np.diag(np.broadcast_to(noise, len(Z)))
    Ks = kref.matrix(desc, Zq, Z)
    mean = Ks @ np.linalg.solve(K, t)
    var = np.diag(kref.matrix(desc, Zq)) - np.einsum("ij,ji->i", Ks, np.linalg.solve(K, Ks.T))
    return model.y_mean + model.y_scale * mean, model.y_scale * np.sqrt(var)


@pytest.mark.parametrize("seed", range(12))
def test_random_trees_round_trip_and_match_a_dense_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    desc, fixed = random_tree(rng, int(rng.integers(2, 6)))
    X, y, Xq = make_data(seed)
    model = make_model(to_gprat(desc, fixed), X, y)
    before = model.predict(Xq, return_std=True)
    path = model.save(tmp_path / "tree.npz")
    with np.load(path) as archive:
        assert int(archive["format_version"]) == 4 and str(archive["kernel"]) == "tree"
        assert "lengthscale" not in archive.files and "signal_variance" not in archive.files
        json.loads(str(archive["kernel_tree"]))  # plain JSON
    loaded = load_model(path)
    assert loaded.kernel == model.kernel  # families, parameters (bitwise), active_dims, fixed
    assert_array_equal(loaded.kernel.trainable, model.kernel.trainable)
    after = loaded.predict(Xq, return_std=True)
    assert_array_equal(after[0], before[0])
    assert_array_equal(after[1], before[1])
    mean, std = reference_prediction(desc, model, Xq)
    assert_allclose(after[0], mean, rtol=1e-8, atol=1e-8 * np.max(np.abs(mean)))
    assert_allclose(after[1], std, rtol=1e-6, atol=1e-7)


def mauna_loa_like():
    return (kernels.Constant(4.0) * kernels.SquaredExponential(2.0, active_dims=[0])
            * kernels.Periodic(1.0, 0.5, active_dims=[0], fixed="period")
            + kernels.RationalQuadratic(1.5, 0.8, active_dims=[1, 2])
            + kernels.White(0.05, fixed=True))


def test_tree_with_noise_fixed_and_mean_constant_round_trips(tmp_path):
    X, y, Xq = make_data(50)
    noise_fixed = np.random.default_rng(1).uniform(0.0, 0.05, size=len(y))
    model = make_model(mauna_loa_like(), X, y, noise_fixed=noise_fixed, mean_constant=0.3)
    before = model.predict(Xq, return_std=True, include_noise=True)
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as archive:
        assert int(archive["format_version"]) == 4
    loaded = load_model(path)
    assert loaded.mean_constant == 0.3
    assert_array_equal(loaded.noise_fixed, noise_fixed)
    after = loaded.predict(Xq, return_std=True, include_noise=True)
    assert_array_equal(after[0], before[0])
    assert_array_equal(after[1], before[1])


def test_trained_tree_model_round_trips(tmp_path):
    X, y, Xq = make_data(3, n=40)
    model = GPModel.train(X, y, kernel=mauna_loa_like(), max_iter=15)
    assert model.kernel.k1.k1.k2.period == pytest.approx(0.5, rel=1e-14)  # fixed stays fixed
    loaded = load_model(model.save(tmp_path / "trained.npz"))
    assert_array_equal(loaded.predict(Xq), model.predict(Xq))


def test_single_family_object_keeps_the_version_2_entries(tmp_path):
    X, y, Xq = make_data(4)
    model = make_model(kernels.Matern32(lengthscale=[0.5, 1.0, 2.0], signal_variance=1.5), X, y)
    assert model.kernel == "matern32" and not model.is_tree
    with np.load(model.save(tmp_path / "m.npz")) as archive:
        assert int(archive["format_version"]) == 2 and "kernel_tree" not in archive.files
        assert_array_equal(archive["lengthscale"], [0.5, 1.0, 2.0])
    desc = ("Matern32", [0.5, 1.0, 2.0, 1.5], None)
    mean, _ = reference_prediction(desc, model, Xq)
    assert_allclose(load_model(tmp_path / "m.npz").predict(Xq), mean, rtol=1e-8, atol=1e-8)
    assert FORMAT_VERSION == 5  # 5 added the sparse model types (SGPR, SVGP)


def test_a_handmade_version_2_file_still_loads(tmp_path):
    X, y, Xq = make_data(5)
    arrays = dict(
        format=np.array("gprat-model"), format_version=np.array(2, dtype=np.int64), model_type=np.array("ExactGP"),
        gprat_version=np.array("0.0"), kernel=np.array("se"), lengthscale=np.array(1.3), signal_variance=np.array(0.9),
        noise_variance=np.array(0.02), dtype=np.array("float64"), X_train=X, y_train=y, x_mean=np.zeros(D),
        x_scale=np.ones(D), y_mean=np.array(0.0), y_scale=np.array(1.0),
        feature_names=np.array(["a", "b", "c"]), target_name=np.array("y"),
    )
    path = tmp_path / "v2.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    loaded = load_model(path)
    mean, std = reference_prediction(("SquaredExponential", [1.3, 0.9], None), loaded, Xq)
    got = loaded.predict(Xq, return_std=True)
    assert_allclose(got[0], mean, rtol=1e-9, atol=1e-9)
    assert_allclose(got[1], std, rtol=1e-6, atol=1e-8)


def _rewrite(path, **changes):
    return rewrite_archive(path, **changes)


def _saved_tree(tmp_path):
    X, y, _ = make_data(6)
    path = make_model(mauna_loa_like(), X, y).save(tmp_path / "m.npz")
    with np.load(path) as archive:
        return path, json.loads(str(archive["kernel_tree"]))


def _edit(node, where, change):
    """Apply ``change(node)`` to the node at ``where`` (a sequence of "k1"/"k2")."""
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = change(node[where[-1]])


BAD_TREES = [
    (("k1", "k1", "k2"), lambda n: {**n, "type": "Cosine"}, "kernel.k1.k1.k2: unknown kernel type 'Cosine'"),
    (("k2",), lambda n: {k: v for k, v in n.items() if k != "noise_level"}, "kernel.k2: White needs the parameter"),
    (("k1", "k2"), lambda n: {**n, "beta": 1.0}, "kernel.k1.k2: RationalQuadratic has no parameter.* beta"),
    (("k1", "k2"), lambda n: {**n, "alpha": 0.0}, "kernel.k1.k2: .*alpha"),
    (("k1", "k1", "k2"), lambda n: {**n, "period": -1.0}, "kernel.k1.k1.k2: .*period"),
    (("k1", "k1", "k2"), lambda n: {**n, "period": "1.0"}, "kernel.k1.k1.k2: Periodic.period must be a number"),
    (("k1", "k2"), lambda n: {**n, "lengthscale": [1.0, 2.0]}, "kernel.k1.k2: RationalQuadratic.lengthscale must"),
    (("k1", "k1", "k1"), lambda n: {**n, "k3": {}}, "kernel.k1.k1.k1: a Product node has exactly the keys"),
    (("k1",), lambda n: [n], "kernel.k1: a kernel node must be a JSON object"),
    (("k1", "k2"), lambda n: {**n, "active_dims": [1, "2"]}, "kernel.k1.k2: RationalQuadratic.active_dims"),
    (("k1", "k2"), lambda n: {**n, "active_dims": [1, 1]}, "kernel.k1.k2: .*duplicated"),
    (("k1", "k2"), lambda n: {**n, "fixed": ["beta"]}, "kernel.k1.k2: .*unknown parameter 'beta'"),
    (("k1", "k1", "k1", "k2"), lambda n: {**n, "lengthscale": [1.0, 2.0]},
     "kernel.k1.k1.k1.k2: .*ARD lengthscale has 2 entries but active_dims has 1"),
]


@pytest.mark.parametrize("where, change, match", BAD_TREES)
def test_malformed_tree_descriptions_name_the_node(tmp_path, where, change, match):
    path, tree = _saved_tree(tmp_path)
    _edit(tree, where, change)
    _rewrite(path, kernel_tree=np.array(json.dumps(tree)))
    with pytest.raises(ModelFileError, match=f"kernel_tree: {match}"):
        load_model(path)


def test_malformed_files_with_trees_are_refused(tmp_path):
    path, tree = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="missing: kernel_tree"):
        load_model(_rewrite(path, kernel_tree=None))
    path, _ = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(_rewrite(path, kernel_tree=np.array("{'type': 'Sum'")))
    path, _ = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="finite numbers"):
        load_model(_rewrite(path, kernel_tree=np.array(json.dumps(tree).replace("0.05", "NaN"))))
    path, _ = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="needs format_version 4; got 3"):
        load_model(_rewrite(path, format_version=np.array(3, dtype=np.int64)))
    path, _ = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="kernel_tree must be a string"):
        load_model(_rewrite(path, kernel_tree=np.zeros(2)))
    path, _ = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="active_dims entry 5 is out of range"):
        bad = json.loads(json.dumps(tree))
        bad["k1"]["k2"]["active_dims"] = [1, 5]
        load_model(_rewrite(path, kernel_tree=np.array(json.dumps(bad))))
    deep = {"type": "Constant", "constant_value": 1.0}
    for _ in range(70):
        deep = {"type": "Sum", "k1": deep, "k2": {"type": "Constant", "constant_value": 1.0}}
    path, _ = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="deeper than 64"):
        load_model(_rewrite(path, kernel_tree=np.array(json.dumps(deep))))
    path, _ = _saved_tree(tmp_path)
    with pytest.raises(ModelFileError, match="format version 6; this gprat reads versions up to 5"):
        load_model(_rewrite(path, format_version=np.array(6, dtype=np.int64)))


def test_kernel_object_with_lengthscale_is_refused():
    X, y, _ = make_data(7)
    with pytest.raises(ValueError, match="lengthscale and signal_variance must be None"):
        GPModel(kernels.SquaredExponential(1.0), 1.0, 1.0, 0.1, X, y, x_mean=np.zeros(D), x_scale=np.ones(D),
                y_mean=0.0, y_scale=1.0)
