"""``driver: vllm``: text-generation and chat-completion in-process through ``vllm.LLM``.

The component's typed config maps onto vLLM's engine arguments (:func:`engine_args`): the source
(:func:`mc_jupyter.drivers.sources.resolve_source`: revision, ``cache_dir`` -> ``download_dir``,
``token`` -> ``hf_token``), precision -> ``dtype`` ('auto' is float16, as the spec says for GPUs),
quantization -> vLLM's methods (nf4/int4 -> in-flight ``bitsandbytes`` 4-bit, int8 -> ``fp8``
weights), ``device_mode: auto`` -> tensor parallelism over every visible GPU, ``options:`` -> any
other engine argument (``max_model_len``, ``gpu_memory_utilization``, ...). The task owns prompts,
messages and parameters (:func:`sampling_kwargs`); a conversation reaches vLLM as the text of the
model's chat template (:func:`engine_prompt`); a conversation with images (image-text-to-text) as the
text of the model's processor's chat template, each image its placeholder, with the images as
``multi_modal_data`` (:func:`vision_prompt`, vLLM's offline multimodal input). Streaming steps vLLM's
engine and yields the new text of each step. vLLM needs CUDA (and cannot be installed on CPU-only machines).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Dict, Iterator, List, Optional

from ..catalog import Device, DeviceMode, Precision, Quantization
from ..devices import require_cuda
from ..errors import DeviceError
from ..tasks.image_text_to_text import Conversation, ImageTextToTextTask
from ..tasks.text_generation import ChatCompletionTask, GenerationParams, TextGenerationTask, chat_prompt
from .hf_common import _from_pretrained
from .sources import ModelSource, config_source, processor_kwargs, resolve_source

_QUANTIZATION = {Quantization.NONE: None, Quantization.NF4: "bitsandbytes", Quantization.INT4: "bitsandbytes",
                 Quantization.INT8: "fp8"}
_ids = itertools.count()


def vllm_dtype(precision: Precision) -> str:
    """vLLM's ``dtype`` for a precision: 'auto' is float16 (the spec's GPU default), the others as named."""
    return "float16" if precision == Precision.AUTO else precision.value


def engine_args(config: Any, source: ModelSource, gpu_count: int) -> Dict[str, Any]:
    """``vllm.LLM(**engine_args(...))`` for a component's typed ``config`` and its resolved ``source``."""
    if config.device == Device.CPU:
        raise DeviceError("the vllm driver runs on CUDA GPUs here; use `driver: huggingface` for `device: cpu`.")
    args: Dict[str, Any] = {"model": source.location}
    if not source.is_local:
        revision = source.kwargs.get("revision")
        if revision and revision != "main":
            args["revision"] = revision
        if source.kwargs.get("cache_dir"):
            args["download_dir"] = source.kwargs["cache_dir"]
        if source.kwargs.get("token"):
            args["hf_token"] = source.kwargs["token"]
    args["dtype"] = vllm_dtype(config.precision)
    quantization = _QUANTIZATION[config.quantization]
    if quantization:
        args["quantization"] = quantization
    args["tensor_parallel_size"] = gpu_count if config.device_mode == DeviceMode.AUTO else 1
    if config.trust_remote_code:
        args["trust_remote_code"] = True
    args.update(config.options or {})
    return args


#: The spec's parameter -> vLLM's ``SamplingParams`` name (``max_tokens`` and ``stop`` are every engine's).
NAMES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
         "repetition_penalty": "repetition_penalty", "min_output_length": "min_tokens",
         "num_return_sequences": "n", "seed": "seed"}


def sampling_kwargs(params: GenerationParams) -> Dict[str, Any]:
    """``vllm.SamplingParams(**sampling_kwargs(...))`` from the generation parameters (0 is greedy)."""
    return params.engine(NAMES)


def engine_prompt(item: Any, tokenizer: Optional[Any] = None, template: Optional[str] = None) -> str:
    """What vLLM is handed for one item: a prompt as it is; a conversation (a list of messages from
    :func:`normalise_messages`) through ``tokenizer``'s chat template (vLLM's ``LLM.get_tokenizer()``)."""
    if isinstance(item, list):
        return chat_prompt(tokenizer, item, template)
    return item


class _Vllm(TextGenerationTask):
    #: vLLM schedules its own batches: a list goes to it whole unless ``batch_size`` says otherwise.
    default_batch_size = 1 << 30

    def load(self) -> None:
        import torch
        from vllm import LLM

        require_cuda("vllm")
        source = resolve_source(self.config.model, self.config.task)
        self.source_description = f"vllm: {source.description}"
        self.llm = LLM(**engine_args(self.config, source, torch.cuda.device_count()))
        self.device = f"cuda × {self.llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size}" \
            if hasattr(self.llm.llm_engine, "vllm_config") else "cuda"
        self.dtype = vllm_dtype(self.config.precision)

    def engine_input(self, item: Any) -> str:
        return engine_prompt(item, self.llm.get_tokenizer() if self.chat else None, self.config.chat_template)

    def generate(self, items: List[Any], params: GenerationParams) -> List[Any]:
        from vllm import SamplingParams

        outputs = self.llm.generate([self.engine_input(item) for item in items],
                                    SamplingParams(**sampling_kwargs(params)), use_tqdm=False)
        texts = [[c.text for c in o.outputs] for o in outputs]
        return [t[0] for t in texts] if params.sequences == 1 else texts

    def generate_stream(self, item: Any, params: GenerationParams, stop: threading.Event) -> Iterator[str]:
        from vllm import SamplingParams

        engine = self.llm.llm_engine
        request_id = f"mc_jupyter-{next(_ids)}"
        engine.add_request(request_id, self.engine_input(item), SamplingParams(**sampling_kwargs(params)))
        sent = 0
        try:
            while engine.has_unfinished_requests() and not stop.is_set():
                for output in engine.step():
                    if output.request_id != request_id:
                        continue
                    text = output.outputs[0].text
                    if len(text) > sent:
                        yield text[sent:]
                        sent = len(text)
        finally:
            if engine.has_unfinished_requests():
                engine.abort_request([request_id])

    def unload(self) -> None:
        if hasattr(self, "llm"):
            del self.llm


class VllmTextGeneration(_Vllm):
    pass


class VllmChatCompletion(ChatCompletionTask, _Vllm):
    pass


def vision_prompt(processor: Any, conversation: Conversation, template: Optional[str] = None) -> Dict[str, Any]:
    """What vLLM is handed for one conversation with images: the processor's chat template applied as text (each
    image part becomes the model's image placeholder) and the images, in the conversation's order, as
    ``multi_modal_data`` (the form of vLLM's offline multimodal examples; ``LLM.generate`` and the engine's
    ``add_request`` both take it, so streaming works as for text)."""
    messages = [dict(message) for message in conversation]     # the processor rewrites each `content` list
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                         **({"chat_template": template} if template else {}))
    images = [part["image"] for message in conversation for part in message["content"] if part["type"] == "image"]
    return {"prompt": text, "multi_modal_data": {"image": images}}


class VllmImageTextToText(ImageTextToTextTask, _Vllm):
    """image-text-to-text on vLLM: the task's conversations through :func:`vision_prompt`."""

    default_batch_size = _Vllm.default_batch_size

    def load(self) -> None:
        from transformers import AutoProcessor

        super().load()
        source = config_source(self.config)     # trust_remote_code reaches the processor too
        self.processor = _from_pretrained(AutoProcessor, source, processor_kwargs(source))

    def engine_input(self, item: Conversation) -> Dict[str, Any]:
        return vision_prompt(self.processor, item, self.config.chat_template)

    def unload(self) -> None:
        if hasattr(self, "processor"):
            del self.processor
        super().unload()
