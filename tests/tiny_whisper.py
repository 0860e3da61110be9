"""A tiny random Whisper with the real classes, built from configs, for the speech-to-text tests.

The tokenizer is a real ``WhisperTokenizer``: a byte-level BPE trained on ``tiny_models.CORPUS``, then
Whisper's special tokens in Whisper's order (``<|startoftranscript|>``, a token per language,
``<|translate|>``, ``<|transcribe|>``, ..., ``<|notimestamps|>``) and the 1501 timestamp tokens
``<|0.00|>`` .. ``<|30.00|>`` right after it, as ``generate`` and ``_decode_asr`` expect. The
generation config carries ``lang_to_id``, ``task_to_id``, ``no_timestamps_token_id`` and
``alignment_heads`` (word times), and suppresses every token that is not a whole corpus word, so the
random model writes words, and every time past its window. The model is 2 encoder and 2 decoder layers of width 32 over the real 80 mel
bins, seeded; its timestamp embeddings are scaled down so that text comes between the times. It reads
3 s windows (150 encoder positions, the feature extractor's ``chunk_length: 3``) where the real Whisper
reads 30 s (1500): the same 0.02 s per timestamp token, a tenth of the work. Saved with its processor
and laid into the test hub cache under real ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.tiny_models import CORPUS, place_in_hub_cache

REPOS = ("openai/whisper-tiny", "openai/whisper-small")
SAMPLING_RATE = 16000
WINDOW = 3   # seconds a forward pass reads: the real 30 s would make every test ten times slower


def build_tokenizer() -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    trained = json.loads(bpe.to_str())["model"]
    tokenizer = WhisperTokenizer(vocab=trained["vocab"], merges=[tuple(m) for m in trained["merges"]])
    specials = (["<|startoftranscript|>"] + [f"<|{code}|>" for code in LANGUAGES] +
                ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"])
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False) for i in range(1501)])
    return tokenizer


def build(folder: Path, seed: int = 1) -> Path:
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    eos, start, no_timestamps = ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|notimestamps|>")
    words = {w.strip(".,!?:").lower() for line in CORPUS for w in line.split()}
    suppress = sorted(i for token, i in tokenizer.get_vocab().items() if i < no_timestamps and i != eos
                      and not (token.startswith("Ġ") and token[1:].lower() in words) and token not in (".", ","))
    suppress += list(range(no_timestamps + 1 + WINDOW * 50 + 1, len(tokenizer)))   # no time past the window
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           max_source_positions=WINDOW * 50, max_target_positions=448, pad_token_id=eos, bos_token_id=eos,
                           eos_token_id=eos, decoder_start_token_id=start, init_std=0.5)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():   # timestamps less likely than words, so segments hold text
        model.model.decoder.embed_tokens.weight[no_timestamps + 1:] *= 0.3
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos, max_length=64,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=no_timestamps, prev_sot_token_id=ids("<|startofprev|>"), is_multilingual=True,
        alignment_heads=[[1, 0], [1, 1]], max_initial_timestamp_index=50, suppress_tokens=suppress,
        begin_suppress_tokens=[eos])
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLING_RATE, chunk_length=WINDOW),
                     tokenizer).save_pretrained(folder)
    return folder


def build_all(root: Path, hub_cache: Path) -> Path:
    """Build the tiny Whisper under ``root`` and place it in ``hub_cache`` under :data:`REPOS`."""
    folder = build(root / "tiny-whisper")
    for repo in REPOS:
        place_in_hub_cache(hub_cache, repo, folder)
    return folder


# ------------------------------------------------------------------------------------------------
# Sounds to transcribe: tones and chirps (the random model writes different words for different sounds)


def tone(frequency: float, seconds: float = 2.0, rate: int = SAMPLING_RATE, amplitude: float = 0.5) -> Any:
    import numpy as np
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def chirp(start: float, end: float, seconds: float = 2.0, rate: int = SAMPLING_RATE) -> Any:
    """A sweep from ``start`` to ``end`` Hz."""
    import numpy as np
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * (start * t + (end - start) * t * t / (2 * seconds)))).astype(np.float32)


def wav_bytes(samples: Any, rate: int = SAMPLING_RATE) -> bytes:
    """16-bit PCM WAV of float samples (what a recorder saves)."""
    from mc_jupyter.media import Audio
    return Audio.from_array(samples, rate).data
