"""Balanced ALE subtraction: subset schedules (NiMARE 0.22.1's ``BalancedALESubtraction``).

NiMARE's balanced subtraction (``meta/cbma/ale.py:1628``) resamples both groups to a common
number of experiments ``target_n`` (default: the smaller group's size). Its per-group
probability maps ``prob_desc-group{1,2}`` are the fraction of a *subset schedule* of
``target_n``-experiment subsets in which a voxel survives cluster-size thresholding. The
schedule (``meta/cbma/utils.py:generate_subset_schedule``) is:

* leave-one-out (``target_n == total_n - 1``): the ``total_n`` subsets without experiment ``i``,
  in order of ``i``;
* exhaustive, when the number of subsets asked for reaches ``C(total_n, target_n)`` and that
  number is at most ``exhaustive_limit`` (NiMARE's estimator passes 10,000): every combination
  in lexicographic order;
* otherwise seeded: unique sorted subsets drawn with
  ``numpy.random.RandomState(seed).choice(total_n, target_n, replace=False)`` until enough
  distinct ones are found, returned sorted.

:func:`subset_schedule` reproduces it exactly (the same subsets in the same order, also for the
seeded case, since it replays the same legacy generator), so the subsamples of a schedule can be
dealt out as blocks of tasks over shared MA maps and give NiMARE's schedule whatever the
chunking. The estimator itself is not implemented yet (see ``/work/helpers/H5_readme.md``).
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

__all__ = ["EXHAUSTIVE_LIMIT", "resolve_target_n", "subset_schedule"]

#: The ``exhaustive_limit`` NiMARE's BalancedALESubtraction passes to its schedule.
EXHAUSTIVE_LIMIT = 10000


def resolve_target_n(n1: int, n2: int, target_n: int | None) -> int:
    """The matched number of experiments per subsample (NiMARE's rule).

    Parameters
    ----------
    n1, n2 : int
        Experiments in each group.
    target_n : int, optional
        Requested size (None or 0: the smaller group's size).

    Returns
    -------
    int
    """
    largest = min(int(n1), int(n2))
    resolved = target_n or largest
    if isinstance(resolved, bool) or not isinstance(resolved, int | np.integer):
        raise TypeError(f"target_n must be an integer or None, got {target_n!r}")
    if not 0 < resolved <= largest:
        raise ValueError(
            f"target_n must be between 1 and the smaller group size ({largest}); got {resolved}"
        )
    return int(resolved)


def subset_schedule(
    total_n: int,
    target_n: int,
    n_samples: int | None = None,
    random_state: int | None = None,
    exhaustive_limit: int = 1000,
) -> list[np.ndarray]:
    """Subsets of ``target_n`` of ``total_n`` experiments, as NiMARE schedules them.

    Parameters
    ----------
    total_n : int
        Experiments in the group.
    target_n : int
        Experiments per subset (``0 < target_n <= total_n``).
    n_samples : int, optional
        Subsets wanted (capped at ``C(total_n, target_n)``; None: all of them, which must then
        be at most ``exhaustive_limit``).
    random_state : int, optional
        Seed of the drawn schedule (None: fresh entropy, as NiMARE).
    exhaustive_limit : int
        Largest number of combinations enumerated.

    Returns
    -------
    list of numpy.ndarray
        int32 sorted experiment indices, one array per subset (eager).
    """
    total_n, target_n = int(total_n), int(target_n)
    if not 0 < target_n <= total_n:
        raise ValueError(f"target_n must be between 1 and total_n ({total_n}); got {target_n}.")
    if target_n == total_n - 1:
        return [np.delete(np.arange(total_n), i).astype(np.int32) for i in range(total_n)]
    n_comb = comb(total_n, target_n)
    if n_samples is None:
        if n_comb > exhaustive_limit:
            raise ValueError(
                f"C({total_n}, {target_n}) = {n_comb} subsets exceed exhaustive_limit="
                f"{exhaustive_limit}; give n_samples to draw that many distinct subsets"
            )
        n_samples = n_comb
    else:
        n_samples = min(int(n_samples), n_comb)
    if n_samples == n_comb and n_comb <= exhaustive_limit:
        return [np.asarray(c, dtype=np.int32) for c in combinations(range(total_n), target_n)]
    rng = np.random.RandomState(random_state)  # NiMARE's legacy generator, replayed exactly
    drawn: set[tuple[int, ...]] = set()
    while len(drawn) < n_samples:
        drawn.add(tuple(np.sort(rng.choice(total_n, size=target_n, replace=False)).tolist()))
    return [np.asarray(s, dtype=np.int32) for s in sorted(drawn)]
