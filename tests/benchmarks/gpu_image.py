"""Issue #9 row 5: an SDXL-shaped pipeline (random weights, fp16), 1024x1024, 30 steps: ``%%run`` (the
Python API it calls) against the raw diffusers call on the same loaded pipeline, same seed.

    python tests/benchmarks/gpu_image.py [--size 1024] [--steps 30] [--repeats 3] [--out FILE]
    python tests/benchmarks/gpu_image.py --tiny          # CPU smoke run: the test suite's tiny SDXL

The pipeline has SDXL base's real architecture (UNet 2.6 B parameters: blocks 320/640/1280, transformer
depths 1/2/10, cross-attention 2048, text-time conditioning; CLIP ViT-L and OpenCLIP bigG text
encoders; the 4-block VAE), built from configs with random weights, saved, and composed from disk.
The tokenizer is the tests' character-level CLIP tokenizer (the vocabulary does not change the cost).
Both sides make the same image: the pixels are compared too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))


def sdxl_shaped(dtype, device: str):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tests.tiny_diffusion import clip_tokenizer

    torch.manual_seed(0)
    with torch.device(device):          # random init where the weights will live: seconds, not minutes
        return _sdxl_shaped(dtype)


def _sdxl_shaped(dtype):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tests.tiny_diffusion import clip_tokenizer

    unet = UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=1024,
                        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        scaling_factor=0.13025, force_upcast=True)
    tokenizer = clip_tokenizer()
    common = dict(bos_token_id=0, eos_token_id=1, pad_token_id=1, vocab_size=49408, max_position_embeddings=77,
                  hidden_act="quick_gelu")
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                                num_hidden_layers=12, projection_dim=768, **common))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32, projection_dim=1280,
        **dict(common, hidden_act="gelu")))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                     text_encoder_2=text_encoder_2, tokenizer_2=clip_tokenizer(), unet=unet,
                                     scheduler=scheduler)
    return pipe.to(dtype=dtype)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny SDXL on the CPU (a smoke run)")
    parser.add_argument("--out")
    args = parser.parse_args()
    print("command: python tests/benchmarks/gpu_image.py " + " ".join(sys.argv[1:]), flush=True)
    from tests import tiny_models
    root = Path(tempfile.mkdtemp(prefix="mcj-image-"))
    tiny_models.use_offline_cache(root)
    try:
        return measure(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(args, root: Path) -> int:
    import numpy as np
    import torch

    import mc_jupyter as mc
    from mc_jupyter.registry import Registry

    cuda = torch.cuda.is_available() and not args.tiny
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    size, steps = (args.size, args.steps) if not args.tiny else (32, 4)
    started = time.perf_counter()
    if args.tiny:
        from tests.tiny_diffusion import sdxl
        pipe = sdxl()
    else:
        pipe = sdxl_shaped(dtype, device)
    folder = root / "sdxl"
    pipe.save_pretrained(folder)
    unet_params = sum(p.numel() for p in pipe.unet.parameters())
    del pipe
    print(f"SDXL-shaped pipeline: UNet {unet_params / 1e9:.2f} B parameters, built and saved in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    yaml = f"""
component:
  id: painter
  type: model
  task: image-generation
  architecture: sdxl
  model: {folder}
  device: {device}
  precision: {'float16' if dtype == torch.float16 else 'float32'}
  prompt: ${{input.prompt}}
  params: {{width: {size}, height: {size}, num_inference_steps: {steps}, guidance_scale: 5.0, seed: 42}}
"""
    registry = Registry()
    t0 = time.perf_counter()
    mc.compose(yaml, registry=registry)
    load_s = time.perf_counter() - t0
    driver = registry.entries["painter"].driver
    pipeline = driver.pipeline
    pipeline.set_progress_bar_config(disable=True)
    prompt = "a lighthouse on a cliff at dusk, oil painting"

    def raw():
        generator = torch.Generator(driver.generator_device).manual_seed(42)
        return pipeline(prompt=prompt, width=size, height=size, num_inference_steps=steps, guidance_scale=5.0,
                        generator=generator).images[0]

    def ours():
        return mc.run(inputs={"prompt": prompt}, registry=registry).output

    def timed(fn):
        fn()                                     # warm-up (cuDNN autotuning, allocator)
        out = []
        for _ in range(args.repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
        return statistics.median(out), out

    # alternate, so drift (clocks, heat) falls on both sides alike
    raw_s, raw_all = timed(raw)
    mc_s, mc_all = timed(ours)
    raw_s2, raw_all2 = timed(raw)
    raw_med = statistics.median(raw_all + raw_all2)
    same = np.array_equal(np.asarray(raw()), np.asarray(ours()))
    ratio = raw_med / mc_s
    result = {"size": size, "steps": steps, "device": device, "load_s": load_s, "raw_s": raw_med, "mc_s": mc_s,
              "raw_runs": raw_all + raw_all2, "mc_runs": mc_all, "speed_ratio": ratio, "same_pixels": same}
    print(json.dumps(result, indent=1), flush=True)
    print()
    print("| measurement | mc_jupyter | raw diffusers | speed ratio (raw time / ours) | target |")
    print("|---|---|---|---|---|")
    print(f"| SDXL-shaped {'fp16' if cuda else 'fp32'} {size}x{size}, {steps} steps, batch 1 | {mc_s:.3f} s | "
          f"{raw_med:.3f} s | {ratio:.3f} | ≥ 0.98 |")
    print(f"same pixels: {same}; compose (load from disk) {load_s:.1f} s")
    registry.down()
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
