"""What mc_jupyter costs on top of the raw library call, for each task of issue #18, on the CPU.

    python tests/benchmarks/bench_tasks.py [--repeats N] [--warmup W] [--tasks a,b,...]

For each task the same stand-in model (tiny random weights of the real classes, from tests/tiny_*.py) is
loaded once by mc_jupyter (``mc.compose``) and once by plain transformers, and the same input goes through
``mc.run`` and through the raw calls a model card shows (processor, model or ``generate``, post-processing).
Both outputs are checked equal first. Every figure is the median of ``--repeats`` timings taken after
``--warmup`` untimed calls, the two paths interleaved in a rotating order. The models are tiny, so the
model's own work is small and the ratio shows the per-call overhead at its largest; the ``overhead ms``
column is what a run adds whatever the model's size. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))


def _median_pair(a: Callable[[], Any], b: Callable[[], Any], repeats: int, warmup: int) -> Tuple[float, float]:
    for _ in range(warmup):
        a(), b()
    ta: List[float] = []
    tb: List[float] = []
    for i in range(repeats):
        order = [(a, ta), (b, tb)] if i % 2 == 0 else [(b, tb), (a, ta)]
        for fn, out in order:
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def _picture(seed: int, size=(64, 48)):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def cases(root: Path) -> Dict[str, Callable[[Any], Tuple[Callable[[], Any], Callable[[], Any], Callable[[Any, Any], bool]]]]:
    """task -> a set-up that composes the component into ``registry`` and returns (mc call, raw call, same?)."""
    import numpy as np
    import torch
    import mc_jupyter as mc
    from tests import tiny_clip, tiny_seq2seq, tiny_vision, tiny_vlms, tiny_whisper

    def compose(registry, yaml: str) -> None:
        mc.compose(yaml, registry=registry)

    def text_to_text(registry):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        folder = tiny_seq2seq.build_marian(root / "marian")
        compose(registry, f"component:\n  type: model\n  task: text-to-text\n  model: {folder}\n  device: cpu\n"
                          "  text: ${input.text}\n  params: {max_output_length: 16}\n")
        tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
        text = "The weather is lovely today, so we are going to the beach."

        def raw():
            with torch.inference_mode():
                out = model.generate(**tok([text], return_tensors="pt"), num_beams=4, early_stopping=True,
                                     do_sample=False, max_new_tokens=16)
            return tok.batch_decode(out, skip_special_tokens=True)[0]
        return (lambda: mc.run(inputs={"text": text}, registry=registry).output), raw, lambda a, b: a == b

    def reranking(registry):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        folder = tiny_seq2seq.build_cross_encoder(root / "ce")
        compose(registry, f"component:\n  type: model\n  task: text-reranking\n  model: {folder}\n  device: cpu\n"
                          "  query: ${input.query}\n  documents: ${input.documents}\n")
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        query, documents = "How tall is the tower?", [f"Passage number {i} about towers and bread." for i in range(16)]

        def raw():
            with torch.inference_mode():
                enc = tok([query] * len(documents), documents, padding=True, truncation=True, return_tensors="pt")
                scores = torch.sigmoid(model(**enc).logits[:, -1]).tolist()
            return sorted(range(len(documents)), key=lambda i: -scores[i])
        return (lambda: mc.run(inputs={"query": query, "documents": documents}, registry=registry).output), raw, \
            lambda a, b: [r["index"] for r in a] == b

    def image_text_to_text(registry):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        folder = tiny_vlms.build_idefics3(root / "vlm")
        compose(registry, f"component:\n  type: model\n  task: image-text-to-text\n  model: {folder}\n  device: cpu\n"
                          "  image: ${input.image}\n  prompt: ${input.prompt}\n"
                          "  params: {max_output_length: 8, temperature: 0}\n")
        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        image, prompt = _picture(0), "What is in the picture?"

        def raw():
            messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                     {"type": "text", "text": prompt}]}]
            inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
            return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        return (lambda: mc.run(inputs={"image": image, "prompt": prompt}, registry=registry).output), raw, \
            lambda a, b: a == b

    def speech_to_text(registry):
        from transformers import AutoProcessor, WhisperForConditionalGeneration
        folder = tiny_whisper.build(root / "whisper")
        compose(registry, f"component:\n  type: model\n  task: speech-to-text\n  model: {folder}\n  device: cpu\n"
                          "  action:\n    audio: ${input.audio}\n    max_output_length: 16\n"
                          "    params: {temperature: 0.0}\n")
        processor = AutoProcessor.from_pretrained(folder)
        model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
        samples = tiny_whisper.tone(440.0).astype(np.float32)

        def raw():
            features = processor([samples], sampling_rate=tiny_whisper.SAMPLING_RATE, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**features, max_new_tokens=16)
            return processor.batch_decode(out, skip_special_tokens=True)[0]
        return (lambda: mc.run(inputs={"audio": (samples, tiny_whisper.SAMPLING_RATE)}, registry=registry).output), \
            raw, lambda a, b: a == b

    def image_embedding(registry):
        from transformers import AutoProcessor, CLIPModel
        folder = tiny_clip.build_clip(root / "clip")
        compose(registry, f"component:\n  type: model\n  task: image-embedding\n  model: {folder}\n  device: cpu\n"
                          "  image: ${input.images}\n")
        processor, model = AutoProcessor.from_pretrained(folder), CLIPModel.from_pretrained(folder).eval()
        images = [_picture(i) for i in range(8)]

        def raw():
            with torch.inference_mode():
                features = model.get_image_features(**processor(images=images, return_tensors="pt"))
                features = getattr(features, "pooler_output", features)
            return torch.nn.functional.normalize(features, dim=-1).numpy()
        return (lambda: mc.run(inputs={"images": images}, registry=registry).output), raw, \
            lambda a, b: np.allclose([v["embedding"] for v in a], b, atol=1e-5)

    def object_detection(registry):
        from transformers import AutoImageProcessor, AutoModelForObjectDetection
        folder = tiny_vision.build_yolos(root / "yolos")
        compose(registry, f"component:\n  type: model\n  task: object-detection\n  model: {folder}\n  device: cpu\n"
                          "  image: ${input.image}\n  params: {min_confidence: 0.0}\n")
        processor = AutoImageProcessor.from_pretrained(folder)
        model = AutoModelForObjectDetection.from_pretrained(folder).eval()
        image = _picture(1, (96, 64))

        def raw():
            with torch.inference_mode():
                out = model(**processor(images=[image], return_tensors="pt"))
            return processor.post_process_object_detection(out, threshold=0.0, target_sizes=[(64, 96)])[0]
        return (lambda: mc.run(inputs={"image": image}, registry=registry).output), raw, \
            lambda a, b: len(a["objects"]) <= len(b["scores"])

    def depth_estimation(registry):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        folder = tiny_vision.build_depth_anything(root / "depth")
        compose(registry, f"component:\n  type: model\n  task: depth-estimation\n  model: {folder}\n  device: cpu\n"
                          "  image: ${input.image}\n")
        processor = AutoImageProcessor.from_pretrained(folder)
        model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
        image = _picture(2, (96, 64))

        def raw():
            with torch.inference_mode():
                out = model(**processor(images=[image], return_tensors="pt"))
            return processor.post_process_depth_estimation(out, target_sizes=[(64, 96)])[0]["predicted_depth"]
        return (lambda: mc.run(inputs={"image": image}, registry=registry).output), raw, \
            lambda a, b: a.size == (96, 64)

    return {"text-to-text": text_to_text, "text-reranking": reranking, "image-text-to-text": image_text_to_text,
            "speech-to-text": speech_to_text, "image-embedding": image_embedding,
            "object-detection": object_detection, "depth-estimation": depth_estimation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tasks", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mc-bench-tasks-") as tmp:
        root = Path(tmp)
        from tests import tiny_models
        tiny_models.use_offline_cache(root / "cache")
        import torch
        torch.manual_seed(0)
        from mc_jupyter.registry import Registry

        table = cases(root)
        wanted = [t for t in (args.tasks.split(",") if args.tasks else table)]
        print(f"{'task':<20} {'mc.run ms':>10} {'raw ms':>10} {'overhead ms':>12} {'ratio':>7}")
        for task in wanted:
            registry = Registry()
            try:
                run, raw, same = table[task](registry)
                assert same(run(), raw()), f"{task}: mc.run and the raw call disagree"
                t_mc, t_raw = _median_pair(run, raw, args.repeats, args.warmup)
                print(f"{task:<20} {t_mc * 1e3:>10.2f} {t_raw * 1e3:>10.2f} {(t_mc - t_raw) * 1e3:>12.2f} "
                      f"{t_mc / t_raw:>6.2f}x", flush=True)
            finally:
                registry.down()
        print(f"(medians of {args.repeats} interleaved calls after {args.warmup} warm-up calls; torch threads: "
              f"{torch.get_num_threads()}; CPU count {os.cpu_count()})")


if __name__ == "__main__":
    main()
