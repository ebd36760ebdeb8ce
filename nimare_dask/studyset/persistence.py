"""Studyset persistence with NiMARE 0.22.1's names: NIMADS, NeuroStore parquet, Zarr store.

:class:`StudysetPersistence` is mixed into :class:`~nimare_dask.studyset.core.Studyset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nimare_dask.studyset.annotations import StudysetError

if TYPE_CHECKING:
    from nimare_dask.studyset.core import Studyset

__all__ = ["StudysetPersistence"]


class StudysetPersistence:
    """Readers and writers (mixed into Studyset)."""

    @classmethod
    def from_parquet(cls, directory: str | Path, **kwargs) -> Studyset:
        """Read a NeuroStore parquet studyset folder (``Studyset(directory, **kwargs)``)."""
        from nimare_dask.studyset.parquet import is_parquet_studyset

        if not is_parquet_studyset(directory):
            raise StudysetError(
                f"{directory}: not a parquet studyset (expected studies.parquet and "
                "analyses.parquet in the folder)"
            )
        return cls(directory, **kwargs)

    @classmethod
    def from_nimads(cls, source: dict | str | Path, **kwargs) -> Studyset:
        """Read a NIMADS studyset (dict or JSON path): ``Studyset(source, **kwargs)``."""
        return cls(source, **kwargs)

    def to_parquet(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write a NeuroStore parquet studyset folder, as NiMARE 0.22.1's ``to_parquet``.

        Parameters
        ----------
        directory : str or Path
        overwrite : bool
            Write into a folder that already holds files.

        Returns
        -------
        Path
            The folder (tables written atomically, ``studyset.json`` last).
        """
        from nimare_dask.studyset.parquet import write_parquet

        info = getattr(self, "info", {}) or {}
        return write_parquet(
            self,
            directory,
            studyset_id=info.get("id"),
            name=info.get("name") or "",
            annotation_id=info.get("annotation_id") or "nimare_dask",
            overwrite=overwrite,
        )

    def to_dict(self) -> dict:
        """The studyset as a NIMADS dict."""
        from nimare_dask.studyset.nimads import tables_to_nimads

        return tables_to_nimads(self)

    def to_nimads(self, filename: str | Path) -> Path:
        """Write the studyset as NIMADS JSON (atomically; NiMARE's ``to_nimads(filename)``)."""
        from nimare_dask.studyset.nimads import write_nimads

        return write_nimads(self, filename)

    def to_zarr(
        self,
        path_or_url: str | Path,
        *,
        overwrite: bool = False,
        images: bool | str | list[str] = "auto",
        image_chunks: tuple[int, int] | None = None,
        resample_kwargs: dict | None = None,
        storage_options: dict | None = None,
        **more_storage_options,
    ):
        """Write the studyset to a Zarr v3 store (atomically; see ``storage/README.md``).

        Parameters
        ----------
        path_or_url : str or Path
            A local folder or an fsspec URL (``memory://``, ``s3://``...).
        overwrite : bool
            Replace an existing store; without it an existing store raises.
        images : "auto", bool or list of str
            Image types stored as (analysis x voxel) float32 arrays over the grid's in-mask
            voxels (NaN = missing), resampled once: ``"auto"`` every type that has arrays or
            existing files, ``True`` all, a list those, ``False`` paths only.
        image_chunks : (int, int), optional
            ``(analyses, voxels)`` chunks of the image arrays.
        resample_kwargs : dict, optional
            nilearn ``resample_to_img`` keywords (default ``clip=True``,
            ``interpolation="linear"``, as NiMARE).
        storage_options : dict, optional
            fsspec options (also accepted as keywords).

        Returns
        -------
        str
            The store location.
        """
        from nimare_dask.studyset.store import write_store

        return write_store(
            self,
            path_or_url,
            overwrite=overwrite,
            images=images,
            image_chunks=image_chunks,
            resample_kwargs=resample_kwargs,
            storage_options=storage_options,
            **more_storage_options,
        )
