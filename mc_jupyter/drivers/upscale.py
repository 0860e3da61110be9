"""image-upscale: ESRGAN, Real-ESRGAN, SwinIR (:mod:`.upscale_nets`) and LDSR (diffusers).

``model:`` is a weights file by its published name (``RealESRGAN_x4plus``), a path, or a hub mapping
with ``filename``; LDSR takes a diffusers folder or hub id. A published name is looked for as
``<name>.pth`` / ``<name>.safetensors`` in ``$MC_JUPYTER_WEIGHTS`` (folders separated by
``os.pathsep``), the working folder, ``./weights/`` and ``~/.cache/mc_jupyter/weights/``, then in its
Hugging Face mirror (:data:`PUBLISHED`); offline, only the hub cache is read.

The network upscales by its native scale (read from the weights); a different ``params.scale`` resizes
that output with Lanczos to ``int(size * scale)``, as Real-ESRGAN's ``--outscale`` does. Images are
processed in ``tile_size`` tiles (default 256, 0 for none) each read with a 10-pixel margin that is cut
away, Real-ESRGAN's ``tile_pad``: memory stays bounded. LDSR is not tiled; ``options:``
``num_inference_steps`` (100), ``eta`` (1.0) and ``seed`` (0) reach its sampler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..secrets import scrub
from ..devices import module_bytes, parameter_count, resolve_dtype, resolve_placement
from ..errors import InputError, ModelLoadError
from ..media import load_image
from .base import Driver, number
from .hf_common import _from_pretrained
from .sources import hub_file, is_local_path, resolve_source
from .upscale_nets import load_network, read_state, tiled

_REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_SWINIR = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0"


@dataclass(frozen=True)
class Published:
    """Where the authors publish a weights file, and a Hugging Face mirror of it (repository, filename)."""

    url: str
    hub: Optional[Tuple[str, str]] = None


PUBLISHED: Dict[str, Published] = {
    "RealESRGAN_x4plus": Published(f"{_REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth",
                                   ("lllyasviel/Annotators", "RealESRGAN_x4plus.pth")),
    "RealESRNet_x4plus": Published(f"{_REAL_ESRGAN}/v0.1.1/RealESRNet_x4plus.pth"),
    "RealESRGAN_x4plus_anime_6B": Published(f"{_REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth"),
    "RealESRGAN_x2plus": Published(f"{_REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth"),
    "RealESRGAN_x4": Published("https://huggingface.co/ai-forever/Real-ESRGAN",
                               ("ai-forever/Real-ESRGAN", "RealESRGAN_x4.pth")),
    "RealESRGAN_x2": Published("https://huggingface.co/ai-forever/Real-ESRGAN",
                               ("ai-forever/Real-ESRGAN", "RealESRGAN_x2.pth")),
    "RRDB_ESRGAN_x4": Published("https://github.com/xinntao/ESRGAN (README: pretrained models)"),
    **{name: Published(f"{_SWINIR}/{name}.pth") for name in (
        "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2", "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4",
        "001_classicalSR_DF2K_s64w8_SwinIR-M_x4", "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x4",
        "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN")},
}
ALIASES = {"ESRGAN_x4": "RRDB_ESRGAN_x4"}
DEFAULT_MODEL = {"real-esrgan": "RealESRGAN_x4plus", "esrgan": "RRDB_ESRGAN_x4",
                 "swinir": "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4",
                 "ldsr": "CompVis/ldm-super-resolution-4x-openimages"}
TILE_SIZE = 256
_WEIGHT_SUFFIXES = (".pth", ".safetensors")


def weights_folders() -> List[str]:
    """Where a published name is looked for, in order."""
    env = [f for f in os.environ.get("MC_JUPYTER_WEIGHTS", "").split(os.pathsep) if f]
    cwd = os.getcwd()
    return [os.path.expanduser(f) for f in env] + [cwd, os.path.join(cwd, "weights"),
                                                    os.path.expanduser("~/.cache/mc_jupyter/weights")]


def find_weights(model: Any, task: str) -> str:
    """The local path of ``model:``: a weights file, or a folder (a diffusers pipeline, a hub snapshot)."""
    if isinstance(model, dict) or is_local_path(model):
        source = resolve_source(model, task)
        return source.location if source.is_local else hub_file(model)
    name = ALIASES.get(model, model)
    for suffix in _WEIGHT_SUFFIXES:
        name = name[:-len(suffix)] if name.endswith(suffix) else name
    looked = [os.path.join(folder, name + suffix) for folder in weights_folders() for suffix in _WEIGHT_SUFFIXES]
    found = next((path for path in looked if os.path.isfile(path)), None)
    if found:
        return found
    published = PUBLISHED.get(name)
    if published and published.hub:
        repo, filename = published.hub
        try:
            return hub_file({"repository": repo, "filename": filename,
                             "local_files_only": os.environ.get("HF_HUB_OFFLINE") == "1"})
        except ModelLoadError as e:
            looked.append(f"the Hugging Face hub: {repo}/{filename} ({str(e).splitlines()[0]})")
    if "/" in name:   # a hub repository: a diffusers pipeline or a repo holding one weights file
        return hub_file({"repository": model})
    where = "\n    ".join(looked)
    fetch = f"download it from {published.url} and " if published else ""
    raise ModelLoadError(f"no weights file `{model}` was found. Looked at:\n    {where}\n  Fix: {fetch}put it in "
                         f"one of these folders (or a folder named in $MC_JUPYTER_WEIGHTS), or give its path in "
                         f"`model:`.")


class ImageUpscale(Driver):
    """``image:`` (one or a list) -> the image(s) ``params.scale`` times larger."""

    def load(self) -> None:
        architecture = self.settings.get("architecture")
        model = self.settings.get("model") or DEFAULT_MODEL[architecture or "real-esrgan"]
        self.device, precision = resolve_placement(self.settings)
        dtype = resolve_dtype(precision, self.device)
        self.dtype = str(dtype).replace("torch.", "")
        if architecture == "ldsr":
            return self._load_ldsr(model, dtype)
        path = find_weights(model, self.settings["task"])
        if os.path.exists(os.path.join(path, "model_index.json")):
            if architecture is None:
                return self._load_ldsr(path, dtype)
            raise ModelLoadError(f"`{path}` is a diffusers pipeline, not {architecture} weights.\n"
                                 f"  Write `architecture: ldsr` for an LDSR pipeline, or give a .pth or .safetensors "
                                 f"file.")
        path = _weights_file(path)
        published = PUBLISHED.get(ALIASES.get(str(model), str(model)))
        try:
            self.net = load_network(read_state(path), architecture)
        except ModelLoadError as e:
            again = f"\n  Its published copy: {published.url}" if published and "truncated" in str(e) else ""
            raise ModelLoadError(f"`{path}`{f' ({architecture})' if architecture else ''}: {e}{again}") from None
        dtype = self._supported(dtype)
        self.net.to(self.device, dtype)
        self.native_scale, self.source_description = self.net.scale, f"{architecture or self.net.name}: {path}"
        self.parameters, self.memory_bytes = parameter_count(self.net), module_bytes(self.net)

    def _supported(self, dtype: Any) -> Any:
        """``dtype``, or float32 for a network spandrel says cannot run in the automatic float16."""
        import torch
        ok = {torch.float16: getattr(self.net, "supports_half", True),
              torch.bfloat16: getattr(self.net, "supports_bfloat16", True)}.get(dtype, True)
        if ok:
            return dtype
        precision = self.settings.get("precision") or "auto"
        if precision != "auto":
            raise ModelLoadError(f"{self.net.name} does not run in {precision} (spandrel says so).\n  Use "
                                 f"`precision: float32`, or leave `precision:` out.")
        self.dtype = "float32"
        return torch.float32

    def _load_ldsr(self, model: Any, dtype: Any) -> None:
        from diffusers import LDMSuperResolutionPipeline
        source = resolve_source(model, self.settings["task"])
        self.pipe = _from_pretrained(LDMSuperResolutionPipeline, source, dict(source.kwargs, dtype=dtype))
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.native_scale = 2 ** (len(self.pipe.vqvae.config.block_out_channels) - 1)
        self.source_description = f"ldsr: {source.description}"
        self.parameters = sum(parameter_count(m) for m in (self.pipe.unet, self.pipe.vqvae))
        self.memory_bytes = sum(module_bytes(m) for m in (self.pipe.unet, self.pipe.vqvae))

    def unload(self) -> None:
        for name in ("net", "pipe"):
            if hasattr(self, name):
                delattr(self, name)

    def run(self, fields: Dict[str, Any]) -> Any:
        value = fields.get("image")
        if value is None:
            raise InputError("image-upscale got no image: give `image:`, e.g. `image: ${input.image as image}`.")
        many = isinstance(value, list)
        images = [load_image(v) for v in (value if many else [value])]
        scale = _positive(self.param(fields, "scale", self.native_scale))
        for image in images:
            if int(image.width * scale) < 1 or int(image.height * scale) < 1:
                raise InputError(f"`params.scale: {scale:g}` makes the {image.width}×{image.height} image "
                                 f"{int(image.width * scale)}×{int(image.height * scale)} pixels, an empty image.\n  "
                                 f"Give a larger scale (the network's own is {self.native_scale}).")
        out: List[Any] = []
        for batch in self.batches(images, fields, default=1):
            upscaled = self._ldsr(batch) if hasattr(self, "pipe") else self._network(batch, fields)
            out += [_finish(up, image, scale) for up, image in zip(upscaled, batch)]
        return out if many else out[0]

    def _network(self, images: List[Any], fields: Dict[str, Any]) -> List[Any]:
        """The network's output for each image; images of one size go through as one batch."""
        import numpy as np
        import torch
        from PIL import Image
        tile = self.number(fields, "tile_size", TILE_SIZE, int, 0) or 0
        mode = "L" if self.net.channels == 1 else "RGB"
        groups = [images] if len({im.size for im in images}) == 1 else [[im] for im in images]
        results: List[Any] = []
        for group in groups:
            arrays = [np.asarray(im.convert(mode), dtype=np.float32).reshape(im.height, im.width, -1) / 255.0
                      for im in group]
            x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()   # NCHW, as references run
            x = x.to(self.device, self.net.dtype)
            with torch.inference_mode():
                y = tiled(self.net, x, tile)
            pixels = (y.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            results += [Image.fromarray(p.squeeze(-1) if mode == "L" else p, mode) for p in pixels]
        return results

    def _ldsr(self, images: List[Any]) -> List[Any]:
        import torch
        options = self.settings.get("options") or {}
        seed = number(options.get("seed", 0), "options.seed")
        steps = number(options.get("num_inference_steps", 100), "options.num_inference_steps", int, 1)
        eta = number(options.get("eta", 1.0), "options.eta", float)
        out = []
        for image in images:
            rgb = image.convert("RGB")
            size = tuple(max(32, -(-n // 32) * 32) for n in rgb.size)   # the pipeline crops to multiples of 32
            if size != rgb.size:
                from PIL import Image
                rgb = rgb.resize(size, Image.LANCZOS)
            with torch.random.fork_rng():   # DDIM's eta noise comes from the global generator
                torch.manual_seed(seed)
                out.append(self.pipe(rgb, num_inference_steps=steps, eta=eta,
                                     generator=torch.Generator("cpu").manual_seed(seed)).images[0])
        return out


def _weights_file(path: str) -> str:
    """``path`` itself, or the one weights file in the folder ``path``."""
    if not os.path.isdir(path):
        return path
    files = sorted(f for f in os.listdir(path) if f.endswith(_WEIGHT_SUFFIXES))
    if len(files) != 1:
        raise ModelLoadError(f"`{path}` is a folder holding {len(files)} weights files "
                             f"({', '.join(files) or 'none'}).\n  Name the file: a path to it, or `filename:` in a "
                             f"hub mapping.")
    return os.path.join(path, files[0])


def _positive(value: Any) -> float:
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = 0.0
    if isinstance(value, bool) or not scale > 0:
        raise InputError(f"`params.scale` must be a positive number, not {scrub(repr(value))}.\n  "
                         f"Write e.g. `scale: 4`.")
    return scale


def _finish(upscaled: Any, original: Any, scale: float) -> Any:
    """The output at exactly ``scale`` times the input (Lanczos when the network's scale differs),
    with the input's transparency, resized, put back."""
    from PIL import Image
    size = (int(original.width * scale), int(original.height * scale))
    if upscaled.size != size:
        upscaled = upscaled.resize(size, Image.LANCZOS)
    if "A" in original.getbands() or "transparency" in original.info:
        upscaled = upscaled.convert("RGBA")
        upscaled.putalpha(original.convert("RGBA").getchannel("A").resize(size, Image.LANCZOS))
    return upscaled
