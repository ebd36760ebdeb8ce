"""ImageTransformer and NiMARE's file-based ``transform_images`` / ``resolve_transforms``.

Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c)
2018 NiMARE developers (``nimare/transforms.py``): the recipes of ``resolve_transforms``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import dask.array as da
import nibabel as nib
import numpy as np
from dask.base import tokenize

from nimare_dask.studyset.core import Studyset, studyset_or_dataset
from nimare_dask.studyset.images import (
    DEFAULT_CHUNKS,
    has_image,
    image_arrays,
    image_matrix,
    sample_size_lists,
    with_image_arrays,
)
from nimare_dask.transforms._convert import (
    d_to_g,
    p_to_z,
    sample_sizes_to_dof,
    sample_sizes_to_sample_size,
    samplevar_dataset_to_varcope,
    sd_to_varcope,
    se_to_varcope,
    t_and_beta_to_varcope,
    t_and_varcope_to_beta,
    t_to_d,
    t_to_z,
    z_to_p,
    z_to_t,
)

TARGETS = ("z", "p", "t", "beta", "varcope", "d", "g", "g_var")
_SOURCES = (*TARGETS, "se", "sd", "samplevar_dataset")


# ----------------------------------------------------------------------------- transform plans
def _plan(target: str, avail: set[str], has_n: bool, warn: list):
    """NiMARE's ``resolve_transforms`` as an expression over available types, or None.

    ``avail`` is updated with what gets derived on the way (as NiMARE's ``available_data``).
    Every node NiMARE writes to an image is wrapped in ``("img", node)``.
    """
    if target in avail:
        return ("in", target)
    if target == "z":
        if "t" in avail and has_n:
            node = ("t_to_z", ("in", "t"))
        elif "p" in avail:
            node = ("p_to_z", ("in", "p"))
            if "t" in avail:
                node = ("signed", ("in", "t"), node)
            else:
                warn.append("z-from-p")
        else:
            return None
        return ("img", node)
    if target == "t":
        z = _plan("z", avail, has_n, warn)
        if z is None or not has_n:
            return None
        return ("img", ("z_to_t", z))
    if target in ("d", "g", "g_var"):
        t = _plan("t", avail, has_n, warn)
        if t is None or not has_n:
            return None
        warn.append("groups")
        d = ("t_to_d", t)
        return ("img", d if target == "d" else (target, d))
    if target == "beta":
        t = _plan("t", avail, has_n, warn)
        v = _plan("varcope", avail, has_n, warn)
        if t is None or v is None:
            return None
        return ("img", ("beta", t, v))
    if target == "varcope":
        if "se" in avail:
            node = ("se2", ("in", "se"))
        elif "samplevar_dataset" in avail and has_n:
            node = ("svar", ("in", "samplevar_dataset"))
        elif "sd" in avail and has_n:
            node = ("sd2", ("in", "sd"))
        elif "t" in avail and "beta" in avail:
            node = ("tb", ("in", "t"), ("in", "beta"))
        else:
            return None
        return ("img", node)
    if target == "p":
        if "t" in avail and has_n:
            node = ("z_to_p", ("t_to_z", ("in", "t")))
        elif "z" in avail:
            node = ("z_to_p", ("in", "z"))
        else:
            return None
        return ("img", node)
    return None


def _inputs(node, out: set) -> set:
    if node[0] == "in":
        out.add(node[1])
    else:
        for child in node[1:]:
            if isinstance(child, tuple):
                _inputs(child, out)
    return out


def _evaluate(node, blocks: dict, dof, n):
    """Evaluate a plan on numpy blocks (inputs as NiMARE's masker gives them: NaN/inf -> 0)."""
    op = node[0]
    if op == "in":
        return blocks[node[1]]
    args = [_evaluate(c, blocks, dof, n) for c in node[1:]]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if op == "img":  # NiMARE writes an image and masks it again: float32, non-finite -> 0
            out = np.asarray(args[0], dtype=np.float32)
            return np.where(np.isfinite(out), out, np.float32(0))
        if op == "t_to_z":
            return t_to_z(args[0], dof)
        if op == "p_to_z":
            return p_to_z(args[0])
        if op == "signed":
            return np.sign(args[0]) * args[1]
        if op == "z_to_t":
            return z_to_t(args[0], dof)
        if op == "t_to_d":
            return t_to_d(np.asarray(args[0], float), n)
        if op == "g":
            return d_to_g(args[0], n)
        if op == "g_var":
            return d_to_g(args[0], n, return_variance=True)[1]
        if op == "beta":
            return t_and_varcope_to_beta(np.asarray(args[0], float), args[1])
        if op == "se2":
            return se_to_varcope(np.asarray(args[0], float))
        if op == "svar":
            return samplevar_dataset_to_varcope(np.asarray(args[0], float), n)
        if op == "sd2":
            return sd_to_varcope(np.asarray(args[0], float), n)
        if op == "tb":
            return t_and_beta_to_varcope(np.asarray(args[0], float), args[1])
        if op == "z_to_p":
            return z_to_p(args[0])
    raise ValueError(f"unknown transform step {op!r}")


def _block_eval(*arrays, plan, names):
    dof, n = arrays[-2], arrays[-1]
    blocks = {
        name: np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        for name, a in zip(names, arrays[:-2], strict=True)
    }
    out = np.asarray(_evaluate(plan, blocks, dof, n), dtype=np.float32)
    out[~np.isfinite(out) | (out == 0)] = np.nan
    return out


_WARNINGS = {
    "z-from-p": (
        "Deriving 'z' from a p map, with nothing in the analysis to give the direction: the "
        "result is unsigned (invalid input for signed tests such as Stouffers); p-values are "
        "read as two-tailed. Analyses: {}"
    ),
    "groups": (
        "Converting to d/g from {} with several group sample sizes: the conversion is the "
        "one-sample d = t / sqrt(N), so a between-group contrast comes out wrong"
    ),
}


# ----------------------------------------------------------------------------- ImageTransformer
class ImageTransformer:
    """Create missing images from the ones each analysis has (NiMARE's ``ImageTransformer``).

    Parameters
    ----------
    target : {"z", "p", "t", "beta", "varcope", "d", "g", "g_var"} or list of them
        Image types to derive, in order (a later target may use an earlier one).
    overwrite : bool, default=False
        Derive again images a previous transform derived (NiMARE: overwrite the files it
        wrote). Images given as files or stored arrays are never replaced, as in NiMARE.

    Notes
    -----
    The recipes are NiMARE's ``resolve_transforms``: z from t and the sample sizes
    (``dof = sum(n) - groups``), else from p (signed by t if present); t from z; beta from t and
    varcope; varcope from se, from the sample variance or sd with n, or from t and beta; p from
    t and n, else z; d = t / sqrt(N), Hedges' g and its variance (``N = sum(n)``). Inputs are
    read as NiMARE's masker reads them (unusable values as 0), and each intermediate image is
    rounded to float32 where NiMARE writes one. Unlike NiMARE, images whose grid differs from
    the studyset's are first resampled with the IBMA settings (linear, clipped); NiMARE's
    transformer resamples them with its masker's default (continuous) instead.
    """

    def __init__(self, target: str | Sequence[str], overwrite: bool = False):
        targets = [target] if isinstance(target, str) else list(target)
        bad = [t for t in targets if t not in TARGETS]
        if bad:
            raise ValueError(
                f"Target type {bad[0]} not supported. Must be one of: {', '.join(TARGETS)}"
            )
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be a bool, got {overwrite!r}")
        self.target = targets
        self.overwrite = overwrite

    def transform(
        self, studyset: Studyset | None = None, *, dataset: Studyset | None = None
    ) -> Studyset:
        """Derive the target images; lazy.

        Parameters
        ----------
        studyset : Studyset
            The input (``dataset=`` is NiMARE's name for it).

        Returns
        -------
        Studyset
            ``studyset`` with the derived images as dask arrays (see
            :func:`~nimare_dask.studyset.images.with_image_arrays`); nothing is computed yet.
        """
        studyset = studyset_or_dataset(studyset, dataset, "ImageTransformer.transform")
        out = studyset
        ids = np.asarray(studyset.ids)
        sizes = sample_size_lists(studyset)
        has_n = np.array([s is not None for s in sizes])
        dof = np.array([sample_sizes_to_dof(s) if s else np.nan for s in sizes], dtype=float)
        n_tot = np.array([sample_sizes_to_sample_size(s) if s else np.nan for s in sizes])
        n_groups = np.array([len(s) if s else 0 for s in sizes])
        for target in self.target:
            arrs = image_arrays(out)
            derived_before = (
                arrs.rows_for(target, ids) >= 0
                if arrs is not None and arrs.source == "derived"
                else np.zeros(len(ids), bool)
            )
            given = has_image(out, target) & ~derived_before
            todo = ~given if self.overwrite else ~has_image(out, target)
            types = {t: has_image(out, t) for t in _SOURCES}
            groups: dict = {}
            warned: dict[str, list] = {}
            for i in np.flatnonzero(todo):
                avail = {t for t, h in types.items() if h[i] and t != target}
                warn: list = []
                plan = _plan(target, avail, bool(has_n[i]), warn)
                if plan is None:
                    continue
                for w in warn:
                    if w != "groups" or n_groups[i] > 1:
                        warned.setdefault(w, []).append(ids[i])
                groups.setdefault(plan, []).append(i)
            for key, who in warned.items():
                text = _WARNINGS[key].format(who[:10] if key != "groups" else repr(target))
                warnings.warn(text, UserWarning, stacklevel=2)
            if not groups:
                continue
            result = da.full(
                (len(ids), out.grid.n_voxels), np.nan, dtype=np.float32, chunks=DEFAULT_CHUNKS
            )
            present = np.zeros(len(ids), bool)
            for plan, rows in groups.items():
                names = sorted(_inputs(plan, set()))
                mats = [image_matrix(out, name, chunks=DEFAULT_CHUNKS) for name in names]
                rchunks = mats[0].chunks[0]
                vals = da.map_blocks(
                    _block_eval,
                    *mats,
                    da.from_array(dof[:, None], chunks=(rchunks, 1)),
                    da.from_array(n_tot[:, None], chunks=(rchunks, 1)),
                    plan=plan,
                    names=names,
                    dtype=np.float32,
                    name=f"derive-{target}-" + tokenize(plan, *mats, dof, n_tot),
                )
                sel = np.zeros(len(ids), bool)
                sel[rows] = True
                present |= sel
                result = da.where(da.from_array(sel[:, None], chunks=(rchunks, 1)), vals, result)
            out = with_image_arrays(out, {target: result}, present={target: present})
        return out


# ----------------------------------------------------------------------------- file-based API
def resolve_transforms(target, available_data, masker):
    """Derive one image of ``target`` from ``available_data`` (NiMARE's file-based function).

    Parameters
    ----------
    target : {"z", "p", "t", "beta", "varcope", "d", "g", "g_var"}
    available_data : dict
        Image type -> path or image, plus ``sample_sizes`` (list) and optionally ``id``.
    masker : nilearn masker
        Converts images to arrays and back (preferably over the whole acquisition matrix).

    Returns
    -------
    image or None
        The derived image, the available one when ``target`` is already there, or None.
    """
    if target in available_data:
        return available_data[target]
    sizes = available_data.get("sample_sizes")
    sizes = None if sizes is None else list(np.atleast_1d(sizes))
    avail = {k for k in _SOURCES if available_data.get(k) is not None}
    warn: list = []
    plan = _plan(target, set(avail), bool(sizes), warn)
    if plan is None:
        return None
    if "z-from-p" in warn:
        warnings.warn(_WARNINGS["z-from-p"].format([available_data.get("id")]), stacklevel=2)
    names = sorted(_inputs(plan, set()))
    blocks = [np.asarray(masker.transform([available_data[n]]), dtype=np.float32) for n in names]
    dof = np.float64(sample_sizes_to_dof(sizes)) if sizes else np.nan
    n = np.float64(sample_sizes_to_sample_size(sizes)) if sizes else np.nan
    out = _block_eval(*blocks, np.array([[dof]]), np.array([[n]]), plan=plan, names=names)
    return masker.inverse_transform(np.nan_to_num(out, nan=0.0).squeeze())


def transform_images(images_df, target, masker, metadata_df=None, out_dir=None, overwrite=False):
    """Derive ``target`` images for the rows of ``images_df`` lacking one and write them.

    NiMARE's file-based function: ``<id>_<zooms>_<target>.nii.gz`` files in ``out_dir`` (or
    beside each analysis' first image), float32. Returns a copy of ``images_df`` with the
    new paths (None where the image could not be derived).
    """
    if target not in TARGETS:
        raise ValueError(f"Target type {target} not supported. Must be one of: {TARGETS}")
    new_df = images_df.copy()
    res = "x".join(str(r) for r in masker.mask_img_.header.get_zooms())
    ids = (
        images_df["id"]
        if target not in images_df
        else images_df.loc[images_df[target].isnull(), "id"]
    )
    for id_ in ids:
        row = images_df.loc[images_df["id"] == id_].iloc[0]
        if out_dir is None:
            options = [r for r in row.values if isinstance(r, str) and os.path.isfile(r)]
            if not options:
                continue
            folder = os.path.dirname(options[0])
        else:
            folder = str(out_dir)
        new_file = os.path.join(folder, f"{id_}_{res}_{target}.nii.gz")
        data = row[~row.isnull()].to_dict()
        if metadata_df is not None:
            meta = metadata_df.loc[metadata_df["id"] == id_].iloc[0]
            for k, v in meta[~meta.isnull()].to_dict().items():
                data.setdefault(k, v)
        img = resolve_transforms(target, data, masker)
        if img is None:
            new_df.loc[new_df["id"] == id_, target] = None
            continue
        if overwrite or not os.path.isfile(new_file):
            img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)
            img.to_filename(new_file)
        new_df.loc[new_df["id"] == id_, target] = new_file
    if target not in new_df:
        new_df[target] = None
    return new_df
