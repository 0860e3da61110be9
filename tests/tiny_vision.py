"""Tiny random dense-vision models of the real classes, built from configs, and the pictures they see.

YOLOS and RT-DETR (object detection), SAM and SegFormer (segmentation), Depth Anything and DPT (depth), SegFormer with
a background class and a BiRefNet-style repository-code model (background removal): each 1 to 4 layers
of width 8 to 32 over 28 to 64 pixel inputs, seeded, saved with its image processor by
``save_pretrained`` and laid into the test Hugging Face cache under the real repo ids. None needs timm or
torchvision. Parameters a real checkpoint trains but the config initialises flat (YOLOS's detection
tokens, SAM's IoU head) are drawn at random, so different boxes, classes and scores come out.
transformers is imported inside the functions (see ``tiny_models.use_offline_cache``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

from tests.tiny_models import place_in_hub_cache

YOLOS = "hustvl/yolos-tiny"
RT_DETR = "PekingU/rtdetr_r18vd"
SAM = "facebook/sam-vit-base"
SEGFORMER = "nvidia/segformer-b0-finetuned-ade-512-512"
DEPTH_ANYTHING = "depth-anything/Depth-Anything-V2-Small-hf"
DPT = "Intel/dpt-large"
CLOTHES = "mattmdjaga/segformer_b2_clothes"
BIREFNET = "ZhengPeng7/BiRefNet"

DETECTOR_CLASSES = ["person", "cat", "dog", "car"]
ADE_CLASSES = ["wall", "building", "sky", "floor", "tree"]
CLOTHES_CLASSES = ["Background", "Hat", "Hair", "Upper-clothes"]


def _labels(names: Sequence[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def build_yolos(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(seed)
    config = YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         image_size=[32, 48], patch_size=8, num_detection_tokens=12, initializer_range=0.2,
                         **_labels(DETECTOR_CLASSES))
    model = YolosForObjectDetection(config)
    with torch.no_grad():
        for name, weights in model.named_parameters():
            if weights.dim() > 1 and not weights.any():       # tokens and positions the config leaves at zero
                weights.normal_(0, 1)
        model.class_labels_classifier.layers[2].weight.normal_(0, 0.3)
        model.class_labels_classifier.layers[2].bias[-1] = -2.0     # "no object" less likely than a class
    model.save_pretrained(folder)
    YolosImageProcessor(size={"shortest_edge": 32, "longest_edge": 64}).save_pretrained(folder)
    return folder


def build_rt_detr(folder: Path, seed: int = 0) -> Path:
    """RT-DETR's classes: its own ResNet backbone (no timm), a hybrid encoder over three feature levels, a
    one-layer deformable decoder of 12 queries, sigmoid class scores; weights drawn wide (initializer_range)
    so that queries score apart."""
    import torch
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig
    from transformers.models.rt_detr.image_processing_pil_rt_detr import RTDetrImageProcessorPil

    torch.manual_seed(seed)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"],
                                  downsample_in_bottleneck=False)
    config = RTDetrConfig(backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[16, 24, 32],
                          feat_strides=[8, 16, 32], encoder_layers=1, encoder_ffn_dim=32, encoder_attention_heads=2,
                          d_model=16, num_queries=12, decoder_layers=1, decoder_ffn_dim=32, decoder_attention_heads=2,
                          decoder_in_channels=[16, 16, 16], num_feature_levels=3, decoder_n_points=2, num_denoising=0,
                          anchor_image_size=None, initializer_range=0.2, **_labels(DETECTOR_CLASSES))
    RTDetrForObjectDetection(config).save_pretrained(folder)
    RTDetrImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def build_sam(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    torch.manual_seed(seed)
    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16,
                           output_channels=32, window_size=2, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16, image_embedding_size=4,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))
    model = SamModel(config)
    with torch.no_grad():      # predicted IoUs spread around 0.6 (a trained SAM's are 0.5 to 1)
        model.mask_decoder.iou_prediction_head.proj_out.weight.normal_(0, 2.0)
        model.mask_decoder.iou_prediction_head.proj_out.bias.fill_(0.6)
        model.mask_decoder.output_hypernetworks_mlps.apply(lambda m: m.weight.data.normal_(0, 2.0) if hasattr(m, "weight") else None)
    model.save_pretrained(folder)
    image_processor = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=image_processor).save_pretrained(folder)
    return folder


def build_segformer(folder: Path, classes: Sequence[str], seed: int = 0) -> Path:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(seed)
    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                             decoder_hidden_size=16, initializer_range=0.2, **_labels(classes))
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def build_depth_anything(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTImageProcessor

    torch.manual_seed(seed)
    backbone = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                    intermediate_size=64, image_size=28, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                    out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, patch_size=14, initializer_range=0.2)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3).save_pretrained(folder)   # as the real one: bicubic, aspect kept, multiples of 14
    return folder


def build_dpt(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(seed)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32,
                       patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16, is_hybrid=False, initializer_range=0.2)
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


#: A BiRefNet-style repository (``config.json``'s ``auto_map``): its code comes with it, as the real one's
#: does; a forward over an image batch gives a list of logit maps, the finest last.
BIREFNET_CONFIG_CODE = '''
from transformers import PretrainedConfig


class BiRefNetConfig(PretrainedConfig):
    model_type = "SwinUNet"

    def __init__(self, channels=8, **kwargs):
        self.channels = channels
        super().__init__(**kwargs)
'''
BIREFNET_CODE = '''
import torch
from torch import nn
from transformers import PreTrainedModel

from .BiRefNet_config import BiRefNetConfig


class BiRefNet(PreTrainedModel):
    config_class = BiRefNetConfig

    def __init__(self, config):
        super().__init__(config)
        self.encoder = nn.Conv2d(3, config.channels, 3, stride=2, padding=1)
        self.coarse = nn.Conv2d(config.channels, 1, 1)
        self.fine = nn.Conv2d(config.channels + 3, 1, 3, padding=1)
        self.post_init()

    def forward(self, x):
        features = torch.relu(self.encoder(x))
        coarse = self.coarse(features)
        up = nn.functional.interpolate(features, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return [coarse, self.fine(torch.cat([up, x], dim=1))]
'''


def build_birefnet(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForImageSegmentation

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "BiRefNet_config.py").write_text(BIREFNET_CONFIG_CODE)
    (folder / "birefnet.py").write_text(BIREFNET_CODE)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BiRefNet"], "model_type": "SwinUNet", "channels": 8,
        "auto_map": {"AutoConfig": "BiRefNet_config.BiRefNetConfig",
                     "AutoModelForImageSegmentation": "birefnet.BiRefNet"}}))
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModelForImageSegmentation.from_config(config, trust_remote_code=True)
    with torch.no_grad():
        for weights in model.parameters():
            weights.normal_(0, 0.3)
    model.save_pretrained(folder)
    return folder


def build_all(root: Path, hub_cache: Path) -> Dict[str, Path]:
    """Build every tiny vision model under ``root`` and place it in ``hub_cache``; returns the folders by repo id."""
    builders = {YOLOS: build_yolos, RT_DETR: build_rt_detr, SAM: build_sam, SEGFORMER: lambda f: build_segformer(f, ADE_CLASSES),
                DEPTH_ANYTHING: build_depth_anything, DPT: build_dpt,
                CLOTHES: lambda f: build_segformer(f, CLOTHES_CLASSES, seed=1), BIREFNET: build_birefnet}
    folders = {}
    for repo, build in builders.items():
        folders[repo] = build(root / repo.replace("/", "--"))
        place_in_hub_cache(hub_cache, repo, folders[repo])
    return folders


# ------------------------------------------------------------------------------------------------
# Pictures


def scene(seed: int, size=(96, 64)) -> Any:
    """A gradient background with two coloured rectangles on it, different for each seed."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.linspace(0, 1, height)[:, None, None], np.linspace(0, 1, width)[None, :, None]
    a, b = rng.integers(0, 256, (2, 3)).astype(float)
    pixels = a * (1 - x) * (1 - y) + b * x * y + 60 * (1 - x) * y
    for _ in range(2):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        pixels[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def scenes(count: int, size=(96, 64)) -> List[Any]:
    return [scene(seed, size) for seed in range(count)]
