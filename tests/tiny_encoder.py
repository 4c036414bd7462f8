"""A tiny randomly initialised BERT sentence encoder (with the real packaged tokenizer).

Tests use it instead of the real MiniLM weights: same code paths, a fraction of the time.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_encoder(
    directory: Path,
    seed: int = 0,
    width: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 128,
) -> Path:
    """Save a small random BERT (by default 2 layers, 32 wide) with mean pooling as a
    sentence-transformers model directory; it reads at most half its positions."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pipeline.models.encoder import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("packaged:all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * width,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    transformer_dir = directory / "transformer"
    BertModel(config).save_pretrained(transformer_dir)
    tokenizer.save_pretrained(transformer_dir)
    transformer = Transformer(str(transformer_dir), max_seq_length=max_positions // 2)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    encoder_dir = directory / "encoder"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(encoder_dir))
    return encoder_dir
