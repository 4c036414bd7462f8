"""Contrastive fine-tuning of a sentence encoder on "after these, this" pairs: the batches, the
loss and the training switches the `finetune` stage hands to the sentence-transformers trainer.

- **Batches** (`no_duplicate_batches`, `PlannedBatches`): in-batch negatives are every other
  pair's positive, so a batch never holds the same text twice (a popular item is the positive of
  many pairs, and twice in a batch it would be its own false negative). The batches are planned
  before training, in the order sentence-transformers' no-duplicates sampler draws them, and only
  the pairs they reach are ever turned into text.
- **Loss** (`PopularityCorrectedRankingLoss`): the in-batch softmax with each logit's sampling
  bias (log q of its item, `positive_log_frequency`) taken out.
- **Switches**: every dropout layer's probability (`set_dropout`) and the trainer's mixed
  precision flags (`mixed_precision`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np
import polars as pl
import torch
import torch.distributed.nn
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.sampler import DefaultBatchSampler

from pipeline.data.text import TrainingPairs
from pipeline.models.encoder import pick_precision
from recli.errors import RecliError


def positive_log_frequency(pairs: TrainingPairs) -> np.ndarray:
    """log q(item) for each pair: the share of all pairs whose positive has that pair's text."""
    items = pairs.positive_items()
    per_item = np.bincount(items, minlength=len(pairs.item_texts))
    # Two items with the same text are one positive to the loss.
    texts = pl.DataFrame({"text": pairs.item_texts, "pairs": per_item})
    per_text = texts.with_columns(pl.col("pairs").sum().over("text"))["pairs"].to_numpy()
    return np.log(per_text[items] / len(pairs)).astype(np.float32)


def no_duplicate_batches(
    pairs: TrainingPairs, batch_size: int, n_batches: int, seed: int
) -> list[list[int]]:
    """The first `n_batches` batches of pair indices in which no text occurs twice.

    The same positive twice in a batch would be a false in-batch negative, and popular items are
    the positive of many pairs. Each pass over the pairs walks a seeded shuffle (torch's, seeded
    with `seed` + pass, as sentence-transformers' no-duplicates sampler does, so a run draws the
    batches it always drew) and fills each batch greedily: a pair sharing a text with the batch
    waits, in its place, for a later batch. Only the pairs walked past are ever turned into text,
    so the cost follows the step budget, not the number of pairs.
    """
    values: dict[int, frozenset[str]] = {}

    def texts(pair: int) -> frozenset[str]:
        if pair not in values:
            values[pair] = frozenset((pairs.anchor(pair), pairs.positive(pair)))
        return values[pair]

    batches: list[list[int]] = []
    n_pairs = len(pairs)
    for epoch in range(n_batches):  # every pass yields at least one batch
        generator = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n_pairs, generator=generator, dtype=torch.int32).numpy()
        cursor, waiting = 0, []  # next fresh position; pairs that clashed, in shuffled order
        while (waiting or cursor < n_pairs) and len(batches) < n_batches:
            batch: list[int] = []
            taken: set[str] = set()
            clashed: list[int] = []
            walked = 0
            fresh = (int(order[position]) for position in range(cursor, n_pairs))
            for pair in itertools.chain(waiting, fresh):
                walked += 1
                if not taken.isdisjoint(texts(pair)):
                    clashed.append(pair)
                    continue
                batch.append(pair)
                if len(batch) == batch_size:
                    break
                taken.update(texts(pair))
            cursor += max(0, walked - len(waiting))
            waiting = clashed + waiting[walked:]
            batches.append(batch)
        if len(batches) == n_batches:
            break
    return batches


def worker_chunks(batches: list[list[int]], workers: int) -> list[list[int]]:
    """Each batch cut into `workers` consecutive chunks, laid out chunk after chunk: the trainer
    deals batches to the workers of a distributed run in turn, so worker w trains on chunk w of
    every batch, and the loss gathers the chunks' positives back into the whole batch."""
    if workers == 1:
        return batches
    if min(len(batch) for batch in batches) < workers:
        raise ValueError(f"a planned batch is smaller than the {workers} workers to share it")
    return [
        chunk.tolist() for batch in batches for chunk in np.array_split(np.asarray(batch), workers)
    ]


def gathered(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`tensor`'s rows from every worker of a distributed run, in rank order, and where this
    worker's own rows start; gradients flow back to each worker's rows. Outside a distributed
    run (or with one worker): `tensor` itself and 0."""
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()):
        return tensor, 0
    world = distributed.get_world_size()
    if world == 1:
        return tensor, 0
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    distributed.all_gather(sizes, size)
    counts = [int(count.item()) for count in sizes]
    padding = tensor.new_zeros((max(counts) - tensor.shape[0], *tensor.shape[1:]))
    parts = torch.distributed.nn.functional.all_gather(torch.cat([tensor, padding]))
    rows = torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])
    return rows, sum(counts[: distributed.get_rank()])


class PlannedBatches(DefaultBatchSampler):
    """Consecutive runs of a dataset laid out batch after batch (`no_duplicate_batches`)."""

    def __init__(self, dataset: datasets.Dataset, sizes: list[int], **trainer_kwargs: Any) -> None:
        # The trainer passes its batch size, seed and generator: the plan already used them.
        super().__init__(dataset, batch_size=max(sizes), drop_last=False)
        if sum(sizes) != len(dataset):
            raise ValueError(f"{len(dataset)} rows do not match batches of {sum(sizes)}")
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __iter__(self) -> Iterator[list[int]]:
        for start, end in itertools.pairwise(self.bounds):
            yield list(range(start, end))


class PopularityCorrectedRankingLoss(torch.nn.Module):
    """In-batch softmax over the batch's positives, with the sampling bias taken out ("logQ").

    With in-batch negatives an item appears as a negative as often as it is some pair's positive,
    i.e. in proportion to its popularity q. Plain in-batch softmax therefore learns
    log p(item | user) - log q(item): it is trained to push popular items down, which costs
    accuracy wherever popularity matters (Yi et al., RecSys 2019). Subtracting log q from every
    logit makes the sampled softmax an estimate of the full one, so the dot product learns
    log p(item | user) itself. The dataset's `label` column carries log q of each pair's positive.
    """

    def __init__(self, model: SentenceTransformer, scale: float = 20.0) -> None:
        super().__init__()
        self.model = model
        self.scale = scale
        """Cosine similarity × scale = logit (20, as MultipleNegativesRankingLoss)."""
        self.seen: list[str] | None = None
        """When a list: the digest of every batch of anchors this worker trained on."""

    def forward(
        self, sentence_features: list[dict[str, torch.Tensor]], labels: torch.Tensor
    ) -> torch.Tensor:
        anchors, positives = (
            self.model(features)["sentence_embedding"] for features in sentence_features
        )
        if self.seen is not None:  # a distributed run records what each worker trained on
            digest = hashlib.sha256(sentence_features[0]["input_ids"].cpu().numpy().tobytes())
            self.seen.append(digest.hexdigest())
        # In a distributed run every worker's positives are negatives for every anchor: N workers
        # train on one batch N times larger, as one worker would (one worker: nothing changes).
        positives, start = gathered(positives)
        labels, _ = gathered(labels)
        similarity = torch.nn.functional.normalize(anchors, dim=-1) @ (
            torch.nn.functional.normalize(positives, dim=-1).T
        )
        logits = self.scale * similarity - labels.to(similarity.dtype)[None, :]
        targets = torch.arange(start, start + len(logits), device=logits.device)
        return torch.nn.functional.cross_entropy(logits, targets)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "correction": "log q"}


def set_dropout(model: torch.nn.Module, probability: float | None) -> int:
    """Set every dropout layer of `model` to `probability` (None: leave them); the count set.

    BERT-style encoders read their attention dropout from the same layers, so this covers the
    attention weights as well as the hidden states."""
    if probability is None:
        return 0
    layers = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    for layer in layers:
        layer.p = probability
    return len(layers)


def freeze_lower(model: torch.nn.Module, layers: int) -> int:
    """Stop training the token embeddings and the lowest `layers` transformer layers of a
    BERT-style encoder (`embeddings` and `encoder.layer` under the sentence-transformers
    module); the count of parameters frozen. 0: nothing is frozen.

    Backpropagation then ends at the lowest layer still trained, so a step costs about a third
    less per frozen half of the encoder; the lower layers hold general language, the upper
    ones what this task re-weighs (Lee et al., 2019, "What would Elsa do? Freezing layers
    during transformer fine-tuning")."""
    if layers == 0:
        return 0
    bert = next((m for m in model.modules() if hasattr(m, "embeddings")), None)
    stack = getattr(getattr(bert, "encoder", None), "layer", None)
    if bert is None or stack is None:
        raise RecliError(
            "finetune.frozen_layers needs a BERT-style encoder (embeddings and encoder.layer); "
            "set it to 0 for this model"
        )
    if layers > len(stack):
        raise RecliError(
            f"finetune.frozen_layers is {layers} but the encoder has {len(stack)} layers: "
            f"set it to at most {len(stack)}"
        )
    frozen = 0
    for module in [bert.embeddings, *list(stack)[:layers]]:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def mixed_precision(device: str, requested: str = "auto") -> dict[str, bool]:
    """The trainer's flags for `finetune.precision`: bf16 where `pick_precision` finds it (CUDA
    cards with bf16, CPUs with AVX512-BF16 or AMX), fp16 on other CUDA cards under `auto`, full
    precision otherwise (and always on MPS)."""
    if device == "mps" or requested == "float32":
        return {"bf16": False, "fp16": False}
    bf16 = pick_precision(requested, device) == "bfloat16"
    return {"bf16": bf16, "fp16": device == "cuda" and not bf16}
