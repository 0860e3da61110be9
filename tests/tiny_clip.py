"""Tiny random image embedders with the real architectures (CLIP, SigLIP, DINOv2), built from configs, and a
tiny SmolVLM (Idefics3) for vision-text-encoding.

Each is 2 layers of width 32 over 32x32 images (DINOv2: 28x28, patches of 14), seeded, saved with its
processor (image processor and, for CLIP and SigLIP, tokenizer) by ``save_pretrained`` and laid into the
test Hugging Face cache under the real repo ids. The CLIP tokenizer is the real ``CLIPTokenizer`` over a
character vocabulary (``a</w>``-style end-of-word pieces, as CLIP's); SigLIP's real tokenizer needs
sentencepiece (not installed here), so its stand-in is a tokenizers-library tokenizer that behaves as
SigLIP's does: ``</s>`` appended and used as padding, ``input_ids`` only (SigLIP attends to its padding),
at most 16 tokens. The SmolVLM stand-in is SmolVLM-256M-Instruct's own architecture (``Idefics3``: a SigLIP-like
vision tower, pixel shuffle, a Llama) at width 32, with its chat template and image splitting (32x32 tiles
of images up to 64 pixels, 4 tokens a tile; Qwen2-VL's processor cannot be built without torchvision).
transformers is imported inside the functions (see ``tiny_models.use_offline_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from tests.tiny_models import CORPUS, build_tokenizer, place_in_hub_cache
from tests.tiny_vlms import SMOLVLM_TEMPLATE

REPOS = {"clip": "openai/clip-vit-base-patch32",
         "siglip": "google/siglip-base-patch16-224",
         "dinov2": "facebook/dinov2-small"}
IMAGE_SIZE = 32
SIGLIP_TEXT_LENGTH = 16   # SigLIP pads every text to this many tokens (the real one: 64)
_SPREAD = 0.2   # initializer_range: random weights large enough for different inputs to land apart
_LAYERS = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               initializer_range=_SPREAD)


def clip_tokenizer():
    """The real ``CLIPTokenizer`` (its lower-casing, splitting and ``</w>`` end-of-word pieces) over every byte
    as a piece, with and without ``</w>``: text becomes characters, then ``<|endoftext|>``."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for piece in alphabet + [ch + "</w>" for ch in alphabet]:
        vocab.setdefault(piece, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def siglip_tokenizer():
    """A stand-in for SigLIP's sentencepiece tokenizer: BPE over ``▁``-marked words, ``</s>`` appended and
    used as padding, no attention mask (SigLIP attends to its padding), ``SIGLIP_TEXT_LENGTH`` tokens at most."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>", unk_token="<unk>",
                                   model_max_length=SIGLIP_TEXT_LENGTH, model_input_names=["input_ids"])


def build_clip(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = clip_tokenizer()
    text = dict(_LAYERS, vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(_LAYERS, image_size=IMAGE_SIZE, patch_size=8)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24,
                                 initializer_range=_SPREAD))
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    CLIPProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def build_siglip(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor, SiglipTextConfig,
                              SiglipVisionConfig)

    tokenizer = siglip_tokenizer()
    # config objects, not dicts: SiglipConfig would first build its defaults' text config (and warn about it)
    text = SiglipTextConfig(**_LAYERS, vocab_size=len(tokenizer), max_position_embeddings=SIGLIP_TEXT_LENGTH,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    vision = SiglipVisionConfig(**_LAYERS, image_size=IMAGE_SIZE, patch_size=8)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision, initializer_range=_SPREAD))
    model.save_pretrained(folder)
    image_processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    SiglipProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def build_dinov2(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                     image_size=28, patch_size=14, initializer_range=_SPREAD))
    model.save_pretrained(folder)
    # DINOv2's own preprocessing (resize the short side, centre-crop), at this model's size
    BitImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": 28, "width": 28},
                         do_convert_rgb=True).save_pretrained(folder)
    return folder


BUILDERS = {"clip": build_clip, "siglip": build_siglip, "dinov2": build_dinov2}

VLM_REPO = "HuggingFaceTB/SmolVLM-256M-Instruct"


def build_smolvlm(folder: Path, seed: int = 0) -> Path:
    """A tiny Idefics3 (SmolVLM's architecture) with its processor: image splitting, row/column tags,
    4 ``<image>`` tokens per 32x32 tile."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor

    from tokenizers import processors

    tokenizer = build_tokenizer()
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)   # a Llama tokenizer's BOS, given with add_special_tokens
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos[0]} $A",
                                                                        pair=f"{bos[0]} $A {bos[0]} $B",
                                                                        special_tokens=[bos])
    tags = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<fake_token_around_image>", "<image>",
                                                                "<end_of_utterance>", "<global-img>"] + tags})
    text = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(Idefics3Config(
        text_config=text, vision_config=dict(_LAYERS, image_size=IMAGE_SIZE, patch_size=8), scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 2 * IMAGE_SIZE},
                                                max_image_size={"longest_edge": IMAGE_SIZE})
    Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                      chat_template=SMOLVLM_TEMPLATE).save_pretrained(folder)
    return folder


def build_all(root: Path, hub_cache: Path) -> Dict[str, Path]:
    """Build the three embedders under ``root`` and place them in ``hub_cache``; returns the folders."""
    folders = {}
    for architecture, build in BUILDERS.items():
        folders[architecture] = build(root / f"tiny-{architecture}")
        place_in_hub_cache(hub_cache, REPOS[architecture], folders[architecture])
    return folders
