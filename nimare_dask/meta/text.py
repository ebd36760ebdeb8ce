"""Methods-text helpers shared by every estimator and the methods report.

One home for how a methods paragraph writes numbers and the sentence that states an input's
size, so that the estimators' descriptions and :mod:`nimare_dask.reports.methods` agree (the
report replaces the estimator's input sentence with a fuller one instead of repeating it):

* :func:`sig` prints a number as a paper does (4 significant digits, no exponent);
* :func:`p_text` prints a p-value (``0.001``, ``0.05``, ``0.0001``);
* :func:`an` puts the right indefinite article before a word or acronym (``an ALE kernel``,
  ``an MKDA kernel``, ``a KDA kernel``);
* :func:`inputs_sentence` writes "The input dataset included 267 foci from 21 experiments,
  with a total of 334 participants." and :data:`INPUTS_SENTENCE` finds such sentences.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["INPUTS_SENTENCE", "an", "inputs_sentence", "p_text", "plural", "sig"]

#: Acronyms read letter by letter whose first letter sounds like a vowel (an MKDA, an FWE).
_VOWEL_SOUND_LETTERS = set("AEFHILMNORSX")
#: Acronyms read as words (a SCALE analysis, a MACM).
_READ_AS_WORDS = {"SCALE", "MACM"}


def sig(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` significant digits, positional, trailing zeros dropped.

    Examples: ``0.0108836 -> "0.01088"``, ``12.345678 -> "12.35"``, ``3.0 -> "3"``.
    """
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return np.format_float_positional(x, precision=digits, unique=False, fractional=False, trim="-")


def p_text(p: float) -> str:
    """A p-value as a paper prints it: at most 3 significant digits, never an exponent."""
    return sig(p, 3)


def an(word: str) -> str:
    """``"a word"`` or ``"an word"``: acronyms by their spoken first letter (an MKDA, a KDA)."""
    word = str(word)
    first = word[:1]
    if not first:
        return word
    acronym = len(word) > 1 and word[:2].isupper() and word.split()[0] not in _READ_AS_WORDS
    vowel = first in _VOWEL_SOUND_LETTERS if acronym else first.lower() in "aeiou"
    return f"{'an' if vowel else 'a'} {word}"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 coordinate"``, ``"2 coordinates"``."""
    n = int(n)
    return f"{n} {word if n == 1 else (words or word + 's')}"


_WHICH = {
    None: "The input dataset",
    1: "The first input dataset (group 1)",
    2: "The second input dataset (group 2)",
}

#: A sentence written by :func:`inputs_sentence` (groups: which, foci, experiments, participants).
INPUTS_SENTENCE = re.compile(
    r"The (?P<which>input dataset|first input dataset \(group 1\)|second input dataset "
    r"\(group 2\)) included (?P<foci>\d+) foci from (?P<experiments>\d+) experiments"
    r"(?:, with a total of (?P<participants>\d+) participants)?\."
)


def n_foci(studyset) -> int:
    """Number of foci of a studyset."""
    return int(studyset.foci_counts().sum())


def inputs_sentence(studyset, kernel=None, which: int | None = None) -> str:
    """The sentence stating an input's foci, experiments (and participants, for ALE kernels
    whose width comes from the sample sizes).

    Parameters
    ----------
    studyset : Studyset
        The (prepared) input.
    kernel : kernel, optional
        The estimator's kernel: participants are counted when its width comes from each
        experiment's sample size.
    which : {None, 1, 2}
        One-sample input, or group 1 / group 2 of a pairwise estimator.
    """
    participants = ""
    if (
        kernel is not None
        and getattr(kernel, "fwhm", 1) is None
        and getattr(kernel, "sample_size", 1) is None
    ):
        total = np.nansum(studyset.sample_sizes)
        participants = f", with a total of {int(total)} participants"
    return (
        f"{_WHICH[which]} included {n_foci(studyset)} foci from {len(studyset)} experiments"
        f"{participants}."
    )
