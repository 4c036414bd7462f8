"""Several interests per user, and the new ones they may take up: the rules, in plain Python.

Serving (`recli recommend --by-interest`, `recli explore`) and the pipeline's evaluation both call
these functions, so what the evaluation measures is what the terminal shows. Standard library
only (and `recli.contract`'s `dot`, which is too): the recommend path imports no numpy.

**Multi-interest retrieval.** A user has a whole-user fused vector `u` and interests, each with
the mean `m` of its items' fused vectors. Interest `i` asks the one Annoy index with
`interest_query(u, m_i, pull)` (the user pulled towards that interest, still one dot product
against the same items), the whole-user vector asks too, and `merge_by_weight` deals the slots
of the top k between the lists by weight: the whole-user list gets `whole_user_share`, each
interest its weight times the rest.

**Topics and exploration.** Topics are groups of the catalogue's items (the base encoder's
space, fitted by the `interests` stage); a user has engaged with a topic when any of their
events is on one of its items. `topic_weights` weighs those topics by recency-decayed events.
`Transitions` counts, on the training timelines, how often a user who had engaged with topic A
took up topic C for the first time afterwards; `rank_topics` scores every topic the user has not
engaged with by that history (smoothed towards how often C is taken up at all) and by how close
the topic lies to the user's own interests in the language-model space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from recli.contract import dot

OVERALL = -1
"""The list `merge_by_weight` is told came from the whole-user vector (not one interest)."""


def interest_query(user: Sequence[float], mean: Sequence[float], pull: float) -> list[float]:
    """`u + pull · |u| / |m| · m`: the user's vector pulled towards one interest's items."""
    user_norm = math.sqrt(dot(user, user))
    mean_norm = math.sqrt(dot(mean, mean))
    scale = pull * user_norm / mean_norm if mean_norm > 0 else 0.0
    return [a + scale * b for a, b in zip(user, mean, strict=True)]


def merge_by_weight(
    lists: Sequence[Sequence[int]], weights: Sequence[float], k: int
) -> list[tuple[int, int]]:
    """Up to `k` (item, list number) pairs: each slot goes to the list with the highest
    `weight / (2 · taken + 1)` (Sainte-Laguë: shares of the slots follow the weights), which
    gives its best item not already chosen; a list with nothing left drops out. Equal quotients
    go to the earlier list."""
    if len(lists) != len(weights):
        raise ValueError(f"{len(lists)} lists but {len(weights)} weights")
    taken = [0] * len(lists)
    position = [0] * len(lists)
    chosen: list[tuple[int, int]] = []
    used: set[int] = set()
    live = [index for index, weight in enumerate(weights) if weight > 0 and lists[index]]
    while len(chosen) < k and live:
        best = max(live, key=lambda index: (weights[index] / (2 * taken[index] + 1), -index))
        entries = lists[best]
        while position[best] < len(entries) and entries[position[best]] in used:
            position[best] += 1
        if position[best] == len(entries):
            live.remove(best)
            continue
        item = entries[position[best]]
        chosen.append((item, best))
        used.add(item)
        taken[best] += 1
        position[best] += 1
    return chosen


def topic_weights(topics_newest_first: Sequence[int], half_life: float) -> dict[int, float]:
    """Each engaged topic's share of the user's events, the event `age` places from the latest
    counting `0.5 ** (age / half_life)`; topics are those of the events' items, newest first."""
    totals: dict[int, float] = {}
    for age, topic in enumerate(topics_newest_first):
        totals[topic] = totals.get(topic, 0.0) + 0.5 ** (age / half_life)
    grand = sum(totals.values())
    return {topic: value / grand for topic, value in totals.items()} if grand else {}


class Transitions:
    """How often users move on from one topic to another, counted on training timelines.

    `counts[a][c]`: first take-ups of topic `c` by users who had already engaged with `a` (each
    take-up split evenly over the topics engaged before it); `adoptions[c]`: first take-ups of
    `c` after a user's first event, the prior every row is smoothed towards with `smoothing`
    pseudo-counts.
    """

    def __init__(
        self, counts: Sequence[Sequence[float]], adoptions: Sequence[float], smoothing: float
    ) -> None:
        if smoothing <= 0:
            raise ValueError("smoothing must be positive")
        size = len(adoptions)
        if len(counts) != size or any(len(row) != size for row in counts):
            raise ValueError(f"counts must be {size} x {size}, as many topics as adoptions")
        self.counts = [[float(value) for value in row] for row in counts]
        self.smoothing = float(smoothing)
        total = float(sum(adoptions))
        self.prior = [
            (float(value) + 1.0) / (total + size) for value in adoptions
        ]  # +1: a topic nobody took up in training keeps a small chance
        self.row_totals = [sum(row) for row in self.counts]

    @property
    def n_topics(self) -> int:
        return len(self.prior)

    def probability(self, source: int, target: int) -> float:
        """P(take up `target` next | engaged with `source`), smoothed towards the prior."""
        return (self.counts[source][target] + self.smoothing * self.prior[target]) / (
            self.row_totals[source] + self.smoothing
        )


class TopicScore(NamedTuple):
    topic: int
    score: float
    """log(probability) + similarity_weight · similarity: what the ranking sorts by."""
    probability: float
    """From the timelines: the chance this is the user's next new topic, among those left."""
    similarity: float
    """Cosine between the topic's centroid and the closest of the user's interests."""
    because: tuple[int, ...]
    """The user's topics that lead to this one most (largest weight × transition first)."""


def rank_topics(
    weights: Mapping[int, float],
    transitions: Transitions,
    similarity: Sequence[float],
    similarity_weight: float,
    reasons: int = 2,
) -> list[TopicScore]:
    """Every topic the user has not engaged with, the likeliest next new interest first.

    The timeline part is the mixture `sum_a weight(a) · P(c | a)` over the user's engaged
    topics, renormalised over the topics left; `similarity[c]` comes from the language model.
    A user with no engaged topic gets the prior.
    """
    left = [topic for topic in range(transitions.n_topics) if topic not in weights]
    if not left:
        return []
    mixture = {
        topic: sum(
            weight * transitions.probability(source, topic) for source, weight in weights.items()
        )
        if weights
        else transitions.prior[topic]
        for topic in left
    }
    total = sum(mixture.values())
    ranked = []
    for topic in left:
        probability = mixture[topic] / total
        leads = sorted(
            weights,
            key=lambda source: (-weights[source] * transitions.probability(source, topic), source),
        )
        ranked.append(
            TopicScore(
                topic=topic,
                score=math.log(probability) + similarity_weight * similarity[topic],
                probability=probability,
                similarity=float(similarity[topic]),
                because=tuple(leads[:reasons]),
            )
        )
    ranked.sort(key=lambda entry: (-entry.score, entry.topic))
    return ranked


def closest_similarity(
    interests: Sequence[Sequence[float]], topics: Sequence[Sequence[float]]
) -> list[float]:
    """Per topic, the highest cosine to any of the user's interest centroids (0 with none)."""

    def unit(vector: Sequence[float]) -> list[float]:
        norm = math.sqrt(dot(vector, vector))
        return [value / norm for value in vector] if norm > 0 else list(vector)

    own = [unit(vector) for vector in interests]
    found = []
    for topic in topics:
        centre = unit(topic)
        found.append(max((dot(vector, centre) for vector in own), default=0.0))
    return found


def nearest(vectors: Sequence[Sequence[float]], target: Sequence[float]) -> int | None:
    """Which of `vectors` has the highest cosine to `target` (the first of equal ones); None
    when there are none."""
    cosines = [closest_similarity([vector], [target])[0] for vector in vectors]
    return max(range(len(cosines)), key=lambda i: (cosines[i], -i)) if cosines else None


def explore_score(
    fused_score: float, score_scale: float, topic_score: float, topic_weight: float
) -> float:
    """What exploration ranks an item by: its fused score on a common scale plus the weighted
    score of its topic (items in topics the user already engaged with are not candidates)."""
    return fused_score / score_scale + topic_weight * topic_score
