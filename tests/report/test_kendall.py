"""Kendall's τ against a direct O(n²) evaluation of the supplement's formula."""

import json
import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from ista.cli.main import main
from ista.report.kendall import kendall


def direct_tau_a(x, y):
    n = len(x)
    sign = lambda v: int(v > 0) - int(v < 0)  # noqa: E731
    total = sum(sign(x[i] - x[j]) * sign(y[i] - y[j]) for i in range(n) for j in range(i + 1, n))
    return total / math.comb(n, 2)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_tau_a_is_the_formula_and_tau_b_is_scipys(seed, ties):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    x, y = rng.normal(size=n), rng.normal(size=n)
    if ties:
        x, y = np.round(x * 2) / 2, np.round(y * 2) / 2  # a coarse grid makes ties
    result = kendall(x, y)
    assert result.tau_a == pytest.approx(direct_tau_a(list(x), list(y)), abs=1e-12)
    reference = kendalltau(x, y)
    assert result.tau_b == pytest.approx(reference.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(reference.pvalue, abs=1e-12)


def test_extremes_and_bad_input(tmp_path):
    assert kendall([1, 2, 3], [10, 20, 30]).tau_a == 1.0
    assert kendall([1, 2, 3], [3, 2, 1]).tau_a == -1.0
    assert kendall([1, 1, 2], [1, 2, 3]).tau_a == pytest.approx(2 / 3)  # a tie counts zero in τ-a
    with pytest.raises(ValueError, match="same length"):
        kendall([1, 2], [1, 2, 3])
    (tmp_path / "x.json").write_text(json.dumps([0.91, 0.93, 0.92, 0.95]))
    (tmp_path / "y.json").write_text(json.dumps([97.1, 97.4, 97.0, 97.6]))
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    assert main(["kendall", str(tmp_path / "x.json"), str(tmp_path / "y.json")]) == 0
    assert main(["kendall", str(tmp_path / "x.json"), str(tmp_path / "bad.json")]) == 2
