"""What the served artifacts answer with: one immutable record type per kind of answer.

Items, users, their history and interest clusters as the catalogue stores them; a query's results
(`Recommendations`, `Neighbour`s, a `UserProfile`); and the `Check` lines of `recli doctor`. Each
knows how it prints as JSON or as short text, so the terminal views, the `--json` output and the
notebooks spell a term or a date the same way.

Standard library only (plus the serving contract): the CLI's renderers import these types without
importing Annoy.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from recli.contract import term_text


class Item(NamedTuple):
    """A catalogue item with the text fields every view shows."""

    item_idx: int
    item_id: str
    title: str
    year: int | None
    genres: list[str]
    tags: list[str]
    cold: bool
    """Held out of training: only the text side can score it."""
    train_count: int

    def to_json(self) -> dict[str, Any]:
        """The fields a script needs to name the item (the `--json` outputs)."""
        return {"item_id": self.item_id, "title": self.title, "genres": self.genres}


class HistoryEntry(NamedTuple):
    """One event of a user."""

    item: Item
    timestamp: int | None
    rating: float | None

    @property
    def date(self) -> str:
        """`YYYY-MM-DD` (UTC) for Unix-second or -millisecond timestamps, `—` without one."""
        if self.timestamp is None:
            return "—"
        seconds = self.timestamp / 1000 if self.timestamp > 10**11 else self.timestamp
        return time.strftime("%Y-%m-%d", time.gmtime(seconds))

    def to_json(self) -> dict[str, Any]:
        """One event of `recli user --json`'s history."""
        return {
            **self.item.to_json(),
            "date": None if self.timestamp is None else self.date,
            "timestamp": self.timestamp,
            "rating": self.rating,
        }


class Cluster(NamedTuple):
    """An interest group and the profile the cluster stage wrote for it."""

    cluster: int
    label: str
    size: int
    share: float | None
    top_terms: list[dict[str, Any]]
    """Over-represented genres/tags, highest lift first (`term`, `kind`, `lift`, …)."""
    exemplars: list[dict[str, Any]]
    """Items the group liked that set it apart (`item_idx`, `item_id`, `title`, …)."""
    top_items: list[dict[str, Any]]
    """Items the group over-represents most (`item_idx`, `item_id`, `title`, `lift`, …)."""

    def term_names(self, limit: int | None = None) -> list[str]:
        """The top terms as shown (`Drama`, `#dark comedy`), highest lift first."""
        return [term_text(term) for term in self.top_terms[:limit] if "term" in term]

    def to_json(self) -> dict[str, Any]:
        """The group as `recli recommend --json` and `recli clusters --json` print it."""
        return {
            "cluster": self.cluster,
            "label": self.label,
            "size": self.size,
            "share": self.share,
            "top_terms": self.term_names(),
        }

    def to_json_detailed(self, members: list[str]) -> dict[str, Any]:
        """The whole profile, as `recli cluster --json` prints it: each term with its lift and
        shares, the exemplar and favourite items, and some member ids."""
        return {
            **self.to_json(),
            "top_terms": [_term_json(term) for term in self.top_terms if "term" in term],
            "exemplars": [_entry_json(entry) for entry in self.exemplars],
            "favourites": [_entry_json(entry) for entry in self.top_items],
            "members": members,
        }


def _term_json(term: dict[str, Any]) -> dict[str, Any]:
    return {
        "term": term_text(term),
        "kind": term.get("kind"),
        "lift": term.get("lift"),
        "share": term.get("share"),
        "share_overall": term.get("share_overall"),
    }


def _entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("item_id", "title", "users", "lift")
    return {key: entry[key] for key in keys if key in entry}


class User(NamedTuple):
    """A catalogue user: their fused vector and their own over-represented terms."""

    user_idx: int
    user_id: str
    cluster: int | None
    events: int
    """Every event the catalogue holds for the user (all of them: what serving knows)."""
    vector: list[float]
    over_represented: list[dict[str, Any]]
    """The genres/tags/eras the user's own history over-represents, highest lift first
    (`term`, `kind`, `lift`, `share`, `share_overall`, `interactions`)."""
    search_vector: list[float] | None = None
    """The vector in the index's search space, where it is narrower than the fused one."""
    live: bool = False
    """Whether events were added for the user since the build (`recli.live`): the vector is
    then the one recomputed from all of them, which the index does not hold."""

    def term_names(self, limit: int | None = None, with_lift: bool = False) -> list[str]:
        """The over-represented terms as shown, optionally with their lift (`#tag1 ×1.8`)."""
        return [
            f"{term_text(term)} ×{term['lift']:.1f}" if with_lift else term_text(term)
            for term in self.over_represented[:limit]
        ]


class Interest(NamedTuple):
    """One of a user's own interests: a group of their items (`pipeline.interests`)."""

    interest: int
    """Rank within the user, heaviest first."""
    label: str
    weight: float
    """Share of the user's events, recent ones counting more."""
    events: int
    medoid: Item | None
    """The item that stands for the interest."""
    first_timestamp: int | None
    last_timestamp: int | None
    cluster: int | None
    """The global interest group nearest to it."""
    items: int
    """How many distinct items it holds."""

    @property
    def period(self) -> str:
        """`1997-09 – 1998-04`: when the user's events in it happened (UTC months)."""
        if self.first_timestamp is None or self.last_timestamp is None:
            return "—"
        first, last = (
            time.strftime("%Y-%m", time.gmtime(stamp))
            for stamp in (self.first_timestamp, self.last_timestamp)
        )
        return first if first == last else f"{first} – {last}"

    def to_json(self) -> dict[str, Any]:
        return {
            "interest": self.interest,
            "label": self.label,
            "weight": round(self.weight, 4),
            "events": self.events,
            "items": self.items,
            "medoid": None if self.medoid is None else self.medoid.to_json(),
            "period": self.period,
            "cluster": self.cluster,
        }


class Because(NamedTuple):
    """The history item most similar to a recommendation (largest dot product)."""

    item: Item
    similarity: float


class Recommendation(NamedTuple):
    """One recommended item with everything that explains it."""

    rank: int
    item: Item
    score: float
    """The fused dot product: `text_score + collaborative_score`."""
    text_score: float
    collaborative_score: float
    because: Because | None
    cluster_lift: float | None
    """How much more the user's cluster liked this item than everyone did (when profiled)."""
    cluster_terms: list[str]
    """The item's genres/tags that the user's cluster over-represents."""
    serves: str | None = None
    """With `--by-interest`: the label of the interest whose query found it ("overall taste"
    for the whole-user vector's). The score (and its parts) is then the dot product with that
    query, which is what ranked the item in its list."""
    dealt: int | None = None
    """With `--by-interest`: the item's place (1..k) in the dealing by weight, the order the
    multi-interest model's list is evaluated in; `rank` is its place in the rows as shown,
    grouped by list."""

    def to_json(self) -> dict[str, Any]:
        """One entry of `recli recommend --json`'s `recommendations` (scores to 6 places)."""
        return {
            **({} if self.serves is None else {"serves": self.serves}),
            "rank": self.rank,
            **({} if self.dealt is None else {"dealt": self.dealt}),
            **self.item.to_json(),
            "score": round(self.score, 6),
            "text_score": round(self.text_score, 6),
            "collaborative_score": round(self.collaborative_score, 6),
            "because": None
            if self.because is None
            else {
                "item_id": self.because.item.item_id,
                "title": self.because.item.title,
                "similarity": round(self.because.similarity, 6),
            },
            "cluster_lift": self.cluster_lift,
            "cluster_terms": self.cluster_terms,
        }


class Recommendations(NamedTuple):
    """What `recli recommend` shows: who the user is, and their top-k items."""

    user: User
    cluster: Cluster | None
    recent: list[HistoryEntry]
    """The user's most recent events, newest first."""
    items: list[Recommendation]
    text_weight: float | None
    """Share of the fused score that comes from the text side (meta `text_weight`)."""
    interests: list[Interest]
    """The user's own interests, heaviest first."""
    by_interest: bool = False
    """Found per interest and dealt by weight (`recli.exploration.merge_by_weight`)."""
    by_default: bool = False
    """`by_interest` is the catalogue's default, not asked for (`--by-interest`/`--whole-user`)."""

    def to_json(self) -> dict[str, Any]:
        """The whole of `recli recommend --json`."""
        return {
            "user": self.user.user_id,
            "live": self.user.live,
            "by_interest": self.by_interest,
            "interests": [interest.to_json() for interest in self.interests],
            "over_represented": self.user.term_names(),
            "cluster": None if self.cluster is None else self.cluster.to_json(),
            "text_weight": self.text_weight,
            "recommendations": [recommendation.to_json() for recommendation in self.items],
        }


class Neighbour(NamedTuple):
    """An item found near a query (an item or a text), with its dot product."""

    rank: int
    item: Item
    score: float

    def to_json(self) -> dict[str, Any]:
        """One row of `recli similar --json` or `recli search --json`."""
        return {"rank": self.rank, **self.item.to_json(), "score": round(self.score, 6)}


class TopicSuggestion(NamedTuple):
    """A topic new to the user that exploration suggests, and its items for them."""

    topic: int
    label: str
    probability: float
    """From the training timelines: the chance it is the user's next new topic."""
    similarity: float
    """Cosine between the topic and the closest of the user's interests."""
    because: list[str]
    """Labels of the user's topics that lead to this one most."""
    closest_interest: str | None
    """Label of the user's interest the topic lies closest to."""
    exemplar: str | None
    """Title of the item that stands for the topic."""
    items: list[Neighbour]
    """Its items the user has not interacted with, by explore score."""
    unseen: int
    """How many items of the topic the user has not interacted with, in all: `items` holds the
    `-k` best of them, so fewer than `-k` when the topic has fewer."""

    def to_json(self) -> dict[str, Any]:
        """One suggestion of `recli explore --json`; `unseen_items` says why `items` may be
        shorter than `-k`."""
        return {
            "topic": self.topic,
            "label": self.label,
            "probability": round(self.probability, 4),
            "similarity": round(self.similarity, 4),
            "because": self.because,
            "closest_interest": self.closest_interest,
            "exemplar": self.exemplar,
            "items": [item.to_json() for item in self.items],
            "unseen_items": self.unseen,
        }


class Exploration(NamedTuple):
    """What `recli explore` shows: the topics a user engaged with and those to try next."""

    user: User
    engaged: list[tuple[str, float]]
    """(label, weight) of the user's topics, heaviest first."""
    suggestions: list[TopicSuggestion]
    topics_left: int
    """How many topics the user has not engaged with."""
    k: int
    """Items asked for per topic (`-k`): a topic with fewer unseen items shows all it has."""
    topics_asked: int
    """Topics asked for (`--topics`): fewer are suggested when fewer are left."""

    def to_json(self) -> dict[str, Any]:
        """The whole of `recli explore --json`."""
        return {
            "user": self.user.user_id,
            "engaged_topics": [
                {"label": label, "weight": round(weight, 4)} for label, weight in self.engaged
            ],
            "topics_left": self.topics_left,
            "suggestions": [suggestion.to_json() for suggestion in self.suggestions],
        }


class UserProfile(NamedTuple):
    """What `recli user` shows."""

    user: User
    cluster: Cluster | None
    history: list[HistoryEntry]
    """The user's most recent events, newest first."""
    top_genres: list[tuple[str, int]]
    """The user's own most frequent genres over their whole history, with counts."""
    top_tags: list[tuple[str, int]]
    interests: list[Interest]
    """The user's own interests, heaviest first."""

    def to_json(self) -> dict[str, Any]:
        """The whole of `recli user --json`."""
        return {
            "user": self.user.user_id,
            "events": self.user.events,
            "live": self.user.live,
            "interests": [interest.to_json() for interest in self.interests],
            "over_represented": [
                _term_json(term) for term in self.user.over_represented if "term" in term
            ],
            "cluster": None if self.cluster is None else self.cluster.to_json(),
            "top_genres": [{"genre": g, "events": n} for g, n in self.top_genres],
            "top_tags": [{"tag": t, "events": n} for t, n in self.top_tags],
            "history": [entry.to_json() for entry in self.history],
        }


class Check(NamedTuple):
    """One line of `recli doctor`."""

    name: str
    status: str
    """`ok`, `problem` (serving is wrong or impossible), `warning` or `skipped`."""
    detail: str

    def to_json(self) -> dict[str, str]:
        """One entry of `recli doctor --json`."""
        return {"name": self.name, "status": self.status, "detail": self.detail}
