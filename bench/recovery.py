"""Time to recover all 8 nodes (4 normal + 4 reduce) with each LASSO backend, side by side.

Every backend solves the same problems (the search's A_j and codes b_j) in turn, round after round, so
machine noise hits them alike; the table shows the median per round and the ratio to the exact solver.
Unavailable backends (MOSEK without a licence, a solver not installed) are listed with the reason.

    python bench/recovery.py [--rounds 50] [--seed 0] [--scale 1e-3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch

import ista.sparse as sparse

BACKENDS = {  # name → keyword arguments of solve_lasso
    "exact": {"solver": "exact"},
    "cvxpy-clarabel": {"solver": "cvxpy", "cvxpy_solver": "CLARABEL"},
    "cvxpy-osqp": {"solver": "cvxpy", "cvxpy_solver": "OSQP"},
    "mosek": {"solver": "mosek"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1e-3, help="std of b (1e-3: at initialisation)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    A = sparse.draw_measurements(args.seed)
    A = A["normal"] + A["reduce"]
    rng = np.random.default_rng(args.seed)
    codes = [[args.scale * rng.standard_normal(7) for _ in A] for _ in range(args.rounds + 1)]

    def solve_all(name: str, b: list[np.ndarray]) -> list[np.ndarray]:
        options = BACKENDS[name]
        if name == "exact":
            return sparse.recover(A, b)  # the batched path the search uses
        return [sparse.solve_lasso(a, code, **options) for a, code in zip(A, b, strict=True)]

    times: dict[str, list[float]] = {name: [] for name in BACKENDS}
    errors: dict[str, str] = {}
    worst = dict.fromkeys(BACKENDS, 0.0)
    for round_, b in enumerate(codes):  # round 0 warms up (imports, cvxpy's compilation) and is not timed
        reference = None
        for name in BACKENDS:
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    z = solve_all(name, b)
            except sparse.SolverError as err:  # no licence, or a first-order solver at its iteration limit
                errors[name] = str(err).split(" (")[0][:90]
                continue
            if round_:
                times[name].append(time.perf_counter() - start)
            reference = z if reference is None else reference
            worst[name] = max(
                worst[name], max(np.abs(x - y).max() for x, y in zip(z, reference, strict=True))
            )

    exact_ms = statistics.median(times["exact"]) * 1e3
    print(f"{'backend':16} {'ms / 8 nodes':>12} {'× exact':>8} {'max |z − z_exact|':>18} {'solved':>8}")
    ratios = {}
    for name in BACKENDS:
        if not times[name]:
            print(f"{name:16} {'unavailable':>12}  {errors.get(name, '')}")
            continue
        ms = statistics.median(times[name]) * 1e3
        ratios[name] = round(ms / exact_ms, 1)
        solved = f"{len(times[name])}/{args.rounds}"
        print(f"{name:16} {ms:12.3f} {ms / exact_ms:8.1f} {worst[name]:18.1e} {solved:>8}")
        if name in errors:
            print(f"{'':16} failed rounds: {errors[name]}")
    print(json.dumps({"bench": "recovery", "exact_ms_per_8_nodes": round(exact_ms, 3), "ratios": ratios}))


if __name__ == "__main__":
    main()
