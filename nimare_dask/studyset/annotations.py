"""The (analysis x label) annotation weights of a Studyset, and the Studyset error class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Annotations", "StudysetError"]


class StudysetError(ValueError):
    """Raised for inconsistent or malformed studyset contents."""


def _is_dask(values) -> bool:
    return type(values).__module__.startswith("dask.")


class Annotations:
    """An (analysis x label) weight matrix, dense (float32) or scipy CSR.

    Parameters
    ----------
    values : numpy.ndarray or scipy.sparse matrix
        Shape (n_analyses, n_labels).
    labels : sequence of str
        Column names (e.g. ``"terms_abstract_tfidf__amygdala"``).
    """

    def __init__(self, values, labels: Sequence[str]):
        labels = [str(lab) for lab in labels]
        if sp.issparse(values):
            values = sp.csr_matrix(values, dtype=np.float32)
        elif _is_dask(values):  # a store's dense values: read column blocks on use
            values = values.astype(np.float32)
            if values.ndim != 2:
                raise StudysetError(f"annotation values must be 2-D, got shape {values.shape}")
        else:
            values = np.asarray(values, dtype=np.float32)
            if values.ndim != 2:
                raise StudysetError(f"annotation values must be 2-D, got shape {values.shape}")
        if values.shape[1] != len(labels):
            raise StudysetError(
                f"annotations have {values.shape[1]} columns but {len(labels)} label names"
            )
        if len(set(labels)) != len(labels):
            dup = pd.Index(labels)[pd.Index(labels).duplicated()].unique().tolist()
            raise StudysetError(f"duplicated annotation labels: {dup[:5]}")
        self.values = values
        self.labels = labels

    @property
    def is_sparse(self) -> bool:
        """True when stored as a scipy sparse matrix."""
        return sp.issparse(self.values)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_analyses, n_labels)."""
        return tuple(self.values.shape)

    def take(self, rows: np.ndarray) -> Annotations:
        """Rows selected by integer position."""
        return Annotations(self.values[rows], self.labels)

    def columns(self, labels: Sequence[str]) -> np.ndarray:
        """Dense (n_analyses, len(labels)) float32 array of the given labels."""
        pos = self.label_positions(labels)
        sub = self.values[:, pos]
        return sub.toarray() if sp.issparse(sub) else np.asarray(sub, dtype=np.float32)

    def label_positions(self, labels: Sequence[str]) -> np.ndarray:
        """Column positions of the given labels; raises on an unknown label."""
        index = pd.Index(self.labels)
        pos = index.get_indexer(list(labels))
        if (pos < 0).any():
            missing = [lab for lab, p in zip(labels, pos, strict=True) if p < 0]
            raise KeyError(f"unknown annotation label(s): {missing[:5]}")
        return pos

    @staticmethod
    def concat(parts: Sequence[Annotations], n_rows: Sequence[int]) -> Annotations | None:
        """Stack annotation matrices by rows, aligning labels (missing -> 0)."""
        if all(p is None for p in parts):
            return None
        labels: list[str] = []
        seen: set[str] = set()
        for p in parts:
            for lab in p.labels if p is not None else []:
                if lab not in seen:
                    seen.add(lab)
                    labels.append(lab)
        index = pd.Index(labels)
        blocks = []
        for p, n in zip(parts, n_rows, strict=True):
            if p is None:
                blocks.append(sp.csr_matrix((n, len(labels)), dtype=np.float32))
                continue
            m = sp.csr_matrix(p.values if p.is_sparse else np.asarray(p.values)).tocoo()
            cols = index.get_indexer(p.labels)[m.col]
            blocks.append(sp.csr_matrix((m.data, (m.row, cols)), shape=(n, len(labels))))
        out = sp.vstack(blocks).tocsr()
        dense = all(p is None or not p.is_sparse for p in parts)
        return Annotations(out.toarray() if dense else out, labels)
