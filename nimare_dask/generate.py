"""Simulated coordinate data for testing meta-analyses (NiMARE's ``nimare.generate``).

:func:`create_coordinate_studyset` has NiMARE 0.22.1's signature and semantics and makes **the
same studies** for the same ``seed``: it follows NiMARE's draws call for call on the same
:class:`numpy.random.RandomState`, and its per-peak probability maps are ALE kernels, which are
bit-identical to NiMARE's on the 2 mm grid. NiMARE's Dataset-returning helpers
(``create_coordinate_dataset``, ``create_neurovault_dataset``) and the NeuroVault download
(``create_neurovault_studyset``) are not provided; accessing them raises
:class:`GeneratorNotProvidedError` saying what to use instead.
"""

from __future__ import annotations

from itertools import zip_longest

import numpy as np

from nimare_dask.kernels.ale import ALEKernel
from nimare_dask.space import get_grid
from nimare_dask.studyset.core import Studyset
from nimare_dask.utils import mm2vox, vox2mm

__all__ = ["GeneratorNotProvidedError", "create_coordinate_studyset"]

_NOT_PROVIDED = {
    "create_coordinate_dataset": (
        "NiMARE's Dataset class is not provided (NiMARE deprecates it); use "
        "nimare_dask.generate.create_coordinate_studyset, which takes the same arguments"
    ),
    "create_neurovault_dataset": (
        "NeuroVault image datasets are not provided: nimare_dask has no image-based "
        "meta-analysis (IBMA) yet"
    ),
    "create_neurovault_studyset": (
        "NeuroVault image studysets are not provided: nimare_dask has no image-based "
        "meta-analysis (IBMA) yet"
    ),
}


class GeneratorNotProvidedError(ImportError):
    """Raised for NiMARE generators that nimare_dask does not provide."""


def __getattr__(name: str):
    if name in _NOT_PROVIDED:
        raise GeneratorNotProvidedError(
            f"nimare_dask.generate.{name}: {_NOT_PROVIDED[name]}", name=__name__
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _array_like(obj) -> bool:
    return isinstance(obj, list | tuple | np.ndarray)


def create_coordinate_studyset(
    foci=1,
    foci_percentage="100%",
    fwhm=10,
    sample_size=30,
    n_studies=30,
    n_noise_foci=0,
    seed=None,
    space="MNI",
):
    """Generate a coordinate-based Studyset with known ground-truth foci.

    Each ground-truth focus is spread by an ALE kernel of width ``fwhm``: every "signal" study
    reports one focus per ground-truth focus, drawn from that kernel's probability map over the
    2 mm MNI152 brain mask; every study can also report ``n_noise_foci`` foci drawn uniformly
    from the mask.

    Parameters
    ----------
    foci : int or list of (x, y, z)
        The number of ground-truth foci (drawn uniformly from the brain mask; duplicates are
        merged), or their mm coordinates (each moved to its nearest voxel).
    foci_percentage : str or float, default="100%"
        The share of studies that report the ground-truth foci: ``"80%"`` or a float in
        ``[0, 1]``. The other studies report only noise foci (at least one each).
    fwhm : float, default=10
        Sets the kernel that spreads each focus, **as NiMARE 0.22.1 uses it**: NiMARE passes it
        positionally as ``get_ale_kernel``'s ``sample_size``, so the kernel is the ALE kernel of
        a study of ``fwhm`` subjects (Eickhoff et al., 2009), not a kernel of that FWHM. For
        ``fwhm=10`` that is a FWHM of 10.003 mm; for ``fwhm=20``, 9.24 mm; for ``fwhm=5``,
        11.37 mm. We keep NiMARE's behaviour so that the same seed gives the same studies.
    sample_size : int or list of int, default=30
        One sample size for all studies, one per study, or ``[low, high]`` (when
        ``n_studies != 2``): drawn uniformly from ``low`` (inclusive) to ``high`` (exclusive).
    n_studies : int, default=30
        Number of studies.
    n_noise_foci : int, default=0
        Noise foci per study.
    seed : int or None
        Seed of the :class:`numpy.random.RandomState` (``None``: fresh entropy).
    space : {"MNI"}
        The only space NiMARE defines.

    Returns
    -------
    ground_truth_foci : list of tuple
        The ground-truth foci in mm (x, y, z); a focus at voxel (0, 0, 0) is left out, as
        NiMARE does.
    studyset : Studyset
        Studies ``"study-<i>"``, each with one analysis ``"1"`` (analysis id
        ``"study-<i>-1"``), MNI foci, ``sample_sizes = [n]`` metadata.

    Notes
    -----
    For the same arguments and ``seed`` the foci, sample sizes and ground truth are identical
    to NiMARE 0.22.1's ``create_coordinate_studyset`` (tested): the draws are NiMARE's, in its
    order, on the same ``RandomState``. Unlike NiMARE, ``foci`` may also be a tuple or an array
    of coordinates (NiMARE fails unless it is a list).

    Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers), ``generate.py``.
    """
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers)
    rng = np.random.RandomState(seed=seed)

    if not isinstance(foci, int) and not _array_like(foci):
        raise ValueError("foci must be a positive integer or array like")
    if (
        (not isinstance(foci_percentage, float | str))
        or (isinstance(foci_percentage, str) and foci_percentage[-1] != "%")
        or (isinstance(foci_percentage, float) and not (0.0 <= foci_percentage <= 1.0))
    ):
        raise ValueError(
            "foci_percentage must be a string (example '96%') or a float between 0 and 1"
        )
    if _array_like(sample_size) and len(sample_size) != n_studies and len(sample_size) != 2:
        raise ValueError("sample_size must be the same length as n_studies or list of 2 items")
    elif not _array_like(sample_size) and not isinstance(sample_size, int):
        raise ValueError("sample_size must be array like or integer")
    if space != "MNI":
        raise NotImplementedError("Only coordinates for the MNI atlas has been defined")

    if isinstance(foci_percentage, str) and foci_percentage[-1] == "%":
        foci_percentage = float(foci_percentage[:-1]) / 100

    if isinstance(sample_size, int):
        sample_size = [sample_size] * n_studies
    elif _array_like(sample_size) and len(sample_size) == 2 and n_studies != 2:
        sample_size = rng.randint(sample_size[0], sample_size[1], size=n_studies)

    ground_truth_foci, foci_dict = _create_foci(
        foci, foci_percentage, fwhm, n_studies, n_noise_foci, rng
    )
    source = _create_source(foci_dict, sample_size, space)
    return ground_truth_foci, Studyset(source, target="mni152_2mm")


def _create_source(foci: dict, sample_sizes, space: str = "MNI") -> dict:
    """NiMARE's legacy Dataset dict: ``study-<i>`` -> contrast ``"1"`` with coords and n."""
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers)
    source = {}
    for sample_size, (study, study_foci) in zip(sample_sizes, foci.items(), strict=False):
        source[f"study-{study}"] = {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": space,
                        "x": [float(c[0]) for c in study_foci],
                        "y": [float(c[1]) for c in study_foci],
                        "z": [float(c[2]) for c in study_foci],
                    },
                    "metadata": {"sample_sizes": [_plain(sample_size)]},
                }
            }
        }
    return source


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _peak_probabilities(kernel: ALEKernel, grid, peak: np.ndarray):
    """The in-mask voxels (C order) reached by the kernel at ``peak`` and their MA values."""
    ma = kernel.ma_block(
        np.asarray(peak, dtype=np.int64).reshape(1, 3), np.zeros(1, np.int64), 1, grid
    )[0]
    nonzero = np.flatnonzero(ma)
    return grid.voxel_ijk[nonzero].astype(np.int64), ma[nonzero]


def _create_foci(foci, foci_percentage, fwhm, n_studies, n_noise_foci, rng):
    """Ground-truth foci (mm) and each study's foci (mm), drawn in NiMARE's order."""
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers)
    grid = get_grid("mni152_2mm")
    affine = grid.affine
    possible_ijks = np.argwhere(grid.mask)

    if isinstance(foci, int):
        # NiMARE draws rng.choice(range(n), ...): the same draws as rng.choice(n, ...).
        foci_idxs = np.unique(rng.choice(possible_ijks.shape[0], foci, replace=True))
        ground_truth_foci_ijks = possible_ijks[foci_idxs] if foci_idxs.size else np.array([[]])
    else:
        ground_truth_foci_ijks = np.array([mm2vox(coord, affine) for coord in foci])

    # NiMARE calls get_ale_kernel(template_img, fwhm): fwhm lands in the sample_size parameter.
    kernel = ALEKernel(sample_size=fwhm)
    foci_prob_maps = {
        tuple(peak): _peak_probabilities(kernel, grid, peak)
        for peak in ground_truth_foci_ijks
        if peak.size
    }

    signal_studies = int(round(foci_percentage * n_studies))
    signal_ijks = {}
    for peak, (ijks, values) in foci_prob_maps.items():
        # NiMARE normalises by Python's sum() over the float32 values: a sequential float32 sum.
        total = np.cumsum(values, dtype=np.float32)[-1]
        signal_ijks[peak] = ijks[
            rng.choice(ijks.shape[0], size=signal_studies, replace=True, p=values / total)
        ]

    paired_signal_ijks = (
        np.transpose(np.array(list(signal_ijks.values())), axes=(1, 0, 2))
        if signal_ijks
        else (None,)
    )

    foci_dict = {}
    for study_signal_ijks, study in zip_longest(paired_signal_ijks, range(n_studies)):
        if study_signal_ijks is None:
            study_signal_ijks = np.array([[]])
            n_noise_foci = max(1, n_noise_foci)  # as NiMARE: sticks for later studies too

        if n_noise_foci > 0:
            noise_ijks = possible_ijks[
                rng.choice(possible_ijks.shape[0], n_noise_foci, replace=True)
            ]
            foci_ijks = (
                np.unique(np.vstack([study_signal_ijks, noise_ijks]), axis=0)
                if np.any(study_signal_ijks)
                else noise_ijks
            )
        else:
            foci_ijks = study_signal_ijks

        foci_dict[study] = [vox2mm(ijk, affine) for ijk in foci_ijks]

    ground_truth_foci_xyz = [
        tuple(vox2mm(ijk, affine)) for ijk in ground_truth_foci_ijks if np.any(ijk)
    ]
    return ground_truth_foci_xyz, foci_dict
