"""gprat.task_graph: the DOT dump of the dependency graph the runtime derives.

Expected graphs come from the mathematics of the right-looking tiled Cholesky, written out by
hand (N = 3 tiles) and counted in closed form (N tiles: N potrf, N(N-1)/2 trsm and syrk,
N(N-1)(N-2)/6 gemm), not from the runtime.
"""

import re
from collections import Counter

import numpy as np
import pytest

import gprat


def _spd(n, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


def _cholesky_graph(n_tiles, nb, tmp_path):
    a = _spd(n_tiles * nb)
    t = gprat.linalg.TiledSymmetric(a, tile_size=nb)  # copy-in graph built outside the block
    with gprat.task_graph(tmp_path / "chol.dot") as g:
        t.cholesky()
    # Recording changes nothing in the result.
    np.testing.assert_allclose(np.tril(t.to_numpy()), np.linalg.cholesky(a), rtol=1e-10, atol=1e-12)
    return g, (tmp_path / "chol.dot").read_text()


def test_three_tile_cholesky_has_the_hand_derived_edges(tmp_path):
    g, dot = _cholesky_graph(3, 4, tmp_path)
    names = {task: name for _, task, name, _ in g["nodes"]}
    assert Counter(names.values()) == {"potrf": 3, "trsm": 3, "syrk": 3, "gemm": 1}
    # Tasks named by the tile they write and the step: potrf(k), trsm(i,k), syrk(i,k), gemm(i,j,k).
    # Data flow of L = chol(A), 3 x 3 tiles:
    #   potrf(0) -> trsm(1,0), trsm(2,0)
    #   trsm(1,0) -> syrk(1,0), gemm(2,1,0);   trsm(2,0) -> syrk(2,0), gemm(2,1,0)
    #   syrk(1,0) -> potrf(1) -> trsm(2,1) <- gemm(2,1,0)
    #   trsm(2,1) -> syrk(2,1) <- syrk(2,0);   syrk(2,1) -> potrf(2)
    expected = Counter({("potrf", "trsm"): 3, ("trsm", "syrk"): 3, ("trsm", "gemm"): 2, ("syrk", "potrf"): 2,
                        ("gemm", "trsm"): 1, ("syrk", "syrk"): 1})
    edges = [(f, t) for _, f, t in g["edges"]]
    assert Counter((names[f], names[t]) for f, t in edges) == expected
    assert len(set(edges)) == len(edges) == 12
    assert all(f < t for f, t in edges)  # a task only waits for tasks submitted before it
    # The DOT text declares every node and every edge.
    for graph, task, name, _ in g["nodes"]:
        assert re.search(rf'g{graph}_t{task} \[label="{name} #{task} ', dot)
    for graph, f, t in g["edges"]:
        assert f"g{graph}_t{f} -> g{graph}_t{t};" in dot
    assert dot.startswith("digraph gprat {") and dot.rstrip().endswith("}")


@pytest.mark.parametrize("n_tiles", [1, 2, 4, 5])
def test_task_counts_match_the_closed_form(n_tiles, tmp_path):
    g, _ = _cholesky_graph(n_tiles, 3, tmp_path)
    counts = Counter(name for *_, name, _ in g["nodes"])
    N = n_tiles
    assert counts == Counter({"potrf": N, "trsm": N * (N - 1) // 2, "syrk": N * (N - 1) // 2,
                              "gemm": N * (N - 1) * (N - 2) // 6}) - Counter()
    # Every task but the first potrf has a predecessor; the last potrf is reachable from all.
    tasks = {task for _, task, _, _ in g["nodes"]}
    has_pred = {t for _, _, t in g["edges"]}
    assert tasks - has_pred == {0}


def test_recording_stops_after_the_block_and_after_an_error(tmp_path):
    a = _spd(12)
    with pytest.raises(RuntimeError, match="boom"):
        with gprat.task_graph(tmp_path / "err.dot") as g:
            gprat.linalg.cholesky(a, tile_size=4)
            raise RuntimeError("boom")
    assert g["nodes"] and (tmp_path / "err.dot").read_text().startswith("digraph")
    with gprat.task_graph(tmp_path / "empty.dot") as g2:
        pass
    gprat.linalg.cholesky(a, tile_size=4)  # outside any block: not recorded
    assert g2 == {"nodes": [], "edges": []}
    with gprat.task_graph(tmp_path / "again.dot") as g3:
        pass
    assert g3 == {"nodes": [], "edges": []}


def test_training_step_graph_is_one_graph(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((40, 2)), rng.standard_normal(40)
    gp = gprat.ExactGP(gprat.kernels.SquaredExponential(lengthscale=[1.0, 1.0]), noise_variance=0.1,
                       tile_size=10).fit(X, y)
    with gprat.task_graph(tmp_path / "step.dot") as g:  # not the fitted theta: a step there reuses the factor
        gp.log_marginal_likelihood(gp.theta + 0.1, eval_gradient=True)
    graphs = {graph for graph, *_ in g["nodes"]}
    assert len(graphs) == 1, "assembly, factor, solves, inverse and gradient form one task graph"
    names = Counter(name for *_, name, _ in g["nodes"])
    assert names["potrf"] == 4 and names["trtri"] == 4
