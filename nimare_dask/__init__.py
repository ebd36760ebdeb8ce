"""nimare_dask: neuroimaging meta-analysis at database scale on Zarr and Dask.

The same science as NiMARE (ALE, MKDA, KDA, MKDAChi2, subtraction, Monte Carlo FWE,
decoding, MACM) with the same numbers, on chunked arrays and lazy Dask graphs.
"""

from nimare_dask._version import __version__
from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset import Studyset, open_studyset

__all__ = ["Grid", "Studyset", "__version__", "get_grid", "open_studyset"]

#: Subpackages reachable as attributes after ``import nimare_dask as nd`` (imported on first use,
#: so ``import nimare_dask`` stays fast).
_SUBPACKAGES = frozenset(
    {
        "cli",
        "correct",
        "dataset",
        "datasets",
        "decode",
        "diagnostics",
        "extract",
        "generate",
        "io",
        "kernels",
        "meta",
        "montecarlo",
        "nimads",
        "reports",
        "results",
        "space",
        "stats",
        "storage",
        "studyset",
        "transforms",
        "utils",
        "workflows",
    }
)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib

        module = importlib.import_module(f"nimare_dask.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'nimare_dask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBPACKAGES)
