"""A light, exact re-implementation of the sentence encoder's inference, for `recli search`.

`recli search` turns one free-text query into a vector with the fine-tuned encoder. Loading that
encoder through sentence-transformers imports torch and transformers first, about 11 s before the
first token is read; the forward pass itself then takes milliseconds. This module reads the same
saved sentence-transformers folder (`modules.json`, the BERT `config.json`, `model.safetensors`,
`tokenizer.json`, the Pooling config) and runs the same computation with numpy, the `tokenizers`
package (Rust) and `safetensors` only: tokenisation with truncation to `max_seq_length`, the BERT
forward pass, pooling and L2 normalisation. The vectors match `pipeline.models.encoder.encode()` in
float32 to round-off (about 1e-6), so queries land in the same space as the catalogue that the
pipeline embedded (one embedded in bfloat16, `embed.precision`, is within 1e-5 in cosine). No
training stack (torch, transformers, sentence-transformers) is imported, not even lazily: what
cannot be read exactly is refused with a `RecliError` instead of being approximated.

Supported: BERT-type transformers (`model_type` "bert", absolute positions) with hidden_act "gelu"
(exact erf), "gelu_new" or "gelu_pytorch_tanh" (tanh approximation); Pooling modes mean, cls and max
(several modes are concatenated, as sentence-transformers does); an optional Normalize module.

Reading and checking the folder (configs, `tokenizer.json`, the safetensors weights) is
`recli.encoder_folder`'s; this module is the computation (`QueryEncoder`: tokenise, the BERT
forward pass, pooling, normalisation), kept apart so the numerics read without the file handling.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from recli.encoder_folder import Layer, read_encoder


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function in float64, to about 1e-15 (numpy has none).

    |x| < 2: the all-positive series erf(x) = 2/√π·e^(-x²)·Σ (2x²)^n·x / (1·3·…·(2n+1)), which
    has no cancellation. |x| ≥ 2: erf = 1 - erfc, erfc from its continued fraction, evaluated
    backwards over a fixed 40 terms (enough for 1e-16 at x = 2, converging faster beyond).
    """
    x = np.asarray(x, dtype=np.float64)
    magnitude = np.abs(x)
    out = np.empty_like(magnitude)
    small = magnitude < 2.0
    z = magnitude[small]
    ratio = 2.0 * z * z
    term = z.copy()
    total = z.copy()
    n = 0
    while True:
        for _ in range(4):
            n += 1
            term *= ratio
            term *= 1.0 / (2 * n + 1)
            total += term
        if np.all(term <= 1e-17 * total):
            break
    out[small] = (2.0 / math.sqrt(math.pi)) * np.exp(-z * z) * total
    z = magnitude[~small]
    fraction = z.copy()
    for k in range(40, 0, -1):
        fraction = z + (0.5 * k) / fraction
    out[~small] = 1.0 - np.exp(-z * z) / (math.sqrt(math.pi) * fraction)
    return np.copysign(out, x)


def _gelu(x: np.ndarray, activation: str) -> np.ndarray:
    """GELU as transformers computes it for `hidden_act`, evaluated in float64."""
    wide = x.astype(np.float64)
    if activation == "gelu":
        out = 0.5 * wide * (1.0 + _erf(wide / math.sqrt(2.0)))
    else:  # gelu_new, gelu_pytorch_tanh: the tanh approximation
        out = 0.5 * wide * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (wide + 0.044715 * wide**3)))
    return out.astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * weight + bias


class QueryEncoder:
    """A saved BERT sentence encoder run with numpy: texts in, L2-normalised float32 vectors out."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        weights: dict[str, np.ndarray],
        layers: list[Layer],
        bert_config: dict[str, Any],
        pooling: tuple[str, ...],
        max_seq_length: int,
    ) -> None:
        """Use `QueryEncoder.load(directory)`; this takes the already-read parts."""
        self.tokenizer = tokenizer
        self.word_embeddings = weights["embeddings.word_embeddings.weight"]
        self.position_embeddings = weights["embeddings.position_embeddings.weight"]
        self.type_embeddings = weights["embeddings.token_type_embeddings.weight"]
        self.embedding_norm_w = weights["embeddings.LayerNorm.weight"]
        self.embedding_norm_b = weights["embeddings.LayerNorm.bias"]
        self.layers = layers
        self.hidden_size = int(bert_config["hidden_size"])
        self.heads = int(bert_config["num_attention_heads"])
        self.eps = float(bert_config.get("layer_norm_eps", 1e-12))
        self.activation = str(bert_config.get("hidden_act", "gelu"))
        self.pooling = pooling
        self.max_seq_length = max_seq_length

    @property
    def dimension(self) -> int:
        """Length of the output vectors."""
        return self.hidden_size * len(self.pooling)

    @classmethod
    def load(cls, directory: Path) -> QueryEncoder:
        """Read a folder saved by `SentenceTransformer.save()` (`recli.encoder_folder`);
        RecliError if it cannot be read."""
        return cls(*read_encoder(directory))

    def known_words(self, text: str) -> int:
        """How many of the tokens the encoder would read from `text` carry meaning: wordpieces
        in its vocabulary (not the unknown token, not a special token such as `[CLS]` or a
        typed `[MASK]`) with at least one letter or digit.

        A text with none (only punctuation `!!!`, symbols or emoji the vocabulary maps to the
        unknown token, characters the tokenizer drops such as `\u200b`) still encodes, but to
        a vector of special tokens, punctuation and position embeddings that lands near the
        same point whatever was typed: its search results would say nothing about the query.
        Counted on the token ids `encode` sees, special tokens and truncation to
        `max_seq_length` included, so a word cut off the end of a long text counts for nothing,
        as it does in the vector.
        """
        special = {
            token_id
            for token_id, token in self.tokenizer.get_added_tokens_decoder().items()
            if token.special
        }
        unknown_token = getattr(self.tokenizer.model, "unk_token", None)
        unknown = (
            self.tokenizer.token_to_id(unknown_token) if isinstance(unknown_token, str) else None
        )
        encoding = self.tokenizer.encode(text, add_special_tokens=True)
        return sum(
            1
            for token_id, token in zip(encoding.ids, encoding.tokens, strict=True)
            if token_id != unknown
            and token_id not in special
            and any(char.isalnum() for char in token.removeprefix("##"))
        )

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised float32 vectors [len(texts), dimension]; an empty text gives a zero row.

        Texts are batched longest first (as sentence-transformers does); padding is masked, so a
        text's vector does not depend on its batch.
        """
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        present = sorted((i for i, text in enumerate(texts) if text), key=lambda i: -len(texts[i]))
        for start in range(0, len(present), batch_size):
            chunk = present[start : start + batch_size]
            vectors[chunk] = self._embed([texts[i] for i in chunk])
        return vectors

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Tokenise one batch, run BERT, pool and normalise."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._forward(ids, types, mask)
        pooled = [self._pool(hidden, mask, mode) for mode in self.pooling]
        embedding = np.concatenate(pooled, axis=-1)
        norms = np.linalg.norm(embedding, axis=-1, keepdims=True)
        return embedding / np.maximum(norms, np.float32(1e-12))

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """BERT's last hidden state [batch, tokens, hidden] (positions 0..tokens-1)."""
        batch, length = ids.shape
        heads, width = self.heads, self.hidden_size // self.heads
        hidden = self.word_embeddings[ids] + self.type_embeddings[types]
        hidden = hidden + self.position_embeddings[:length][None]
        hidden = _layer_norm(hidden, self.embedding_norm_w, self.embedding_norm_b, self.eps)
        # Padded keys get the most negative float32, as transformers' mask does.
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min)
        bias = bias.astype(np.float32)
        scale = np.float32(width**-0.5)

        def split(x: np.ndarray) -> np.ndarray:
            return x.reshape(batch, length, heads, width).transpose(0, 2, 1, 3)

        for layer in self.layers:
            query = split(hidden @ layer.query_w.T + layer.query_b)
            key = split(hidden @ layer.key_w.T + layer.key_b)
            value = split(hidden @ layer.value_w.T + layer.value_b)
            scores = (query @ key.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            attended = context @ layer.attention_out_w.T + layer.attention_out_b
            hidden = _layer_norm(
                attended + hidden, layer.attention_norm_w, layer.attention_norm_b, self.eps
            )
            inner = _gelu(hidden @ layer.intermediate_w.T + layer.intermediate_b, self.activation)
            output = inner @ layer.output_w.T + layer.output_b
            hidden = _layer_norm(
                output + hidden, layer.output_norm_w, layer.output_norm_b, self.eps
            )
        return hidden

    @staticmethod
    def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
        """One Pooling mode over the unmasked tokens, as sentence-transformers' Pooling does."""
        if mode == "cls":  # the first real token (index 0 unless padding is on the left)
            first = mask.argmax(axis=1)
            return hidden[np.arange(hidden.shape[0]), first]
        if mode == "max":
            return np.where(mask[:, :, None] > 0, hidden, -np.inf).max(axis=1).astype(np.float32)
        weights = mask[:, :, None].astype(np.float32)
        total = (hidden * weights).sum(axis=1)
        return total / np.maximum(weights.sum(axis=1), np.float32(1e-9))
