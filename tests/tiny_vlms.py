"""Tiny random vision-language models with the real classes (Idefics3/SmolVLM, LLaVA, LLaVA-NeXT, LightOnOCR),
built from configs.

Each has 2 layers of width 32 over 32x32 images (patches of 8), a byte-level BPE tokenizer trained on a
few sentences with the model's own special tokens, the real model card's chat template, and its real
processor class; it is seeded, saved with ``save_pretrained`` and laid into the test Hugging Face cache
under the real repo ids. The weights are initialised wide (``initializer_range``) so that different
images give different greedy replies, and the generation config has no end-of-sequence token, so every
reply runs to ``max_output_length`` (a random model would stop at a random point).

Qwen2-VL (:func:`build_qwen2_vl`) is built apart: transformers 5.25 builds its processor with a video
processor that needs torchvision, which this machine does not have (design.md), so its processor files
are written as ``save_pretrained`` lays them out, and loading it here fails with the driver's message.
transformers is imported inside the functions (see ``tiny_models.use_offline_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from tests.tiny_models import CORPUS, place_in_hub_cache

REPOS = {"idefics3": ("HuggingFaceTB/SmolVLM-256M-Instruct", "HuggingFaceTB/SmolVLM-Instruct"),
         "llava": ("llava-hf/llava-1.5-7b-hf",), "llava-next": ("llava-hf/llava-v1.6-vicuna-7b-hf",),
         "lighton-ocr": ("lightonai/LightOnOCR-1B-1025",)}
IMAGE_SIZE, PATCH = 32, 8
_SPREAD = 0.2   # initializer_range: random weights large enough for the image to steer the text
_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=512, initializer_range=_SPREAD)
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               image_size=IMAGE_SIZE, patch_size=PATCH, initializer_range=_SPREAD)

#: HuggingFaceTB/SmolVLM-256M-Instruct's chat template.
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == "
    "'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
#: Qwen/Qwen2-VL-2B-Instruct's chat template.
QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}")
#: llava-hf/llava-1.5-7b-hf's chat template.
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', "
    "'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr("
    "'type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def build_tokenizer(specials: Sequence[str], **roles: str):
    """A BPE tokenizer over the test corpus in SentencePiece's style (``▁`` for spaces: replies decode to
    readable word pieces), ``<unk>`` and ``specials`` first, with ``roles`` (bos/eos/pad tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", *specials], show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **roles)


def _generation_config(tokenizer):
    from transformers import GenerationConfig
    return GenerationConfig(bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)


def _save(folder: Path, model, processor, tokenizer) -> Path:
    """The model (with a generation config that has no end-of-sequence token) and its processor in ``folder``."""
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_idefics3(folder: Path, seed: int = 0) -> Path:
    """SmolVLM-256M-Instruct's classes (Idefics3): SigLIP-like vision tower, pixel shuffle, Llama text model."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    tokenizer = build_tokenizer(["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
                                 "<image>", "<global-img>"],
                                bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|endoftext|>")
    scale = 2
    image_processor = Idefics3ImageProcessor(size={"longest_edge": IMAGE_SIZE}, do_image_splitting=False,
                                             max_image_size={"longest_edge": IMAGE_SIZE})
    processor = Idefics3Processor(image_processor, tokenizer, chat_template=SMOLVLM_TEMPLATE,
                                  image_seq_len=(IMAGE_SIZE // PATCH) ** 2 // scale ** 2)
    torch.manual_seed(seed)
    config = Idefics3Config(vision_config=_VISION, scale_factor=scale, initializer_range=_SPREAD,
                            text_config=dict(_TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id)
    return _save(folder, Idefics3ForConditionalGeneration(config), processor, tokenizer)


def _build_llava_family(folder: Path, seed: int, image_processor, processor_cls, config_cls, model_cls,
                        **config_extra) -> Path:
    """llava and llava-next share all but the image processor and their classes: a CLIP vision tower, a
    two-layer projector, a Llama text model, the ``<image>`` token, the vicuna template."""
    import torch

    tokenizer = build_tokenizer(["<s>", "</s>", "<pad>", "<image>"], bos_token="<s>", eos_token="</s>",
                                pad_token="<pad>")
    processor = processor_cls(image_processor, tokenizer, patch_size=PATCH, vision_feature_select_strategy="default",
                              num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
    torch.manual_seed(seed)
    config = config_cls(vision_config=dict(_VISION, model_type="clip_vision_model", projection_dim=32),
                        text_config=dict(_TEXT, model_type="llama", vocab_size=len(tokenizer),
                                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                         eos_token_id=tokenizer.eos_token_id),
                        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                        vision_feature_select_strategy="default", projector_hidden_act="gelu", **config_extra)
    return _save(folder, model_cls(config), processor, tokenizer)


def build_llava(folder: Path, seed: int = 0) -> Path:
    """llava-1.5's classes: a CLIP vision tower, a two-layer projector, a Llama text model."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return _build_llava_family(folder, seed, image_processor, LlavaProcessor, LlavaConfig, LlavaForConditionalGeneration)


def build_llava_next(folder: Path, seed: int = 0) -> Path:
    """llava-v1.6's classes (LLaVA-NeXT): llava's, plus "any resolution": the image is also cut into tiles on
    the best of a grid of shapes (32x32, 32x64, 64x32 here), each tile's features beside the whole image's.
    The vicuna form of the template (llava-1.5's)."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    grid = [[IMAGE_SIZE, IMAGE_SIZE], [IMAGE_SIZE, 2 * IMAGE_SIZE], [2 * IMAGE_SIZE, IMAGE_SIZE]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, image_grid_pinpoints=grid,
                                                 crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return _build_llava_family(folder, seed, image_processor, LlavaNextProcessor, LlavaNextConfig,
                               LlavaNextForConditionalGeneration, image_grid_pinpoints=grid)


#: A ChatML template with LightOnOCR's image token (Qwen3's chat form, an image part as ``<|image_pad|>``).
LIGHTON_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|image_pad|>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_lighton_ocr(folder: Path, seed: int = 0) -> Path:
    """LightOnOCR's classes: a Pixtral vision tower (images at their own aspect, patches merged 2x2) and a
    Qwen3 text model; the tokenizer names its image, row-break and end tokens, as the processor reads them."""
    import torch
    from transformers import LightOnOcrConfig, LightOnOcrForConditionalGeneration, LightOnOcrProcessor
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_pad|>", "<|vision_end|>"]
    tokenizer = build_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                extra_special_tokens={"image_token": "<|image_pad|>", "image_break_token": "<|vision_pad|>",
                                                      "image_end_token": "<|vision_end|>"})
    patch, merge = 4, 2
    processor = LightOnOcrProcessor(PixtralImageProcessorPil(size={"longest_edge": IMAGE_SIZE}, patch_size=patch),
                                    tokenizer, patch_size=patch, spatial_merge_size=merge,
                                    chat_template=LIGHTON_TEMPLATE)
    torch.manual_seed(seed)
    config = LightOnOcrConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           head_dim=16, image_size=IMAGE_SIZE, patch_size=patch),
        text_config=dict(_TEXT, vocab_size=len(tokenizer), head_dim=8, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        spatial_merge_size=merge, image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"))
    return _save(folder, LightOnOcrForConditionalGeneration(config), processor, tokenizer)


def build_qwen2_vl(folder: Path, seed: int = 0) -> Path:
    """Qwen2-VL's classes: a patch-merging vision tower and a Qwen2 text model with multimodal rotary positions.
    The processor's files are written one by one (its class cannot be built without torchvision)."""
    import json

    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
    tokenizer = build_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    patch, merge = 4, 2
    torch.manual_seed(seed)
    config = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=patch,
                           spatial_merge_size=merge, temporal_patch_size=2, initializer_range=_SPREAD),
        text_config=dict(_TEXT, vocab_size=len(tokenizer), num_attention_heads=2, num_key_value_heads=1,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(folder)
    Qwen2VLImageProcessor(patch_size=patch, merge_size=merge, temporal_patch_size=2, min_pixels=IMAGE_SIZE ** 2,
                          max_pixels=IMAGE_SIZE ** 2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(QWEN2_VL_TEMPLATE)
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2VLProcessor"}))
    return folder


BUILDERS = {"idefics3": build_idefics3, "llava": build_llava, "llava-next": build_llava_next,
            "lighton-ocr": build_lighton_ocr}


def build_all(root: Path, hub_cache: Path) -> Dict[str, Path]:
    """Build the tiny VLMs under ``root`` and place them in ``hub_cache``; returns the folders."""
    folders = {}
    for architecture, build in BUILDERS.items():
        folders[architecture] = build(root / f"tiny-{architecture}")
        for repo in REPOS[architecture]:
            place_in_hub_cache(hub_cache, repo, folders[architecture])
    return folders
