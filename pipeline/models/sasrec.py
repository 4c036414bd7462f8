"""SASRec: a causal transformer over each user's item sequence (Kang & McAuley 2018), scored by a
dot product, and a text-based variant in the UniSRec line whose item vectors come (partly) from
the text encoder.
This module is the network and its settings; `pipeline.models.sasrec_training` trains it.

Why it is shaped like this:

- **One dot product.** The user vector is the transformer's output at the user's last real
  position and an item's vector is the very representation the transformer reads as input (tied
  weights), so a score is `user · item` and the pair is a `UserItemVectors`: it goes through
  `pipeline.evaluation.protocol.evaluate_model` and into one Annoy index like the factors and text
  vectors.
- **Item representation.** `e_i = ID embedding (use_ids) + adaptor(text_i) (use_text)`, with the
  text vectors frozen. The adaptor is UniSRec's (Hou et al., KDD'22): a mixture of parametric
  whitening experts, each `(text - b_k) W_k`, mixed by a softmax gate read from the text, with
  dropout on the text. Whitening re-centres the language model's anisotropic vectors, and the
  experts let different parts of the catalogue map differently into the 64-d space. A cold item
  (never in training) gets no ID part at all: with ids only it is the zero vector (every cold item
  ties, the protocol breaks ties at random), with text it is scored by its text alone.

Sequences are right-padded: under the causal mask a real position never attends to a later one,
so padding never reaches a real position's output and no padding mask is needed (a fully masked
attention row, which left padding would need, gives NaN).

Not a stage module: it reads nothing from disk and imports no stage.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional

from pipeline.core.sections import SequenceConfig
from pipeline.models.encoder import pick_device

PAD = 0
"""Input token of an empty position; item `i` is token `i + 1`."""
IGNORE = -100
"""Target of a padded position (`cross_entropy`'s default `ignore_index`)."""
FEEDFORWARD_FACTOR = 4
"""Feed-forward width as a multiple of `embedding_size` (256 for 64-d, RecBole's default)."""
INIT_STD = 0.02
"""Std of the normal initialisation of embeddings and linear maps (BERT/RecBole): with N(0, 1)
embeddings the tied output logits would start far too large for a 64-d dot product."""
NORM_FIRST = False
"""Post-LayerNorm blocks with a LayerNorm on the input embedding, as in RecBole's SASRec, where
the reference numbers come from (pre-LN with a final LayerNorm is the original paper's choice)."""


class SequenceSettings(SequenceConfig):
    """One model's settings: the `sequence` section's (`SequenceConfig`, where each is described
    and checked), which variant it is, and the torch device it runs on."""

    use_ids: bool = True
    """Give every warm item a free ID embedding (plain SASRec)."""
    use_text: bool = False
    """Add the adaptor's map of the item's frozen text vector (the text-based variant)."""
    device: str = "cpu"  # type: ignore[assignment]  # the device picked, never "auto"
    """Torch device for training and inference."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    """Adam's L2 penalty on every weight (not a `params.yaml` setting)."""

    @model_validator(mode="after")
    def _represented(self) -> SequenceSettings:
        if not (self.use_ids or self.use_text):
            raise ValueError("an item needs a representation: set use_ids, use_text or both")
        return self


MODELS = {
    "sasrec": {"use_ids": True, "use_text": False},
    "text": {"use_ids": True, "use_text": True},
}
"""The two variants: the SASRec peer (ids only) and recli's text-based model."""


def settings(cfg: SequenceConfig, use_ids: bool, use_text: bool) -> SequenceSettings:
    """One variant's settings: `cfg` as it is, the variant, and the device picked for it."""
    return SequenceSettings(
        **cfg.model_dump(exclude={"device"}),
        use_ids=use_ids,
        use_text=use_text,
        device=pick_device(cfg.device),
    )


class SequenceModel(nn.Module):
    """Causal self-attention over item sequences; item vectors shared by input and output."""

    def __init__(
        self,
        n_items: int,
        settings: SequenceSettings,
        text_vectors: np.ndarray | None = None,
        cold_items: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        d = settings.embedding_size
        self.n_items = n_items
        self.max_length = settings.max_length
        cold = cold_mask(cold_items, n_items)
        self.register_buffer("cold", torch.from_numpy(cold))
        self.register_buffer("warm", torch.from_numpy((~cold).astype(np.float32))[:, None])

        self.item_ids = nn.Embedding(n_items, d) if settings.use_ids else None
        if settings.use_text:
            if text_vectors is None:
                raise ValueError("use_text needs text_vectors [n_items, dim]")
            text = np.asarray(text_vectors, dtype=np.float32)
            if text.ndim != 2 or text.shape[0] != n_items:
                raise ValueError(f"text_vectors must be [{n_items}, dim], got {text.shape}")
            self.register_buffer("text", torch.from_numpy(text.copy()))
            self.adapter: nn.Module | None = TextAdaptor(
                text.shape[1], d, settings.text_experts, settings.dropout
            )
        else:
            self.text = None
            self.adapter = None

        self.positions = nn.Embedding(settings.max_length, d)
        self.input_norm = nn.LayerNorm(d)
        self.input_dropout = nn.Dropout(settings.dropout)
        block = nn.TransformerEncoderLayer(
            d,
            settings.heads,
            dim_feedforward=FEEDFORWARD_FACTOR * d,
            dropout=settings.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=NORM_FIRST,
        )
        # No dropout between the two feed-forward layers, as in RecBole's SASRec: dropout stays on
        # the attention weights and on each sub-block's output, and the widest (costliest) dropout
        # mask is not drawn.
        block.dropout = nn.Identity()
        self.encoder = nn.TransformerEncoder(
            block,
            settings.layers,
            norm=nn.LayerNorm(d) if NORM_FIRST else None,
            enable_nested_tensor=False,
        )
        causal = torch.triu(torch.ones(settings.max_length, settings.max_length), 1).bool()
        self.register_buffer("causal", causal, persistent=False)
        self.apply(_init_weights)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[n_items, d] (or one row per index of `items`): what the transformer reads for an item
        and what a user is scored with."""
        rows = self.n_items if items is None else items.numel()
        vectors = torch.zeros(
            rows, self.positions.embedding_dim, device=self.positions.weight.device
        )
        if self.item_ids is not None:
            # Multiplying by the mask (not only never training the rows) keeps a cold item's ID
            # part exactly zero whatever its initial or decayed weights are.
            if items is None:
                vectors = vectors + self.item_ids.weight * self.warm
            else:
                vectors = vectors + self.item_ids(items) * self.warm[items]
        if self.adapter is not None:
            vectors = vectors + self.adapter(self.text if items is None else self.text[items])
        return vectors

    def forward(self, tokens: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [batch, length, d] of right-padded `tokens` (item + 1, 0 = padding).

        Position t depends only on tokens 0..t. `items` (from `item_vectors`) saves recomputing
        the item table when the caller also needs it for the output.
        """
        length = tokens.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequences are at most {self.max_length} long, got {length}")
        if items is None:
            items = self.item_vectors()
        table = torch.cat([items.new_zeros(1, items.shape[1]), items])
        hidden = functional.embedding(tokens, table) + self.positions.weight[:length]
        hidden = self.input_dropout(self.input_norm(hidden))
        return self.encoder(hidden, mask=self.causal[:length, :length], is_causal=True)

    def states(
        self, tokens: torch.Tensor, lengths: torch.Tensor, items: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[batch, d]: the output at each sequence's last real position (`lengths` ≥ 1)."""
        hidden = self(tokens, items)
        return hidden[torch.arange(tokens.shape[0], device=tokens.device), lengths - 1]


class TextAdaptor(nn.Module):
    """UniSRec's mixture of parametric whitening experts: frozen text vectors [n, t] → [n, d].

    Expert k maps `(x - b_k) W_k`, computed as `x W_k - b_k W_k` so no [n, experts, t] tensor is
    ever built; a softmax gate over `x` mixes the experts per item. Dropout on `x` while training
    keeps the model from leaning on a few text dimensions.
    """

    def __init__(self, text_dim: int, size: int, experts: int, dropout: float) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.zeros(experts, text_dim))
        self.maps = nn.Parameter(torch.randn(experts, text_dim, size) * INIT_STD)
        self.gate = nn.Linear(text_dim, experts, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        text = self.dropout(text)
        whitened = torch.einsum("nt,etd->ned", text, self.maps) - torch.einsum(
            "et,etd->ed", self.centres, self.maps
        )
        weights = torch.softmax(self.gate(text), dim=-1)
        return (weights.unsqueeze(-1) * whitened).sum(dim=1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.MultiheadAttention):
        # Its fused input projection is a bare Parameter, not an nn.Linear.
        nn.init.normal_(module.in_proj_weight, std=INIT_STD)
        nn.init.zeros_(module.in_proj_bias)


def cold_mask(cold_items: np.ndarray | None, n_items: int) -> np.ndarray:
    """bool [n_items] from a bool mask or an array of item indices (None: no cold item)."""
    if cold_items is None:
        return np.zeros(n_items, dtype=bool)
    cold_items = np.asarray(cold_items)
    if cold_items.dtype == bool:
        if cold_items.shape != (n_items,):
            raise ValueError(f"a cold mask must have shape ({n_items},), got {cold_items.shape}")
        return cold_items.copy()
    indices = cold_items.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError(f"cold item indices must be in 0..{n_items - 1}")
    mask = np.zeros(n_items, dtype=bool)
    mask[indices] = True
    return mask
