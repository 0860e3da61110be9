"""The super-resolution networks: spandrel's when it is installed, else ours in plain torch.

With spandrel (the ``upscale`` extra), :func:`load_network` hands the state dict to its
``ModelLoader``, which detects the architecture and every hyper-parameter: ESRGAN in all its layouts and
scales, Real-ESRGAN (RRDB and the Compact ``SRVGGNetCompact`` models), SwinIR, Swin2SR, HAT, DAT and
the rest of its list. Without it, the two networks below load:

* :class:`RRDBNet`: ESRGAN and Real-ESRGAN (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
  ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), with Real-ESRGAN's pixel-unshuffle for the
  x2 and x1 models. The two older ESRGAN layouts (``model.0``, ``model.1.sub.N.RDBK.convJ.0`` and
  ``RRDB_trunk.N.RDBK``, ``trunk_conv``, ``upconv1``, ``HRconv``) are renamed on load.
* :class:`SwinIR`: the classical (``pixelshuffle``), lightweight (``pixelshuffledirect``) and
  real-world (``nearest+conv``) SR variants of JingyunLiang/SwinIR's ``network_swinir.py``.

Every hyper-parameter (width, depth, heads, window, scale) is read from the state dict's shapes and
keys, so any published size loads without a config. Each network pads its input to the multiple
it needs (mirrored, as SwinIR's test script does) and crops the output, so any image size works;
:func:`tiled` runs it tile by tile as Real-ESRGAN's ``tile_process`` does.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import math
import re
import sys
import types
from collections import Counter
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelLoadError

State = Dict[str, torch.Tensor]
TILE_PAD = 10   # Real-ESRGAN's tile_pad: context read around each tile, then cut away


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0, square: bool = False) -> torch.Tensor:
    """``x`` (B, C, H, W) grown at the bottom and right to multiples of ``multiple`` (and to ``minimum``,
    and square if asked), mirrored."""
    wants = [-(-max(x.shape[dim], minimum) // multiple) * multiple for dim in (2, 3)]
    if square:
        wants = [max(wants)] * 2
    for dim, want in zip((2, 3), wants):
        while x.shape[dim] < want:
            x = torch.cat([x, x.flip(dim)], dim).narrow(dim, 0, min(want, 2 * x.shape[dim]))
    return x


class Upscaler(nn.Module):
    """A network that upscales by ``scale``; ``forward`` takes any size (values in 0..1)."""

    scale: int = 4
    multiple: int = 1
    minimum: int = 0
    square: bool = False
    channels: int = 3     # colour planes in and out: 3 (RGB) or 1 (grey)
    name: str = ""

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple, self.minimum, self.square)
        return self.upscale(x)[..., :h * self.scale, :w * self.scale]

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# -- ESRGAN / Real-ESRGAN ----------------------------------------------------------------------

def _conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, 1, k // 2)


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for i in range(5):
            setattr(self, f"conv{i + 1}", _conv(num_feat + i * num_grow_ch, num_grow_ch if i < 4 else num_feat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{i}")(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (ResidualDenseBlock(num_feat, num_grow_ch) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(Upscaler):
    """ESRGAN's generator; ``scale`` 2 and 1 pixel-unshuffle the input first (Real-ESRGAN x2plus)."""

    name = "rrdb"

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        self.scale, self.multiple, self.channels = scale, 4 // scale, num_in_ch
        self.conv_first = _conv(num_in_ch * self.multiple ** 2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body, self.conv_up1, self.conv_up2, self.conv_hr = (_conv(num_feat, num_feat) for _ in range(4))
        self.conv_last = _conv(num_feat, num_out_ch)

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(F.pixel_unshuffle(x, self.multiple) if self.multiple > 1 else x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    @classmethod
    def from_state(cls, state: State) -> "RRDBNet":
        first, last = state["conv_first.weight"], state["conv_last.weight"]
        unshuffled = first.shape[1] // last.shape[0]        # 1, 4 or 16 input planes per colour
        return cls(num_in_ch=last.shape[0], num_out_ch=last.shape[0], scale={1: 4, 4: 2, 16: 1}[unshuffled],
                   num_feat=first.shape[0], num_block=_count(state, r"body\.(\d+)\."),
                   num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0])


# The two older ESRGAN layouts, renamed to the one above (first matching rule wins).
_ESRGAN_RENAMES = [
    (r"^model\.0\.", "conv_first."),
    (r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"body.\1.rdb\2.conv\3."),
    (r"^model\.1\.sub\.\d+\.", "conv_body."),
    (r"^model\.3\.", "conv_up1."), (r"^model\.6\.", "conv_up2."), (r"^model\.8\.", "conv_hr."),
    (r"^model\.10\.", "conv_last."),
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."), (r"^trunk_conv\.", "conv_body."),
    (r"^upconv1\.", "conv_up1."), (r"^upconv2\.", "conv_up2."), (r"^HRconv\.", "conv_hr."),
]


def rename_esrgan_keys(state: State) -> State:
    """Old ESRGAN key names (``model.N``, ``RRDB_trunk``) as RRDBNet's; other state dicts unchanged."""
    if "model.0.weight" not in state and "RRDB_trunk.0.RDB1.conv1.weight" not in state:
        return state
    out = {}
    for key, value in state.items():
        for pattern, new in _ESRGAN_RENAMES:
            if re.match(pattern, key):
                key = re.sub(pattern, new, key)
                break
        out[key] = value
    return out


# -- SwinIR ------------------------------------------------------------------------------------

def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, ws * ws, C)."""
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def _unwindows(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    b = windows.shape[0] // (h * w // ws // ws)
    return windows.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def relative_position_index(ws: int) -> torch.Tensor:
    """Swin's table index of each (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """-100 between tokens that the cyclic shift brought together from different regions."""
    regions = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        regions[:, rows, cols, :] = i
    ids = _windows(regions, ws).squeeze(-1)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, ws: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(ws), persistent=False)
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            attn = (attn.view(-1, mask.shape[0], self.heads, n, n) + mask.unsqueeze(1)).view(-1, self.heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ws: int, shift: int, mlp_hidden: int):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
            mask = shifted_window_mask(h, w, self.ws, self.shift).to(x)
        y = _unwindows(self.attn(_windows(y, self.ws), mask), self.ws, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


def _residual_conv(dim: int, three: bool) -> nn.Module:
    """SwinIR's ``resi_connection``: one 3x3 conv, or the 3-conv bottleneck ('3conv')."""
    if not three:
        return _conv(dim, dim)
    return nn.Sequential(_conv(dim, dim // 4), nn.LeakyReLU(0.2), _conv(dim // 4, dim // 4, 1), nn.LeakyReLU(0.2),
                         _conv(dim // 4, dim))


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a conv, and a skip."""

    def __init__(self, dim: int, depth: int, heads: int, ws: int, mlp_hidden: int, three_conv: bool):
        super().__init__()
        self.residual_group = nn.Module()
        self.residual_group.blocks = nn.ModuleList(
            SwinBlock(dim, heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_hidden) for i in range(depth))
        self.conv = _residual_conv(dim, three_conv)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = x
        for block in self.residual_group.blocks:
            y = block(y, h, w)
        b, _, c = y.shape
        return self.conv(y.transpose(1, 2).view(b, c, h, w)).flatten(2).transpose(1, 2) + x


class SwinIR(Upscaler):
    """SwinIR for super-resolution (img_range 1, the DIV2K mean subtracted from RGB input)."""

    name = "swinir"

    def __init__(self, in_chans: int = 3, embed_dim: int = 180, depths: List[int] = (6,) * 6,
                 num_heads: List[int] = (6,) * 6, window_size: int = 8, mlp_ratio: float = 2.0,
                 scale: int = 4, upsampler: str = "pixelshuffle", num_feat: int = 64, three_conv: bool = False,
                 patch_norm: bool = True):
        super().__init__()
        self.scale, self.multiple, self.channels, self.upsampler = scale, window_size, in_chans, upsampler
        mean = (0.4488, 0.4371, 0.4040) if in_chans == 3 else (0.0,)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.conv_first = _conv(in_chans, embed_dim)
        if patch_norm:
            self.patch_embed = nn.Module()
            self.patch_embed.norm = nn.LayerNorm(embed_dim)
        self.layers = nn.ModuleList(RSTB(embed_dim, d, n, window_size, int(embed_dim * mlp_ratio), three_conv)
                                    for d, n in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _residual_conv(embed_dim, three_conv)
        if upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(_conv(embed_dim, scale ** 2 * in_chans), nn.PixelShuffle(scale))
            return
        self.conv_before_upsample = nn.Sequential(_conv(embed_dim, num_feat), nn.LeakyReLU())
        if upsampler == "pixelshuffle":
            steps = [3] if scale == 3 else [2] * int(math.log2(scale))
            self.upsample = nn.Sequential(*(m for s in steps for m in (_conv(num_feat, s * s * num_feat),
                                                                        nn.PixelShuffle(s))))
        else:   # nearest+conv
            for i in range(int(math.log2(scale))):
                setattr(self, f"conv_up{i + 1}", _conv(num_feat, num_feat))
            self.conv_hr = _conv(num_feat, num_feat)
        self.conv_last = _conv(num_feat, in_chans)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = x.flatten(2).transpose(1, 2)
        if hasattr(self, "patch_embed"):
            y = self.patch_embed.norm(y)
        for layer in self.layers:
            y = layer(y, h, w)
        return self.norm(y).transpose(1, 2).view(b, c, h, w)

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(x - self.mean)
        x = self.conv_after_body(self.features(x)) + x
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(x) + self.mean
        x = self.conv_before_upsample(x)
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(x)) + self.mean
        for i in range(int(math.log2(self.scale))):
            x = F.leaky_relu(getattr(self, f"conv_up{i + 1}")(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(x), 0.2)) + self.mean

    @classmethod
    def from_state(cls, state: State) -> "SwinIR":
        embed_dim, in_chans = state["conv_first.weight"].shape[:2]
        depths = [_count(state, rf"layers\.{i}\.residual_group\.blocks\.(\d+)\.")
                  for i in range(_count(state, r"layers\.(\d+)\."))]
        tables = [state[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"]
                  for i in range(len(depths))]
        kwargs = dict(in_chans=in_chans, embed_dim=embed_dim, depths=depths, num_heads=[t.shape[1] for t in tables],
                      window_size=(math.isqrt(tables[0].shape[0]) + 1) // 2,
                      mlp_ratio=state["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
                      three_conv="conv_after_body.0.weight" in state, patch_norm="patch_embed.norm.weight" in state)
        if "conv_up1.weight" in state:
            return cls(upsampler="nearest+conv", scale=2 ** _count(state, r"conv_up(\d+)\.", base=1),
                       num_feat=state["conv_up1.weight"].shape[0], **kwargs)
        if "conv_before_upsample.0.weight" in state:
            num_feat = state["conv_before_upsample.0.weight"].shape[0]
            steps = _count(state, r"upsample\.(\d+)\.weight", step=2)
            scale = 3 if state["upsample.0.weight"].shape[0] == 9 * num_feat else 2 ** steps
            return cls(upsampler="pixelshuffle", scale=scale, num_feat=num_feat, **kwargs)
        if "upsample.0.weight" in state:
            return cls(upsampler="pixelshuffledirect",
                       scale=math.isqrt(state["upsample.0.weight"].shape[0] // in_chans), **kwargs)
        raise ModelLoadError("these SwinIR weights have no upsampler (a denoising or JPEG model, not "
                             "super-resolution).\n  Give SwinIR super-resolution weights, such as "
                             "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4.")


def _count(state: State, pattern: str, base: int = 0, step: int = 1) -> int:
    """How many consecutive indices ``pattern``'s group takes among the keys (0, 1, 2, ... by ``step``)."""
    found = {int(m.group(1)) for key in state for m in [re.match(pattern, key)] if m}
    n = 0
    while base + n * step in found:
        n += 1
    return n


# -- loading -----------------------------------------------------------------------------------

NETWORKS = {"rrdb": RRDBNet, "swinir": SwinIR}
# Each network's top-level names, the required ones first.
_LAYOUT = {"rrdb": (4, ("conv_first", "body", "conv_body", "conv_last", "conv_up1", "conv_up2", "conv_hr")),
           "swinir": (4, ("conv_first", "layers", "norm", "conv_after_body", "patch_embed", "conv_before_upsample",
                          "upsample", "conv_up1", "conv_up2", "conv_up3", "conv_hr", "conv_last"))}
# Buffers SwinIR saves but derives from its shapes (the attention mask is for the training size).
_DERIVED = ("relative_position_index", "attn_mask")


def family(state: State) -> Optional[str]:
    """'rrdb', 'swinir' or None: which network a state dict's key names belong to."""
    state = rename_esrgan_keys(state)
    if "layers.0.residual_group.blocks.0.attn.qkv.weight" in state:
        return "swinir"
    if "body.0.rdb1.conv1.weight" in state and "conv_first.weight" in state:
        return "rrdb"
    return None


def build(name: str, state: State) -> Upscaler:
    """The network ``name`` ('rrdb' or 'swinir') with ``state`` loaded; a summary of any mismatch."""
    state = {k: v for k, v in rename_esrgan_keys(state).items() if not k.endswith(_DERIVED)}
    try:
        net = NETWORKS[name].from_state(state)
    except (KeyError, IndexError, ValueError) as e:
        raise ModelLoadError(_mismatch(name, state, _layout_summary(name, state) or f"no key {e}")) from None
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:   # a tensor of another shape
        raise ModelLoadError(_mismatch(name, state, str(e).strip().splitlines()[-1].strip())) from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(_mismatch(name, state, _keys_summary(result.missing_keys, result.unexpected_keys)))
    return net.eval()


def _mismatch(name: str, state: State, detail: str, found: Optional[str] = None) -> str:
    """``found``: the name of the network the weights are (spandrel's word), else :func:`family`'s guess."""
    if found is None:
        guess = family(state)
        found = NETWORKS[guess].__name__ if guess and guess != name else None
    looks = f"They look like {found} weights. " if found else ""
    return (f"the weights do not fit the {NETWORKS[name].__name__} network: {detail}.\n  {looks}Give weights "
            f"of the `architecture:` named, or the `architecture:` these weights were trained as.")


def _layout_summary(name: str, state: State) -> str:
    """Missing and unexpected top-level names (``layers.*``), for weights of another network."""
    required, names = _LAYOUT[name]
    tops = Counter(key.split(".")[0] for key in state)
    return _keys_summary([f"{top}.*" for top in names[:required] if top not in tops],
                         [f"{top}.* ({n})" for top, n in tops.items() if top not in names])


def _keys_summary(missing: List[str], unexpected: List[str]) -> str:
    def some(keys: List[str]) -> str:
        return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    parts = [f"{len(missing)} missing ({some(missing)})"] if missing else []
    parts += [f"{len(unexpected)} unexpected ({some(unexpected)})"] if unexpected else []
    return "keys: " + "; ".join(parts) if parts else ""


# -- spandrel -----------------------------------------------------------------------------------

#: ``architecture:`` -> our network for it (without spandrel), and the spandrel architectures it accepts
#: (Real-ESRGAN publishes RRDB nets and the Compact SRVGGNetCompact ones).
NETWORK = {"real-esrgan": "rrdb", "esrgan": "rrdb", "swinir": "swinir"}
SPANDREL_IDS = {"real-esrgan": ("ESRGAN", "Compact"), "esrgan": ("ESRGAN",), "swinir": ("SwinIR",)}
_SPANDREL_AS_OURS = {"ESRGAN": "RRDBNet", "SwinIR": "SwinIR"}
INSTALL_SPANDREL = "pip install spandrel einops (with --no-deps where torchvision must stay out)"
_WITHOUT_SPANDREL = (f"Without spandrel only ESRGAN and SwinIR load: install it ({INSTALL_SPANDREL}) for Real-ESRGAN "
                     f"Compact, HAT, DAT, Swin2SR and more")


def import_spandrel() -> Optional[types.ModuleType]:
    """spandrel, or None when it is not installed.

    spandrel imports torchvision at import time for two of its architectures (LaMa inpainting and
    RestoreFormer face restoration, none of them upscalers), although it needs it nowhere else. Without
    torchvision, a stand-in offering those three names is in ``sys.modules`` for the import only: those
    two architectures then fail when run, every other one works, and nothing else sees a torchvision."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        return None
    try:
        if importlib.util.find_spec("torchvision") is not None:
            import spandrel
        else:
            with _torchvision_stand_in():
                import spandrel
    except ImportError:   # a spandrel needing more of torchvision, or a dependency missing (einops)
        return None
    return spandrel


@contextlib.contextmanager
def _torchvision_stand_in():
    import enum

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    modules = {name: types.ModuleType(name) for name in names}
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    functional = modules["torchvision.transforms.functional"]

    def rotate(*args: Any, **kwargs: Any) -> Any:
        raise ModelLoadError("this spandrel architecture (LaMa) needs torchvision, which is not installed.")

    def normalize(tensor: torch.Tensor, mean: Any, std: Any, inplace: bool = False) -> torch.Tensor:
        mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std) if inplace else (tensor - mean) / std

    functional.InterpolationMode = enum.Enum("InterpolationMode", {n: n.lower() for n in (
        "NEAREST", "NEAREST_EXACT", "BILINEAR", "BICUBIC", "BOX", "HAMMING", "LANCZOS")})
    functional.rotate, functional.normalize = rotate, normalize
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.transforms"].functional = functional
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in modules.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


class SpandrelNet(Upscaler):
    """A network spandrel detected and built; padded (mirrored) to what it needs, one image at a time
    through spandrel's own call (which then pads nothing more)."""

    def __init__(self, descriptor: Any):
        super().__init__()
        self.net, self.descriptor = descriptor.model, descriptor
        need = descriptor.size_requirements
        self.scale, self.multiple = descriptor.scale, need.multiple_of
        self.minimum, self.square = need.minimum, need.square
        self.channels, self.name = descriptor.input_channels, descriptor.architecture.name
        self.supports_half, self.supports_bfloat16 = descriptor.supports_half, descriptor.supports_bfloat16

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.descriptor(one) for one in x.split(1)])


def load_network(state: State, architecture: Optional[str] = None) -> Upscaler:
    """The network of ``state``: detected by spandrel when installed (checked against ``architecture:``),
    else one of ours (:data:`NETWORK`, or by its keys)."""
    spandrel = import_spandrel()
    if spandrel is None:
        network = NETWORK.get(architecture or "") or family(state)
        if network is None:
            raise ModelLoadError(f"these weights are no ESRGAN or SwinIR network (keys such as "
                                 f"{', '.join(list(state)[:3])}).\n  {_WITHOUT_SPANDREL}; or give a diffusers LDSR "
                                 f"folder with `architecture: ldsr`.")
        try:
            return build(network, state)
        except ModelLoadError as e:
            error = ModelLoadError(f"{e}\n  {_WITHOUT_SPANDREL}.")
        raise error
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError:
        raise ModelLoadError(f"spandrel recognises no architecture in these weights (keys such as "
                             f"{', '.join(list(state)[:3])}).\n  Give the weights of a super-resolution network "
                             f"(ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...), or a diffusers LDSR folder with "
                             f"`architecture: ldsr`.") from None
    except (RuntimeError, KeyError, ValueError, IndexError, AssertionError) as e:
        detail = str(e).strip().splitlines()
        raise ModelLoadError(f"spandrel could not build these weights ({type(e).__name__}: "
                             f"{detail[-1].strip() if detail else 'no details'}).\n  Check the file is a complete "
                             f"state dict of a published network.") from None
    arch = descriptor.architecture
    if architecture and arch.id not in SPANDREL_IDS[architecture]:
        ours = NETWORK[architecture]
        raise ModelLoadError(_mismatch(ours, state, _layout_summary(ours, state) or f"spandrel reads {arch.name}",
                                       found=_SPANDREL_AS_OURS.get(arch.id, arch.name)))
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels not in (1, 3) \
            or descriptor.output_channels != descriptor.input_channels:
        raise ModelLoadError(f"these are {arch.name} weights ({descriptor.purpose}, {descriptor.input_channels} "
                             f"channels in, {descriptor.output_channels} out): not an image-to-image network this "
                             f"task runs.\n  Give the weights of a super-resolution network.")
    return SpandrelNet(descriptor).eval()


def read_state(path: str) -> Dict[str, Any]:
    """A .pth or .safetensors state dict, unwrapped from BasicSR's ``params_ema`` / ``params`` keys."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            state: Any = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # torch and safetensors raise many kinds for a bad file
        detail = str(e).strip().splitlines()
        detail = detail[0] if detail else type(e).__name__
        if path.endswith(".safetensors"):
            from .sources import safetensors_problem
            detail = "; ".join(filter(None, [safetensors_problem(path), detail]))
        raise ModelLoadError(f"could not read the weights file `{path}`: it is truncated or corrupt, or not a state "
                             f"dict ({detail}).\n"
                             f"  Download it again (a complete .pth or .safetensors state dict), or delete it so it "
                             f"is fetched again.") from None
    for key in ("params_ema", "params", "state_dict"):   # as Real-ESRGAN and SwinIR unwrap them
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    return {k.removeprefix("module."): v for k, v in state.items() if hasattr(v, "shape")}


def tiled(net: Upscaler, x: torch.Tensor, tile: int, pad: int = TILE_PAD) -> torch.Tensor:
    """``net(x)`` computed tile by tile (each read with ``pad`` pixels of context), assembled on the CPU."""
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return net(x).float().cpu()
    s, out = net.scale, None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            t, l = max(top - pad, 0), max(left - pad, 0)
            piece = net(x[..., t:min(bottom + pad, h), l:min(right + pad, w)]).float().cpu()
            if out is None:
                out = piece.new_zeros(x.shape[0], piece.shape[1], h * s, w * s)
            out[..., top * s:bottom * s, left * s:right * s] = \
                piece[..., (top - t) * s:(bottom - t) * s, (left - l) * s:(right - l) * s]
    return out
