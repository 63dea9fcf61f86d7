"""SMO solver of the selection QP against a reference convex solver (cvxpy + Clarabel)."""

import math

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenesqueezer_core.errors import ConfigError
from scenesqueezer_core.selection import smo
from scenesqueezer_core.selection.smo import initial_alpha, qp_objective, solve_qp_smo

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cvxpy_optimum(K, d, tau, nu):
    m = len(d)
    a = cp.Variable(m)
    problem = cp.Problem(cp.Minimize(cp.quad_form(a, cp.psd_wrap(K)) - tau * d @ a),
                         [cp.sum(a) == 1, a >= 0, a <= 1.0 / (nu * m)])
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return problem.value


@st.composite
def qp_problems(draw):
    """Random PSD problems: an RBF kernel on random features, or a low-rank Gram matrix B B^T."""
    m = draw(st.integers(5, 60))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["rbf", "gram"]))
    features = rng.normal(size=(m, draw(st.integers(1, 8)))) * draw(st.floats(0.1, 3.0))
    if kind == "rbf":
        gamma = draw(st.floats(0.05, 5.0))
        K = np.exp(-gamma * ((features[:, None] - features[None]) ** 2).sum(-1))
    else:
        gamma = None
        K = features @ features.T / features.shape[1]
    d = rng.random(m)
    tau = draw(st.floats(0.0, 3.0))
    nu = draw(st.floats(0.02, 1.0))
    return K, features, gamma, d, tau, nu


def check_feasible(alpha, nu):
    m = len(alpha)
    C = 1.0 / (nu * m)
    assert abs(alpha.sum() - 1.0) <= 1e-9
    assert alpha.min() >= 0.0
    assert alpha.max() <= C * (1 + 1e-12)
    assert np.count_nonzero(alpha > 0) >= math.ceil(nu * m - 1e-9)


@SETTINGS
@given(qp_problems())
def test_smo_matches_convex_solver(problem):
    K, _, _, d, tau, nu = problem
    result = solve_qp_smo(d, K=K, tau=tau, nu=nu)
    assert result.converged
    check_feasible(result.alpha, nu)
    assert abs(result.objective - cvxpy_optimum(K, d, tau, nu)) <= 1e-4
    assert result.objective == pytest.approx(qp_objective(result.alpha, d, tau, K=K), abs=1e-12)


@SETTINGS
@given(qp_problems().filter(lambda p: p[2] is not None))
def test_dense_and_implicit_kernel_agree(problem):
    K, features, gamma, d, tau, nu = problem
    dense = solve_qp_smo(d, K=K, tau=tau, nu=nu)
    implicit = solve_qp_smo(d, features=features, gamma=gamma, tau=tau, nu=nu)
    check_feasible(implicit.alpha, nu)
    assert implicit.objective == pytest.approx(dense.objective, abs=1e-9)
    # The optimum is unique only for a strictly convex problem; otherwise (e.g. tau = 0 with a
    # near-singular K) rounding differences between the two kernels may pick another optimal alpha.
    if np.linalg.eigvalsh(K).min() > 1e-3:
        np.testing.assert_allclose(implicit.alpha, dense.alpha, atol=1e-4)


@given(st.integers(1, 200), st.floats(1e-3, 1.0))
@settings(max_examples=60, deadline=None)
def test_initialization_is_feasible_for_non_integer_nu_m(m, nu):
    d = np.random.default_rng(m).random(m)
    alpha = initial_alpha(d, nu)
    check_feasible(alpha, nu)
    assert np.count_nonzero(alpha) == min(m, math.ceil(nu * m - 1e-9))
    # the non-zero entries are the best scores
    assert d[alpha > 0].min() >= d[alpha == 0].max(initial=-np.inf)


def test_scores_win_when_the_kernel_is_constant():
    # With K = 1 1^T, a^T K a = (sum a)^2 = 1 for every feasible a: the QP keeps the nu*m best scores.
    d = np.linspace(0, 1, 40)
    result = solve_qp_smo(d, K=np.ones((40, 40)), tau=1.0, nu=0.25)
    assert set(result.kept) == set(range(30, 40))


def test_redundant_points_are_spread_out():
    # Two tight groups of points with equal scores: a strong kernel term keeps points in both groups.
    features = np.concatenate([np.zeros((10, 2)), np.full((10, 2), 10.0)]) + 1e-3 * np.arange(20)[:, None]
    d = np.concatenate([np.full(10, 1.0), np.full(10, 0.9)])
    result = solve_qp_smo(d, features=features, gamma=1.0, tau=0.01, nu=0.2)
    kept = result.kept
    assert (kept < 10).any() and (kept >= 10).any()
    # with the kernel term switched off the best-scored group takes everything
    assert (solve_qp_smo(d, K=np.ones((20, 20)), tau=1.0, nu=0.2).kept < 10).all()


def test_single_point_and_full_keep():
    assert solve_qp_smo(np.array([0.3]), K=np.ones((1, 1)), tau=1.0, nu=0.5).alpha.tolist() == [1.0]
    result = solve_qp_smo(np.random.default_rng(0).random(7), K=np.eye(7), tau=1.0, nu=1.0)
    np.testing.assert_allclose(result.alpha, np.full(7, 1 / 7))


def test_max_iter_reports_not_converged():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 3))
    result = solve_qp_smo(rng.random(300), features=features, gamma=0.5, tau=0.01, nu=0.1, max_iter=3)
    assert result.iterations == 3 and not result.converged and result.kkt_gap > 1e-6
    check_feasible(result.alpha, 0.1)


@pytest.mark.parametrize("kwargs, error", [
    (dict(K=np.eye(3), tau=1.0, nu=0.0), ConfigError),
    (dict(K=np.eye(3), tau=1.0, nu=1.5), ConfigError),
    (dict(K=np.eye(3), tau=-1.0, nu=0.5), ConfigError),
    (dict(tau=1.0, nu=0.5), ConfigError),
    (dict(K=np.eye(3), features=np.zeros((3, 2)), gamma=1.0, tau=1.0, nu=0.5), ConfigError),
    (dict(features=np.zeros((3, 2)), gamma=0.0, tau=1.0, nu=0.5), ConfigError),
    (dict(K=np.eye(4), tau=1.0, nu=0.5), ValueError),
])
def test_bad_inputs_raise_clear_errors(kwargs, error):
    with pytest.raises(error):
        solve_qp_smo(np.array([0.1, 0.5, 0.9]), **kwargs)


def test_float32_kernel_rows_of_large_problems_reach_the_float64_objective():
    """Large problems compute kernel rows with float32 dot products; the optimum must not move."""

    rng = np.random.default_rng(3)
    m = 5000
    features = np.concatenate([rng.normal(size=(m, 3)) * [4.0, 2.0, 0.5], 0.3 * rng.normal(size=(m, 16))], axis=1)
    d = rng.beta(2, 2, m)
    exact = smo._solve(d, smo._RBFKernel(features, 0.5, float32_dots=False), 0.1, 0.015, 20000, 1e-6)
    fast = smo._solve(d, smo._RBFKernel(features, 0.5, float32_dots=True), 0.1, 0.015, 20000, 1e-6)
    assert smo._RBFKernel(features, 0.5).F32 is not None  # the default for this size
    assert exact.converged and fast.converged
    check_feasible(fast.alpha, 0.015)
    assert fast.objective == pytest.approx(exact.objective, rel=1e-7, abs=1e-9)
