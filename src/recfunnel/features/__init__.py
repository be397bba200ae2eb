"""Features of (request, candidate) rows for the rankers: hashed, crossed, counted, normalised.

Steps (one per module) are fitted on candidate rows, and on the event log where they need
history, and compose in a :class:`FeaturePipeline` whose output, a :class:`FeatureBlock` of dense
float32 and sparse int64 bucket-id columns, is the ranker's input. The stable hash of the whole
engine is :func:`stable_hash64` (:mod:`recfunnel.features.hashing`).
"""

from recfunnel.features.base import Columns, FeatureBlock, FeatureStep
from recfunnel.features.categorical import FeatureCross, HashedCategorical, MultiValued
from recfunnel.features.context import ContextFeatures
from recfunnel.features.counts import WindowedCounts
from recfunnel.features.hashing import stable_hash64
from recfunnel.features.normalizer import StreamingNormalizer
from recfunnel.features.numeric import NumericColumns, RetrievalFeatures
from recfunnel.features.pagerank import ItemPageRank, item_pagerank
from recfunnel.features.pipeline import STEPS, FeaturePipeline
from recfunnel.features.social import FriendEngagement

__all__ = [
    "STEPS",
    "Columns",
    "ContextFeatures",
    "FeatureBlock",
    "FeatureCross",
    "FeaturePipeline",
    "FeatureStep",
    "FriendEngagement",
    "HashedCategorical",
    "ItemPageRank",
    "MultiValued",
    "NumericColumns",
    "RetrievalFeatures",
    "StreamingNormalizer",
    "WindowedCounts",
    "item_pagerank",
    "stable_hash64",
]
