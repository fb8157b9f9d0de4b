"""The interior-point backends of `solve_lasso`: cvxpy with an open solver, or MOSEK (the paper's).

One parameterised problem per (shape, solver) is compiled once and reused. b and λ are rescaled to
‖b‖∞ = 1 before solving (the LASSO is homogeneous: z(αb, αλ) = α z(b, λ)), so the solver's absolute
tolerances mean the same for the tiny b of early search (~1e-3) as for large ones.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ista.sparse.errors import SolverError

TIGHT = {  # settings that make each solver a reference, not an approximation
    "CLARABEL": {"tol_gap_abs": 1e-14, "tol_gap_rel": 1e-14, "tol_feas": 1e-14, "max_iter": 500},
    # First-order methods: they stop at an iteration limit on some of these ill-conditioned problems.
    "OSQP": {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iter": 100_000, "polish": True},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000},
}
MOSEK_LICENCE_HELP = (
    "MOSEK needs a licence: set MOSEKLM_LICENSE_FILE to your mosek.lic (or a licence server, "
    "port@host), or put the file at ~/mosek/mosek.lic. Without one, use solver='exact' (licence-free and "
    "exact) or solver='cvxpy' (Clarabel)."
)


@functools.lru_cache(maxsize=32)
def _problem(m: int, n: int) -> tuple[Any, Any, Any, Any, Any]:
    import cvxpy as cp

    A = cp.Parameter((m, n))
    b = cp.Parameter(m)
    lam = cp.Parameter(nonneg=True)
    z = cp.Variable(n)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ z - b) + lam * cp.norm1(z)))
    return problem, A, b, lam, z


def solve_cvxpy(
    A: np.ndarray, b: np.ndarray, lam: float, solver: str = "CLARABEL", **settings: Any
) -> np.ndarray:
    try:
        import cvxpy as cp
    except ImportError as err:
        raise SolverError(f"solver='cvxpy' needs the cvxpy package: {err}") from None
    solver = solver.upper()
    if solver not in cp.installed_solvers():
        raise SolverError(
            f"cvxpy solver {solver!r} is not installed; installed: {', '.join(cp.installed_solvers())}"
        )
    scale = float(np.abs(b).max())
    if scale == 0.0:
        return np.zeros(A.shape[1])
    problem, A_par, b_par, lam_par, z = _problem(*A.shape)
    A_par.value, b_par.value, lam_par.value = A, b / scale, lam / scale
    try:
        problem.solve(solver=solver, warm_start=False, **{**TIGHT.get(solver, {}), **settings})
    except cp.error.SolverError as err:
        raise SolverError(f"cvxpy solver {solver} failed: {err}") from None
    except Exception as err:  # MOSEK raises its own mosek.Error, not a cvxpy SolverError
        if type(err).__module__.startswith("mosek"):
            if "licen" in str(err).lower():
                raise SolverError(f"{MOSEK_LICENCE_HELP} (MOSEK said: {err})") from None
            raise SolverError(f"MOSEK failed: {err}") from None
        raise
    if problem.status not in ("optimal", "optimal_inaccurate") or z.value is None:
        raise SolverError(f"cvxpy solver {solver} ended with status {problem.status!r}")
    return np.asarray(z.value, dtype=np.float64) * scale
