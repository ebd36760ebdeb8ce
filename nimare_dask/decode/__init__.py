"""Decoders: what a brain map or a set of studies is about, from a whole database's labels.

Import paths mirror NiMARE's: ``nimare_dask.decode.continuous.CorrelationDecoder``,
``CorrelationDistributionDecoder``,
``nimare_dask.decode.discrete.NeurosynthDecoder``, ``BrainMapDecoder``,
``ROIAssociationDecoder``, ``neurosynth_decode``, ``brainmap_decode``.
"""

from nimare_dask.decode import continuous, discrete, distribution, featuremaps
from nimare_dask.decode.continuous import CorrelationDecoder, CorrelationDistributionDecoder
from nimare_dask.decode.discrete import (
    BrainMapDecoder,
    NeurosynthDecoder,
    ROIAssociationDecoder,
    brainmap_decode,
    neurosynth_decode,
)
from nimare_dask.decode.featuremaps import FeatureMaps
from nimare_dask.decode.featurestore import list_feature_maps, open_feature_maps

__all__ = [
    "BrainMapDecoder",
    "CorrelationDecoder",
    "CorrelationDistributionDecoder",
    "FeatureMaps",
    "NeurosynthDecoder",
    "ROIAssociationDecoder",
    "brainmap_decode",
    "continuous",
    "discrete",
    "distribution",
    "featuremaps",
    "list_feature_maps",
    "neurosynth_decode",
    "open_feature_maps",
]
