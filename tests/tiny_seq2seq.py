"""Tiny random seq2seq models (T5, BART, Marian, NLLB) and cross-encoders, built from configs.

Each is 2 layers of width 32, seeded, with a real tokenizer trained here on a few sentences (T5's and
Marian's a unigram model, BART's a byte-level BPE, NLLB's a BPE with its 200 language tokens), saved
with ``save_pretrained`` and laid into the test Hugging Face cache under the real repo ids. The weights
are initialised wider than usual so that different inputs give different greedy outputs. The
cross-encoders are BERT sequence classifiers (one logit, as ms-marco-MiniLM and bge-reranker have) with
the all-MiniLM-L6-v2 tokenizer. transformers is imported inside the functions
(see ``tiny_models.use_offline_cache``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from tests.tiny_models import CORPUS, minilm_folder, place_in_hub_cache

REPOS = {"t5": ("google-t5/t5-small", "t5-small"),
         "bart": ("facebook/bart-large-cnn",),
         "marian": ("Helsinki-NLP/opus-mt-en-fr",),
         "nllb": ("facebook/nllb-200-distilled-600M",),
         "cross-encoder": ("cross-encoder/ms-marco-MiniLM-L-6-v2", "BAAI/bge-reranker-base")}
#: Initializer spreads (each family's own knob), picked so that different inputs give different greedy
#: outputs and beam search differs from greedy decoding.
_SPREAD = {"t5": 2.4, "marian": 0.12, "bart": 0.3, "nllb": 0.5, "cross-encoder": 0.1}
_TEXTS = CORPUS + [
    "Le ciel est bleu parce que l'air diffuse la lumière bleue.",
    "Il était une fois un petit robot qui aimait lire des livres.",
    "The Eiffel Tower is in Paris. It is 330 metres tall and was finished in 1889.",
    "summarize: translate English to French: a summary of the article.",
] * 4
#: BART-CNN's generation config, shortened: what a model card's tuned defaults look like.
BART_GENERATION = dict(max_length=24, min_length=4, num_beams=4, length_penalty=2.0, no_repeat_ngram_size=3,
                       early_stopping=True)


def _unigram_vocab() -> List[Tuple[str, float]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(_TEXTS, trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>", show_progress=False))
    return [tuple(piece) for piece in json.loads(tok.to_str())["model"]["vocab"]]


def _bpe(byte_level: bool, specials: List[str]) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False) if byte_level else pre_tokenizers.Metaspace()
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    tok.train_from_iterator(_TEXTS, trainers.BpeTrainer(vocab_size=500, special_tokens=specials,
                                                        initial_alphabet=alphabet, show_progress=False))
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def unigram_tokenizer():
    """A T5 tokenizer (unigram, the sentencepiece model kind) over the test sentences."""
    from transformers import T5Tokenizer
    return T5Tokenizer(vocab=_unigram_vocab(), extra_ids=0)


def build_t5(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = unigram_tokenizer()
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id, initializer_factor=_SPREAD["t5"])
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_marian(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import MarianConfig, MarianMTModel

    tokenizer = unigram_tokenizer()     # Marian's own is sentencepiece too (the package is not installed here)
    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                          forced_eos_token_id=tokenizer.eos_token_id, scale_embedding=False,
                          init_std=_SPREAD["marian"])
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _bart_config(cls, vocab: int, tokenizer, spread: float, **extra):
    return cls(vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=512,
               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, init_std=spread, **extra)


def build_bart(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer, GenerationConfig

    vocab, merges = _bpe(True, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = BartTokenizer(vocab=vocab, merges=merges)
    torch.manual_seed(seed)
    config = _bart_config(BartConfig, len(tokenizer), tokenizer, _SPREAD["bart"],
                          decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    model = BartForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.eos_token_id, forced_bos_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id, **BART_GENERATION)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_nllb(folder: Path, seed: int = 0) -> Path:
    """An NLLB stand-in: M2M100 (NLLB's model class) with an NllbTokenizer, whose language tokens
    (``eng_Latn``, ``fra_Latn``...) are special tokens after the BPE vocabulary."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    vocab, merges = _bpe(False, ["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer = NllbTokenizer(vocab=vocab, merges=merges, src_lang="eng_Latn")
    torch.manual_seed(seed)
    config = _bart_config(M2M100Config, len(tokenizer), tokenizer, _SPREAD["nllb"],
                          decoder_start_token_id=tokenizer.eos_token_id, scale_embedding=True)
    M2M100ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_cross_encoder(folder: Path, seed: int = 0, num_labels: int = 1) -> Path:
    """A BERT cross-encoder: (query, passage) -> one relevance logit (``num_labels: 2``: the last is "relevant")."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=128, num_labels=num_labels,
                        initializer_range=_SPREAD["cross-encoder"])
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


BUILDERS = {"t5": build_t5, "bart": build_bart, "marian": build_marian, "nllb": build_nllb,
            "cross-encoder": build_cross_encoder}


def build_all(root: Path, hub_cache: Path, names: Iterable[str] = tuple(BUILDERS)) -> Dict[str, Path]:
    """Build the ``names`` models under ``root`` and place them in ``hub_cache`` under their real ids; returns
    the folders (with the cross-encoder, ``two-label``: one with two outputs, kept local)."""
    folders = {}
    for name in names:
        folders[name] = BUILDERS[name](root / f"tiny-{name}")
        for repo in REPOS[name]:
            place_in_hub_cache(hub_cache, repo, folders[name])
    if "cross-encoder" in folders:
        folders["two-label"] = build_cross_encoder(root / "tiny-two-label", seed=1, num_labels=2)
    return folders
