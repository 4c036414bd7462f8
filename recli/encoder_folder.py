"""Read a saved sentence-transformers folder into what `recli.query_encoder` runs.

`read_encoder` checks and reads `modules.json`, the BERT `config.json`, the sentence-transformers
and tokenizer configs, the Pooling config, `tokenizer.json` (set to truncate and pad as
sentence-transformers' tokenizer call does) and `model.safetensors` (keyed without a `bert.` or
`model.` prefix, cast to float32), and returns them as a `SavedEncoder`. What cannot be read
exactly is refused with a `RecliError` naming the file and the fix; a readable encoder that uses a
piece the forward pass does not implement (an activation, a pooling mode, a default prompt)
raises `UnsupportedEncoderError`.

Apart from the forward pass so the many ways a saved folder can differ (legacy pooling flags,
`LayerNorm.gamma` weights, a tokenizer saved with its own padding) are handled in one place, and
the forward pass only computes. numpy, `tokenizers` and `safetensors` only; no training stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

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
    """A readable encoder that uses a piece (activation, pooling) `recli.query_encoder` lacks."""


@dataclass(frozen=True, slots=True)
class Layer:
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


class SavedEncoder(NamedTuple):
    """What `read_encoder` read, in the order `QueryEncoder` takes it."""

    tokenizer: Tokenizer
    weights: dict[str, np.ndarray]
    layers: list[Layer]
    bert_config: dict[str, Any]
    pooling: tuple[str, ...]
    max_seq_length: int


def read_encoder(directory: Path) -> SavedEncoder:
    """Read a folder saved by `SentenceTransformer.save()`; RecliError if it cannot be read."""
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise RecliError(f"encoder folder {folder} does not exist: {FIX}")
    modules = _read_json(folder, folder / "modules.json")
    transformer_dir, pooling_dir = _module_dirs(folder, modules)

    bert_config = _read_json(folder, transformer_dir / "config.json")
    _check_bert(folder, bert_config)
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
    prompt = _default_prompt(folder)
    if prompt:
        raise UnsupportedEncoderError(
            f"{folder}: the encoder prepends a default prompt ({prompt!r}), which recli's "
            f"light query encoder does not do: {FIX} without a default prompt"
        )

    max_length = _max_seq_length(sentence_config, tokenizer_config, bert_config)
    tokenizer = _tokenizer(folder, transformer_dir, sentence_config, tokenizer_config, max_length)
    weights, layers = _weights(folder, transformer_dir, bert_config)
    return SavedEncoder(tokenizer, weights, layers, bert_config, pooling, max_length)


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


def _default_prompt(folder: Path) -> str:
    """The prompt sentence-transformers would prepend to every text ('' if none)."""
    config = _read_json(folder, folder / "config_sentence_transformers.json", False)
    if not isinstance(config, dict):
        return ""
    name = config.get("default_prompt_name")
    return str((config.get("prompts") or {}).get(name, "")) if name else ""


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
        raise _not_readable(folder, f"{_relative(folder, path)} does not load: {error}") from None
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
        _token_name(tokenizer_config.get("pad_token")) or saved_padding.get("pad_token") or "[PAD]"
    )
    pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.enable_padding(
        direction=str(tokenizer_config.get("padding_side", "right")),
        pad_id=pad_id if pad_id is not None else int(saved_padding.get("pad_id", 0)),
        pad_type_id=int(tokenizer_config.get("pad_token_type_id", 0)),
        pad_token=pad_token,
    )
    return tokenizer


def _weights(
    folder: Path, transformer_dir: Path, config: dict[str, Any]
) -> tuple[dict[str, np.ndarray], list[Layer]]:
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
        raise _not_readable(folder, f"{_relative(folder, path)} does not load: {error}") from None
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
            Layer(
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
