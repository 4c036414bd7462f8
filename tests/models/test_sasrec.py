"""The SASRec network (`pipeline.models.sasrec`): each position reads only the past, and settings
that cannot work are refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.models.sasrec import PAD, SequenceModel, SequenceSettings

SMALL = SequenceSettings(max_length=10, embedding_size=32, layers=2, heads=2, dropout=0.1)
"""A small network (the training tests' architecture)."""


# --------------------------------------------------------------------------------------------
# causality
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("later", ["other items", "padding"])
def test_each_position_depends_only_on_its_prefix(grad: bool, later: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(30, SMALL).eval()
    tokens = torch.randint(1, 31, (4, SMALL.max_length))
    cut = 5
    changed = tokens.clone()
    if later == "padding":
        changed[:, cut + 1 :] = PAD
    else:
        changed[:, cut + 1 :] = tokens[:, cut + 1 :] % 30 + 1
    with torch.set_grad_enabled(grad):
        hidden, hidden_changed = model(tokens), model(changed)
        earlier = tokens.clone()
        earlier[:, 0] = tokens[:, 0] % 30 + 1
        hidden_earlier = model(earlier)
    torch.testing.assert_close(hidden[:, : cut + 1], hidden_changed[:, : cut + 1])
    assert not torch.allclose(hidden[:, cut + 1 :], hidden_changed[:, cut + 1 :])
    # ...while an earlier item does reach a later position.
    assert not torch.allclose(hidden_earlier[:, cut], hidden[:, cut])


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="representation"):
        SequenceSettings(use_ids=False, use_text=False)
    with pytest.raises(ValueError, match="divide"):
        SequenceSettings(embedding_size=64, heads=3)
    with pytest.raises(ValueError, match="text_vectors"):
        SequenceModel(30, replace(SMALL, use_text=True))
    with pytest.raises(ValueError, match="max_steps"):
        SequenceSettings(max_steps=0)
    with pytest.raises(ValueError, match="negatives"):
        SequenceSettings(negatives=-1)
