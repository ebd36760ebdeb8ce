"""NiMARE 0.22.1's ``ContrastWorkflow``: main-effect-gated two-group contrast.

Each group's main effect is fitted and corrected, thresholded at ``alpha`` on its corrected
map, and passed to the pairwise estimator as that direction's inference mask; the contrast
p map is then thresholded at ``alpha``. Maps added: ``z_desc-group1MainEffect``,
``z_desc-group2MainEffect``, ``z_desc-conjunction`` (voxel-wise minimum),
``p/z/logp_desc-contrast``; table ``contrast_tab-metadata``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nimare_dask.correct import Corrector, FDRCorrector
from nimare_dask.meta.base import CBMAEstimator, PairwiseCBMAEstimator
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset
from nimare_dask.workflows.base import check_drop_invalid, check_input, write_outputs

__all__ = ["ContrastWorkflow"]

_SCOPES = (
    ("desc-size_level-cluster", "Size_level-cluster"),
    ("desc-mass_level-cluster", "Mass_level-cluster"),
    ("level-voxel",),
)
_METHODS = (
    "_corr-FWE_method-montecarlo",
    "_corr-FWE_method-predictive",
    "_corr-FDR_method-indep",
    "_corr-FDR_method-negcorr",
    "_corr-FWE_method-bonferroni",
)


def _priority(name: str) -> tuple:
    scope = next((i for i, keys in enumerate(_SCOPES) if any(k in name for k in keys)), 3)
    method = next((i for i, m in enumerate(_METHODS) if m in name), len(_METHODS))
    return scope, method, name


def corrected_main_effect(result: MetaResult, alpha: float) -> np.ndarray:
    """The corrected ``z`` map NiMARE picks, zeroed where its corrected p fails ``alpha``.

    The map is the one whose p (or logp) map ranks first: cluster-size, cluster-mass, then
    voxel level; Monte Carlo, predictive, FDR indep, FDR negcorr, then Bonferroni.

    Returns
    -------
    numpy.ndarray
        float32 over in-mask voxels (eager).
    """
    candidates = []
    for z in result.maps_names:
        if not z.startswith("z_") or "_corr-" not in z:
            continue
        p, logp = z.replace("z_", "p_", 1), z.replace("z_", "logp_", 1)
        if p in result.maps_names:
            candidates.append((z, p, "p"))
        elif logp in result.maps_names:
            candidates.append((z, logp, "logp"))
    if not candidates:
        raise ValueError(
            "Unable to infer corrected main-effect value and threshold maps from the supplied "
            f"result. Available maps: {', '.join(sorted(result.maps_names))}"
        )
    z, thr_name, kind = min(candidates, key=lambda c: _priority(c[1]))
    values = np.asarray(result.get_map(thr_name, return_type="array"))
    keep = values <= alpha if kind == "p" else values >= -np.log10(alpha)
    zmap = np.asarray(result.get_map(z, return_type="array"))
    return np.where(keep, zmap, 0).astype(np.float32)


class ContrastWorkflow:
    """Main-effect-gated contrast of two groups (NiMARE's ``ContrastWorkflow``).

    Parameters
    ----------
    main_estimator : CBMAEstimator, class or {"ale", "scale", "mkdadensity", "kda"}
        Default: ALE.
    pairwise_estimator : PairwiseCBMAEstimator, class or {"alesubtraction", "mkdachi2"}
        Default: ALESubtraction.
    corrector : Corrector, class or {"fdr", "montecarlo", "bonferroni"}, optional
        Corrects the main effects; default ``FDRCorrector(method="indep")``.
    alpha : float, default=0.05
        Threshold of the corrected main effects and of the contrast p map.
    output_dir : str or Path, optional
        Where to write maps, tables, ``boilerplate.txt`` and ``references.bib``.
    generate_description : bool, default=True
        False leaves the result's description empty.
    n_cores : int, default=1
        Threads of the local scheduler for estimators left at their default.
    """

    _main_estm_options = ("ale", "scale", "mkdadensity", "kda")
    _pairwise_estm_options = ("alesubtraction", "mkdachi2")
    _corr_options = ("fdr", "montecarlo", "bonferroni")

    def __init__(
        self,
        main_estimator="ale",
        pairwise_estimator="alesubtraction",
        corrector=None,
        alpha: float = 0.05,
        output_dir: str | Path | None = None,
        generate_description: bool = True,
        n_cores: int = 1,
    ):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1; got {alpha}.")
        self.alpha = alpha
        self.output_dir = output_dir
        self.generate_description = generate_description
        self.n_cores = n_cores
        self.main_estimator = check_input(
            main_estimator, CBMAEstimator, self._main_estm_options, n_cores=n_cores
        )
        self.pairwise_estimator = check_input(
            pairwise_estimator, PairwiseCBMAEstimator, self._pairwise_estm_options, n_cores=n_cores
        )
        self.corrector = (
            FDRCorrector(method="indep")
            if corrector is None
            else check_input(corrector, Corrector, self._corr_options)
        )

    def _contrast_label(self) -> str:
        name = type(self.pairwise_estimator).__name__
        if name == "ALESubtraction":
            return "group1MinusGroup2"
        if name == "MKDAChi2":
            return "association"
        raise ValueError(f"Unable to determine contrast map keys for {name}.")

    def fit(
        self,
        dataset1: Studyset,
        dataset2: Studyset,
        drop_invalid: bool = True,
        result1: MetaResult | None = None,
        result2: MetaResult | None = None,
        corr_result1: MetaResult | None = None,
        corr_result2: MetaResult | None = None,
    ) -> MetaResult:
        """Fit main effects, gate the pairwise contrast by them, threshold the contrast.

        Parameters
        ----------
        dataset1, dataset2 : Studyset
        drop_invalid : bool
            See :func:`~nimare_dask.workflows.base.check_drop_invalid`.
        result1, result2 : MetaResult, optional
            Already fitted main effects (not refitted).
        corr_result1, corr_result2 : MetaResult, optional
            Already corrected main effects (must come from this workflow's corrector type).

        Returns
        -------
        MetaResult
            The pairwise result with the maps and table listed in the module docstring.
        """
        check_drop_invalid(drop_invalid, dataset1, dataset2)
        res1 = result1 if result1 is not None else self.main_estimator.fit(dataset1)
        res2 = result2 if result2 is not None else self.main_estimator.fit(dataset2)
        corr = []
        for res, given in ((res1, corr_result1), (res2, corr_result2)):
            if given is None:
                given = self.corrector.transform(res)
            elif type(given.corrector) is not type(self.corrector):
                raise ValueError(
                    "corr_result was generated with a different corrector type; expected "
                    f"{type(self.corrector).__name__}, got {type(given.corrector).__name__}."
                )
            corr.append(given)
        map1, map2 = (corrected_main_effect(c, self.alpha) for c in corr)
        pairwise = self.pairwise_estimator.fit(
            dataset1, dataset2, inference_map1=map1, inference_map2=map2
        )
        label = self._contrast_label()
        p = np.asarray(pairwise.get_map(f"p_desc-{label}", return_type="array"))
        z = np.asarray(pairwise.get_map(f"z_desc-{label}", return_type="array"))
        logp = np.asarray(pairwise.get_map(f"logp_desc-{label}", return_type="array"))
        z_thr = np.where(p <= self.alpha, z, 0).astype(np.float32)
        result = pairwise.copy()
        result.add_maps(
            {
                "z_desc-group1MainEffect": map1,
                "z_desc-group2MainEffect": map2,
                "z_desc-conjunction": np.minimum(map1, map2).astype(np.float32),
                "p_desc-contrast": np.where(z_thr != 0, p, 1).astype(np.float32),
                "z_desc-contrast": z_thr,
                "logp_desc-contrast": np.where(z_thr != 0, logp, 0).astype(np.float32),
            }
        )
        result.tables["contrast_tab-metadata"] = pd.DataFrame(
            [
                {
                    "alpha": self.alpha,
                    "main_estimator": type(self.main_estimator).__name__,
                    "pairwise_estimator": type(self.pairwise_estimator).__name__,
                    "corrector": type(self.corrector).__name__,
                }
            ]
        )
        result.description = ""
        result.references = ""
        if self.generate_description:
            result.add_description(self._description(corr[0], corr[1], pairwise))
        if self.output_dir is not None:
            write_outputs(result, self.output_dir)
        return result

    def _description(self, c1: MetaResult, c2: MetaResult, pairwise: MetaResult) -> str:
        parts = []
        for label, res in (("Group 1", c1), ("Group 2", c2)):
            if res.description:
                parts.append(f"{label} main-effect analysis: {res.description}")
        if pairwise.description:
            parts.append(f"Pairwise contrast analysis: {pairwise.description}")
        parts.append(
            "Masked contrast workflow: The group 1 and group 2 main-effect maps were corrected "
            f"with {type(self.corrector).__name__} and thresholded at alpha = {self.alpha}. "
            "The thresholded main-effect maps were passed to "
            f"{type(self.pairwise_estimator).__name__} as directional inference masks. "
            "Positive group1 > group2 effects were evaluated only where group 1 had a "
            "surviving main effect, and negative group2 > group1 effects only where group 2 "
            "had one. The pairwise contrast p-values were then thresholded at the same alpha "
            "level \\citep{laird2005ale}."
        )
        return " ".join(parts)
