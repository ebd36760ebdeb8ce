"""Shared fixtures: where the oracle's bundled data and the real databases live."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

#: ../shared/data beside the checkout (CI clones the repo with ../shared beside it).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _nimare_dir() -> Path | None:
    spec = importlib.util.find_spec("nimare")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


NIMARE_DIR = _nimare_dir()

_NO_NIMARE = (
    "NiMARE 0.22.1 (the test oracle) is not installed; it is a declared test dependency: "
    "pip install -e '.[test]'"
)


def _missing_test_requirements() -> list[str]:
    """Declared ``[test]`` requirements that are not installed (or at a wrong version)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        declared = metadata.requires("nimare_dask") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return []
    missing = []
    for line in declared:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": "test"}):
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(version, prereleases=True):
            missing.append(f"{req} (found {version})")
    return missing


def pytest_configure(config):
    """Fail the run at once when what the tests need is missing: several test modules call
    ``pytest.importorskip`` (NiMARE, nbformat...), which would otherwise turn a missing
    dependency into silent skips."""
    if NIMARE_DIR is None:
        raise pytest.UsageError(_NO_NIMARE)
    missing = _missing_test_requirements()
    if missing:
        raise pytest.UsageError(
            "declared test dependencies are missing: "
            + "; ".join(missing)
            + ". Install them with pip install -e '.[test]'"
        )


@pytest.fixture(scope="session")
def nimare_dir() -> Path:
    """The installed NiMARE package folder (the oracle and its bundled data)."""
    if NIMARE_DIR is None:
        pytest.fail(_NO_NIMARE, pytrace=False)
    return NIMARE_DIR


@pytest.fixture(scope="session")
def nimare_resources(nimare_dir) -> Path:
    return nimare_dir / "resources"


@pytest.fixture(scope="session")
def nimare_test_data(nimare_dir) -> Path:
    return nimare_dir / "tests" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (Neurosynth v7, NeuroQuery v1); tests using it are marked ``database``."""
    if not SHARED_DATA.exists():
        pytest.fail(
            f"the real databases are not at {SHARED_DATA}: clone the repository with ../shared "
            "beside it, or deselect the database tests with -m 'not database'",
            pytrace=False,
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def pain_json(nimare_resources) -> Path:
    return nimare_resources / "nidm_pain_studyset.json"


@pytest.fixture(scope="session")
def pain_studyset(pain_json):
    """The 21-study NIDM pain studyset (267 MNI foci) as a nimare_dask Studyset."""
    from nimare_dask import Studyset

    return Studyset(pain_json)


@pytest.fixture(autouse=True)
def _quiet_oracle_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="nimare")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="nimare")
        yield


# real services on loopback (S3 API server, separate-process Dask cluster)
from _services import cluster_client, dask_cluster, s3_bucket, s3_server  # noqa: E402, F401
