"""Differentiable selection QP for training: SMO forward, implicit differentiation through the KKT system.

Problem (DESIGN.md)::  min_a a^T K a - tau d^T a   s.t.  sum(a) = 1,  0 <= a_i <= C = 1 / (nu m)

Why not cvxpylayers / qpth: both solve the dense problem with an interior-point method at every step
(m = 1000 variables: a 1000 x 1000 KKT factorisation per iteration, forward and backward), which on
this 2-core CPU costs seconds per step. The exact solution is cheap with the project's SMO solver, and
the solution's derivative follows from the KKT conditions on its active set:

points at a bound (``a_i = 0`` or ``a_i = C``) stay there under a small perturbation (strict
complementarity, which holds almost everywhere), and the free points F (``0 < a_i < C``) satisfy::

    [ 2 K_FF   1 ] [ a_F ]   [ tau d_F - 2 C K_FU 1 ]
    [ 1^T      0 ] [ lam ] = [ 1 - C |U|            ]          (U: points at the upper bound)

Solving this small linear system with torch (differentiable in K, d, tau) returns the same ``a_F`` as
SMO, and autograd through ``torch.linalg.solve`` is exactly the implicit-function-theorem gradient
(as in OptNet / qpth, restricted to the active set). Points at a bound get zero gradient, which is the
true local derivative of the QP's solution.
"""

from __future__ import annotations

import numpy as np
import torch

from ..selection.smo import solve_qp_smo

__all__ = ["rbf_kernel", "qp_select"]


def rbf_kernel(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """(p, q) exp(-||f_i - f_j||^2) of features (p, F) and (q, F)."""
    sq = (features_a[:, None, :] - features_b[None, :, :]).pow(2).sum(-1)
    return torch.exp(-sq)


def qp_select(d: torch.Tensor, kernel_features: torch.Tensor, tau: torch.Tensor, nu: float,
              max_iter: int = 20000, tol: float = 1e-9) -> torch.Tensor:
    """(m,) solution ``a`` of the selection QP with ``K = rbf_kernel(f, f)``, differentiable in d, f, tau.

    Args:
        d: (m,) scores. kernel_features: (m, F) (gamma = 1). tau: () weight >= 0. nu: kept fraction.
    """
    m = d.shape[0]
    C = 1.0 / (nu * m)
    with torch.no_grad():
        result = solve_qp_smo(d.detach().double().cpu().numpy(),
                              features=kernel_features.detach().double().cpu().numpy(), gamma=1.0,
                              tau=float(tau), nu=nu, max_iter=max_iter, tol=tol)
    alpha_np = result.alpha
    free = np.flatnonzero((alpha_np > 0) & (alpha_np < C))
    upper = np.flatnonzero(alpha_np >= C)
    alpha = torch.zeros(m, dtype=d.dtype, device=d.device)
    alpha[torch.as_tensor(upper, device=d.device)] = C
    if len(free) == 0:
        # Every point sits at a bound: the solution is locally constant, so its gradient is zero;
        # keep it attached to the inputs so that a loss on it can still be back-propagated.
        return alpha + 0.0 * (d.sum() + kernel_features.sum() + tau.sum()).to(alpha.dtype)
    free_t = torch.as_tensor(free, device=d.device)
    f_free = kernel_features[free_t].double()
    K_ff = rbf_kernel(f_free, f_free)
    rhs_top = tau.double() * d[free_t].double()
    if len(upper):
        K_fu = rbf_kernel(f_free, kernel_features[torch.as_tensor(upper, device=d.device)].double())
        rhs_top = rhs_top - 2.0 * C * K_fu.sum(dim=1)
    n = len(free)
    system = torch.zeros(n + 1, n + 1, dtype=torch.float64, device=d.device)
    # a tiny ridge keeps the system solvable when two free points coincide under the kernel
    system[:n, :n] = 2.0 * K_ff + 1e-9 * torch.eye(n, dtype=torch.float64, device=d.device)
    system[:n, n] = 1.0
    system[n, :n] = 1.0
    rhs = torch.cat([rhs_top, torch.tensor([1.0 - C * len(upper)], dtype=torch.float64, device=d.device)])
    solution = torch.linalg.solve(system, rhs)
    return alpha.index_put((free_t,), solution[:n].to(d.dtype))
