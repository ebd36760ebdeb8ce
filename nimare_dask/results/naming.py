"""Map names: NiMARE's grammar ``{datatype}[_desc-X][_level-L][_corr-C][_method-M]``.

Every map and null-distribution name in the package is made by :func:`map_name`, so the
grammar lives in one place. Examples: ``z``, ``logp_level-voxel_corr-FWE_method-montecarlo``,
``z_desc-size_level-cluster_corr-FWE_method-montecarlo``, ``p_corr-FDR_method-indep``.
"""

from __future__ import annotations

import re

__all__ = ["CORRECTIONS", "LEVELS", "add_correction", "map_name", "parse_map_name"]

#: Allowed ``level`` values.
LEVELS = ("cluster", "voxel")
#: Allowed ``corr`` values: FWE and FDR for maps; lower case and ``none`` appear in NiMARE's
#: null-distribution keys (``values_level-voxel_corr-fwe_method-montecarlo``,
#: ``histweights_corr-none_method-approximate``).
CORRECTIONS = ("FWE", "FDR", "fwe", "fdr", "none")

_WORD = re.compile(r"[a-zA-Z0-9]+")
_NAME = re.compile(
    r"^(?P<datatype>[a-zA-Z0-9]+)"
    r"(?:_desc-(?P<desc>[a-zA-Z0-9]+))?"
    r"(?:_level-(?P<level>[a-zA-Z]+))?"
    r"(?:_corr-(?P<corr>[a-zA-Z]+))?"
    r"(?:_method-(?P<method>[a-zA-Z0-9]+))?$"
)


def _check_word(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise ValueError(f"{kind} must be a non-empty run of letters and digits, got {value!r}")


def map_name(
    datatype: str,
    desc: str | None = None,
    level: str | None = None,
    corr: str | None = None,
    method: str | None = None,
) -> str:
    """Build a map name following NiMARE's grammar.

    Parameters
    ----------
    datatype : str
        ``z``, ``p``, ``logp``, ``stat``, ``chi2``, ``prob``, ``values`` ... (letters/digits).
    desc : str, optional
        Description entity (letters/digits), e.g. ``size``, ``mass``, ``association``.
    level : {"cluster", "voxel"}, optional
        Inference level.
    corr : {"FWE", "FDR"}, optional
        Correction (``"fwe"``, ``"fdr"`` and ``"none"`` are accepted for null-distribution
        keys, as NiMARE writes them).
    method : str, optional
        Correction or null method, e.g. ``montecarlo``, ``bonferroni``, ``indep``.

    Returns
    -------
    str
        ``{datatype}[_desc-{desc}][_level-{level}][_corr-{corr}][_method-{method}]``.
    """
    _check_word("datatype", datatype)
    name = datatype
    if desc is not None:
        _check_word("desc", desc)
        name += f"_desc-{desc}"
    if level is not None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        name += f"_level-{level}"
    if corr is not None:
        if corr not in CORRECTIONS:
            raise ValueError(f"corr must be one of {CORRECTIONS}, got {corr!r}")
        name += f"_corr-{corr}"
    if method is not None:
        _check_word("method", method)
        name += f"_method-{method}"
    return name


def parse_map_name(name: str) -> dict[str, str | None]:
    """Split a map name into its entities.

    Parameters
    ----------
    name : str
        A name made by :func:`map_name` (or by NiMARE).

    Returns
    -------
    dict
        Keys ``datatype``, ``desc``, ``level``, ``corr``, ``method`` (``None`` where absent).

    Raises
    ------
    ValueError
        If ``name`` does not follow the grammar.
    """
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"{name!r} is not a map name of the form "
            "{datatype}[_desc-X][_level-L][_corr-C][_method-M]"
        )
    parts = match.groupdict()
    if parts["level"] is not None and parts["level"] not in LEVELS:
        raise ValueError(f"{name!r}: level must be one of {LEVELS}")
    if parts["corr"] is not None and parts["corr"] not in CORRECTIONS:
        raise ValueError(f"{name!r}: corr must be one of {CORRECTIONS}")
    return parts


def add_correction(name: str, corr: str, method: str) -> str:
    """Append ``_corr-{corr}_method-{method}`` to an uncorrected map name.

    Parameters
    ----------
    name : str
        Map name without ``corr`` and ``method`` entities (e.g. ``z_desc-size_level-cluster``).
    corr : {"FWE", "FDR"}
        Correction.
    method : str
        Correction method.

    Returns
    -------
    str
        The corrected name, e.g. ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``.
    """
    parts = parse_map_name(name)
    if parts["corr"] is not None or parts["method"] is not None:
        raise ValueError(f"{name!r} already carries a correction or method entity")
    return map_name(parts["datatype"], parts["desc"], parts["level"], corr, method)
