"""Every model recli scores with honours the scorer contract: peers, ALS, both text encoders and
the fused model, all fit on one small split that has cold items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scorer_contract import HistoryContract, ScorerContract
from synthetic import make_raw

from pipeline import embed, factorize, finetune, preprocess
from pipeline.core.sections import (
    EmbedConfig,
    FactorizeConfig,
    FinetuneConfig,
    FuseConfig,
    PreprocessConfig,
    TextConfig,
)
from pipeline.evaluation.protocol import SplitMatrices, SplitScorers
from pipeline.models.fusion import tune_fusion
from pipeline.models.peers import EASE, ItemKNN, Popularity

TEXT = TextConfig(history_items=3, max_seq_length=32)
EMBED = EmbedConfig(batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def processed():
    return preprocess.run(
        make_raw(n_users=24, n_items=30, per_user=10),
        PreprocessConfig(min_user_interactions=3, cold_item_fraction=0.2),
    )


@pytest.fixture(scope="module")
def matrices(processed) -> SplitMatrices:
    matrices = SplitMatrices.from_processed(processed)
    assert matrices.cold_items.any()  # the masking checks need something to mask
    return matrices


@pytest.fixture(scope="module")
def zero_shot(processed, tiny_encoder_dir: Path):
    return embed.run(str(tiny_encoder_dir), processed, TEXT, EMBED)


@pytest.fixture(scope="module")
def finetuned(processed, tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = FinetuneConfig(
        base_model=str(tiny_encoder_dir),
        max_steps=3,
        batch_size=8,
        eval_steps=3,
        eval_users=10,
        device="cpu",
    )
    result = finetune.run(processed, TEXT, cfg, tmp_path_factory.mktemp("finetune"))
    return embed.run(str(result.model_dir), processed, TEXT, EMBED)


@pytest.fixture(scope="module")
def factors(matrices):
    cfg = FactorizeConfig(embedding_size=4, epochs=3, reg=0.1)
    # Served: every event, the test ones too (what serving knows).
    served = (matrices.seen("test") + matrices.relevant("test")).tocsr()
    return factorize.run(
        matrices.train, cfg, history_at_test=matrices.seen("test"), history_served=served
    )


class TestPopularity(ScorerContract):
    @pytest.fixture
    def scorer(self, matrices):
        return Popularity().fit(matrices.train).score


class TestItemKNN(ScorerContract, HistoryContract):
    @pytest.fixture
    def model(self, matrices):
        knn = ItemKNN(neighbors=5).fit(matrices.train)
        return SplitScorers(knn.score, knn.with_history(matrices.seen("test")))

    @pytest.fixture
    def scorer(self, model):
        return model.validation


class TestEASE(ScorerContract, HistoryContract):
    @pytest.fixture
    def model(self, matrices):
        ease = EASE(reg=10.0).fit(matrices.train)
        return SplitScorers(ease.score, ease.with_history(matrices.seen("test")))

    @pytest.fixture
    def scorer(self, model):
        return model.validation


class TestALS(ScorerContract, HistoryContract):
    @pytest.fixture
    def model(self, factors):
        return SplitScorers.from_vectors(factors)

    @pytest.fixture
    def scorer(self, factors):
        return factors.score


class TestZeroShotText(ScorerContract, HistoryContract):
    @pytest.fixture
    def model(self, zero_shot):
        return SplitScorers.from_vectors(zero_shot)

    @pytest.fixture
    def scorer(self, zero_shot):
        return zero_shot.score


class TestFinetunedText(ScorerContract, HistoryContract):
    @pytest.fixture
    def model(self, finetuned):
        return SplitScorers.from_vectors(finetuned)

    @pytest.fixture
    def scorer(self, finetuned):
        return finetuned.score

    def test_fine_tuning_changed_the_vectors(self, finetuned, zero_shot) -> None:
        assert not np.allclose(finetuned.items, zero_shot.items)


class TestFused(ScorerContract, HistoryContract):
    @pytest.fixture
    def fused(self, finetuned, factors, matrices):
        fusion, side, _ = tune_fusion(
            finetuned, factors, matrices, FuseConfig(weight_grid=[0.0, 0.5])
        )
        return fusion.fuse_all(finetuned, side)

    @pytest.fixture
    def model(self, fused):
        return SplitScorers.from_vectors(fused)

    @pytest.fixture
    def scorer(self, fused):
        return fused.score
