"""Every parameter of NiMARE 0.22.1's public classes and functions we mirror is accepted here.

The test introspects both packages (NiMARE is the oracle): for each public name of the NiMARE
modules in MODULES, our module at the same path must have it (or the name is in one of the
lists below, each with its reason), and every parameter of NiMARE's constructor, public
methods and functions must be accepted by ours (by name; a ``**kwargs`` that the class
documents as taking NiMARE keywords counts through ``_nimare_keywords`` / ``_aliases``).

The lists are strict both ways: a listed item that has become compatible fails the test until
it is removed from its list.

* KNOWN_IN_PROGRESS: being built by other work items now (IBMA, transforms, diagnostics,
  decoders, CBMA estimators); the lead empties it.
* KNOWN_GAPS: missing names or parameters in modules this work item does not own (owner
  named); to be fixed.
* NOT_PROVIDED: absent on purpose (the reason is the compatibility table's).
"""

from __future__ import annotations

import importlib
import inspect
import warnings

import pytest

MODULES = [
    "meta.cbma",
    "meta.kernel",
    "meta.ibma",
    "correct",
    "diagnostics",
    "decode",
    "io",
    "utils",
    "stats",
    "generate",
    "transforms",
    "workflows",
    "reports.base",
    "nimads",
    "studyset",
    "results",
    "extract",
]


def public(mod):
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(mod).items()
            if not n.startswith("_")
            and (inspect.isclass(v) or inspect.isfunction(v))
            and getattr(v, "__module__", "").startswith(mod.__name__)
        ]
    return [n for n in names if not n.startswith("_")]


def params(obj):
    """Parameter names (no self/*args/**kwargs) and whether there is a **kwargs."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None, False
    ps = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    return [p.name for p in ps if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)], any(
        p.kind == p.VAR_KEYWORD for p in ps
    )


def accepted(ours_obj, cls=None):
    names, varkw = params(ours_obj)
    if names is None:
        return set(), True
    extra = set()
    if cls is not None:
        extra |= set(getattr(cls, "_nimare_keywords", ()) or ()) | set(
            getattr(cls, "_aliases", {}) or {}
        )
        if varkw:
            extra |= {"kernel_transformer"}
    return set(names) | extra, varkw


def members(cls):
    out = {"__init__": cls.__init__}
    for n, v in vars(cls).items():
        if not n.startswith("_") and inspect.isfunction(v):
            out[n] = v
    for base in cls.__mro__[1:]:
        if base.__module__.startswith(("nimare.", "nimare_dask.")):
            for n, v in vars(base).items():
                if not n.startswith("_") and inspect.isfunction(v) and n not in out:
                    out[n] = v
    return out


def scan():
    missing, bad = [], []
    for m in MODULES:
        try:
            theirs = importlib.import_module("nimare." + m)
        except ImportError:
            continue
        try:
            ours = importlib.import_module("nimare_dask." + m)
        except Exception as e:
            missing.append((m, "*", f"module: {type(e).__name__}"))
            continue
        for name in public(theirs):
            t = getattr(theirs, name, None)
            if not (inspect.isclass(t) or inspect.isfunction(t)):
                continue
            try:
                o = getattr(ours, name, None)
            except Exception as e:
                missing.append((m, name, str(e)[:90]))
                continue
            if o is None:
                missing.append((m, name, ""))
                continue
            if inspect.isclass(t):
                if not inspect.isclass(o):
                    bad.append((m, name, "not a class"))
                    continue
                om = members(o)
                for meth, tf in members(t).items():
                    if meth not in om:
                        continue
                    tn, _ = params(tf)
                    if tn is None:
                        continue
                    acc, varkw = accepted(om[meth], o if meth == "__init__" else None)
                    miss = [p for p in tn if p not in acc]
                    if miss:
                        bad.append((m, f"{name}.{meth}", miss))
            else:
                tn, _ = params(t)
                acc, varkw = accepted(o)
                miss = [p for p in (tn or []) if p not in acc]
                if miss:
                    bad.append((m, name, miss))
    return missing, bad


_INTERNALS = "NiMARE's column-store internals (ours: tables + Zarr store)"
_DATASET = "NiMARE's deprecated Dataset is not provided (use Studyset)"

#: (module, name or "name.method") -> reason
KNOWN_IN_PROGRESS: dict[tuple[str, str], str] = {}


KNOWN_GAPS: dict[tuple[str, str], str] = {}

_INTERNAL_NAMES = (
    "Analysis AnnotationSet ColumnStore Comparison Context CoordinateBlock Coordinates Dict8 "
    "Image ImageBlock Images LabelBlock Labels PerAnalysis Point Study TextBlock Texts View "
    "check_invariants convert_neurostore_json_to_parquet normalize_collection with_annotation "
    "with_annotations_frame with_images with_metadata with_points"
).split()

NOT_PROVIDED: dict[tuple[str, str], str] = {
    **{(m, n): _INTERNALS for m in ("nimads", "studyset") for n in _INTERNAL_NAMES},
    ("nimads", "StudysetStore"): _INTERNALS,
    ("studyset", "StudysetStore.__init__"): "ours is the Zarr store of the same name",
    **{
        ("io", n): _DATASET
        for n in (
            "convert_nimads_to_dataset",
            "convert_neurosynth_to_dict",
            "convert_neurosynth_to_json",
            "convert_neurosynth_to_dataset",
            "convert_sleuth_to_dict",
            "convert_sleuth_to_json",
            "convert_sleuth_to_dataset",
            "convert_dataset_to_nimads_dict",
        )
    },
    ("io", "convert_neurovault_to_dataset"): _DATASET + "; network",
    ("io", "fetch_neurostore_studyset"): "network (neurostore_sdk); no pinned checksum",
    ("generate", "create_coordinate_dataset"): _DATASET,
    ("generate", "create_neurovault_dataset"): _DATASET,
    ("generate", "create_neurovault_studyset"): "network; see datasets.fetch_neurovault",
    ("decode", "gclda_decode_map"): "GCLDA (nimare.annotate) is not provided",
    ("decode", "gclda_decode_roi"): "GCLDA (nimare.annotate) is not provided",
    ("decode", "gclda_encode"): "GCLDA (nimare.annotate) is not provided",
    ("reports.base", "Element"): "niworkflows report internals (ours: reports.html)",
    ("reports.base", "Reportlet"): "niworkflows report internals (ours: reports.html)",
    ("reports.base", "SubReport"): "niworkflows report internals (ours: reports.html)",
    ("results", "DroppedInput"): "pickle internals (ours: Zarr result stores)",
    ("utils", "seed_torch"): "CBMR (torch) is not provided",
    ("utils", "dummy_encoding_moderators"): "CBMR (torch) is not provided",
    ("utils", "use_memmap"): "joblib memmaps (ours: Zarr/Dask)",
    ("utils", "find_braces"): "citation-text internals (ours: results.references)",
    ("utils", "reduce_idx"): "citation-text internals (ours: results.references)",
    ("utils", "index_bibtex_identifiers"): "citation-text internals (ours: results.references)",
    ("utils", "find_citations"): "citation-text internals (ours: results.references)",
    ("utils", "reduce_references"): "citation-text internals (ours: results.references)",
    ("utils", "get_description_references"): "citation-text internals (results.references)",
}


#: Whole modules being written now (IBMA issue); the lead empties this with KNOWN_IN_PROGRESS.
MODULES_IN_PROGRESS = {"meta.ibma"}


def _ibma_in_progress(key) -> bool:
    return key[0] in MODULES_IN_PROGRESS


@pytest.fixture(scope="module")
def scan_result():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scan()


def test_every_nimare_name_and_parameter_is_accepted(scan_result):
    missing, bad = scan_result
    listed = {**KNOWN_IN_PROGRESS, **KNOWN_GAPS, **NOT_PROVIDED}
    problems = [(m, n) for m, n, _ in missing if (m, n) not in listed]
    problems = [k for k in problems if not _ibma_in_progress(k)]
    assert not problems, f"NiMARE names missing here and not listed: {problems}"
    wrong = [(m, n, p) for m, n, p in bad if (m, n) not in listed and not _ibma_in_progress((m, n))]
    assert not wrong, f"NiMARE parameters not accepted: {wrong}"


def test_lists_are_not_stale(scan_result):
    missing, bad = scan_result
    still = {(m, n) for m, n, _ in missing} | {(m, n) for m, n, _ in bad}
    stale = sorted(k for k in {**KNOWN_IN_PROGRESS, **KNOWN_GAPS, **NOT_PROVIDED} if k not in still)
    assert not stale, f"now compatible, remove from the lists: {stale}"


def test_estimator_nimare_keywords():
    from nimare_dask.meta.cbma import ALE, MKDAChi2

    est = ALE(generate_description=False, memory=None, memory_level=0)
    assert est.get_params(deep=False)["generate_description"] is False
    with pytest.raises(TypeError, match="generate_description"):
        ALE(generate_description="no")
    sig = inspect.signature(MKDAChi2.fit)
    for name in ("dataset1", "dataset2", "drop_invalid", "ma_maps1", "ma_maps2"):
        assert name in sig.parameters


def test_generate_description_false_empties_the_description(pain_studyset):
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity
    from nimare.studyset import Studyset as NiMAREStudyset

    from nimare_dask.meta.cbma import MKDADensity

    ours = MKDADensity(generate_description=False).fit(dataset=pain_studyset)
    assert ours.description == "" and ours.description_ == ""
    assert MKDADensity().fit(pain_studyset).description  # the default describes
    ref = NiMAREMKDADensity(generate_description=False).fit(NiMAREStudyset(pain_studyset.to_dict()))
    assert ref.description_ == ""
    with pytest.raises(TypeError, match="ma_maps"):
        MKDADensity().fit(pain_studyset, ma_maps=object())
