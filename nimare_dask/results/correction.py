"""What a correction method returns before a corrector names and stores it.

An estimator that has its own correction (``est.correct_fwe_montecarlo(result, **kwargs)``,
``est.correct_fdr_<method>(result, **kwargs)``) returns a :class:`Correction` (NiMARE's tuple
``(maps, tables, description)`` is accepted too). The corrector then appends
``_corr-<FWE|FDR>_method-<m>`` to every map and table name and adds them to a copy of the
result, with the description, references and null distributions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Correction"]


@dataclass
class Correction:
    """Corrected maps and tables, named *without* the correction suffix.

    Parameters
    ----------
    maps : dict
        ``{name: 1-D array over voxels}`` (numpy or dask; e.g. ``"z_level-voxel"``,
        ``"logp_desc-size_level-cluster"``). The corrector appends the suffix.
    tables : dict
        ``{name: DataFrame}``; the suffix is appended as well.
    description : str
        Methods text with natbib citations, appended to the result's description.
    references : str, optional
        BibTeX entries (default: the shipped entries the description cites).
    null_distributions : dict
        Null distributions to store under their own, complete names
        (e.g. ``"values_level-voxel_corr-fwe_method-montecarlo"``).
    """

    maps: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    references: str | None = None
    null_distributions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, value: Any) -> Correction:
        """Accept a Correction, a ``(maps, tables, description)`` tuple or a mapping.

        Parameters
        ----------
        value : Correction, tuple or dict
            What a correction method returned.

        Returns
        -------
        Correction
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, tuple) and len(value) == 3:
            maps, tables, description = value
            return cls(maps=dict(maps or {}), tables=dict(tables or {}), description=description)
        if isinstance(value, Mapping):
            unknown = set(value) - {
                "maps",
                "tables",
                "description",
                "references",
                "null_distributions",
            }
            if unknown:
                raise TypeError(f"unexpected keys in a correction: {sorted(unknown)}")
            return cls(**value)
        raise TypeError(
            "a correction method must return a Correction, a (maps, tables, description) "
            f"tuple or a dict, not {type(value).__name__}"
        )
