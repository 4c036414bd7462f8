"""Phrases: labels made of words where a catalogue has no genres or tags to name its groups.

A product catalogue of titles and descriptions names its groups (interest groups, topics, a
user's interests) only through its words. Single words picked by lift name brands and model
numbers ("Inkbird", "gsw-"); a product's full title names one product, not a group. Here:

- **candidates** are phrases of one to three words of the items' titles and descriptions
  (`item_phrases`): no stop word or two-letter word at either end, no token with a digit
  (model numbers, sizes), no fragment of a hyphenated token, never across punctuation, and
  "borescope" and "borescopes" one phrase, shown as its commonest spelling;
- **scoring** against the other groups is class-based TF-IDF (BERTopic's c-TF-IDF): the phrase's
  share of the group's phrase occurrences weighed by ln(1 + mean occurrences per group / the
  phrase's occurrences across every group), so a phrase every group carries counts for little.
  A phrase must also be carried by a share of the group's events (MIN_PHRASE_SHARE), by more
  than one of its items (MIN_PHRASE_ITEMS) and more often than everyone's events carry it
  (MIN_PHRASE_LIFT): the label then describes the group, not one product;
- **re-ranking** is KeyBERT's maximal marginal relevance in the item space the grouping already
  uses: a phrase stands for the mean vector of the group's items that carry it, its relevance is
  its cosine to the group's centroid, and each next phrase trades relevance against its cosine
  to the phrases already chosen. A phrase whose words are contained in a chosen one's (or that
  contains them) says nothing new and is dropped;
- **labels** (`distinct_labels`) name each group's LABEL_PHRASES leading phrases; groups whose
  labels would name the same phrases each gain their next phrase the others lack.

`keybert` and `bertopic` implement the same two steps, but they bring their own encoder, UMAP and
HDBSCAN with them; the groups, their item vectors and scikit-learn's CountVectorizer are already
here, which is all the two steps need.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.models.terms import STOP_WORDS, carried_terms, is_whole

PHRASE = "phrase"
"""The kind of a phrase term (`{"kind": "phrase", "term": "cast iron skillet"}`)."""
MAX_WORDS = 3
"""Longest phrase, in words; longer ones start to read like a product's title."""
MIN_PHRASE_SHARE = 0.15
"""A phrase names a group only when at least this share of its events carry it."""
MIN_PHRASE_ITEMS = 2
"""... and at least this many of its items (all of them in a smaller group)."""
MIN_PHRASE_LIFT = 1.1
"""... and its share of the group's events is at least this many times everyone's."""
SHORTLIST = 10
"""Phrases of highest c-TF-IDF per group among which the re-ranking chooses."""
DIVERSITY = 0.3
"""How much a phrase's cosine to the chosen ones counts against its relevance (0: none)."""
SUBSUMED = 0.8
"""A phrase this share of whose events a longer candidate containing it also carries gives way
to the longer one."""
LABEL_PHRASES = 2
"""Phrases a label names; one more where two groups' labels would read the same."""
MAX_LABEL_PHRASES = 3

_BREAKS = re.compile(r"[.,;:!?()\[\]{}<>/\\|\"“”‘’+&*#=~_…•–—]+|\s-+\s")
_WORD = re.compile(r"[a-z]{2,}(?:-[a-z]{2,})*")
# Single letters and common short words read as noise at a phrase's edge.
_EDGE_STOP = STOP_WORDS | frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "for", "has", "he", "her",
    "his", "if", "in", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "she",
    "so", "the", "to", "up", "us", "we", "was", "who", "you", "all", "any", "how", "new", "one",
    "out", "own", "too", "use", "via", "etc", "per", "off", "get", "got", "let", "vol",
    "de", "la", "le", "les", "el", "los", "las", "der", "die", "das", "du", "des", "di", "il",
))  # fmt: skip
_ROMAN = re.compile(r"x{0,3}(?:ix|iv|v?i{0,3})")
"""Roman numerals ("ii", "xiv") number sequels and models, as digits do: no words."""


@dataclass(frozen=True)
class Phrases:
    """The catalogue's phrases: which items carry which (`carried`, items × phrases, 0/1) and
    how each is shown (`names`, lower-case)."""

    carried: sp.csr_matrix
    names: list[str]

    def item_terms(self) -> pl.DataFrame:
        """`item_idx, kind, term`: one row per phrase an item carries."""
        coo = self.carried.tocoo()
        return pl.DataFrame(
            {
                "item_idx": coo.row.astype(np.int32),
                "kind": [PHRASE] * coo.nnz,
                "term": [self.names[p] for p in coo.col.tolist()],
            },
            schema={"item_idx": pl.Int32, "kind": pl.String, "term": pl.String},
        )


def singular(word: str) -> str:
    """The key a word's plural and singular share: "borescopes" and "borescope" one phrase."""
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def _runs(text: str) -> list[list[str]]:
    """Runs of consecutive words between punctuation and tokens that are no words."""
    runs: list[list[str]] = []
    for segment in _BREAKS.split(text.lower()):
        run: list[str] = []
        for token in segment.split():
            token = token.strip("'’")
            token = re.sub(r"['’]s$", "", token)
            if _WORD.fullmatch(token) and not _ROMAN.fullmatch(token):
                run.append(token)
            else:
                if run:
                    runs.append(run)
                run = []
        if run:
            runs.append(run)
    return runs


def _edge(word: str) -> bool:
    """Whether a word cannot begin or end a phrase: a stop word, or two letters ("mr", "et",
    "mi": a title's abbreviations and foreign function words name nothing on their own)."""
    return len(word) < 3 or word in _EDGE_STOP


def _phrases_of(text: str, spelled: Counter[tuple[str, str]]) -> list[str]:
    """The phrase keys of one text, each once; `spelled` counts how each key is written."""
    found: dict[str, str] = {}
    for run in _runs(text):
        for size in range(1, MAX_WORDS + 1):
            for start in range(len(run) - size + 1):
                words = run[start : start + size]
                if _edge(words[0]) or _edge(words[-1]):
                    continue
                found.setdefault(" ".join(singular(w) for w in words), " ".join(words))
    for key, written in found.items():
        spelled[(key, written)] += 1
    return list(found)


def item_phrases(items: pl.DataFrame) -> Phrases:
    """The phrases of each item's title and description carried by at least two items, none the
    whole of a product's title."""
    from sklearn.feature_extraction.text import CountVectorizer

    items = items.sort("item_idx")
    titles = items["title"].fill_null("").str.replace_all(r"\(\d{4}\)", "").to_list()
    descriptions = (
        items["description"].fill_null("").to_list()
        if "description" in items.columns
        else [""] * items.height
    )
    texts = [f"{title}. {text}" for title, text in zip(titles, descriptions, strict=True)]
    spelled: Counter[tuple[str, str]] = Counter()
    vectorizer = CountVectorizer(
        analyzer=lambda text: _phrases_of(text, spelled), binary=True, min_df=2
    )
    try:
        carried = sp.csr_matrix(vectorizer.fit_transform(texts), dtype=np.float64)
    except ValueError:  # no phrase at all, or none carried by two items
        return Phrases(sp.csr_matrix((items.height, 0)), [])
    keys = vectorizer.get_feature_names_out().tolist()
    # Commonest spelling, then the shorter, then the first alphabetically.
    best: dict[str, tuple[int, int, str]] = {}
    for (key, written), count in spelled.items():
        rank = (-count, len(written), written)
        if key not in best or rank < best[key]:
            best[key] = rank
    names = [best[key][2] for key in keys]
    whole_titles = {_title_key(title) for title in titles} - {None}
    keep = np.array([key not in whole_titles for key in keys], dtype=bool)
    columns = np.flatnonzero(keep)
    return Phrases(carried[:, columns].tocsr(), [names[c] for c in columns.tolist()])


def _title_key(title: str) -> str | None:
    """A title's phrase key when the whole title could be a phrase, else None."""
    runs = _runs(title)
    if len(runs) != 1 or len(runs[0]) != len(title.split()):
        return None
    return " ".join(singular(word) for word in runs[0])


def carried_with_phrases(items: pl.DataFrame) -> dict[int, set[str]]:
    """Every term each item carries (`pipeline.models.terms.carried_terms`) and its phrases."""
    found = carried_terms(items)
    for item, term in item_phrases(items).item_terms().select("item_idx", "term").iter_rows():
        found.setdefault(item, set()).add(term)
    return found


def group_weights(groups: Any, item_idx: Any, n_groups: int, n_items: int) -> sp.csr_matrix:
    """groups × items: how many of each group's events (`groups[i]`, `item_idx[i]`, arrays or
    series) are on each item."""
    return sp.csr_matrix(
        (np.ones(len(groups)), (np.asarray(groups), np.asarray(item_idx))),
        shape=(n_groups, n_items),
    )


def bare_labels(
    items: pl.DataFrame, weights: sp.csr_matrix, item_vectors: np.ndarray | None, bare: list[int]
) -> dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per group of `bare` (rows of `weights`, scored against every row) that has phrases: the
    phrases its label names (`distinct_labels` among `bare`) and all its ranked phrases."""
    ranked = ranked_phrases(item_phrases(items), weights, item_vectors)
    chosen = distinct_labels([ranked[group] for group in bare])
    return {
        group: (terms, ranked[group]) for group, terms in zip(bare, chosen, strict=True) if terms
    }


@dataclass(frozen=True)
class PhraseTotals:
    """What c-TF-IDF scores a group against, summed over every group scored together: each
    phrase's occurrences (`everyone`), the groups' events (`events`), and the occurrences of
    the groups that have any (`occurrences`, over `groups`). Whole counts: summed over the
    groups of several partitions, the same numbers as over all of them at once."""

    everyone: np.ndarray
    events: float
    occurrences: float
    groups: int

    @classmethod
    def of(cls, phrases: Phrases, weights: sp.csr_matrix) -> PhraseTotals:
        """The totals of the groups in `weights` (groups × items, events per item)."""
        weights = sp.csr_matrix(weights, dtype=np.float64)
        if not phrases.names or weights.shape[0] == 0:
            return cls(np.zeros(len(phrases.names)), 0.0, 0.0, 0)
        counts = (weights @ phrases.carried).tocsr()
        occurrences = np.asarray(counts.sum(axis=1)).ravel()
        return cls(
            np.asarray(counts.sum(axis=0)).ravel(),
            float(weights.sum()),
            float(occurrences[occurrences > 0].sum()),
            int((occurrences > 0).sum()),
        )

    def __add__(self, other: PhraseTotals) -> PhraseTotals:
        return PhraseTotals(
            self.everyone + other.everyone,
            self.events + other.events,
            self.occurrences + other.occurrences,
            self.groups + other.groups,
        )


def ranked_phrases(
    phrases: Phrases,
    weights: sp.csr_matrix,
    item_vectors: np.ndarray | None = None,
    keep: int = SHORTLIST,
    totals: PhraseTotals | None = None,
) -> list[list[dict[str, Any]]]:
    """Per group (a row of `weights`, groups × items, events per item), its phrases in the order
    a label names them: `term, kind, lift, share, share_overall, interactions, items`.

    Every group is scored against every other row of `weights` (c-TF-IDF), the supported phrases
    of highest score shortlisted, then re-ranked by maximal marginal relevance around the group's
    centroid in `item_vectors` (without vectors: by score). Where fewer than LABEL_PHRASES
    phrases reach MIN_PHRASE_SHARE, those carried by enough items and over-represented follow.
    `totals`: what the groups are scored against when `weights` holds only some of them (one
    partition's users' groups; `PhraseTotals`, summed); None: the groups of `weights`.
    """
    weights = sp.csr_matrix(weights, dtype=np.float64)
    if not phrases.names or weights.shape[0] == 0:
        return [[] for _ in range(weights.shape[0])]
    if totals is None:
        totals = PhraseTotals.of(phrases, weights)
    counts = (weights @ phrases.carried).tocsr()
    present = (weights > 0).astype(np.float64)
    spread = (present @ phrases.carried).tocsr()
    events = np.asarray(weights.sum(axis=1)).ravel()
    n_items = np.asarray(present.sum(axis=1)).ravel()
    everyone = totals.everyone
    share_overall = everyone / max(totals.events, 1.0)
    occurrences = np.asarray(counts.sum(axis=1)).ravel()
    # The mean over the groups that have occurrences: a sum of whole counts over their number.
    mean_occurrences = totals.occurrences / totals.groups if totals.groups else 0.0
    idf = np.log1p(mean_occurrences / np.maximum(everyone, 1e-12))
    result = []
    for group in range(weights.shape[0]):
        start, stop = counts.indptr[group], counts.indptr[group + 1]
        columns, carried = counts.indices[start:stop], counts.data[start:stop]
        if columns.size == 0:
            result.append([])
            continue
        order = np.argsort(columns)
        columns, carried = columns[order], carried[order]
        items = spread[group, columns].toarray().ravel()
        share = carried / events[group]
        lift = share / share_overall[columns]
        score = carried / occurrences[group] * idf[columns]
        supported = (items >= min(MIN_PHRASE_ITEMS, n_items[group])) & (lift >= MIN_PHRASE_LIFT)
        strong = supported & (share >= MIN_PHRASE_SHARE)
        tiers = [strong] if strong.sum() >= LABEL_PHRASES else [strong, supported & ~strong]
        shortlist: list[int] = []
        for tier in tiers:
            found = np.flatnonzero(tier)
            names = [phrases.names[c] for c in columns[found].tolist()]
            # Highest score first, then the longer phrase, then alphabetically.
            pairs = zip(found.tolist(), names, strict=True)
            ranked = sorted(pairs, key=lambda p: (-score[p[0]], -len(p[1].split()), p[1]))
            ranked = _longest(ranked[: 3 * keep], carried)
            shortlist += [position for position, _ in ranked][: keep - len(shortlist)]
        chosen = _relevant_and_diverse(
            phrases, columns[shortlist], weights.getrow(group), item_vectors
        )
        result.append(
            [
                {
                    "term": phrases.names[int(columns[shortlist[i]])],
                    "kind": PHRASE,
                    "lift": round(float(lift[shortlist[i]]), 4),
                    "share": round(float(share[shortlist[i]]), 4),
                    "share_overall": round(float(share_overall[columns[shortlist[i]]]), 4),
                    "interactions": int(carried[shortlist[i]]),
                    "items": int(items[shortlist[i]]),
                }
                for i in chosen
            ]
        )
    return result


def _longest(ranked: list[tuple[int, str]], carried: np.ndarray) -> list[tuple[int, str]]:
    """`ranked` without a phrase that mostly occurs inside a longer one of the list ("iron" where
    "cast iron skillet" carries at least SUBSUMED of its events): the longer one says more."""
    words = [_words(name) for _, name in ranked]
    return [
        pair
        for i, pair in enumerate(ranked)
        if not any(
            words[i] < words[j] and carried[ranked[j][0]] >= SUBSUMED * carried[pair[0]]
            for j in range(len(ranked))
        )
    ]


def _words(name: str) -> frozenset[str]:
    return frozenset(singular(word) for word in name.split())


def _relevant_and_diverse(
    phrases: Phrases, columns: np.ndarray, row: sp.csr_matrix, item_vectors: np.ndarray | None
) -> list[int]:
    """Positions in `columns` in maximal-marginal-relevance order, without a phrase whose words
    an earlier one's contain (or that contains an earlier one's)."""
    if columns.size == 0:
        return []
    relevance = np.zeros(columns.size)
    similar = np.zeros((columns.size, columns.size))
    if item_vectors is not None:
        members, counts = row.indices, row.data
        vectors = item_vectors[members].astype(np.float64) * counts[:, None]
        carried = phrases.carried[members][:, columns].toarray()
        centre = vectors.sum(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        phrase_vectors = carried.T @ vectors
        phrase_vectors /= np.maximum(np.linalg.norm(phrase_vectors, axis=1, keepdims=True), 1e-12)
        relevance = phrase_vectors @ centre
        similar = phrase_vectors @ phrase_vectors.T
    left = list(range(columns.size))
    chosen: list[int] = []
    while left:
        if chosen:
            gain = [
                (1 - DIVERSITY) * relevance[i] - DIVERSITY * similar[i, chosen].max() for i in left
            ]
        else:
            gain = relevance[left].tolist()
        # Ties (no vectors, or equal gains) keep the shortlist's order.
        best = left[int(np.argmax(gain))]
        chosen.append(best)
        words = _words(phrases.names[int(columns[best])])
        left = [
            i
            for i in left
            if i != best
            and not (
                _words(phrases.names[int(columns[i])]) <= words
                or words <= _words(phrases.names[int(columns[i])])
            )
        ]
    return chosen


def distinct_labels(
    ranked: list[list[dict[str, Any]]], size: int = LABEL_PHRASES
) -> list[list[dict[str, Any]]]:
    """Per group, the phrases its label names: its `size` leading ones; groups whose phrases
    would be the same set each gain their next phrase that none of the others names, up to
    MAX_LABEL_PHRASES. Groups without phrases get none."""
    chosen = [list(terms[:size]) for terms in ranked]
    for _ in range(MAX_LABEL_PHRASES - size):
        same: dict[frozenset[str], list[int]] = {}
        for group, terms in enumerate(chosen):
            if terms:
                same.setdefault(frozenset(t["term"] for t in terms), []).append(group)
        clashes = [members for members in same.values() if len(members) > 1]
        if not clashes:
            break
        for members in clashes:
            named = {t["term"] for m in members for t in chosen[m]}
            for group in members:
                extra = next((t for t in ranked[group] if t["term"] not in named), None)
                if extra is not None:
                    chosen[group] = [*chosen[group], extra]
    return chosen


def phrase_label(terms: list[dict[str, Any]], separator: str) -> str:
    """A label from phrases: each with its first letter upper-case, as word labels are shown."""
    return separator.join(capitalised(t["term"]) for t in terms)


def capitalised(term: str) -> str:
    """The term with its first letter upper-case (a term already capitalised stays)."""
    return term[:1].upper() + term[1:] if term and term[0].islower() else term


def whole_share(terms: list[str]) -> float | None:
    """The share of label terms that are whole words (`is_whole`); None without terms."""
    return round(float(np.mean([is_whole(t) for t in terms])), 4) if terms else None


def user_phrase_shares(
    train: pl.DataFrame, item_terms: pl.DataFrame, terms: set[str]
) -> pl.DataFrame:
    """Per user and phrase among `terms`: `user_idx, kind, term, interactions, total, share`,
    as `pipeline.models.terms.user_term_shares` gives them for genres and tags (`item_terms`:
    the items' phrases, `Phrases.item_terms`)."""
    events = train.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
    totals = events.group_by("user_idx").agg(pl.len().alias("total"))
    carried = item_terms.filter(pl.col("term").is_in(sorted(terms)))
    return (
        events.join(carried, on="item_idx")
        .group_by("user_idx", "kind", "term")
        .agg(pl.len().alias("interactions"))
        .join(totals, on="user_idx")
        .with_columns((pl.col("interactions") / pl.col("total")).alias("share"))
    )
