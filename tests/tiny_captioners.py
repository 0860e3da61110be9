"""Tiny random image captioners with the real architectures (BLIP, GIT, ViT-GPT2), built from configs.

Each is 2 layers of width 32 over 32x32 images, seeded, saved with its processor by
``save_pretrained`` and laid into the test Hugging Face cache under the real repo ids. The weights
are initialised wider than usual (``initializer_range``) so that different images give different
greedy captions. transformers is imported inside the functions (see ``tiny_models.use_offline_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from tests.tiny_models import build_tokenizer, minilm_folder, place_in_hub_cache

REPOS = {"blip": ("Salesforce/blip-image-captioning-large", "Salesforce/blip-image-captioning-base"),
         "git": ("microsoft/git-base",),
         "vit-gpt2": ("nlpconnect/vit-gpt2-image-captioning",)}
IMAGE_SIZE = 32
_SPREAD = 0.2   # initializer_range: random weights large enough for the image to steer the text
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               image_size=IMAGE_SIZE, patch_size=8, initializer_range=_SPREAD)


def build_blip(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (AutoTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})   # BLIP's decoder starts from [DEC], as the real one
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=128,
                bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id, initializer_range=_SPREAD)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=_VISION, projection_dim=32,
                                                    initializer_range=_SPREAD))
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    model.save_pretrained(folder)
    BlipProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def build_git(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(seed)
    config = GitConfig(vision_config=_VISION, vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=128,
                       bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                       pad_token_id=tokenizer.pad_token_id, initializer_range=_SPREAD)
    model = GitForCausalLM(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    model.save_pretrained(folder)
    GitProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def build_vit_gpt2(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (GPT2Config, ViTConfig, ViTImageProcessor, VisionEncoderDecoderConfig,
                              VisionEncoderDecoderModel)

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    decoder = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         initializer_range=_SPREAD)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(ViTConfig(**_VISION), decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


BUILDERS = {"blip": build_blip, "git": build_git, "vit-gpt2": build_vit_gpt2}


def build_all(root: Path, hub_cache: Path) -> Dict[str, Path]:
    """Build the three captioners under ``root`` and place them in ``hub_cache``; returns the folders."""
    folders = {}
    for architecture, build in BUILDERS.items():
        folders[architecture] = build(root / f"tiny-{architecture}")
        for repo in REPOS[architecture]:
            place_in_hub_cache(hub_cache, repo, folders[architecture])
    return folders
