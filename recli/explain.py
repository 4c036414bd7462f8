"""Why an item was recommended: the reasons `recli recommend` prints beside each item.

- `because`: the recent history item whose fused vector is closest (dot product) to the item's;
- the score split: the fused score is one dot product over `[text | collaborative]`, so its text
  share is the dot product of the two text parts and the rest is collaborative;
- the user's interest group: how much more the group liked the item than everyone did (its lift
  among the profile's favourites), and the item's genres/tags the group over-represents.

Pure Python over lists (no numpy): the vectors are short and `recli recommend` must start fast.
Annoy is only named for type checking; the caller passes its open index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from recli.contract import dot, term_text, text_part

if TYPE_CHECKING:
    from annoy import AnnoyIndex

    from recli.results import Cluster, Item

WHY_HISTORY_ITEMS = 50
"""Recent history items compared with each recommendation for the "because" column: recent taste
explains best, and 50 × k `get_distance` calls stay well under a millisecond."""

ClusterTerms = set[tuple[str | None, str]]
"""A profile's top terms as `(kind, term)`; `kind` is None in profiles that do not record it."""


def closest_history(
    index: AnnoyIndex, item_indices: Sequence[int], history: Sequence[int]
) -> dict[int, tuple[int, float]]:
    """For each item, `(history item, dot product)` of the closest of the `WHY_HISTORY_ITEMS`
    most recent history items (`history` is newest first); empty without history."""
    recent = history[:WHY_HISTORY_ITEMS]
    if not recent:
        return {}
    closest = {}
    for item in item_indices:
        similarity, source = max((index.get_distance(item, r), r) for r in recent)
        closest[item] = (source, similarity)
    return closest


def text_score(
    user_vector: Sequence[float], item_vector: Sequence[float], text_dimension: int
) -> float:
    """The text share of a fused score: the dot product of the two vectors' text parts."""
    return dot(text_part(user_vector, text_dimension), text_part(item_vector, text_dimension))


def item_lifts(cluster: Cluster | None) -> dict[str, float]:
    """Item id → how much more the group liked it than everyone did (the profile's favourites)."""
    if cluster is None:
        return {}
    return {
        str(entry["item_id"]): float(entry["lift"])
        for entry in cluster.top_items
        if "item_id" in entry and entry.get("lift") is not None
    }


def cluster_terms(cluster: Cluster | None) -> ClusterTerms:
    """The group's over-represented terms, for `matching_terms`."""
    if cluster is None:
        return set()
    return {(term.get("kind"), str(term["term"])) for term in cluster.top_terms if "term" in term}


def matching_terms(item: Item, terms: ClusterTerms) -> list[str]:
    """The item's genres and tags that its user's cluster over-represents, as shown."""
    matches = [
        genre for genre in item.genres if ("genre", genre) in terms or (None, genre) in terms
    ]
    matches += [
        term_text({"kind": "tag", "term": tag}) for tag in item.tags if ("tag", tag) in terms
    ]
    return matches
