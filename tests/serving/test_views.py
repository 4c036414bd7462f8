"""The terminal views (`recli.views`), built from hand-made results: what they show, and that
data stays data."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console

from recli import render, views
from recli.results import (
    Because,
    Check,
    Cluster,
    HistoryEntry,
    Interest,
    Item,
    Neighbour,
    Recommendation,
    Recommendations,
    User,
    UserProfile,
)

TRICKY = "[bold]Brazil[/] :x: 1985"
"""A title with rich markup and an emoji code in it: both must print as written."""


def _text(parts: list[Any]) -> str:
    console = Console(file=io.StringIO(), record=True, width=200, emoji=False, highlight=False)
    for part in parts:
        console.print(part)
    # Paragraphs wrap at the console's width: phrases are looked for with the breaks undone.
    return " ".join(console.export_text().split())


def _item(item_id: str, title: str, cold: bool = False, tags: list[str] | None = None) -> Item:
    return Item(0, item_id, title, 1985, ["Comedy", "Sci-Fi"], tags or [], cold, 3)


def _user(terms: list[dict[str, Any]] | None = None) -> User:
    return User(0, "7", 0, 12, [1.0, 0.0], terms or [])


CLUSTER = Cluster(
    cluster=0,
    label="Dystopias",
    size=10,
    share=0.25,
    top_terms=[
        {"term": "Sci-Fi", "kind": "genre", "lift": 1.5, "share": 0.4, "share_overall": 0.2},
        {"term": "dystopia", "kind": "tag", "lift": 2.25},
        {"kind": "tag"},  # a term without a name is skipped
    ],
    exemplars=[{"item_id": "1", "title": TRICKY, "users": 4}],
    top_items=[],
)


def _recommendations() -> Recommendations:
    source = _item("2", "Metropolis")
    recommendation = Recommendation(
        rank=1,
        item=_item("1", TRICKY, cold=True),
        score=0.9,
        text_score=0.6,
        collaborative_score=0.3,
        because=Because(source, 0.8),
        cluster_lift=2.0,
        cluster_terms=["Sci-Fi", "#dystopia"],
    )
    recent = [HistoryEntry(source, 0, 4.0)]
    return Recommendations(
        _user(), CLUSTER, recent, [recommendation], text_weight=0.7, interests=[]
    )


def test_titles_are_shown_as_written() -> None:
    neighbours = [Neighbour(1, _item("1", TRICKY), 0.5)]
    text = _text([views.items_table("items like [bold]this[/]", neighbours)])
    assert TRICKY in text  # a cell is data, escaped by the view
    assert "items like this" in text  # the title is markup, escaped by the caller
    assert "❌" not in text


def test_header_lines_show_titles_as_written() -> None:
    # The header's `label: value` lines are parsed as markup when built, before any console's
    # emoji setting applies: an emoji code in a title stays as written there too.
    shown = _recommendations()._replace(recent=[HistoryEntry(_item("1", TRICKY), 0, 4.0)])
    text = _text(views.recommendations_view(shown, explain=False))
    assert f"recently: {TRICKY}" in text
    assert "❌" not in text


def test_recommendations_view_shows_each_reason() -> None:
    text = _text(views.recommendations_view(_recommendations(), explain=False))
    assert "user 7 · 12 events" in text
    assert "interest group 0: Dystopias (25% of users)" in text
    assert "recently: Metropolis" in text
    assert f"{TRICKY} (new)" in text  # a cold item is marked
    assert "because Metropolis" in text
    assert "group ×2.0" in text and "group likes Sci-Fi, #dystopia" in text
    assert "collab" not in text and "How the score is formed" not in text


def test_explain_adds_the_score_parts_and_the_paragraph() -> None:
    parts = views.recommendations_view(_recommendations(), explain=True)
    assert len(parts) == 3
    text = _text(parts)
    assert "0.600" in text and "0.300" in text and "collab" in text
    assert "weighted 70% text and 30% collaborative" in text
    assert "among the user's 50 most recent" in text


def test_a_user_without_interests_says_why() -> None:
    assert "none stands out" in views.over_represented_markup(_user())
    user = _user([{"term": "dystopia", "kind": "tag", "lift": 1.84}])
    assert views.over_represented_markup(user) == "#dystopia ×1.8"


def test_user_view_spells_tags_as_tags() -> None:
    profile = UserProfile(
        user=_user(),
        cluster=CLUSTER,
        history=[HistoryEntry(_item("1", TRICKY), 86_400, None)],
        top_genres=[("Comedy", 3)],
        top_tags=[("dystopia", 2)],
        interests=[],
    )
    text = _text(views.user_view(profile))
    assert "most frequent tags: #dystopia (2)" in text
    assert "most watched genres: Comedy (3)" in text
    assert "group terms: Sci-Fi, #dystopia" in text
    assert "1970-01-02" in text and "—" in text  # the date, and a missing rating


def test_cluster_view_skips_empty_tables_and_nameless_terms() -> None:
    text = _text(views.cluster_view(CLUSTER, ["1", "2"]))
    assert "members: 1, 2 …" in text  # 2 of 10 shown
    assert "×1.50" in text and "40.0%" in text and "#dystopia" in text
    assert "exemplars" in text and "4 users" in text and TRICKY in text
    assert "favourites" not in text  # the profile has no top items


def test_checks_table_colours_the_status() -> None:
    checks = [Check("index", "problem", "[x] broken"), Check("encoder", "warning", "absent")]
    table = views.checks_table(checks, Path("data"))
    statuses = list(table.columns[1].cells)
    assert statuses == ["[red]problem[/]", "[yellow]warning[/]"]
    assert "[x] broken" in _text([table])


def _interest(rank: int, label: str, weight: float) -> Interest:
    return Interest(
        interest=rank,
        label=label,
        weight=weight,
        events=12,
        medoid=_item("5", "Aristocats, The (1970)"),
        first_timestamp=875_000_000,
        last_timestamp=880_000_000,
        cluster=3,
        items=9,
    )


def test_a_users_interests_are_listed_with_weight_medoid_period_and_group() -> None:
    interests = [_interest(0, "Animation · Children's", 0.61), _interest(1, "Film-Noir", 0.39)]
    profile = UserProfile(
        user=_user(),
        cluster=CLUSTER,
        history=[HistoryEntry(_item("1", TRICKY), 86_400, None)],
        top_genres=[],
        top_tags=[],
        interests=interests,
    )
    text = _text(views.user_view(profile))
    assert "interests, heaviest first" in text
    for expected in ("Animation · Children's", "61%", "Film-Noir", "39%", "Aristocats"):
        assert expected in text
    assert "1997-09 – 1997-11" in text  # the period, in UTC months
    recommendations = _recommendations()._replace(interests=interests * 2)
    header = _text(views.recommendations_view(recommendations, explain=False))
    assert "interests: Animation · Children's 61%; Film-Noir 39%; Animation" in header
    assert "(+1 more)" in header
    assert interests[0].to_json()["medoid"]["title"] == "Aristocats, The (1970)"


def test_data_with_control_characters_prints_as_escapes() -> None:
    title = "\x1b]0;owned\x07[bold]Brazil[/] \u202eevil\r"
    text = _text([views.items_table("t", [Neighbour(1, _item("1", title), 0.5)])])
    assert "\\x1b]0;owned\\x07[bold]Brazil[/] \\u202eevil\\r" in text
    assert render.escape("\x9b31m") == "\\x9b31m"


def test_a_catalogue_without_genres_or_tags_shows_no_empty_columns_or_lines() -> None:
    plain = Item(0, "1", "Norvik Cordless Drill 20V", None, [], [], False, 3)
    other = Item(1, "2", "Brantor Jigsaw", None, [], [], False, 2)
    profile = UserProfile(
        user=_user(),
        cluster=CLUSTER,
        history=[HistoryEntry(plain, 86_400, 5.0), HistoryEntry(other, 86_400, 4.0)],
        top_genres=[],
        top_tags=[],
        interests=[],
    )
    text = _text(views.user_view(profile))
    assert "genres" not in text and "stands out" not in text
    assert "Norvik Cordless Drill 20V" in text
    neighbours = [Neighbour(1, plain, 0.5), Neighbour(2, other, 0.4)]
    assert "genres" not in _text([views.items_table("items", neighbours)])
    # One item with a genre is enough for the column and the line.
    genred = [*profile.history, HistoryEntry(_item("3", "Metropolis"), 0, None)]
    text = _text(views.user_view(profile._replace(history=genred)))
    assert "genres" in text and "stands out" in text and "—" in text
