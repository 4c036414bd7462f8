"""A light, exact re-implementation of the sentence encoder's inference, for `recli search`.

`recli search` turns one free-text query into a vector with the fine-tuned encoder. Loading that
encoder through sentence-transformers imports torch and transformers first, about 11 s before the
first token is read; the forward pass itself then takes milliseconds. This module reads the same
saved sentence-transformers folder (`modules.json`, the BERT `config.json`, `model.safetensors`,
`tokenizer.json`, the Pooling config) and runs the same computation with numpy, the `tokenizers`
package (Rust) and `safetensors` only: tokenisation with truncation to `max_seq_length`, the BERT
forward pass, pooling and L2 normalisation. The vectors match `pipeline.encoder.encode()` in
float32 to round-off (about 1e-6), so queries land in the same space as the catalogue that the
pipeline embedded (one embedded in bfloat16, `embed.precision`, is within 1e-5 in cosine). No
training stack (torch, transformers, sentence-transformers) is imported, not even lazily: what
cannot be read exactly is refused with a `RecliError` instead of being approximated.

Supported: BERT-type transformers (`model_type` "bert", absolute positions) with hidden_act "gelu"
(exact erf), "gelu_new" or "gelu_pytorch_tanh" (tanh approximation); Pooling modes mean, cls and max
(several modes are concatenated, as sentence-transformers does); an optional Normalize module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer, normalizers

from recli.errors import RecliError

FIX = "pass --encoder PATH to a sentence-transformers folder"
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh")
SUPPORTED_POOLING = ("mean", "cls", "max")
# sentence-transformers' legacy Pooling flags, in the order it concatenates the modes they enable.
LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# transformers' default model_max_length when a tokenizer config sets none.
UNBOUNDED_LENGTH = int(1e30)


class UnsupportedEncoderError(RecliError, ValueError):
    """A readable encoder that uses a piece (activation, pooling) not implemented here."""


@dataclass(frozen=True, slots=True)
class _Layer:
    """The weights of one BERT encoder layer (dense weights are [out, in], as saved)."""

    query_w: np.ndarray
    query_b: np.ndarray
    key_w: np.ndarray
    key_b: np.ndarray
    value_w: np.ndarray
    value_b: np.ndarray
    attention_out_w: np.ndarray
    attention_out_b: np.ndarray
    attention_norm_w: np.ndarray
    attention_norm_b: np.ndarray
    intermediate_w: np.ndarray
    intermediate_b: np.ndarray
    output_w: np.ndarray
    output_b: np.ndarray
    output_norm_w: np.ndarray
    output_norm_b: np.ndarray


def _not_readable(folder: Path, why: str) -> RecliError:
    return RecliError(f"{folder} is not an encoder folder recli can read ({why}): {FIX}")


def _read_json(folder: Path, path: Path, required: bool = True) -> Any:
    """A JSON file of the encoder folder; RecliError if required and missing, else {}."""
    if not path.is_file():
        if required:
            raise _not_readable(folder, f"missing {_relative(folder, path)}")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _not_readable(
            folder, f"{_relative(folder, path)} is not valid JSON: {error}"
        ) from None


def _relative(folder: Path, path: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


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


def _pooling_modes(folder: Path, config: dict[str, Any]) -> tuple[str, ...]:
    """The Pooling config's modes, in sentence-transformers' order; new and legacy formats."""
    if "pooling_mode" in config:
        raw = config["pooling_mode"]
        modes = (raw,) if isinstance(raw, str) else tuple(raw)
    else:
        modes = tuple(mode for key, mode in LEGACY_POOLING_FLAGS.items() if config.get(key))
        modes = modes or ("mean",)
    unsupported = [mode for mode in modes if mode not in SUPPORTED_POOLING]
    if unsupported or not modes:
        raise UnsupportedEncoderError(
            f"{folder}: pooling mode {', '.join(map(repr, unsupported or modes))} is not supported "
            f"by recli's light query encoder (it reads {', '.join(SUPPORTED_POOLING)}): {FIX} "
            "whose Pooling module uses one of those"
        )
    return modes


def _max_seq_length(
    sentence_config: dict[str, Any], tokenizer_config: dict[str, Any], bert_config: dict[str, Any]
) -> int:
    """The token budget sentence-transformers uses (special tokens included).

    An explicit `max_seq_length` (older saves) or a processor/tokenizer `model_max_length` in
    `sentence_bert_config.json` wins; otherwise the tokenizer config's `model_max_length`, capped at
    the model's `max_position_embeddings`. The position table is a hard limit either way.
    """
    positions = int(bert_config["max_position_embeddings"])
    explicit = sentence_config.get("max_seq_length")
    for key in ("processor_kwargs", "tokenizer_args"):
        kwargs = sentence_config.get(key) or {}
        if explicit is None and kwargs.get("model_max_length") is not None:
            explicit = kwargs["model_max_length"]
    if explicit is not None:
        return min(int(explicit), positions)
    configured = tokenizer_config.get("model_max_length")
    return min(int(configured) if configured is not None else UNBOUNDED_LENGTH, positions)


def _token_name(value: Any) -> str | None:
    """A special token as tokenizer configs store it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _has_lowercase(normalizer: Any) -> bool:
    """Whether a normalizer already lowercases (the check sentence-transformers makes)."""
    if isinstance(normalizer, normalizers.Lowercase):
        return True
    if isinstance(normalizer, normalizers.Sequence):
        return any(isinstance(part, normalizers.Lowercase) for part in normalizer)
    return False


class QueryEncoder:
    """A saved BERT sentence encoder run with numpy: texts in, L2-normalised float32 vectors out."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        weights: dict[str, np.ndarray],
        layers: list[_Layer],
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
        """Read a folder saved by `SentenceTransformer.save()`; RecliError if it cannot be read."""
        folder = Path(directory).expanduser()
        if not folder.is_dir():
            raise RecliError(f"encoder folder {folder} does not exist: {FIX}")
        modules = _read_json(folder, folder / "modules.json")
        transformer_dir, pooling_dir = cls._module_dirs(folder, modules)

        bert_config = _read_json(folder, transformer_dir / "config.json")
        cls._check_bert(folder, bert_config)
        sentence_config = _read_json(folder, transformer_dir / "sentence_bert_config.json", False)
        tokenizer_config = _read_json(folder, transformer_dir / "tokenizer_config.json", False)
        pooling_config = _read_json(folder, pooling_dir / "config.json")
        for name, value in (
            ("sentence_bert_config.json", sentence_config),
            ("tokenizer_config.json", tokenizer_config),
            ("the Pooling config.json", pooling_config),
        ):
            if not isinstance(value, dict):
                raise _not_readable(folder, f"{name} is not a JSON object")
        pooling = _pooling_modes(folder, pooling_config)
        width = pooling_config.get(
            "embedding_dimension", pooling_config.get("word_embedding_dimension")
        )
        hidden = int(bert_config["hidden_size"])
        if width is not None and int(width) != hidden:
            raise _not_readable(
                folder, f"Pooling expects {width}-d tokens, the transformer gives {hidden}"
            )
        prompt = cls._default_prompt(folder)
        if prompt:
            raise UnsupportedEncoderError(
                f"{folder}: the encoder prepends a default prompt ({prompt!r}), which recli's "
                f"light query encoder does not do: {FIX} without a default prompt"
            )

        max_length = _max_seq_length(sentence_config, tokenizer_config, bert_config)
        tokenizer = cls._tokenizer(
            folder, transformer_dir, sentence_config, tokenizer_config, max_length
        )
        weights, layers = cls._weights(folder, transformer_dir, bert_config)
        return cls(tokenizer, weights, layers, bert_config, pooling, max_length)

    @staticmethod
    def _module_dirs(folder: Path, modules: Any) -> tuple[Path, Path]:
        """(transformer folder, pooling folder) from modules.json; only Normalize may follow."""
        if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
            raise _not_readable(folder, "modules.json is not a list of modules")
        kinds = []
        for module in sorted(modules, key=lambda m: int(m.get("idx", 0))):
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            kinds.append((kind, folder / str(module.get("path", ""))))
        names = [kind for kind, _ in kinds]
        if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            raise _not_readable(
                folder,
                f"modules.json lists {names or 'no modules'}; recli reads Transformer, Pooling "
                "and an optional Normalize",
            )
        return kinds[0][1], kinds[1][1]

    @staticmethod
    def _check_bert(folder: Path, config: Any) -> None:
        if not isinstance(config, dict) or config.get("model_type") != "bert":
            kind = config.get("model_type") if isinstance(config, dict) else None
            raise _not_readable(folder, f"model_type is {kind!r}, not 'bert'")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise _not_readable(
                folder, f"position_embedding_type {config['position_embedding_type']!r}"
            )
        needed = (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
        )
        missing = [key for key in needed if key not in config]
        if missing:
            raise _not_readable(folder, f"config.json lacks {', '.join(missing)}")
        if int(config["hidden_size"]) % int(config["num_attention_heads"]):
            raise _not_readable(folder, "hidden_size is not a multiple of num_attention_heads")
        activation = config.get("hidden_act", "gelu")
        if activation not in SUPPORTED_ACTIVATIONS:
            raise UnsupportedEncoderError(
                f"{folder}: hidden_act {activation!r} is not supported by recli's light query "
                f"encoder (it reads {', '.join(SUPPORTED_ACTIVATIONS)}): {FIX} with one of those"
            )

    @staticmethod
    def _default_prompt(folder: Path) -> str:
        """The prompt sentence-transformers would prepend to every text ('' if none)."""
        config = _read_json(folder, folder / "config_sentence_transformers.json", False)
        if not isinstance(config, dict):
            return ""
        name = config.get("default_prompt_name")
        return str((config.get("prompts") or {}).get(name, "")) if name else ""

    @staticmethod
    def _tokenizer(
        folder: Path,
        transformer_dir: Path,
        sentence_config: dict[str, Any],
        tokenizer_config: dict[str, Any],
        max_length: int,
    ) -> Tokenizer:
        """tokenizer.json, truncating and padding as sentence-transformers' tokenizer call does."""
        path = transformer_dir / "tokenizer.json"
        if not path.is_file():
            raise _not_readable(folder, f"missing {_relative(folder, path)}")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises plain Exception
            raise _not_readable(
                folder, f"{_relative(folder, path)} does not load: {error}"
            ) from None
        if sentence_config.get("do_lower_case") and not _has_lowercase(tokenizer.normalizer):
            existing = tokenizer.normalizer
            parts: list[Any] = [normalizers.Lowercase()]
            if isinstance(existing, normalizers.Sequence):
                parts += list(existing)
            elif existing is not None:
                parts.append(existing)
            tokenizer.normalizer = normalizers.Sequence(parts)
        # tokenizer.json may carry its own truncation/padding (e.g. fixed 128): replace both.
        saved_padding = tokenizer.padding or {}
        tokenizer.no_truncation()
        tokenizer.no_padding()
        tokenizer.enable_truncation(
            max_length=max_length,
            stride=0,
            strategy="longest_first",
            direction=str(tokenizer_config.get("truncation_side", "right")),
        )
        pad_token = (
            _token_name(tokenizer_config.get("pad_token"))
            or saved_padding.get("pad_token")
            or "[PAD]"
        )
        pad_id = tokenizer.token_to_id(pad_token)
        tokenizer.enable_padding(
            direction=str(tokenizer_config.get("padding_side", "right")),
            pad_id=pad_id if pad_id is not None else int(saved_padding.get("pad_id", 0)),
            pad_type_id=int(tokenizer_config.get("pad_token_type_id", 0)),
            pad_token=pad_token,
        )
        return tokenizer

    @staticmethod
    def _weights(
        folder: Path, transformer_dir: Path, config: dict[str, Any]
    ) -> tuple[dict[str, np.ndarray], list[_Layer]]:
        """The safetensors weights, keyed without any `bert.`/`model.` prefix, cast to float32."""
        path = transformer_dir / "model.safetensors"
        if not path.is_file():
            raise _not_readable(
                folder,
                f"missing {_relative(folder, path)}; only safetensors weights are read, "
                "re-save it with SentenceTransformer.save()",
            )
        try:
            raw = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types
            raise _not_readable(
                folder, f"{_relative(folder, path)} does not load: {error}"
            ) from None
        anchor = "embeddings.word_embeddings.weight"
        prefixes = [key[: -len(anchor)] for key in raw if key.endswith(anchor)]
        if len(prefixes) != 1:
            raise _not_readable(folder, f"model.safetensors has no single {anchor}")
        prefix = prefixes[0]
        weights = {
            key[len(prefix) :]: value.astype(np.float32, copy=False)
            for key, value in raw.items()
            if key.startswith(prefix) and np.issubdtype(value.dtype, np.floating)
        }

        def get(name: str) -> np.ndarray:
            if name in weights:
                return weights[name]
            legacy = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
            if legacy in weights:
                return weights[legacy]
            raise _not_readable(folder, f"model.safetensors lacks {prefix}{name}")

        for name in (
            "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.weight",
            "embeddings.LayerNorm.bias",
        ):
            weights[name] = get(name)
        layers = []
        for index in range(int(config["num_hidden_layers"])):
            base = f"encoder.layer.{index}."
            layers.append(
                _Layer(
                    *(
                        get(base + part + suffix)
                        for part in (
                            "attention.self.query",
                            "attention.self.key",
                            "attention.self.value",
                            "attention.output.dense",
                            "attention.output.LayerNorm",
                            "intermediate.dense",
                            "output.dense",
                            "output.LayerNorm",
                        )
                        for suffix in (".weight", ".bias")
                    )
                )
            )
        return weights, layers

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
