"""ImagesToCoordinates and StandardizeField.

Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c)
2018 NiMARE developers (``nimare/transforms.py``).
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd

from nimare_dask.studyset.core import Studyset, studyset_or_dataset
from nimare_dask.studyset.images import image_arrays, image_matrix
from nimare_dask.transforms._convert import p_to_z, z_to_p


# ----------------------------------------------------------------------------- ImagesToCoordinates
class ImagesToCoordinates:
    """Peaks of z (or p) maps as coordinates (NiMARE's ``ImagesToCoordinates``).

    Parameters are NiMARE's: ``merge_strategy`` ``"fill"`` (only analyses without foci),
    ``"replace"`` (generated foci replace an analysis' foci where peaks were found) or
    ``"demolish"`` (only generated foci are kept); ``cluster_threshold`` (voxels),
    ``remove_subpeaks``, ``two_sided``, ``min_distance`` (mm), ``z_threshold``. Peaks come from
    nilearn's ``get_clusters_table`` on the z image file (or on ``1 - p``, reported as z);
    derived z arrays are unmasked onto the grid first. The metadata field
    ``coordinate_source`` says ``"nimare"`` or ``"original"``. The peak statistics are not kept
    (the Studyset's foci table has no value column).
    """

    def __init__(
        self,
        merge_strategy="fill",
        cluster_threshold=None,
        remove_subpeaks=False,
        two_sided=False,
        min_distance=8.0,
        z_threshold=3.1,
    ):
        if merge_strategy not in ("fill", "replace", "demolish"):
            raise ValueError(
                f"merge_strategy must be 'fill', 'replace' or 'demolish', got {merge_strategy!r}"
            )
        self.merge_strategy = merge_strategy
        self.cluster_threshold = cluster_threshold
        self.remove_subpeaks = remove_subpeaks
        self.two_sided = two_sided
        self.min_distance = min_distance
        self.z_threshold = z_threshold

    def _clusters(self, studyset, i, z_arr, p_path, z_path):
        from nilearn.reporting import get_clusters_table

        thr = 0 if self.cluster_threshold is None else self.cluster_threshold
        if z_path is not None or z_arr is not None:
            if z_path is not None:
                img = nib.funcs.squeeze_image(nib.load(z_path))
            else:
                img = studyset.grid.to_image(np.nan_to_num(z_arr[i].compute(), nan=0.0))
            return get_clusters_table(
                img, self.z_threshold, thr, two_sided=self.two_sided, min_distance=self.min_distance
            )
        if p_path is None:
            return None
        nimg = nib.funcs.squeeze_image(nib.load(p_path))
        inv = nib.Nifti1Image(1 - nimg.get_fdata(dtype=np.float32), nimg.affine, nimg.header)
        clusters = get_clusters_table(
            inv, 1 - z_to_p(self.z_threshold), thr, two_sided=False, min_distance=self.min_distance
        )
        clusters["Peak Stat"] = p_to_z(1 - clusters["Peak Stat"])
        return clusters

    def transform(
        self, studyset: Studyset | None = None, *, dataset: Studyset | None = None
    ) -> Studyset:
        """Add the peaks of each analysis' z (or p) map as foci.

        Parameters
        ----------
        studyset : Studyset
            The input (``dataset=`` is NiMARE's name for it).

        Returns
        -------
        Studyset
            A new Studyset (eager: peaks are found now).
        """
        studyset = studyset_or_dataset(studyset, dataset, "ImagesToCoordinates.transform")

        from nimare_dask.studyset.images import _file_paths

        ids = list(studyset.ids)
        counts = studyset.foci_counts()
        z_files, p_files = _file_paths(studyset, "z"), _file_paths(studyset, "p")
        arrs = image_arrays(studyset)
        z_rows = arrs.rows_for("z", ids) if arrs is not None else np.full(len(ids), -1)
        z_arr = image_matrix(studyset, "z", chunks=(1, -1)) if (z_rows >= 0).any() else None
        new_rows, got = [], set()
        for i, aid in enumerate(ids):
            if counts[i] and self.merge_strategy == "fill":
                continue
            use_arr = z_arr if z_rows[i] >= 0 else None
            clusters = self._clusters(
                studyset, i, use_arr, p_files[i], None if use_arr is not None else z_files[i]
            )
            if clusters is None or clusters.empty:
                continue
            if self.remove_subpeaks:
                clusters = clusters[clusters["Cluster ID"].apply(lambda x: isinstance(x, int))]
            got.add(aid)
            new_rows.append(
                pd.DataFrame(
                    {"id": aid, "x": clusters["X"], "y": clusters["Y"], "z": clusters["Z"]}
                ).assign(space="MNI", _z=clusters["Peak Stat"].astype(float).to_numpy())
            )
        gen = pd.concat(new_rows, ignore_index=True) if new_rows else None
        if gen is not None and (gen["_z"] >= 0).any() and (gen["_z"] < 0).any():
            warnings.warn(
                "Coordinates dataset contains both positive and negative z_stats. The "
                "algorithms currently implemented in NiMARE are designed for one-sided tests. "
                "This might lead to unexpected results.",
                stacklevel=2,
            )
        old = studyset._points
        if self.merge_strategy == "demolish":
            old = old.iloc[0:0]
        else:
            old = old[~old["id"].isin(got)]
        points = old if gen is None else pd.concat([gen.drop(columns="_z"), old], ignore_index=True)
        meta = studyset._metadata.copy()
        meta["coordinate_source"] = np.where(meta["id"].isin(got), "nimare", "original")
        tables = studyset._tables()
        tables.update(points=points, metadata=meta)
        analyses = tables["analyses"].drop(columns=["sample_size"])
        tables["analyses"] = analyses
        out = Studyset.from_tables(**tables, target=studyset.grid, harmonize=False)
        if arrs is not None:
            out._image_arrays = arrs
        out.store = None
        return out


# ----------------------------------------------------------------------------- StandardizeField
class StandardizeField:
    """z-score numeric annotation columns (population SD) into ``standardized_<field>`` labels.

    NiMARE's ``StandardizeField``: the new columns are added to the annotations.
    """

    def __init__(self, fields):
        self.fields = list(fields)

    def transform(
        self, studyset: Studyset | None = None, *, dataset: Studyset | None = None
    ) -> Studyset:
        """Add the standardised columns.

        Parameters
        ----------
        studyset : Studyset
            The input (``dataset=`` is NiMARE's name for it).

        Returns
        -------
        Studyset
        """
        studyset = studyset_or_dataset(studyset, dataset, "StandardizeField.transform")
        from nimare_dask.studyset import Annotations

        ann = studyset.annotation_matrix
        if ann is None:
            raise ValueError("No numerical metadata found.")
        missing = [f for f in self.fields if f not in ann.labels]
        if missing:
            raise KeyError(f"unknown annotation field(s) {missing}; available: {ann.labels[:10]}")
        vals = ann.columns(self.fields).astype(float)
        std = vals - vals.mean(axis=0)
        std /= std.std(axis=0)
        labels = [f"standardized_{f}" for f in self.fields]
        keep = [lab for lab in ann.labels if lab not in labels]
        base = ann.columns(keep)
        new = Annotations(np.hstack([base, std.astype(np.float32)]), keep + labels)
        tables = studyset._tables()
        tables["annotations"] = new
        tables["analyses"] = tables["analyses"].drop(columns=["sample_size"])
        out = Studyset.from_tables(**tables, target=studyset.grid, harmonize=False)
        out._image_arrays = getattr(studyset, "_image_arrays", None)
        return out
