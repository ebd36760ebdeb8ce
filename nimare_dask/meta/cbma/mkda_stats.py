"""Maps of the MKDA family from per-voxel counts: one set of formulas for every caller.

:class:`~nimare_dask.meta.cbma.mkda.MKDAChi2` and :class:`~nimare_dask.meta.cbma.mkda.MKDADensity`
compute their maps with these functions, and so does the whole-database decoder
(:mod:`nimare_dask.decode.featuremaps`), which calls them on (features x voxels) blocks of
counts with the per-feature group sizes broadcast along the voxels: the values are the same,
bit for bit, whichever computes them.

Numpy in, numpy out (eager).

The MKDAChi2 formulas (:func:`prob_map`, :func:`chi2_maps`) and the approximate-null maps
(:func:`approximate_maps`): Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers (``nimare/meta/cbma/mkda.py``).
"""

from __future__ import annotations

import numpy as np

from nimare_dask.stats.chi2 import chi2_to_nlogp, one_way_expected, two_way_counts
from nimare_dask.stats.nulls import nullhist_to_p
from nimare_dask.stats.transforms import nlogp_to_logp, nlogp_to_p, p_to_z

__all__ = [
    "CHI2_STATS",
    "CHI2_TESTS",
    "PROB_MAPS",
    "approximate_maps",
    "chi2_maps",
    "chi2_stat_maps",
    "chi2_test",
    "prob_map",
]

#: The chi-square tests of MKDAChi2, in the order of its maps.
CHI2_TESTS = ("uniformity", "association", "group1", "group2")
#: The maps of each test.
CHI2_STATS = ("z", "chi2", "p", "logp")
#: The probability maps (``prob_desc-*``); the last two need a prior.
PROB_MAPS = ("A", "AgF", "AgU", "FgA", "group1", "group2", "AgF_prior", "FgA_prior")


def approximate_maps(stat: np.ndarray, weights: np.ndarray, bins: np.ndarray) -> dict:
    """``stat``, ``p``, ``z`` and ``logp`` of a histogram null (MKDADensity, KDA).

    Parameters
    ----------
    stat : numpy.ndarray
        Statistic values.
    weights, bins : numpy.ndarray
        The null histogram and its bin centres.

    Returns
    -------
    dict
        ``{map name: array}`` (float64 except ``stat``, returned as given).
    """
    p = nullhist_to_p(stat, weights, bins)
    return {
        "stat": stat,
        "p": p,
        "z": p_to_z(p, tail="one"),
        "logp": nlogp_to_logp(-np.log(p)),
    }


def chi2_test(desc: str, c1, c2, n1, n2, mean1=None, mean2=None) -> tuple[np.ndarray, np.ndarray]:
    """One MKDAChi2 test: chi-square values and the sign of the effect.

    Parameters
    ----------
    desc : {"association", "uniformity", "group1", "group2"}
        Two-way test of association, or one-way test of group 1 (uniformity, group1) or
        group 2 against its mean.
    c1, c2 : numpy.ndarray
        float64 active-study counts of the two groups (any broadcastable shapes).
    n1, n2 : float or numpy.ndarray
        Group sizes (broadcasting against the counts).
    mean1, mean2 : float or numpy.ndarray, optional
        The map means of ``c1`` and ``c2`` (one-way tests; computed from the counts when
        None: give them when the counts are a block of a larger map).

    Returns
    -------
    chi2, sign : numpy.ndarray
        float64 (eager).
    """
    if desc == "association":
        chi2 = two_way_counts(c1, c2, n1, n2)
        with np.errstate(divide="ignore", invalid="ignore"):
            sign = np.sign(c1 / n1 - c2 / n2)
        return chi2, sign
    if desc in ("uniformity", "group1"):
        counts, n, expected = c1, n1, mean1
    elif desc == "group2":
        counts, n, expected = c2, n2, mean2
    else:
        raise ValueError(f"unknown MKDAChi2 test {desc!r}; choose from {CHI2_TESTS}")
    if expected is None:
        expected = np.mean(counts, axis=0)
    return one_way_expected(counts, n, expected), np.sign(counts - expected)


def chi2_stat_maps(chi2: np.ndarray, sign: np.ndarray, stats=CHI2_STATS) -> dict:
    """``z``, ``chi2``, ``p`` and ``logp`` of a chi-square test (1 degree of freedom).

    Parameters
    ----------
    chi2, sign : numpy.ndarray
        From :func:`chi2_test`.
    stats : sequence of str
        The maps wanted, among :data:`CHI2_STATS`.

    Returns
    -------
    dict
        ``{stat: float64 array}`` (eager).
    """
    out: dict[str, np.ndarray] = {}
    nlogp = None
    for stat in stats:
        if stat == "z":
            out[stat] = np.sqrt(chi2) * sign
        elif stat == "chi2":
            out[stat] = chi2
        elif stat in ("p", "logp"):
            if nlogp is None:
                nlogp = chi2_to_nlogp(chi2, 1)
            out[stat] = nlogp_to_p(nlogp, dtype=np.float64) if stat == "p" else nlogp_to_logp(nlogp)
        else:
            raise ValueError(f"unknown chi-square map {stat!r}; choose from {CHI2_STATS}")
    return out


def prob_map(desc: str, c1, c2, n1, n2, prior=0.5) -> np.ndarray:
    """One MKDAChi2 probability map (``prob_desc-<desc>``).

    Parameters
    ----------
    desc : str
        One of :data:`PROB_MAPS`: ``A`` (activation), ``AgF``/``group1`` (activation given the
        feature, i.e. group 1), ``AgU``/``group2``, ``FgA`` (feature given activation), and
        with a prior ``AgF_prior`` and ``FgA_prior``.
    c1, c2, n1, n2
        As for :func:`chi2_test`.
    prior : float
        Prior probability of the feature (``*_prior`` maps).

    Returns
    -------
    numpy.ndarray
        float64 (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    n = n1 + n2
    with np.errstate(divide="ignore", invalid="ignore"):
        p_agf = c1 / n1
        p_agu = c2 / n2
        if desc in ("AgF", "group1"):
            return p_agf
        if desc in ("AgU", "group2"):
            return p_agu
        p_a = (c1 + c2) / n
        if desc == "A":
            return p_a
        if desc == "FgA":
            return p_agf * (n1 / n) / p_a
        if desc not in ("AgF_prior", "FgA_prior"):
            raise ValueError(f"unknown MKDAChi2 probability map {desc!r}; choose from {PROB_MAPS}")
        p_agf_prior = prior * p_agf + (1 - prior) * p_agu
        if desc == "AgF_prior":
            return p_agf_prior
        return p_agf * prior / p_agf_prior


def chi2_maps(c1: np.ndarray, c2: np.ndarray, n1: int, n2: int, prior=0.5) -> dict:
    """All MKDAChi2 maps from the per-voxel active-study counts of two groups.

    Parameters
    ----------
    c1, c2 : numpy.ndarray
        (V,) numbers of active studies in group 1 and group 2.
    n1, n2 : int
        Group sizes.
    prior : float or None
        Prior of the feature for the ``*_prior`` maps (none when falsy).

    Returns
    -------
    dict
        ``{map name: float64 array}`` (eager).
    """
    maps: dict[str, np.ndarray] = {}
    group1 = None
    for desc in CHI2_TESTS:
        if desc == "group1":  # the uniformity test's maps
            stats = group1
        else:
            stats = chi2_stat_maps(*chi2_test(desc, c1, c2, n1, n2))
            if desc == "uniformity":
                group1 = stats
        for stat in CHI2_STATS:
            maps[f"{stat}_desc-{desc}"] = stats[stat]
    for desc in PROB_MAPS[:6] + (PROB_MAPS[6:] if prior else ()):
        maps[f"prob_desc-{desc}"] = prob_map(desc, c1, c2, n1, n2, prior)
    return maps
