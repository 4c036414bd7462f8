"""A tiny randomly initialised BERT sentence encoder (with the real packaged tokenizer).

Tests use it instead of the real MiniLM weights: same code paths, a fraction of the time.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_encoder(directory: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT with mean pooling as a sentence-transformers model directory."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pipeline.encoder import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("packaged:all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    transformer_dir = directory / "transformer"
    BertModel(config).save_pretrained(transformer_dir)
    tokenizer.save_pretrained(transformer_dir)
    transformer = Transformer(str(transformer_dir), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    encoder_dir = directory / "encoder"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(encoder_dir))
    return encoder_dir
