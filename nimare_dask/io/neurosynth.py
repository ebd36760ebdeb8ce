"""Neurosynth and NeuroQuery database files -> Studyset (vectorised, whole-database fast).

The files (``data-neurosynth_version-7_*``, ``data-neuroquery_version-1_*``) are:

* a coordinates table (``.tsv[.gz]``) with columns ``id, x, y, z`` (and others, ignored): one
  row per peak;
* a metadata table with one row per study (``id`` plus ``space``, ``title``, ``authors``,
  ``year``, ``journal``, ``doi`` ... as available);
* optional feature matrices (``.npz``, scipy sparse, one row per metadata row **in metadata
  order**) with a vocabulary file naming the columns, one name per line.

As in NiMARE 0.22.1, every study becomes one analysis ``"1"`` (id ``"<pmid>-1"``) with all its
peaks pooled, and feature columns are labelled ``f"{vocab}_{source}_{type}__{term}"`` from the
entities in the features file name (``vocab-LDA50_source-abstract_type-weight`` gives
``LDA50_abstract_weight__0_network_state_resting``).

Differences from NiMARE: annotations stay a scipy CSR matrix (NiMARE densifies them); studies
with foci in an ``UNKNOWN`` space are kept as MNI with a visible
:class:`~nimare_dask.studyset.core.UnknownSpaceWarning`; peaks of studies missing from the
metadata are dropped with an :class:`~nimare_dask.io.errors.UnmatchedFociWarning` (NiMARE drops
them silently); malformed files raise :class:`~nimare_dask.io.errors.NeurosynthError` naming the
file and line.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nimare_dask.io.errors import NeurosynthError, UnmatchedFociWarning, warn_foci_outside_mask
from nimare_dask.space import Grid
from nimare_dask.studyset.core import Annotations, Studyset

__all__ = [
    "convert_neurosynth_to_studyset",
    "convert_neuroquery_to_studyset",
    "parse_feature_filename",
    "tfidf_transform",
    "vocabulary_path_for",
]

PathLike = str | os.PathLike


def parse_feature_filename(features_file: PathLike) -> tuple[str, str, str]:
    """The ``(vocab, source, type)`` entities of a Neurosynth-style features file name.

    Parameters
    ----------
    features_file : str or Path
        E.g. ``data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz``.

    Returns
    -------
    tuple of str
        ``("LDA50", "abstract", "weight")``.
    """
    name = Path(features_file).name
    found = []
    for entity in ("vocab", "source", "type"):
        m = re.search(rf"{entity}-([A-Za-z0-9]+)_", name)
        if m is None:
            raise NeurosynthError(
                f"{features_file}: cannot find the '{entity}-*' entity in the file name; "
                "expected a Neurosynth-style name such as "
                "'..._vocab-terms_source-abstract_type-tfidf_features.npz' "
                "(or pass feature_groups= to name the annotation set)"
            )
        found.append(m.group(1))
    return found[0], found[1], found[2]


def vocabulary_path_for(features_file: PathLike) -> Path:
    """The vocabulary file that accompanies a features file (same folder, NiMARE's naming).

    ``..._vocab-X_source-S_type-T_features.npz`` -> ``..._vocab-X_vocabulary.txt``.
    """
    p = Path(features_file)
    name, n = re.subn(r"_source-[^_]+_type-[^_]+_features\.npz$", "_vocabulary.txt", p.name)
    if n == 0:
        raise NeurosynthError(
            f"{features_file}: cannot derive the vocabulary file name; expected a name ending "
            "'_source-<source>_type-<type>_features.npz', or pass "
            "{'features': ..., 'vocabulary': ...}"
        )
    return p.with_name(name)


def tfidf_transform(counts: sp.spmatrix) -> sp.csr_matrix:
    """TF-IDF of a (documents x terms) count matrix, as scikit-learn's default transformer.

    ``idf(t) = ln((1 + n_docs) / (1 + df(t))) + 1`` (smooth idf), ``tfidf = count * idf``, then
    each row is scaled to unit Euclidean (l2) norm (all-zero rows stay zero). This is
    ``sklearn.feature_extraction.text.TfidfTransformer()`` with its defaults, which NiMARE's
    ``generate_counts(tfidf=True)`` uses.

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, same shape.
    """
    x = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    x.eliminate_zeros()
    n_docs, n_terms = x.shape
    df = np.bincount(x.indices, minlength=n_terms)
    idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    x.data *= idf[x.indices]
    norms = np.sqrt(np.add.reduceat(x.data**2, x.indptr[:-1])) if x.nnz else np.zeros(n_docs)
    norms = np.where(np.diff(x.indptr) > 0, norms, 1.0)
    norms[norms == 0] = 1.0
    x.data /= np.repeat(norms, np.diff(x.indptr))
    return x


def _read_table(path: PathLike, what: str, required: Sequence[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        df = pd.read_table(path, dtype={"id": str}, low_memory=False)
    except pd.errors.EmptyDataError:
        raise NeurosynthError(
            f"{path}: empty {what} file; expected a tab-separated table with columns "
            f"{list(required)}"
        ) from None
    except (
        UnicodeDecodeError,
        pd.errors.ParserError,
        OSError,
        EOFError,
        ValueError,
        zlib.error,
    ) as err:
        raise NeurosynthError(
            f"{path}: cannot read the {what} file as a tab-separated table "
            f"({type(err).__name__}: {err}); expected columns {list(required)}"
        ) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise NeurosynthError(
            f"{path}: {what} file lacks column(s) {missing}; found {list(df.columns)[:10]}, "
            f"expected {list(required)} (tab-separated, with a header line)"
        )
    bad_id = df["id"].isna().to_numpy()
    if bad_id.any():
        lines = (np.flatnonzero(bad_id) + 2)[:5].tolist()
        raise NeurosynthError(f"{path}: missing study id on line(s) {lines}")
    df["id"] = df["id"].astype(str).str.strip()
    return df


def _coordinates(path: PathLike) -> tuple[pd.Series, np.ndarray]:
    df = _read_table(path, "coordinates", ["id", "x", "y", "z"])
    xyz = np.empty((len(df), 3))
    for j, col in enumerate("xyz"):
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = (num.isna() & raw.notna()).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise NeurosynthError(
                f"{path}, line {i + 2}: non-numeric {col} coordinate {raw.iloc[i]!r} for study "
                f"{df['id'].iloc[i]!r} ({int(bad.sum())} such value(s)); expected numbers"
            )
        xyz[:, j] = num.to_numpy(dtype=float)
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        studies = pd.unique(df["id"].to_numpy()[rows])[:5].tolist()
        raise NeurosynthError(
            f"{path}, line(s) {(rows[:5] + 2).tolist()}: missing or non-finite coordinates "
            f"({len(rows)} peak(s)) in studies {studies}; expected three finite numbers"
        )
    return df["id"], xyz


def _read_vocabulary(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise NeurosynthError(f"{path}: not a UTF-8 text vocabulary file ({err})") from None
    terms = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()  # NiMARE reads it with np.loadtxt (comments '#')
        if not line:
            continue
        if "\t" in line:
            raise NeurosynthError(
                f"{path}, line {lineno}: a tab in a vocabulary line; expected one term per line"
            )
        terms.append(line)
    if not terms:
        raise NeurosynthError(f"{path}: empty vocabulary; expected one term per line")
    return terms


def _load_features(path: Path) -> sp.csr_matrix:
    if not path.exists():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        mat = sp.load_npz(path)  # never unpickles (allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, zlib.error) as err:
        raise NeurosynthError(
            f"{path}: not a scipy sparse .npz features file ({type(err).__name__}: {err})"
        ) from None
    return sp.csr_matrix(mat)


def _normalise_annotation_inputs(annotations_files) -> list[dict]:
    if annotations_files is None:
        return []
    if isinstance(annotations_files, dict | str | os.PathLike):
        annotations_files = [annotations_files]
    out = []
    for item in annotations_files:
        if isinstance(item, dict):
            if "features" not in item:
                raise NeurosynthError(
                    f"annotation entry {item!r} lacks 'features'; expected "
                    "{'features': <npz>, 'vocabulary': <txt>}"
                )
            feat = Path(item["features"])
            vocab = Path(item["vocabulary"]) if item.get("vocabulary") else None
        elif isinstance(item, str | os.PathLike):
            feat, vocab = Path(item), None
        else:
            raise NeurosynthError(
                f"annotation entry {item!r}: expected a features .npz path or a dict "
                "{'features': ..., 'vocabulary': ...}"
            )
        out.append({"features": feat, "vocabulary": vocab or vocabulary_path_for(feat)})
    return out


def _annotations(
    files: list[dict],
    feature_groups,
    n_rows: int,
    metadata_file: PathLike,
    tfidf: bool,
) -> Annotations | None:
    if not files:
        return None
    if isinstance(feature_groups, str):
        feature_groups = [feature_groups]
    if feature_groups is not None and len(feature_groups) != len(files):
        raise ValueError(
            f"feature_groups has {len(feature_groups)} names but there are {len(files)} "
            "annotation file sets; give one name per set"
        )
    mats, labels = [], []
    for i, f in enumerate(files):
        feat, vocab_file = f["features"], f["vocabulary"]
        mat = _load_features(feat)
        terms = _read_vocabulary(vocab_file)
        if mat.shape[0] != n_rows:
            raise NeurosynthError(
                f"{feat}: {mat.shape[0]} rows but {metadata_file} lists {n_rows} studies; "
                "expected one features row per metadata row, in the same order"
            )
        if mat.shape[1] != len(terms):
            raise NeurosynthError(
                f"{feat}: {mat.shape[1]} columns but {vocab_file} names {len(terms)} terms; "
                "expected one vocabulary line per column"
            )
        try:
            vocab, source, value_type = parse_feature_filename(feat)
        except NeurosynthError:
            if feature_groups is None:
                raise
            vocab = source = value_type = None
        if tfidf:
            if value_type not in ("count", None):
                raise ValueError(
                    f"tfidf=True applies to count matrices, but {feat.name} has type {value_type!r}"
                )
            mat = tfidf_transform(mat)
            value_type = "tfidf"
        if feature_groups is not None:
            prefix = str(feature_groups[i]).rstrip("_") + "__"
        else:
            prefix = f"{vocab}_{source}_{value_type}__"
        mats.append(mat.astype(np.float32))
        labels.extend(prefix + t for t in terms)
    values = sp.hstack(mats, format="csr") if len(mats) > 1 else mats[0]
    return Annotations(values, labels)


def _convert(
    coordinates_file: PathLike,
    metadata_file: PathLike,
    annotations_files,
    feature_groups,
    target,
    *,
    tfidf: bool,
    default_space: str,
) -> Studyset:
    coord_ids, xyz = _coordinates(coordinates_file)
    meta = _read_table(metadata_file, "metadata", ["id"])
    dup = meta["id"][meta["id"].duplicated()]
    if len(dup):
        lines = (np.flatnonzero(meta["id"].duplicated().to_numpy()) + 2)[:5].tolist()
        raise NeurosynthError(
            f"{metadata_file}, line(s) {lines}: duplicated study ids {dup.unique()[:5].tolist()}; "
            "expected one row per study"
        )
    files = _normalise_annotation_inputs(annotations_files)
    annotations = _annotations(files, feature_groups, len(meta), metadata_file, tfidf)

    study_ids = meta["id"].to_numpy(dtype=object)
    aids = meta["id"].astype(str) + "-1"
    if "space" in meta:
        spaces = meta["space"].astype(object).where(meta["space"].notna(), "UNKNOWN")
    else:
        spaces = pd.Series(default_space, index=meta.index, dtype=object)
    pos = pd.Index(study_ids).get_indexer(coord_ids.to_numpy())
    unmatched = pos < 0
    if unmatched.any():
        missing = pd.unique(coord_ids.to_numpy()[unmatched])
        warnings.warn(
            f"{coordinates_file}: {int(unmatched.sum())} peaks of {len(missing)} studies that are "
            f"not in {metadata_file} were dropped: {missing[:10].tolist()}",
            UnmatchedFociWarning,
            stacklevel=3,
        )
        pos, xyz = pos[~unmatched], xyz[~unmatched]
    points = pd.DataFrame(
        {
            "id": aids.to_numpy(dtype=object)[pos],
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "space": spaces.to_numpy(dtype=object)[pos],
        }
    )
    analyses = pd.DataFrame(
        {
            "id": aids.to_numpy(dtype=object),
            "study_id": study_ids,
            "contrast_id": "1",
            "study_name": meta["title"].fillna("").astype(str).to_numpy(dtype=object)
            if "title" in meta
            else "",
            "analysis_name": "1",
        }
    )
    metadata = meta.drop(columns=[c for c in ("id", "space") if c in meta])
    metadata.insert(0, "id", aids.to_numpy(dtype=object))
    name = str(coordinates_file)
    ss = Studyset.from_tables(
        analyses, points, metadata, annotations, target=target, source_name=name
    )
    warn_foci_outside_mask(ss, name, stacklevel=4)
    return ss


def convert_neurosynth_to_studyset(
    coordinates_file: PathLike,
    metadata_file: PathLike,
    annotations_files=None,
    feature_groups: str | Sequence[str] | None = None,
    target: str | Grid = "mni152_2mm",
    *,
    studyset_id: str = "nimads_from_neurosynth",
    studyset_name: str = "",
    tfidf: bool = False,
) -> Studyset:
    """Convert Neurosynth database files into a Studyset.

    Parameters
    ----------
    coordinates_file : str or Path
        ``data-neurosynth_version-7_coordinates.tsv.gz`` (columns ``id, x, y, z``, ...).
    metadata_file : str or Path
        ``data-neurosynth_version-7_metadata.tsv.gz`` (``id``, ``space``, ...). A missing
        ``space`` column means ``UNKNOWN`` (kept as MNI, with a warning), as in NiMARE.
    annotations_files : dict, path, or list of them, optional
        Feature matrices: ``{"features": npz, "vocabulary": txt}`` dicts, or ``.npz`` paths
        whose vocabulary file lies beside them under NiMARE's naming
        (``..._vocab-X_vocabulary.txt``). Rows must match the metadata rows, in order.
    feature_groups : str or list of str, optional
        Names overriding the ``{vocab}_{source}_{type}`` label prefixes, one per file set.
    target : str or Grid, default="mni152_2mm"
        The voxel grid.
    studyset_id, studyset_name : str
        The studyset's identifier and name (NiMARE's defaults), kept in ``Studyset.info``
        (``"id"``, ``"name"``) and written by ``to_parquet``.
    tfidf : bool, default=False
        Convert ``type-count`` matrices to TF-IDF (:func:`tfidf_transform`); their labels then
        read ``..._tfidf__term``.

    Returns
    -------
    Studyset
        Eager tables; annotations as a scipy CSR matrix (float32).
    """
    ss = _convert(
        coordinates_file,
        metadata_file,
        annotations_files,
        feature_groups,
        target,
        tfidf=tfidf,
        default_space="UNKNOWN",
    )
    ss.info.update(id=studyset_id, name=studyset_name)
    return ss


def convert_neuroquery_to_studyset(
    coordinates_file: PathLike,
    metadata_file: PathLike,
    annotations_files=None,
    feature_groups: str | Sequence[str] | None = None,
    target: str | Grid = "mni152_2mm",
    *,
    tfidf: bool = False,
) -> Studyset:
    """Convert NeuroQuery database files into a Studyset.

    As :func:`convert_neurosynth_to_studyset`, except that NeuroQuery's metadata has no
    ``space`` column: its coordinates are all MNI (NiMARE labels them ``UNKNOWN`` and also
    leaves them unchanged, so the coordinates agree).

    Parameters
    ----------
    coordinates_file, metadata_file : str or Path
        ``data-neuroquery_version-1_{coordinates,metadata}.tsv.gz``.
    annotations_files : dict, path, or list of them, optional
        E.g. ``..._vocab-neuroquery7547_source-abstract_type-count_features.npz`` (the
        vocabulary ``..._vocab-neuroquery7547_vocabulary.txt`` is found beside it).
    feature_groups : str or list of str, optional
        Label prefix overrides.
    target : str or Grid, default="mni152_2mm"
        The voxel grid.
    tfidf : bool, default=False
        Convert the raw term counts to TF-IDF (smooth idf, l2-normalised rows; labels
        ``neuroquery7547_abstract_tfidf__<term>``).

    Returns
    -------
    Studyset
        Eager tables; annotations as a scipy CSR matrix (float32).
    """
    return _convert(
        coordinates_file,
        metadata_file,
        annotations_files,
        feature_groups,
        target,
        tfidf=tfidf,
        default_space="MNI",
    )
