"""Training SASRec (`pipeline.models.sasrec`) and reading users with it: histories, training
windows, the training loop with early stopping, and the fitted model's vectors.

- **Training.** Every training event is a target once per epoch: each user's training sequence is
  cut, from its end, into windows of at most `max_length + 1` items that overlap by one, and the
  cross-entropy over all (warm) items is taken at every position of every window (SASRec trained
  like RecBole's `loss_type=CE`). Adam, seeded: the same inputs and seed give the same weights.
  Cold items are left out of the training softmax, since a model trained before they existed
  could not have pushed them down. On a large catalogue the softmax is sampled (`negatives`):
  each step scores the batch's own targets plus a shared uniform draw of warm items, so a step
  costs the same whatever the number of items. `max_steps` bounds the optimiser steps over all
  epochs, so training time is set by the budget, not by the number of events; the weights at the
  budget's end are scored.
- **Early stopping.** After every `eval_every` epochs an optional `validate` callback scores the
  current vectors (users = states from the training histories); the best weights are kept.
- **Test time.** `FittedSequence.vectors(histories)` recomputes user states from any histories
  without refitting, so the test ranking can read train + validation (`append_histories`).

Not a stage module: it reads nothing from disk and imports no stage.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from torch.nn import functional

from pipeline.data.interactions import UserItemVectors
from pipeline.models.sasrec import IGNORE, PAD, SequenceModel, SequenceSettings, cold_mask

Validate = Callable[[UserItemVectors], float]
FULL_SOFTMAX_ITEMS = 5000
"""`negatives: auto` takes the full softmax up to this many warm items (ML-100K has 1,682)."""
SAMPLED_NEGATIVES = 2048
"""`negatives: auto` above `FULL_SOFTMAX_ITEMS`: warm items drawn per step."""


def negatives_for(setting: int | str, warm_items: int) -> int:
    """The number of sampled negatives `setting` means for `warm_items` (0: full softmax)."""
    if setting == "auto":
        return 0 if warm_items <= FULL_SOFTMAX_ITEMS else SAMPLED_NEGATIVES
    return 0 if int(setting) >= warm_items else int(setting)


def histories(events: pl.DataFrame, n_users: int) -> list[np.ndarray]:
    """Each user's item indices in time order (int64); an empty array for a user without events.

    Rows are ordered by `timestamp` with a stable sort, so events with equal timestamps keep the
    order they have in `events`: `preprocess` writes them in the seeded tie-break order that
    decided the split, and ordering ties by item id instead would leak catalogue order.
    """
    users = events["user_idx"].to_numpy().astype(np.int64)
    items = events["item_idx"].to_numpy().astype(np.int64)
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user_idx must be in 0..{n_users - 1}")
    if "timestamp" in events.columns:
        order = np.lexsort((events["timestamp"].to_numpy(), users))  # lexsort is stable
    else:
        order = np.argsort(users, kind="stable")
    counts = np.bincount(users, minlength=n_users)
    return [part.copy() for part in np.split(items[order], np.cumsum(counts)[:-1])]


def append_histories(
    earlier: Sequence[np.ndarray], later: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Per user, `earlier` then `later` (train then validation: the test-time input)."""
    if len(earlier) != len(later):
        raise ValueError(f"{len(earlier)} and {len(later)} users: the histories must align")
    return [
        np.concatenate([np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)])
        for a, b in zip(earlier, later, strict=True)
    ]


def training_windows(
    train_histories: Sequence[np.ndarray], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(input tokens, target items), both int64 [windows, max_length], right-padded.

    Each sequence is cut from its end into windows of at most `max_length + 1` items; a window's
    first item is the previous window's last target, so every event but a user's first is a
    target exactly once, and the most recent events get the longest context.
    """
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for sequence in train_histories:
        sequence = np.asarray(sequence, dtype=np.int64)
        end = sequence.size
        while end >= 2:
            start = max(0, end - (max_length + 1))
            window = sequence[start:end]
            width = window.size - 1
            tokens = np.full(max_length, PAD, dtype=np.int64)
            tokens[:width] = window[:-1] + 1
            wanted = np.full(max_length, IGNORE, dtype=np.int64)
            wanted[:width] = window[1:]
            inputs.append(tokens)
            targets.append(wanted)
            end = start + 1
    if not inputs:
        raise ValueError("no user has two training events: nothing to learn an order from")
    return np.stack(inputs), np.stack(targets)


def _recent_tokens(batch: Sequence[np.ndarray], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded tokens of each history's last `max_length` items, and their lengths."""
    lengths = np.array([min(len(h), max_length) for h in batch], dtype=np.int64)
    tokens = np.full((len(batch), max(int(lengths.max(initial=0)), 1)), PAD, dtype=np.int64)
    for row, (history, length) in enumerate(zip(batch, lengths, strict=True)):
        if length:
            tokens[row, :length] = np.asarray(history[-length:], dtype=np.int64) + 1
    return tokens, lengths


@dataclass
class FittedSequence:
    """A trained model (eval mode, best validation weights) and how training went."""

    model: SequenceModel
    settings: SequenceSettings
    log: list[dict[str, float | int | None]] = field(default_factory=list)
    """Per epoch: `epoch`, mean training `loss`, `validation` score (None when not scored),
    training `seconds`, `validation_seconds`, optimiser `steps`."""
    best_epoch: int = 0
    """The epoch whose weights the model holds (the last one without a `validate` callback)."""
    best_score: float | None = None
    negatives: int = 0
    """Sampled negatives per step that training used (0: the full softmax)."""
    shard: list[str] = field(default_factory=list)
    """In a data-parallel run: a digest of the training windows of every step of this worker."""
    frozen_items: torch.Tensor | None = None
    """The item table, computed once (`restore`: a served model's weights never change), so a
    user's state costs the transformer alone; None: computed on every call."""

    @property
    def steps(self) -> int:
        """Optimiser steps taken over all epochs."""
        return int(sum(int(entry["steps"] or 0) for entry in self.log))

    def weights(self) -> dict[str, np.ndarray]:
        """The trained weights and buffers (the items' text vectors and cold mask included), as
        numpy arrays by `state_dict` name: with `settings`, all `restore` needs."""
        return {
            name: tensor.detach().cpu().numpy().copy()
            for name, tensor in self.model.state_dict().items()
        }

    @classmethod
    def restore(cls, weights: dict[str, np.ndarray], settings: SequenceSettings) -> FittedSequence:
        """The model `weights` (from `FittedSequence.weights`) hold, in eval mode on
        `settings.device`: its user states and item vectors are the trained model's."""
        n_items = int(weights["cold"].shape[0])
        text = weights.get("text") if settings.use_text else None
        model = SequenceModel(n_items, settings, text, weights["cold"].astype(bool))
        model.load_state_dict({name: torch.from_numpy(array) for name, array in weights.items()})
        model.to(torch.device(settings.device)).eval()
        with torch.no_grad():
            items = model.item_vectors()
        return cls(model=model, settings=settings, frozen_items=items)

    def item_vectors(self) -> np.ndarray:
        """float32 [n_items, d]."""
        self.model.eval()
        with torch.no_grad():
            return self.model.item_vectors().cpu().numpy().astype(np.float32)

    def user_states(
        self, user_histories: Sequence[np.ndarray], batch_size: int = 512
    ) -> np.ndarray:
        """float32 [n_users, d]: each history's state (zero for an empty history)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        states = np.zeros((len(user_histories), self.settings.embedding_size), dtype=np.float32)
        filled = [u for u, history in enumerate(user_histories) if len(history)]
        with torch.no_grad():
            items = self.model.item_vectors() if self.frozen_items is None else self.frozen_items
            for start in range(0, len(filled), batch_size):
                rows = filled[start : start + batch_size]
                tokens, lengths = _recent_tokens(
                    [user_histories[u] for u in rows], self.settings.max_length
                )
                last = self.model.states(
                    torch.from_numpy(tokens).to(device), torch.from_numpy(lengths).to(device), items
                )
                states[rows] = last.cpu().numpy()
        return states

    def vectors(
        self, user_histories: Sequence[np.ndarray], batch_size: int = 512
    ) -> UserItemVectors:
        """User states for `user_histories` and the item vectors: a dot-product scorer.

        Nothing is refit: pass train + validation histories at test time to let the model read
        the validation event.
        """
        return UserItemVectors(
            users=self.user_states(user_histories, batch_size), items=self.item_vectors()
        )


def fit(
    train_histories: Sequence[np.ndarray],
    n_items: int,
    settings: SequenceSettings,
    text_vectors: np.ndarray | None = None,
    cold_items: np.ndarray | None = None,
    validate: Validate | None = None,
    validation_histories: Sequence[np.ndarray] | None = None,
) -> FittedSequence:
    """Train SASRec on `train_histories` (one int array of item indices per user, in time order).

    `cold_items` (bool mask or indices) get no ID embedding and no place in the training softmax;
    they must not appear in the histories. With `validate`, training stops after `patience`
    epochs without a better score and the best epoch's weights are kept; `validate` is given
    the states of `validation_histories` (default: `train_histories`; an empty history gives a
    zero state, so the users validation does not rank can be left out).
    """
    cold = cold_mask(cold_items, n_items)
    for history in train_histories:
        history = np.asarray(history)
        if history.size and (history.min() < 0 or history.max() >= n_items):
            raise ValueError(f"history item indices must be in 0..{n_items - 1}")
        if history.size and cold[history].any():
            raise ValueError("a cold item appears in a training history: it cannot be cold")
    inputs, targets = training_windows(train_histories, settings.max_length)
    device = torch.device(settings.device)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (
        (torch.distributed.get_rank(), torch.distributed.get_world_size())
        if distributed
        else (0, 1)
    )
    rng = np.random.default_rng(settings.seed)
    devices = [device.index or 0] if device.type == "cuda" else []

    # Forking keeps the caller's global torch RNG untouched while dropout draws from a seeded one.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.seed)
        model = SequenceModel(n_items, settings, text_vectors, cold).to(device)
        fitted = FittedSequence(model=model, settings=settings)
        optimiser = torch.optim.Adam(
            model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        inputs_t = torch.from_numpy(inputs)
        targets_t = torch.from_numpy(targets)
        cold_t = model.cold if cold.any() else None
        warm = torch.from_numpy(np.flatnonzero(~cold)).to(device)
        fitted.negatives = negatives_for(settings.negatives, int(warm.numel()))
        draws = torch.Generator().manual_seed(settings.seed)
        budget = settings.max_steps if settings.max_steps is not None else math.inf
        taken = 0
        best_state: dict[str, torch.Tensor] | None = None
        for epoch in range(1, settings.epochs + 1):
            model.train()
            started = time.perf_counter()
            order = torch.from_numpy(rng.permutation(len(inputs)))
            total, count, steps = 0.0, 0, 0
            for start in range(0, len(order), settings.batch_size * world):
                if taken >= budget:
                    break
                batch = order[start : start + settings.batch_size * world]
                sampled = None
                if fitted.negatives:
                    picks = torch.randint(warm.numel(), (fitted.negatives,), generator=draws)
                    sampled = warm[picks.to(device)]
                optimiser.zero_grad(set_to_none=True)
                mine = batch if world == 1 else torch.tensor_split(batch, world)[rank]
                tokens, wanted = inputs_t[mine].to(device), targets_t[mine].to(device)
                if world == 1:
                    loss, n_targets = _batch_loss(model, tokens, wanted, cold_t, sampled)
                    loss.backward()
                else:
                    fitted.shard.append(hashlib.sha256(mine.numpy().tobytes()).hexdigest())
                    loss, n_targets = _shared_step(model, tokens, wanted, cold_t, sampled)
                optimiser.step()
                total += float(loss.detach()) * n_targets
                count += n_targets
                steps += 1
                taken += 1
            entry: dict[str, float | int | None] = {
                "epoch": epoch,
                "loss": total / max(count, 1),
                "validation": None,
                "seconds": time.perf_counter() - started,
                "validation_seconds": 0.0,
                "steps": steps,
            }
            fitted.log.append(entry)
            if not math.isfinite(total):
                raise FloatingPointError(f"training loss is {total} at epoch {epoch}")
            out_of_budget = taken >= budget
            if validate is None or (epoch % settings.eval_every and not out_of_budget):
                if out_of_budget:
                    break
                continue
            started = time.perf_counter()
            read = train_histories if validation_histories is None else validation_histories
            score = float(validate(fitted.vectors(read)))
            entry["validation"] = score
            entry["validation_seconds"] = time.perf_counter() - started
            if fitted.best_score is None or score > fitted.best_score:
                fitted.best_score, fitted.best_epoch = score, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif epoch - fitted.best_epoch >= settings.patience:
                break
            if out_of_budget:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            fitted.best_epoch = len(fitted.log)
    model.eval()
    return fitted


def _shared_step(
    model: SequenceModel,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    cold: torch.Tensor | None,
    sampled: torch.Tensor | None,
) -> tuple[torch.Tensor, int]:
    """One worker's part of a data-parallel step on its share of the batch: the gradient of the
    whole batch's mean loss, summed over the workers (each weights its targets by the batch's
    total). The same sampled negatives on every worker (their generator is seeded alike), so
    this is one step on the whole batch, rounding apart. Returns the mean loss here, targets."""
    count = torch.tensor([0.0])
    if len(tokens):
        loss, n_targets = _batch_loss(model, tokens, targets, cold, sampled)
        count += n_targets
    else:  # a short last batch can leave a worker nothing: it still joins the sum
        loss, n_targets = sum(parameter.sum() for parameter in model.parameters()) * 0.0, 0
    total = count.clone()
    torch.distributed.all_reduce(total)
    (loss * (count.item() / max(total.item(), 1.0))).backward()
    for parameter in model.parameters():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        torch.distributed.all_reduce(parameter.grad)
    return loss.detach(), n_targets


def _batch_loss(
    model: SequenceModel,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    cold: torch.Tensor | None,
    sampled: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy at every real position, and the target count.

    Over all warm items, or, given `sampled` warm items, over those and the batch's own targets
    (each position's target competes with every other target of the batch and the sample).
    """
    real = targets != IGNORE
    wanted = targets[real]
    if sampled is not None:
        # Only the items the batch reads or scores get a vector: on a large catalogue that is a
        # few thousand of tens of thousands, and projecting every item's text each step would
        # cost more than the transformer.
        read = tokens[tokens != PAD] - 1
        needed, inverse = torch.unique(torch.cat([wanted, sampled, read]), return_inverse=True)
        items = model.item_vectors(needed)
        compact = torch.full_like(tokens, PAD)
        compact[tokens != PAD] = inverse[wanted.numel() + sampled.numel() :] + 1
        hidden = model(compact, items)
        candidates = torch.unique(inverse[: wanted.numel() + sampled.numel()])
        position = torch.searchsorted(candidates, inverse[: wanted.numel()])
        logits = hidden[real] @ items[candidates].T
        return functional.cross_entropy(logits, position), int(wanted.numel())
    items = model.item_vectors()
    hidden = model(tokens, items)
    logits = hidden[real] @ items.T
    if cold is not None:
        logits = logits.masked_fill(cold, float("-inf"))
    return functional.cross_entropy(logits, wanted), int(wanted.numel())
