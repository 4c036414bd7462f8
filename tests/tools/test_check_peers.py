"""The seed check's report arithmetic, on hand-built evaluations with known answers: which row is
the best peer (recli's own rows never are), the lightest bucket against the peer best there, and
the summary across seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_peers", REPO / "scripts" / "check_peers.py")
assert _spec is not None and _spec.loader is not None
check_peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_peers)


def _evaluation(served_light: float, sasrec_light: float, ease_light: float) -> dict[str, Any]:
    paired = {"ndcg@10_difference": 0.0, "standard_error": 0.01, "z": 0.0, "users": 97}
    by_bucket = {
        name: {"<=20": {"ndcg@10": value, "users": 97}, ">20": {"ndcg@10": 0.1, "users": 846}}
        for name, value in (
            ("fused", served_light),
            ("sasrec", sasrec_light),
            ("ease", ease_light),
            ("multi_interest", 0.99),  # recli's own: never the peer to beat
        )
    }
    return {
        "test_by_activity": by_bucket,
        "paired_test_by_activity": {
            "<=20": {
                "sasrec": {**paired, "ndcg@10_difference": served_light - sasrec_light},
                "ease": {**paired, "ndcg@10_difference": served_light - ease_light},
            },
        },
    }


def test_best_peer_ignores_recli_rows() -> None:
    assert check_peers.best_peer({"fused": 0.2, "explore": 0.3, "ease": 0.1, "sasrec": 0.15}) == (
        "sasrec"
    )


def test_lightest_bucket_is_compared_with_the_peer_best_there() -> None:
    row = check_peers.lightest_users(_evaluation(0.15, 0.12, 0.14))
    assert row["bucket"] == "<=20"
    assert row["users"] == 97
    assert row["best_peer"] == "ease"
    assert row["best_peer_score"] == 0.14
    assert row["paired_vs_best_peer"]["ndcg@10_difference"] == pytest.approx(0.01)


def test_summary_across_seeds() -> None:
    runs = []
    for served, peer, light in ((0.13, 0.11, (0.15, 0.16, 0.1)), (0.12, 0.11, (0.17, 0.16, 0.1))):
        evaluation = _evaluation(*light)
        runs.append(
            {
                "test": {"fused": served, "sasrec": peer, "ease": 0.07, "multi_interest": 0.5},
                "lightest_users": check_peers.lightest_users(evaluation),
            }
        )
    summary = check_peers.summarise_full(runs)
    assert summary["best_peer"] == "sasrec"
    assert summary["mean_difference"] == pytest.approx(0.015)
    assert summary["seeds_served_ahead"] == 2
    lightest = summary["lightest_users"]
    assert lightest["seeds"] == 2
    assert lightest["mean_difference_vs_bucket_best_peer"] == pytest.approx(0.0)
    assert lightest["seeds_served_ahead_or_level"] == 1
