"""The challenge metric (macro hierarchical hP/hR/hF), as the head tier's public name.

It lives in :mod:`cache.metric`, the foundation shared by every tier (the extraction tier scores
LLM priors with it and must not import ``heads``); this module re-exports it.
"""
from cache.metric import (  # noqa: F401
    CONVENTIONS,
    CREDIT,
    SAME_TOP_CREDIT,
    HierarchicalScores,
    format_table,
    hierarchical_scores,
    item_credit,
)
