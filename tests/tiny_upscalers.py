"""Tiny seeded upscalers saved in the layouts their authors publish, under their published names.

* ``RealESRGAN_x4plus.pth``: RRDBNet x4 as ``{"params_ema": state}`` (Real-ESRGAN's releases);
* ``RRDB_ESRGAN_x4.pth``: the same weights under the original ESRGAN names (``model.0.weight``,
  ``model.1.sub.N.RDB1.conv1.0.weight``, ...), a bare state dict;
* ``RealESRGAN_x2plus.pth``: RRDBNet x2 (pixel-unshuffle input) as ``{"params_ema": state}``;
* ``001_classicalSR_DIV2K_s48w8_SwinIR-M_x4.pth``: SwinIR x4 (pixelshuffle) as ``{"params": state}``,
  with the ``relative_position_index`` and ``attn_mask`` buffers SwinIR saves;
* ``tiny-realesrgan-x4.safetensors``: the x4 RRDBNet weights as a flat safetensors file;
* an LDM super-resolution pipeline (UNet2DModel + VQModel + DDIM, diffusers' own test style) saved
  with ``save_pretrained``.

Widths are small but the published constants stay (ESRGAN's 32 growth channels, SwinIR's 64 features):
spandrel, like the authors' code, reads those as fixed. :func:`spandrel_nets` builds tiny seeded nets of
the architectures only spandrel loads, from spandrel's own classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch

from mc_jupyter.drivers.upscale_nets import RRDBNet, SwinIR, relative_position_index, shifted_window_mask

LDSR_REPO = "CompVis/ldm-super-resolution-4x-openimages"
SWINIR_NAME = "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4"
SWINIR_TRAIN_SIZE = 8   # the attn_mask SwinIR saves is for its training patch size


def _randomise(net: torch.nn.Module, seed: int, centre: float = 0.5) -> torch.nn.Module:
    """Seeded weights large enough that the output differs from pixel to pixel, centred on grey."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (0.1 if name.endswith("weight") else 0.05))
        net.conv_last.bias.fill_(centre)
    return net.eval()


RRDB_SIZE = dict(num_feat=8, num_block=1, num_grow_ch=32)
SWINIR_SIZE = dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4, num_feat=64, scale=4)


def rrdb(scale: int = 4, seed: int = 0) -> RRDBNet:
    return _randomise(RRDBNet(scale=scale, **RRDB_SIZE), seed)


def swinir(seed: int = 2) -> SwinIR:
    net = SwinIR(**SWINIR_SIZE)
    return _randomise(net, seed, centre=0.0)   # SwinIR adds the DIV2K mean back itself


def old_esrgan_keys(state: Dict[str, torch.Tensor], num_block: int) -> Dict[str, torch.Tensor]:
    """RRDBNet's state under the 2018 ESRGAN names (``model.N`` Sequential indices)."""
    fixed = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
             "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for key, value in state.items():
        head, _, param = key.rpartition(".")
        if head in fixed:
            out[f"{fixed[head]}.{param}"] = value
        else:   # body.N.rdbK.convJ
            _, n, rdb, conv = head.split(".")
            out[f"model.1.sub.{n}.RDB{rdb[-1]}.{conv}.0.{param}"] = value
    return out


def swinir_published_state(net: SwinIR) -> Dict[str, torch.Tensor]:
    """The state dict as SwinIR saves it: with the derived buffers its own module registers."""
    state = dict(net.state_dict())
    for i, layer in enumerate(net.layers):
        for j, block in enumerate(layer.residual_group.blocks):
            prefix = f"layers.{i}.residual_group.blocks.{j}."
            state[prefix + "attn.relative_position_index"] = relative_position_index(block.ws)
            if block.shift:
                state[prefix + "attn_mask"] = shifted_window_mask(SWINIR_TRAIN_SIZE, SWINIR_TRAIN_SIZE,
                                                                  block.ws, block.shift)
    return state


def spandrel_nets(seed: int = 5) -> Dict[str, torch.nn.Module]:
    """Tiny seeded nets of the architectures only spandrel loads, by the name of a published file of each:
    Real-ESRGAN's two Compact models (SRVGGNetCompact), HAT, DAT, Swin2SR, and the 2018 ESRGAN layout
    (``model.N``) at x8 and x2."""
    from mc_jupyter.drivers.upscale_nets import import_spandrel
    import_spandrel()   # without torchvision, spandrel imports only through it
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.Swin2SR import Swin2SR

    torch.manual_seed(seed)
    nets = {"realesr-general-x4v3": Compact(num_feat=8, num_conv=4, upscale=4),
            "realesr-animevideov3": Compact(num_feat=8, num_conv=2, upscale=4),
            "HAT_SRx4": HAT(img_size=16, embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, compress_ratio=3,
                            squeeze_factor=4, mlp_ratio=2.0, upscale=4),
            "DAT_x2": DAT(img_size=16, embed_dim=32, split_size=[2, 4], depth=[2], num_heads=[2], expansion_factor=2.0,
                          upscale=2),
            "Swin2SR_ClassicalSR_X2": Swin2SR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                                              mlp_ratio=2.0, upscale=2, upsampler="pixelshuffle"),
            "ESRGAN_x8_2018": ESRGAN(num_filters=8, num_blocks=1, scale=8),
            "ESRGAN_x2_2018": ESRGAN(num_filters=8, num_blocks=1, scale=2)}
    with torch.no_grad():   # large enough that the output differs from pixel to pixel
        for net in nets.values():
            for name, p in net.named_parameters():
                if p.is_floating_point() and "relative_position" not in name:
                    p.add_(torch.randn_like(p) * 0.05)
    return {name: net.eval() for name, net in nets.items()}


def build_ldsr(folder: Path) -> Path:
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    vqvae = VQModel(in_channels=3, out_channels=3, latent_channels=3, layers_per_block=1, block_out_channels=[8, 8, 8],
                    norm_num_groups=4, down_block_types=["DownEncoderBlock2D"] * 3,
                    up_block_types=["UpDecoderBlock2D"] * 3)   # three blocks: the decoder upscales x4
    LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler()).save_pretrained(folder)
    return folder


def build_all(weights: Path, hub_cache: Path) -> Dict[str, Path]:
    """Write every file into ``weights`` (the LDSR pipeline also into the hub cache); returns their paths."""
    from safetensors.torch import save_file
    from tests.tiny_models import place_in_hub_cache

    weights.mkdir(parents=True, exist_ok=True)
    x4, x2, swin = rrdb(4), rrdb(2, seed=1), swinir()
    files = {"x4": weights / "RealESRGAN_x4plus.pth", "old": weights / "RRDB_ESRGAN_x4.pth",
             "x2": weights / "RealESRGAN_x2plus.pth", "swinir": weights / f"{SWINIR_NAME}.pth",
             "safetensors": weights / "tiny-realesrgan-x4.safetensors"}
    torch.save({"params_ema": x4.state_dict()}, files["x4"])
    torch.save(old_esrgan_keys(x4.state_dict(), num_block=1), files["old"])
    torch.save({"params_ema": x2.state_dict()}, files["x2"])
    torch.save({"params": swinir_published_state(swin)}, files["swinir"])
    save_file({k: v.contiguous() for k, v in x4.state_dict().items()}, str(files["safetensors"]))
    try:
        extra = spandrel_nets()
    except ImportError:   # spandrel not installed: those tests skip
        extra = {}
    for name, net in extra.items():
        files[name] = weights / f"{name}.pth"
        torch.save({"params_ema": net.state_dict()} if name.startswith("realesr") else net.state_dict(), files[name])
    files["ldsr"] = build_ldsr(weights.parent / "tiny-ldsr")
    place_in_hub_cache(hub_cache, LDSR_REPO, files["ldsr"])
    return files
