"""The SASRec network (`pipeline.models.sasrec`): each position reads only the past, and settings
that cannot work are refused."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.sasrec import PAD, SequenceModel, SequenceSettings, TextAdaptor

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
        SequenceModel(30, SMALL.but(use_text=True))
    with pytest.raises(ValueError, match="max_steps"):
        SequenceSettings(max_steps=0)
    with pytest.raises(ValueError, match="negatives"):
        SequenceSettings(negatives=-1)


def test_text_adaptor_mixes_whitening_experts_by_a_gate() -> None:
    torch.manual_seed(0)
    adaptor = TextAdaptor(text_dim=6, size=4, experts=3, dropout=0.0)
    with torch.no_grad():
        adaptor.centres.normal_()
    text = torch.randn(5, 6)
    weights = torch.softmax(adaptor.gate(text), dim=-1)
    expected = sum(
        weights[:, k : k + 1] * ((text - adaptor.centres[k]) @ adaptor.maps[k]) for k in range(3)
    )
    torch.testing.assert_close(adaptor(text), expected)
    assert torch.allclose(weights.sum(dim=1), torch.ones(5))
    # One expert is one whitening map: (x - b) W.
    single = TextAdaptor(text_dim=6, size=4, experts=1, dropout=0.0)
    torch.testing.assert_close(single(text), (text - single.centres[0]) @ single.maps[0])


def test_the_text_model_holds_one_adaptor_with_the_settings_experts() -> None:
    text = torch.randn(7, 10).numpy()
    model = SequenceModel(7, SequenceSettings(use_text=True, text_experts=4), text)
    assert isinstance(model.adapter, TextAdaptor) and model.adapter.maps.shape == (4, 10, 64)
    with pytest.raises(ValueError, match="text_experts"):
        SequenceSettings(text_experts=0)
