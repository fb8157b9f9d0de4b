"""Sparse recovery, the paper's Eq. (9): z = argmin_z ½‖Az − b‖² + λ‖z‖₁ (method.md §2.3).

The architecture is the top-2 support of z, so the solution must be exact: first-order ISTA/FISTA stalls
far from the optimum on these coherent U[0,1) matrices and can pick a different support. Three backends:

- "exact" (default): the LASSO's dual as a least-distance program, solved by an active-set NNLS
  (Lawson–Hanson, compiled in SciPy). Licence-free, exact up to rounding, about 0.1 ms per node.
- "cvxpy": an interior-point reference through cvxpy (Clarabel by default, any installed open solver).
- "mosek": the paper's choice, through cvxpy; needs a MOSEK licence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ista.sparse.errors import SolverError

LAMBDA = 1e-5  # the paper's λ (SUPP §1.2)
SOLVERS = ("exact", "cvxpy", "mosek")


def solve_lasso(A: Any, b: Any, lam: float = LAMBDA, solver: str = "exact", **options: Any) -> np.ndarray:
    """Minimises ½‖Az − b‖² + λ‖z‖₁ for one problem (A: m×n, b: m) or a batch (A: k×m×n, b: k×m).

    A and b may be numpy arrays or torch tensors; the result is float64 numpy of shape n or k×n.
    `options` go to the backend (for "cvxpy": `cvxpy_solver` and solver settings).
    """
    A64, b64, single = _check(A, b, lam)
    if solver == "exact":
        if options:
            raise ValueError(f"solver='exact' takes no options, got {sorted(options)}")
        z = _exact(A64, b64, lam)
    elif solver in ("cvxpy", "mosek"):
        from ista.sparse.cvxpy_backend import solve_cvxpy

        name = "MOSEK" if solver == "mosek" else options.pop("cvxpy_solver", "CLARABEL")
        z = np.stack([solve_cvxpy(A64[i], b64[i], lam, name, **options) for i in range(len(A64))])
    else:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    return z[0] if single else z


def as_float64(x: Any, name: str) -> np.ndarray:
    """A numpy/torch array as float64 numpy, with a clear error for non-numbers."""
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array: {err}") from None


def _check(A: Any, b: Any, lam: float) -> tuple[np.ndarray, np.ndarray, bool]:
    A, b = as_float64(A, "A"), as_float64(b, "b")
    if A.ndim not in (2, 3) or b.ndim != A.ndim - 1 or A.shape[:-1] != b.shape:
        raise ValueError(
            f"expected A of shape (m, n) with b of shape (m,), or a batch (k, m, n) with (k, m); "
            f"got A {A.shape} and b {b.shape}"
        )
    if A.shape[-1] == 0 or A.shape[-2] == 0:
        raise ValueError(f"A must have at least one row and one column, got {A.shape}")
    if not (np.isfinite(A).all() and np.isfinite(b).all()):
        raise ValueError("A and b must be finite (found NaN or inf)")
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"λ must be a finite number ≥ 0, got {lam}")
    single = A.ndim == 2
    return (A[None], b[None], True) if single else (A, b, False)


def _exact(A: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """Exact LASSO through its dual, a least-distance program solved by NNLS. A: k×m×n, b: k×m → k×n.

    The LASSO residual y = b − Az is the projection of b onto {y : |Aᵀy| ≤ λ}. With y = b + x this is the
    least-distance program min ‖x‖ s.t. Gx ≥ h, G = [−Aᵀ; Aᵀ], h = [Aᵀb − λ; −Aᵀb − λ], which Lawson and
    Hanson (1974, §23.3) reduce to one NNLS: u = argmin_{u≥0} ‖Eu − f‖ with E = [Gᵀ; hᵀ], f = e_{m+1}.
    Its Lagrange multipliers are μ = u / (1 − hᵀu), and z = μ₊ − μ₋ (the two halves of μ). NNLS is an
    active-set method, so z is exact up to rounding and has exact zeros. Each problem is first scaled to
    ‖b‖∞ = 1 (z(αb, αλ) = α z(b, λ)).
    """
    from scipy.optimize import nnls

    k, m, n = A.shape
    scale = np.abs(b).max(axis=1)
    scale[scale == 0] = 1.0
    bs = b / scale[:, None]
    ls = lam / scale
    corr = np.einsum("kmn,km->kn", A, bs)  # Aᵀb
    E = np.empty((k, m + 1, 2 * n))
    E[:, :m, :n], E[:, :m, n:] = -A, A
    E[:, m, :n] = corr - ls[:, None]
    E[:, m, n:] = -corr - ls[:, None]
    f = np.zeros(m + 1)
    f[m] = 1.0
    u = np.empty((k, 2 * n))
    for i in range(k):
        try:
            u[i] = nnls(E[i], f, maxiter=50 * n)[0]
        except RuntimeError as err:
            raise SolverError(f"exact LASSO (NNLS) failed on problem {i}: {err}") from None
    mu = u / (1.0 - np.einsum("kn,kn->k", E[:, m], u))[:, None]
    z = (mu[:, :n] - mu[:, n:]) * scale[:, None]
    _check_optimal(A, b, z, lam)
    return z


def _check_optimal(A: np.ndarray, b: np.ndarray, z: np.ndarray, lam: float) -> None:
    """Raises unless z is optimal: |Aᵀ(Az − b)| ≤ λ, and = −λ·sign(z) on the support."""
    grad = np.einsum("kmn,km->kn", A, np.einsum("kmn,kn->km", A, z) - b)
    tol = 1e-9 * (1.0 + np.abs(b).max(axis=1, keepdims=True))
    on = z != 0
    violation = np.where(on, np.abs(grad + lam * np.sign(z)), np.maximum(np.abs(grad) - lam, 0.0)) - tol
    if (violation > 0).any():
        i = int(np.argwhere(violation > 0)[0, 0])
        raise SolverError(
            f"exact LASSO missed the optimality conditions on problem {i} by {violation.max():.2e}"
        )
