"""Early stopping of a Monte Carlo run once its null quantiles are estimated precisely enough.

Beyond NiMARE (GingerALE has a similar idea): instead of always running ``n_iters``
iterations, stop at the first check point ``k * check_every`` (``>= min_iters``) where, for every
recorded null, the Monte Carlo standard error of its ``quantile`` (the FWE threshold, e.g. 0.95
for alpha = 0.05) is at most ``rel_se`` times the quantile itself. The standard error is the
Maritz-Jarrett estimate (Wilcox, *Introduction to Robust Estimation and Hypothesis Testing*,
section 3.5.3): a beta-weighted second moment of the order statistics around the quantile.

The rule only ever sees the first ``k * check_every`` iterations in iteration order, so the stop
point depends on the values alone, never on which block finished first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["EarlyStopping", "quantile_standard_error"]


def quantile_standard_error(samples: np.ndarray, quantile: float) -> tuple[float, float]:
    """A quantile of a sample and its Maritz-Jarrett standard error.

    Parameters
    ----------
    samples : numpy.ndarray
        (n,) sample (finite values).
    quantile : float
        In (0, 1).

    Returns
    -------
    value : float
        The quantile (``numpy.quantile``, linear interpolation).
    se : float
        Its standard error; ``inf`` when the sample is too small (fewer than 3 values, or the
        order statistic sits at an end of the sample).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        return float("nan"), float("inf")
    value = float(np.quantile(x, quantile))
    m = int(np.floor(quantile * n + 0.5))
    a, b = m - 1, n - m
    if n < 3 or a <= 0 or b <= 0:
        return value, float("inf")
    cdf = special.betainc(a, b, np.arange(n + 1, dtype=np.float64) / n)
    w = np.diff(cdf)
    c1 = float(w @ x)
    c2 = float(w @ (x * x))
    return value, float(np.sqrt(max(c2 - c1 * c1, 0.0)))


@dataclass(frozen=True)
class EarlyStopping:
    """Stop a Monte Carlo run when the null's upper quantiles are known well enough.

    Parameters
    ----------
    quantile : float
        The quantile of each null to pin down (``1 - alpha``).
    rel_se : float
        Stop when every null's standard error is at most ``rel_se * |quantile value|``.
    min_iters : int
        Never stop before this many iterations.
    check_every : int
        Check only at multiples of this many iterations (the possible stop points).
    keys : sequence of str, optional
        Which outputs of the block function are nulls to check. Default: every concatenated
        output that is 1-D (one number per iteration).
    """

    quantile: float = 0.95
    rel_se: float = 0.01
    min_iters: int = 1000
    check_every: int = 500
    keys: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if not self.rel_se > 0:
            raise ValueError(f"rel_se must be > 0, got {self.rel_se}")
        if int(self.check_every) < 1 or int(self.min_iters) < 1:
            raise ValueError("check_every and min_iters must be >= 1")
        if self.keys is not None:
            object.__setattr__(self, "keys", tuple(self.keys))

    def boundaries(self, n_iters: int) -> list[int]:
        """The possible stop points: multiples of ``check_every`` in ``[min_iters, n_iters)``."""
        step = int(self.check_every)
        first = -(-int(self.min_iters) // step) * step
        return list(range(first, int(n_iters), step))

    def select(self, arrays: Mapping[str, np.ndarray]) -> list[str]:
        """Names of the outputs the rule checks."""
        if self.keys is not None:
            missing = [k for k in self.keys if k not in arrays]
            if missing:
                raise KeyError(
                    f"early stopping keys {missing} are not among the block outputs "
                    f"{sorted(arrays)}"
                )
            return list(self.keys)
        return sorted(k for k, v in arrays.items() if np.ndim(v) == 1)

    def check(self, arrays: Mapping[str, np.ndarray]) -> tuple[bool, dict[str, tuple]]:
        """Evaluate the rule on the first iterations of each null.

        Parameters
        ----------
        arrays : mapping of str to numpy.ndarray
            Per-iteration outputs, all cut to the same number of iterations.

        Returns
        -------
        converged : bool
            True when every checked null meets the rule.
        details : dict
            Per key: ``(quantile value, standard error)``.
        """
        details = {}
        ok = True
        for key in self.select(arrays):
            value, se = quantile_standard_error(arrays[key], self.quantile)
            details[key] = (value, se)
            if not (np.isfinite(se) and se <= self.rel_se * abs(value)):
                ok = False
        return ok, details
