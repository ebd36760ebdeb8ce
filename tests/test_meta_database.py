"""CBMA estimators on 300 real Neurosynth v7 studies against NiMARE 0.22.1 (database scale).

The same NIMADS dict (300 MNI-space studies drawn with a fixed seed, one analysis each) feeds
both packages. Tolerances as in test_meta_ale.py / test_meta_mkda.py: float32 agreement.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from nimare_dask import Studyset
from nimare_dask.meta.cbma import ALE, KDA, ALESubtraction, MKDAChi2, MKDADensity

pytestmark = pytest.mark.database
pytest.importorskip("nimare")

STAT_ATOL = 1e-7  # a few float32 ulps of ALE values up to ~0.3
RTOL = 1e-6  # float32 precision


@pytest.fixture(scope="module")
def nimads300(shared_data):
    folder = shared_data / "neurosynth-v7"
    meta = pd.read_table(
        folder / "data-neurosynth_version-7_metadata.tsv.gz", usecols=["id", "space"]
    )
    coords = pd.read_table(
        folder / "data-neurosynth_version-7_coordinates.tsv.gz", usecols=["id", "x", "y", "z"]
    )
    ids = meta.loc[meta["space"] == "MNI", "id"].to_numpy()
    ids = np.sort(np.random.default_rng(0).choice(ids, 300, replace=False))
    coords = coords[coords["id"].isin(ids)]
    studies = [
        {
            "id": str(sid),
            "name": "",
            "analyses": [
                {
                    "id": "1",
                    "name": "1",
                    "points": [
                        {"space": "MNI", "coordinates": [float(x), float(y), float(z)]}
                        for x, y, z in group[["x", "y", "z"]].to_numpy()
                    ],
                    "metadata": {},
                }
            ],
        }
        for sid, group in coords.groupby("id")
    ]
    return {"id": "neurosynth300", "name": "neurosynth300", "studies": studies}


@pytest.fixture(scope="module")
def pair(nimads300):
    from nimare.studyset import Studyset as NiMAREStudyset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Studyset(nimads300), NiMAREStudyset(nimads300)


def _compare(ours, ref, names, stat_names=(), mask=None):
    for name in names:
        a = ours.get_map(name, return_type="array")
        b = np.asarray(ref.get_map(name, return_type="array"), dtype=np.float32)
        if mask is not None:
            a, b = a[mask], b[mask]
        if name in stat_names:
            np.testing.assert_allclose(a, b, rtol=0, atol=STAT_ATOL, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=0, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("name", ["ALE", "MKDADensity", "KDA"])
def test_one_sample_parity(pair, name):
    from nimare.meta import cbma as ncbma

    ss, nss = pair
    ours_cls = {"ALE": ALE, "MKDADensity": MKDADensity, "KDA": KDA}[name]
    kwargs = {"kernel__sample_size": 20} if name == "ALE" else {}  # Neurosynth has no N
    ours = ours_cls(**kwargs).fit(ss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(ncbma, name)(**kwargs).fit(nss)
    _compare(ours, ref, ["stat", "p", "z"], stat_names=("stat",))


def test_mkda_chi2_parity(pair):
    from nimare.meta.cbma import MKDAChi2 as NiMAREMKDAChi2

    ss, nss = pair
    ids = list(ss.ids)
    ours = MKDAChi2().fit(ss.slice(ids[:150]), ss.slice(ids[150:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NiMAREMKDAChi2().fit(nss.slice(ids[:150]), nss.slice(ids[150:]))
    c = ours.get_map("prob_desc-A", return_type="array") * 300
    degenerate = np.isclose(c, 0) | np.isclose(c, 300)  # NiMARE's chi2 = 2.0 there (section 6)
    _compare(ours, ref, [n for n in ref.maps if "association" not in n])
    _compare(ours, ref, [n for n in ref.maps if "association" in n], mask=~degenerate)


def test_ale_subtraction_difference_parity(pair):
    from nimare.meta.cbma import ALESubtraction as NiMAREALESubtraction

    ss, nss = pair
    ids = list(ss.ids)
    ours = ALESubtraction(kernel__sample_size=20, n_iters=2, progress=False).fit(
        ss.slice(ids[:150]), ss.slice(ids[150:])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NiMAREALESubtraction(kernel__sample_size=20, n_iters=2).fit(
            nss.slice(ids[:150]), nss.slice(ids[150:])
        )
    _compare(
        ours,
        ref,
        ["stat_desc-group1MinusGroup2", "stat_desc-group1", "p_desc-group1", "z_desc-group2"],
        stat_names=("stat_desc-group1MinusGroup2", "stat_desc-group1"),
    )
