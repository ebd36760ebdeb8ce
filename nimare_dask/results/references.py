"""BibTeX references for methods text.

Methods descriptions cite with natbib commands (``\\citep{eickhoff2012activation}``); the
entries live in ``nimare_dask/resources/references.bib``. :func:`references_for` collects the
entries a description cites, so a result's ``references`` always matches its ``description``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

__all__ = ["bibtex_entries", "cited_keys", "merge_bibtex", "references_for"]

_CITE = re.compile(r"\\cite[a-zA-Z]*\*?(?:\[[^\]]*\])*\{([^}]*)\}")
_ENTRY_START = re.compile(r"^@\w+\{\s*([^,\s]+)\s*,", re.MULTILINE)


def _split_entries(text: str) -> dict[str, str]:
    """Split BibTeX text into ``{key: entry}`` (entries end at the next ``@`` line)."""
    starts = list(_ENTRY_START.finditer(text))
    out = {}
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        out[match.group(1)] = text[match.start() : end].strip()
    return out


@cache
def bibtex_entries() -> dict[str, str]:
    """All shipped BibTeX entries.

    Returns
    -------
    dict
        ``{citation key: BibTeX entry text}`` (eager, cached).
    """
    text = resources.files("nimare_dask.resources").joinpath("references.bib").read_text("utf-8")
    return _split_entries(text)


def cited_keys(description: str) -> list[str]:
    """Citation keys of every ``\\cite...{}`` command in ``description``, in order of use.

    Parameters
    ----------
    description : str
        Methods text with natbib citations.

    Returns
    -------
    list of str
        Unique keys, first occurrence first.
    """
    keys: list[str] = []
    for group in _CITE.findall(description or ""):
        for key in group.split(","):
            key = key.strip()
            if key and key not in keys:
                keys.append(key)
    return keys


def references_for(description: str) -> str:
    """BibTeX entries for the citations in ``description``.

    Parameters
    ----------
    description : str
        Methods text with natbib citations.

    Returns
    -------
    str
        The entries, separated by blank lines; keys without a shipped entry are skipped.
    """
    entries = bibtex_entries()
    return "\n\n".join(entries[k] for k in cited_keys(description) if k in entries)


def merge_bibtex(*texts: str) -> str:
    """Merge BibTeX strings, keeping the first entry of each key.

    Parameters
    ----------
    *texts : str
        BibTeX strings (empty ones are ignored).

    Returns
    -------
    str
        The union of entries, in first-seen order.
    """
    merged: dict[str, str] = {}
    for text in texts:
        for key, entry in _split_entries(text or "").items():
            merged.setdefault(key, entry)
    return "\n\n".join(merged.values())
