"""text-to-text: ``text:`` (one or a list) -> a sequence-to-sequence model's output text (translation,
summarization); a list gives a list, ``num_return_sequences: n`` a list of n texts per input.

::

    fields ──► TextToTextTask.prepare ──► Call(items = texts, params = TextToTextParams)
                 texts:   :func:`~mc_jupyter.tasks.classification.text_items` (a T5 task prefix such as
                          ``summarize:`` is part of the user's text, as in model-compose)
                 params:  the generation parameters of text-generation (:class:`GenerationParams`), with
                          model-compose's seq2seq defaults: ``num_beams`` 4, ``do_sample`` false, sampling
                          knobs only with ``do_sample: true``; plus ``forced_bos_token``, ``no_repeat_ngram_size``

Beam search keeps several candidate texts until the end, so a stream (``streaming: true``) decodes
greedily unless ``num_beams`` is given; ``num_beams`` above 1 with streaming is an InputError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from ..catalog import Task
from ..errors import InputError
from .base import Call, ModelTask, number_param, param
from .classification import text_items
from .text_generation import GenerationParams

#: model-compose's ``num_beams`` for text-to-text (seq2seq models are usually decoded with beam search).
DEFAULT_BEAMS = 4


@dataclass(frozen=True)
class TextToTextParams:
    generation: GenerationParams       # the shared parameters, read and checked as text-generation's
    max_output_given: bool             # without it, the model's generation config says how long (if it does)
    num_beams: int
    forced_bos_token: Optional[str] = None     # e.g. NLLB's target language, `fra_Latn`
    no_repeat_ngram_size: Optional[int] = None

    @classmethod
    def read(cls, fields: Dict[str, Any], streaming: bool) -> "TextToTextParams":
        generation = GenerationParams.read(fields)
        beams = generation.num_beams
        if streaming and beams is not None and beams > 1:
            raise InputError(f"`num_beams: {beams}` (beam search) cannot stream: the beams compete until the end, "
                             f"so no text is final before then.\n  Set `num_beams: 1` to stream (greedy or "
                             f"sampled), or `streaming: false` for beam search.")
        beams = beams or (1 if streaming else DEFAULT_BEAMS)
        n = generation.sequences
        if streaming and n > 1:
            raise InputError(f"`num_return_sequences: {n}` cannot stream: a stream shows one text as it grows.\n  "
                             f"Remove `num_return_sequences`, or set `streaming: false`.")
        if beams > 1 and n > beams:
            raise InputError(f"`num_return_sequences: {n}` is more than `num_beams: {beams}`: beam search returns "
                             f"at most one text per beam.\n  Raise `num_beams` to {n} or more.")
        if beams == 1 and n > 1 and not (generation.do_sample and generation.temperature != 0):
            raise InputError(f"`num_return_sequences: {n}` with `num_beams: 1` and no sampling would give {n} copies "
                             f"of one greedy text.\n  Set `num_beams: {n}` (the {n} best beams) or "
                             f"`do_sample: true` ({n} draws).")
        token = param(fields, "forced_bos_token")
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise InputError(f"`forced_bos_token` must be a token of the model's tokenizer, such as `fra_Latn` "
                             f"(NLLB's French), not {token!r}.")
        return cls(generation, param(fields, "max_output_length") is not None, beams, token,
                   number_param(fields, "no_repeat_ngram_size", None, int, 1))


class TextToTextTask(ModelTask):
    """Backends fill :meth:`load`, :meth:`generate` (a text per input, or a list of
    ``num_return_sequences`` texts) and :meth:`generate_stream`."""

    task = Task.TEXT_TO_TEXT
    streams = True
    default_batch_size = 8
    backend_attributes = ("default_batch_size",)

    def prepare(self, fields: Dict[str, Any]) -> Call:
        texts, many = text_items(fields, self.task)
        params = TextToTextParams.read(fields, streaming=self.wants_stream(fields, False))
        return Call(texts, many, params, params.generation.batch_size or self.default_batch_size)
