"""image-upscale: ESRGAN, Real-ESRGAN, SwinIR (:mod:`.upscale_nets`) and LDSR (diffusers); the task, its
``scale``, ``tile_size`` and lists: :mod:`mc_jupyter.tasks.upscale`.

``model:`` is a weights file by its published name (``RealESRGAN_x4plus``), a path, or a hub mapping
with ``filename``; LDSR takes a diffusers folder or hub id. A published name is looked for as
``<name>.pth`` / ``<name>.safetensors`` in ``$MC_JUPYTER_WEIGHTS`` (folders separated by
``os.pathsep``), the working folder, ``./weights/`` and ``~/.cache/mc_jupyter/weights/``, then in its
Hugging Face mirror (:data:`~mc_jupyter.drivers.sources.PUBLISHED`); offline, only the hub cache is read
(:func:`~mc_jupyter.drivers.sources.find_weights`).

The network upscales by its native scale (read from the weights). Images are processed in
``tile_size`` tiles, each read with a 10-pixel margin that is cut away, Real-ESRGAN's ``tile_pad``:
memory stays bounded. LDSR is not tiled; ``options:`` ``num_inference_steps`` (100), ``eta`` (1.0) and
``seed`` (0) reach its sampler.
"""

from __future__ import annotations

import os
from typing import Any, List

from ..catalog import Precision
from ..devices import module_bytes, parameter_count, resolve_dtype, resolve_placement
from ..errors import ModelLoadError
from ..tasks.upscale import ImageUpscaleTask, UpscaleParams
from .base import number
from .hf_common import _from_pretrained
from .sources import find_weights, published, resolve_source, weights_file
from .upscale_nets import load_network, read_state, tiled

DEFAULT_MODEL = {"real-esrgan": "RealESRGAN_x4plus", "esrgan": "RRDB_ESRGAN_x4",
                 "swinir": "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4",
                 "ldsr": "CompVis/ldm-super-resolution-4x-openimages"}


class ImageUpscale(ImageUpscaleTask):
    """``image:`` (one or a list) -> the image(s) ``params.scale`` times larger."""

    def load(self) -> None:
        architecture = self.config.architecture
        model = self.config.model or DEFAULT_MODEL[architecture or "real-esrgan"]
        self.device, precision = resolve_placement(self.config)
        dtype = resolve_dtype(precision, self.device)
        self.dtype = str(dtype).replace("torch.", "")
        if architecture == "ldsr":
            return self._load_ldsr(model, dtype)
        path = find_weights(model, self.config.task)
        if os.path.exists(os.path.join(path, "model_index.json")):
            if architecture is None:
                return self._load_ldsr(path, dtype)
            raise ModelLoadError(f"`{path}` is a diffusers pipeline, not {architecture} weights.\n"
                                 f"  Write `architecture: ldsr` for an LDSR pipeline, or give a .pth or .safetensors "
                                 f"file.")
        path = weights_file(path)
        known = published(model)
        try:
            self.net = load_network(read_state(path), architecture)
        except ModelLoadError as e:
            again = f"\n  Its published copy: {known.url}" if known and "truncated" in str(e) else ""
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
        precision = self.config.precision
        if precision != Precision.AUTO:
            raise ModelLoadError(f"{self.net.name} does not run in {precision} (spandrel says so).\n  Use "
                                 f"`precision: float32`, or leave `precision:` out.")
        self.dtype = "float32"
        return torch.float32

    def _load_ldsr(self, model: Any, dtype: Any) -> None:
        from diffusers import LDMSuperResolutionPipeline
        source = resolve_source(model, self.config.task)
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

    def generate(self, images: List[Any], params: UpscaleParams) -> List[Any]:
        return self._ldsr(images) if hasattr(self, "pipe") else self._network(images, params.tile_size)

    def _network(self, images: List[Any], tile: int) -> List[Any]:
        """The network's output for each image; images of one size go through as one batch."""
        import numpy as np
        import torch
        from PIL import Image
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
        options = self.config.options or {}
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
