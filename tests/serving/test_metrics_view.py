"""`recli metrics`' views (`recli.metrics_view`): the Markdown and terminal tables, folded
columns and model names."""

from __future__ import annotations

from recli import metrics_view
from recli.metrics_source import MetricsTable

ROWS = {"als": {"ndcg@10": 0.07, "hr@10": 0.13}, "ease": {"ndcg@10": 0.08}}


def test_metrics_markdown() -> None:
    table = MetricsTable("test", ROWS, ["ndcg@10", "hr@10"], baseline=None)
    assert metrics_view.metrics_markdown(table) == [
        "| model | ndcg@10 | hr@10 |",
        "|---|---:|---:|",
        "| ALS | 0.0700 | 0.1300 |",
        "| EASE | 0.0800 | — |",
    ]


def test_metrics_view_marks_the_best_and_the_changes() -> None:
    baseline = {"als": {"ndcg@10": 0.06}, "ease": {"ndcg@10": 0.09}}
    table = MetricsTable("test", ROWS, ["ndcg@10"], baseline)
    grid, note = metrics_view.metrics_view(table, rev="HEAD~1")
    cells = list(grid.columns[1].cells)
    assert cells == ["0.0700 [green](+0.0100)[/]", "[bold green]0.0800[/] [red](-0.0100)[/]"]
    assert note == "[dim]changes are against HEAD~1[/]"
    assert len(metrics_view.metrics_view(table._replace(baseline=None))) == 1


def test_metrics_fold_a_column_equal_to_another_in_every_row() -> None:
    rows = {
        "als": {"hr@10": 0.13, "ndcg@10": 0.07, "recall@10": 0.13},
        "fused": {"hr@10": 0.2, "ndcg@10": 0.1, "recall@10": 0.2},
    }
    table = MetricsTable("test", rows, ["hr@10", "ndcg@10", "recall@10"], baseline=None)
    assert metrics_view.metric_columns(table) == [
        ("hr@10", "hr@10 = recall@10"),
        ("ndcg@10", "ndcg@10"),
    ]
    assert metrics_view.metrics_markdown(table)[0] == "| model | hr@10 = recall@10 | ndcg@10 |"
    assert metrics_view.metrics_markdown(table)[3] == "| fused vector (served) | 0.2000 | 0.1000 |"
    # Equal now but not at the revision compared with: both stay, each with its own change.
    baseline = {"als": {"hr@10": 0.1, "recall@10": 0.2}, "fused": {"hr@10": 0.2, "recall@10": 0.2}}
    assert len(metrics_view.metric_columns(table._replace(baseline=baseline))) == 3
    assert metrics_view.model_name("text_sequence") == "recli sequence model"
    assert metrics_view.model_name("my_model") == "my_model"  # one not listed keeps its key
