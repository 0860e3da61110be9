"""Tiny SDXL, Flux and HunyuanDiT pipelines with the real diffusers classes, built offline.

In the style of diffusers' own ``get_dummy_components``: seeded random weights from configs a few
channels wide, two layers deep, with a VAE that downsamples by 8 as the real ones do. Tokenizers are
built in memory (no sentencepiece files): a character-level CLIP BPE, a character-level T5 unigram
and a small BERT word-piece vocabulary. Each pipeline is saved with ``save_pretrained`` and laid
out in the test hub cache under the real repo id, so ``from_pretrained`` runs the hub code path.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Dict

from tests.tiny_models import place_in_hub_cache

REPOS = {"sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
         "flux": "black-forest-labs/FLUX.1-dev",
         "hunyuan": "Tencent-Hunyuan/HunyuanDiT-Diffusers"}

_CHARS = string.ascii_letters + string.digits + string.punctuation


def clip_tokenizer():
    """A character-level CLIP BPE: every byte-level character, alone and word-final; no merges."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in alphabet:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer():
    """A character-level T5 unigram tokenizer (pad, eos, unk, then word starts and characters)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in _CHARS] + [("\u2581" + c, -2.5) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=256)


def bert_tokenizer():
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(_CHARS.lower()) + ["##" + c for c in _CHARS.lower()]
    return BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}, model_max_length=77)


def clip_text_config(**extra):
    from transformers import CLIPTextConfig
    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
                          num_attention_heads=4, num_hidden_layers=2, vocab_size=1000, hidden_act="gelu",
                          max_position_embeddings=77, **extra)


def t5_encoder(d_model: int = 32):
    from transformers import T5Config, T5EncoderModel
    return T5EncoderModel(T5Config(vocab_size=256, d_model=d_model, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1))


def vae(latent_channels: int = 4, **extra):
    """Downsamples by 8 (four blocks), as the real SDXL, Flux and HunyuanDiT VAEs do."""
    from diffusers import AutoencoderKL
    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(4, 8, 8, 8), layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         latent_channels=latent_channels, norm_num_groups=2, sample_size=64, **extra)


def sdxl():
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=4)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=vae(), text_encoder=CLIPTextModel(clip_text_config()), tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(clip_text_config(projection_dim=32)), tokenizer_2=clip_tokenizer(),
        unet=unet, scheduler=scheduler)


def flux():
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae(4, use_quant_conv=False, use_post_quant_conv=False,
                                                             shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModel(clip_text_config()), tokenizer=clip_tokenizer(),
        text_encoder_2=t5_encoder(), tokenizer_2=t5_tokenizer(), transformer=transformer)


def hunyuan():
    import torch
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    transformer = HunyuanDiT2DModel(sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8,
                                    num_attention_heads=3, in_channels=4, cross_attention_dim=32,
                                    cross_attention_dim_t5=32, pooled_projection_dim=16, hidden_size=24,
                                    activation_fn="gelu-approximate")
    bert = BertModel(BertConfig(vocab_size=200, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                num_attention_heads=4, max_position_embeddings=128))
    return HunyuanDiTPipeline(vae=vae(), text_encoder=bert, tokenizer=bert_tokenizer(), transformer=transformer,
                              scheduler=DDPMScheduler(), safety_checker=None, feature_extractor=None,
                              requires_safety_checker=False, text_encoder_2=t5_encoder(), tokenizer_2=t5_tokenizer())


BUILDERS = {"sdxl": sdxl, "flux": flux, "hunyuan": hunyuan}


def build_all(root: Path, hub_cache: Path) -> Dict[str, Path]:
    """Save each tiny pipeline under ``root`` and place it in ``hub_cache`` under its real repo id."""
    folders: Dict[str, Path] = {}
    for name, build in BUILDERS.items():
        folder = root / f"tiny-{name}"
        if not (folder / "model_index.json").exists():
            build().save_pretrained(folder)
        place_in_hub_cache(hub_cache, REPOS[name], folder)
        folders[name] = folder
    return folders
