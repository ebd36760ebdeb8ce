"""NiMARE 0.22.1's ``nimare.extract`` names over :mod:`nimare_dask.datasets`.

``fetch_neurosynth`` and ``fetch_neuroquery`` download (checksummed) and return NiMARE's
``return_type``: a list with one Studyset (default), the file paths (``"files"``), never a
``Dataset`` (NiMARE's deprecated class is not provided: ``return_type="dataset"`` raises).
The functions whose sources have no pinned checksum here (NeuroStore releases, NeuroVault's
NIDM pain collection, the Cognitive Atlas, PubMed abstracts) raise ``NotImplementedError``
saying so; every download this package makes is verified against a pinned checksum.
"""

from __future__ import annotations

import os
from typing import Any

from nimare_dask.datasets import fetchers

__all__ = [
    "download_abstracts",
    "download_cognitive_atlas",
    "download_nidm_pain",
    "fetch_neuroquery",
    "fetch_neurostore",
    "fetch_neurostore_releases",
    "fetch_neurosynth",
    "get_data_dirs",
]

_SELECTORS = ("source", "vocab", "type")


def get_data_dirs(data_dir: str | os.PathLike | None = None) -> list[str]:
    """The data folder(s) searched (NiMARE's ``extract.utils.get_data_dirs``).

    Returns
    -------
    list of str
        One folder: ``data_dir``, else ``$NIMARE_DASK_DATA``, else the OS cache folder.
    """
    return [str(fetchers.get_data_dir(data_dir))]


def _materialize(files: dict, return_type: str, target: str) -> list:
    if return_type == "files":
        return [files]
    if return_type == "dataset":
        raise ValueError(
            "return_type='dataset': NiMARE's deprecated Dataset is not provided; use the "
            "default return_type='studyset'"
        )
    if return_type != "studyset":
        raise ValueError(f"Invalid return_type {return_type!r}; one of 'studyset', 'files'")
    from nimare_dask.io import convert_neurosynth_to_studyset

    return [
        convert_neurosynth_to_studyset(
            files["coordinates"], files["metadata"], files["features"], target=target
        )
    ]


def _selectors(kwargs: dict[str, Any], owner: str) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(_SELECTORS) - {"base_url"})
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword argument(s) {unknown}")
    return kwargs


def fetch_neurosynth(
    data_dir: str | os.PathLike | None = None,
    version: str = "7",
    overwrite: bool = False,
    return_type: str = "studyset",
    target: str = "mni152_2mm",
    **kwargs: Any,
) -> list:
    """Download the Neurosynth database (NiMARE's signature and return types).

    Parameters
    ----------
    data_dir, version, overwrite
        As :func:`nimare_dask.datasets.fetch_neurosynth`.
    return_type : {"studyset", "files"}
        A list with one Studyset, or with the dict of local file paths.
    target : str
        The Studyset's target space.
    **kwargs
        ``source``, ``vocab``, ``type`` select the feature files (NiMARE's selectors; with
        none, ``vocab="terms"`` would be NiMARE's choice for decoding, ours defaults to
        :func:`nimare_dask.datasets.fetch_neurosynth`'s); ``base_url`` (ours: a mirror).

    Returns
    -------
    list
        One element (NiMARE returns one per database version found).
    """
    sel = _selectors(dict(kwargs), "fetch_neurosynth")
    files = fetchers.fetch_neurosynth(
        data_dir=data_dir, version=version, overwrite=overwrite, **sel
    )
    return _materialize(files, return_type, target)


def fetch_neuroquery(
    data_dir: str | os.PathLike | None = None,
    version: str = "1",
    overwrite: bool = False,
    return_type: str = "studyset",
    target: str = "mni152_2mm",
    **kwargs: Any,
) -> list:
    """Download the NeuroQuery database (NiMARE's signature and return types).

    Parameters and returns as :func:`fetch_neurosynth`.
    """
    sel = _selectors(dict(kwargs), "fetch_neuroquery")
    files = fetchers.fetch_neuroquery(
        data_dir=data_dir, version=version, overwrite=overwrite, **sel
    )
    return _materialize(files, return_type, target)


def _unpinned(name: str, what: str):
    raise NotImplementedError(
        f"{name}: {what} has no pinned checksum in nimare_dask, and this package only makes "
        "verified downloads. Download it with NiMARE (or by hand) and load the files: a "
        "parquet release folder with Studyset(folder), images through the studyset's paths."
    )


def fetch_neurostore_releases(url: str | None = None, timeout: int = 30):
    """NiMARE's NeuroStore release listing: not available here (see module docstring)."""
    _unpinned("fetch_neurostore_releases", "the NeuroStore release API (a moving list)")


def fetch_neurostore(
    version: str = "latest",
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    return_type: str = "studyset",
    target: str = "mni152_2mm",
    url: str | None = None,
    timeout: int = 30,
    verify_checksum: bool = True,
):
    """NiMARE's NeuroStore parquet release download: not available here.

    A release folder downloaded by NiMARE reads with ``Studyset(folder)``.
    """
    _unpinned("fetch_neurostore", "a NeuroStore parquet release")


def download_nidm_pain(data_dir: str | os.PathLike | None = None, overwrite: bool = False):
    """NiMARE's NeuroVault collection 1425 download: not available here."""
    _unpinned("download_nidm_pain", "NeuroVault collection 1425 (the 21 NIDM pain images)")


def download_cognitive_atlas(data_dir: str | os.PathLike | None = None, overwrite: bool = False):
    """NiMARE's Cognitive Atlas download: not available here."""
    _unpinned("download_cognitive_atlas", "the Cognitive Atlas concept/task files")


def download_abstracts(dataset, email: str):
    """NiMARE's PubMed abstract download: not available here."""
    _unpinned("download_abstracts", "PubMed (Entrez) abstracts")
