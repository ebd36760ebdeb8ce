"""Simulated coordinate data for testing meta-analyses (NiMARE's ``nimare.generate``).

:func:`create_coordinate_studyset` has NiMARE 0.22.1's signature and semantics and makes **the
same studies** for the same ``seed``: it follows NiMARE's draws call for call on the same
:class:`numpy.random.RandomState`, and its per-peak probability maps are ALE kernels, which are
bit-identical to NiMARE's on the 2 mm grid. NiMARE's Dataset-returning helpers
(``create_coordinate_dataset``, ``create_neurovault_dataset``) and the NeuroVault download
(``create_neurovault_studyset``) are not provided; accessing them raises
:class:`GeneratorNotProvidedError` saying what to use instead.

:func:`create_image_studyset` simulates statistical images (beta, varcope, se, t, z, p) with a
known effect, for image-based meta-analysis tests, examples and benchmarks (NiMARE has no such
simulator; its IBMA examples download NeuroVault collections, see
:func:`nimare_dask.datasets.neurovault.fetch_neurovault_collection`).
"""

from __future__ import annotations

import json
from itertools import zip_longest
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage, special

from nimare_dask.kernels.ale import ALEKernel
from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset.core import Studyset
from nimare_dask.utils import mm2vox, vox2mm

__all__ = [
    "GeneratorNotProvidedError",
    "coarse_grid",
    "create_coordinate_studyset",
    "create_image_studyset",
]

_NOT_PROVIDED = {
    "create_coordinate_dataset": (
        "NiMARE's Dataset class is not provided (NiMARE deprecates it); use "
        "nimare_dask.generate.create_coordinate_studyset, which takes the same arguments"
    ),
    "create_neurovault_dataset": (
        "NiMARE's Dataset class is not provided; use "
        "nimare_dask.datasets.neurovault.fetch_neurovault_collection (one collection, cached and "
        "checksummed) or nimare_dask.generate.create_image_studyset (simulated images)"
    ),
    "create_neurovault_studyset": (
        "use nimare_dask.datasets.neurovault.fetch_neurovault_collection once per collection (cached "
        "and checksummed) and Studyset.merge, or nimare_dask.generate.create_image_studyset "
        "(simulated images)"
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


# ----------------------------------------------------------------------------- image studysets
def coarse_grid(factor: int = 2, target: str | Grid = "mni152_2mm") -> Grid:
    """A coarser grid: every ``factor``-th voxel of ``target`` along each axis.

    ``coarse_grid(2)`` is a 4 mm MNI152 grid (46 x 55 x 46, about 28,600 in-mask voxels):
    small enough for fast image-based tests. Its mask is the 2 mm brain mask sampled at those
    voxels; the affine scales the voxel size by ``factor`` and keeps the origin.

    Returns
    -------
    Grid
    """
    base = get_grid(target)
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    mask = base.mask[::factor, ::factor, ::factor]
    affine = np.array(base.affine, dtype=float)
    affine[:3, :3] = affine[:3, :3] * factor
    return Grid(mask=mask, affine=affine, name=f"{base.name}_every{factor}")


def _smooth_noise(rng, shape, sigma_vox: float) -> np.ndarray:
    """Gaussian noise smoothed by a Gaussian of ``sigma_vox`` voxels, rescaled to unit variance."""
    noise = rng.standard_normal(shape)
    if sigma_vox <= 0:
        return noise
    smoothed = ndimage.gaussian_filter(noise, sigma_vox, mode="constant")
    impulse = np.zeros([int(8 * sigma_vox) | 1] * 3)
    impulse[tuple(s // 2 for s in impulse.shape)] = 1
    gain = np.sqrt((ndimage.gaussian_filter(impulse, sigma_vox, mode="constant") ** 2).sum())
    return smoothed / gain


def create_image_studyset(
    n_studies: int = 10,
    n_analyses_per_study: int = 1,
    sample_size=(20, 40),
    effect: float = 0.5,
    effect_center=(0.0, -20.0, 10.0),
    effect_radius: float = 20.0,
    tau: float = 0.1,
    fwhm: float = 8.0,
    missing_fraction: float = 0.0,
    missing_images: dict | None = None,
    image_types=("beta", "varcope", "se", "t", "z"),
    out_dir: str | Path | None = None,
    seed: int | None = None,
    target: str | Grid = "mni152_2mm",
):
    """Simulate an image studyset with a known effect and write its NIfTI images.

    Each analysis ``k`` of study ``s`` has ``n`` subjects (``sample_size``). At every voxel
    its group mean (``beta``) is the true effect ``mu`` (``effect`` inside a sphere of
    ``effect_radius`` mm around ``effect_center``, 0 elsewhere) plus a study offset shared by
    the study's analyses (SD ``tau``; this makes analyses of a study dependent) plus sampling
    noise of SD ``sd / sqrt(n)``. The subject-level SD ``sd`` is drawn per voxel from its
    sampling distribution (``sqrt(chi2(n - 1) / (n - 1))``, true SD 1), so ``se = sd/sqrt(n)``,
    ``varcope = se**2``, ``t = beta / se`` and ``z`` (``t`` to z with ``n - 1`` degrees of
    freedom, signed) and ``p`` (two-sided) are mutually consistent, as in a one-sample
    group analysis. Noise is spatially smooth (Gaussian, ``fwhm`` mm).

    Parameters
    ----------
    n_studies, n_analyses_per_study : int
        Studies ``study-<i>`` (from 1), each with analyses ``"1"`` ... (ids
        ``study-<i>-<k>``).
    sample_size : int or (low, high)
        Subjects per analysis; a pair draws integers uniformly from ``low`` to ``high``
        inclusive (one per analysis).
    effect : float
        The true standardised effect (Cohen's d) inside the sphere.
    effect_center, effect_radius
        The sphere, in mm.
    tau : float
        Between-study SD of the true effect (heterogeneity).
    fwhm : float
        Smoothness of the noise in mm (0: white noise).
    missing_fraction : float
        Share of analyses with a missing region: a slab of 30 % of the grid (a random axis
        and side) set to 0 in every image of the analysis (NaN in every other one of them).
    missing_images : dict, optional
        ``{imtype: fraction}``: that share of analyses gets no file of that type (for
        ``ImageTransformer`` tests).
    image_types : sequence of str
        Types written: any of ``beta, varcope, se, t, z, p``.
    out_dir : str or Path, optional
        Folder for the files (default: a new temporary folder).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`.
    target : str or Grid
        The grid images are written on (e.g. :func:`coarse_grid` for fast tests).

    Returns
    -------
    truth : dict
        ``effect`` (1-D true ``mu`` over the grid's in-mask voxels), ``out_dir``,
        ``mask`` (path of the grid's mask image, float32, for NiMARE's ``mask=``),
        ``dataset_json`` (a NiMARE legacy Dataset JSON with absolute image paths and
        ``sample_sizes``) and ``nimads_json`` (the same as NIMADS).
    studyset : Studyset
        On ``target``, images referenced by absolute path, ``sample_sizes`` metadata.
    """
    import tempfile

    grid = get_grid(target)
    valid = {"beta", "varcope", "se", "t", "z", "p"}
    bad = set(image_types) - valid
    if bad:
        raise ValueError(f"unknown image types {sorted(bad)}; expected some of {sorted(valid)}")
    if not 0 <= missing_fraction <= 1:
        raise ValueError(f"missing_fraction must be in [0, 1], got {missing_fraction}")
    rng = np.random.default_rng(seed)
    out = Path(tempfile.mkdtemp(prefix="nimare_dask-images-") if out_dir is None else out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mask_path = out / "mask.nii.gz"
    # float32, not uint8: NiMARE's ImageTransformer writes derived images with the mask
    # header's data type, so a uint8 mask would quantise them to 256 levels
    nib.Nifti1Image(grid.mask.astype(np.float32), grid.affine).to_filename(mask_path)

    n_an = n_studies * n_analyses_per_study
    if np.ndim(sample_size) == 0:
        sizes = np.full(n_an, int(sample_size))
    else:
        lo, hi = (int(v) for v in sample_size)
        sizes = rng.integers(lo, hi + 1, size=n_an)
    if (sizes < 3).any():
        raise ValueError("sample sizes must be at least 3")
    xyz = grid.voxel_xyz
    inside = np.linalg.norm(xyz - np.asarray(effect_center, float), axis=1) <= effect_radius
    mu = np.where(inside, float(effect), 0.0)
    sigma_vox = float(fwhm) / (2 * np.sqrt(2 * np.log(2))) / float(np.mean(grid.zooms))

    dropped = {t: set() for t in image_types}
    for imtype, frac in (missing_images or {}).items():
        if imtype not in dropped:
            raise ValueError(f"missing_images names {imtype!r}, which is not in image_types")
        k = int(round(float(frac) * n_an))
        dropped[imtype] = set(rng.choice(n_an, size=k, replace=False).tolist())
    with_gap = set(rng.choice(n_an, size=int(round(missing_fraction * n_an)), replace=False))

    source, rows = {}, 0
    for s in range(1, n_studies + 1):
        offset = tau * _smooth_noise(rng, grid.shape, sigma_vox)[grid.mask]
        contrasts = {}
        for k in range(1, n_analyses_per_study + 1):
            i, n = rows, int(sizes[rows])
            rows += 1
            chi = rng.chisquare(n - 1, size=grid.n_voxels)
            sd = np.sqrt(chi / (n - 1))
            se = sd / np.sqrt(n)
            beta = mu + offset + se * _smooth_noise(rng, grid.shape, sigma_vox)[grid.mask]
            t = beta / se
            # signed z with the same tail probability as t (n - 1 dof), through log space
            logsf = np.log(special.stdtr(n - 1, -np.abs(t)))
            z = np.sign(t) * -special.ndtri_exp(logsf)
            p = np.exp(np.log(2) + logsf)
            maps = {"beta": beta, "varcope": se**2, "se": se, "t": t, "z": z, "p": p}
            gap = None
            if i in with_gap:
                axis, side = rng.integers(3), rng.integers(2)
                ijk = grid.voxel_ijk[:, axis]
                cut = int(0.3 * grid.shape[axis])
                gap = ijk < cut if side == 0 else ijk >= grid.shape[axis] - cut
            images = {}
            for j, imtype in enumerate(image_types):
                if i in dropped[imtype]:
                    continue
                vals = maps[imtype].astype(np.float32)
                if gap is not None:
                    vals = vals.copy()
                    vals[gap] = 0.0 if j % 2 == 0 else np.nan
                path = out / f"study-{s}_contrast-{k}_{imtype}.nii.gz"
                grid.to_image(vals).to_filename(path)
                images[imtype] = str(path.resolve())
            contrasts[str(k)] = {"images": images, "metadata": {"sample_sizes": [n]}}
        source[f"study-{s}"] = {"contrasts": contrasts}
    dataset_json = out / "dataset.json"
    dataset_json.write_text(json.dumps(source, indent=1))
    ss = Studyset(source, target=grid)
    nimads_json = ss.to_nimads(out / "nimads.json")
    truth = {
        "effect": mu.astype(np.float32),
        "out_dir": str(out),
        "mask": str(mask_path),
        "dataset_json": str(dataset_json),
        "nimads_json": str(nimads_json),
    }
    return truth, ss
