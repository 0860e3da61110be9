"""speech-to-text through Whisper's own ``generate`` (the task: :mod:`mc_jupyter.tasks.speech_to_text`).

``AutoProcessor`` gives the feature extractor (log-mel, 16 kHz, 30 s windows) and the tokenizer;
``AutoModelForSpeechSeq2Seq`` (or ``WhisperForConditionalGeneration`` with ``architecture: whisper``)
generates with ``language``, ``task`` and timestamps. Audio longer than ``chunk_length`` seconds (the
model's window, Whisper's 30 s, when not given) is cut into windows that overlap by a sixth of a window
on each side, transcribed in batches, and joined by the Whisper tokenizer's own merge of overlapping
outputs (``_decode_asr``, what transformers' speech-recognition pipeline does with ``chunk_length_s``). Segment times come from Whisper's timestamp
tokens; word times from its cross-attention alignment heads (``generation_config.alignment_heads``).
Streaming writes one window's text token by token; a longer audio's text comes a window at a time,
only as far as the next window cannot change it.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import InputError, ModelLoadError
from ..tasks.base import Call
from ..tasks.speech_to_text import Recording, SpeechToTextTask, TranscribeParams, Transcript
from .hf_common import HFDriver, _from_pretrained, holding_back, model_type_of
from .hf_generation import stream_generate
from .sources import ModelSource, config_source, processor_kwargs

Window = Tuple[Any, Optional[Tuple[float, float, float]]]   # samples, (length, left, right stride) in seconds


class _ClipStop:
    """The stop of one ``generate`` inside a longer stream: set by the caller's ``stop``, or by
    ``stream_generate`` when that one generation ends (which must not end the rest of the audio)."""

    def __init__(self, outer: Any) -> None:
        self.outer, self.done = outer, False

    def is_set(self) -> bool:
        return self.done or self.outer.is_set()

    def set(self) -> None:
        self.done = True


class SpeechToText(HFDriver, SpeechToTextTask):
    """``audio:`` (one or a list) -> the transcript (text, or segments with times)."""

    auto_class = "AutoModelForSpeechSeq2Seq"

    def load(self) -> None:
        source = config_source(self.config)
        self._check_whisper(source)
        if self.config.architecture == "whisper":
            self.auto_class = "WhisperForConditionalGeneration"
        super().load()

    def _check_whisper(self, source: ModelSource) -> None:
        model_type = model_type_of(source)
        if model_type != "whisper":
            raise ModelLoadError(f"`{source.location}` is a `{model_type}` model, not Whisper: the huggingface "
                                 f"speech-to-text driver runs Whisper-family models (their language, task and "
                                 f"timestamp tokens).\n  Give e.g. `model: openai/whisper-small`, or the task this "
                                 f"model does.")

    def _load_tokenizer(self, source: ModelSource) -> Any:
        from transformers import AutoProcessor

        self.processor = _from_pretrained(AutoProcessor, source, processor_kwargs(source))
        self.sampling_rate = int(self.processor.feature_extractor.sampling_rate)
        return self.processor.tokenizer

    def unload(self) -> None:
        if hasattr(self, "processor"):
            del self.processor
        super().unload()

    @property
    def window_seconds(self) -> float:
        """The seconds of audio one forward pass reads (Whisper: 30)."""
        return float(self.processor.feature_extractor.chunk_length)

    @property
    def time_precision(self) -> float:
        """Seconds per timestamp token (Whisper: 30 s over 1500 encoder positions, 0.02)."""
        return self.window_seconds / self.model.config.max_source_positions

    # -- before anything is generated ------------------------------------------------------------
    def check(self, call: Call) -> None:
        """The parameters against this model, so a mistake fails before any audio is transcribed."""
        params: TranscribeParams = call.params
        generation = self.model.generation_config
        if self.english_only:
            if params.task == "translate" or (params.language and self.language_code(params.language) != "en"):
                key = f"task: {params.task}" if params.task == "translate" else f"language: {params.language}"
                raise InputError(f"`{self.source.location}` is an English-only Whisper: it takes no `{key}`.\n  "
                                 f"Remove it, or use a multilingual model (e.g. openai/whisper-small, not the `.en` "
                                 f"one).")
        elif params.language is not None:
            self.language_token(params.language)
        if params.chunk_length is not None and params.chunk_length > self.window_seconds:
            raise InputError(f"`chunk_length: {params.chunk_length:g}` is longer than the {self.window_seconds:g} s "
                             f"this model reads at once.\n  Give {self.window_seconds:g} or less; longer audio is cut "
                             f"into windows of that length.")
        limit = self.model.config.max_target_positions - 4       # the start, language, task and timestamp tokens
        if params.max_output_length is not None and params.max_output_length > limit:
            raise InputError(f"`max_output_length: {params.max_output_length}` is more than this model writes in "
                             f"one window: its decoder has {limit + 4} positions, 4 of them for its prompt.\n  Lower "
                             f"`max_output_length` to {limit} or less.")
        if params.timestamps and getattr(generation, "no_timestamps_token_id", None) is None:
            raise InputError(f"`{self.source.location}`'s generation config has no timestamp tokens "
                             f"(`no_timestamps_token_id`), so it cannot give times.\n  Remove `return_timestamps`, or "
                             f"use an openai/whisper-* checkpoint.")
        if params.timestamps == "word" and not getattr(generation, "alignment_heads", None):
            raise InputError(f"word timestamps need Whisper's alignment heads (`alignment_heads` in the generation "
                             f"config), which `{self.source.location}` does not list.\n  Use `timestamp_level: "
                             f"segment`, or a checkpoint that lists them (the openai/whisper-* ones do).")

    @property
    def english_only(self) -> bool:
        """Whether the model knows English only (the ``.en`` checkpoints: no language or task tokens)."""
        return not getattr(self.model.generation_config, "is_multilingual", True)

    @staticmethod
    def language_code(language: str) -> str:
        """``en`` for ``en``, ``english`` or ``<|en|>``: Whisper's code of a language code, name or token."""
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        text = language.strip().lower()
        return text[2:-2] if text.startswith("<|") and text.endswith("|>") else TO_LANGUAGE_CODE.get(text, text)

    def language_token(self, language: str) -> str:
        """``language`` as the model's language token (``<|de|>``); an InputError when the model lacks it."""
        known = getattr(self.model.generation_config, "lang_to_id", None) or {}
        token = f"<|{self.language_code(language)}|>"
        if token not in known:
            codes = ", ".join(t[2:-2] for t in list(known)[:12])
            raise InputError(f"`language: {language}` is not a language this model knows.\n  Give a code or a name it "
                             f"has ({codes}, ...), or leave `language` out to detect it.")
        return token

    # -- generate's arguments --------------------------------------------------------------------
    def generation_arguments(self, params: TranscribeParams) -> Dict[str, Any]:
        """``generate``'s keyword arguments (model-compose's mapping: ``log_prob_threshold`` is transformers'
        ``logprob_threshold``; temperature 0, greedy, unless given; a temperature above 0 samples; without
        ``max_output_length`` the model's generation config says how long)."""
        kwargs: Dict[str, Any] = {}
        if params.language is not None and not self.english_only:   # English-only: English, transcribed
            kwargs["language"] = self.language_token(params.language)
        if params.task is not None and not self.english_only:
            kwargs["task"] = params.task
        if params.max_output_length is not None:
            kwargs["max_new_tokens"] = params.max_output_length
        if params.timestamps:
            kwargs["return_timestamps"] = True
        if params.timestamps == "word":   # token times live in the segments (offset by where each pass began)
            kwargs.update(return_token_timestamps=True, return_segments=True)
        if params.num_beams is not None:
            kwargs["num_beams"] = params.num_beams
        temperature = params.temperature or 0.0   # model-compose's default; Whisper's thresholds need one
        kwargs.update(temperature=temperature, do_sample=temperature > 0)
        for ours, theirs in (("compression_ratio_threshold", "compression_ratio_threshold"),
                             ("log_prob_threshold", "logprob_threshold"), ("no_speech_threshold", "no_speech_threshold")):
            if getattr(params, ours) is not None:
                kwargs[theirs] = getattr(params, ours)
        return kwargs

    def features(self, windows: List[Any]) -> Dict[str, Any]:
        """Log-mel features of each window (padded to the model's window) with their attention mask."""
        found = self.processor.feature_extractor(windows, sampling_rate=self.sampling_rate, return_tensors="pt",
                                                 return_attention_mask=True)
        return {"input_features": found["input_features"].to(self.model.device, self.model.dtype),
                "attention_mask": found["attention_mask"].to(self.model.device)}

    def windows(self, samples: Any, chunk_length: Optional[float]) -> List[Window]:
        """One window for audio up to ``chunk_length`` seconds (the model's window when None); longer audio in
        windows of that length that overlap by a sixth of it on each side (the stride the merge reads), as
        the transformers pipeline's ``chunk_iter`` cuts them."""
        rate, chunk_length = self.sampling_rate, chunk_length or self.window_seconds
        size = int(round(chunk_length * rate))
        if len(samples) <= size:
            return [(samples, None)]
        stride = int(round(chunk_length / 6 * rate))
        out: List[Window] = []
        for start in range(0, len(samples), size - 2 * stride):
            piece, last = samples[start:start + size], start + size >= len(samples)
            left, right = (0 if start == 0 else stride), (0 if last else stride)
            if len(piece) > left:
                out.append((piece, (len(piece) / rate, left / rate, right / rate)))
            if last:
                break
        return out

    # -- the backend's hooks ---------------------------------------------------------------------
    def generate(self, recordings: List[Recording], params: TranscribeParams) -> List[Any]:
        with holding_back(WHISPER_LOGGERS, _quiet_whisper):
            return self._transcribe(recordings, params)

    def _transcribe(self, recordings: List[Recording], params: TranscribeParams) -> List[Any]:
        """Every window of every clip, ``batch_size`` windows per ``generate``; then each clip's transcript."""
        clips = [clip for recording in recordings for clip in recording.clips]
        cuts = [self.windows(clip.samples, params.chunk_length) for clip in clips]
        flat = [window for cut in cuts for window, _ in cut]
        outputs = [output for start in range(0, len(flat), params.batch_size)
                   for output in self._generate(flat[start:start + params.batch_size], params)]
        transcripts, at = [], 0
        for clip, cut in zip(clips, cuts):
            transcripts.append(self.transcript(outputs[at:at + len(cut)], [stride for _, stride in cut],
                                               len(clip.samples) / self.sampling_rate, params))
            at += len(cut)
        each = iter(transcripts)
        return [[next(each) for _ in recording.clips] for recording in recordings]

    def _generate(self, windows: List[Any], params: TranscribeParams) -> List[Dict[str, Any]]:
        """``generate`` on a batch of windows: per window its tokens (and token times, for words)."""
        import torch

        model_config = self.model.config
        attention = getattr(model_config, "_attn_implementation", None)
        try:
            with torch.inference_mode():
                out = self.model.generate(**self.features(windows), **self.generation_arguments(params))
        finally:   # word times switch the model to eager attention for good: switch it back
            if attention is not None and getattr(model_config, "_attn_implementation", None) != attention:
                model_config._attn_implementation = attention
        sequences = out if isinstance(out, torch.Tensor) else out["sequences"]
        found = []
        for i in range(len(windows)):
            item = {"tokens": sequences[i:i + 1].cpu()}
            if params.timestamps == "word":   # as transformers' pipeline reads them
                times = [s["token_timestamps"] for s in out["segments"][i]] or [torch.zeros(0)]
                item["token_timestamps"] = torch.cat(times).unsqueeze(0).cpu()
            found.append(item)
        return found

    def transcript(self, outputs: List[Dict[str, Any]], strides: List[Any], duration: float,
                   params: TranscribeParams) -> Transcript:
        """One clip's transcript from its windows' outputs: one window decoded as it is; several merged by
        the tokenizer where they overlap. Segment times missing from the model's output (no closing
        timestamp) are the previous end and the clip's end."""
        tokenizer = self.tokenizer
        outputs = [dict(o, stride=s) if s is not None else o for o, s in zip(outputs, strides)]
        if params.timestamps is None:
            if len(outputs) == 1:
                return Transcript(tokenizer.batch_decode(outputs[0]["tokens"], skip_special_tokens=True)[0])
            return Transcript(self._decode(outputs, False)[0])
        text, chunks = self._decode(outputs, True)
        segments, end = [], 0.0
        for chunk in chunks:
            start = chunk["timestamp"][0] if chunk["timestamp"][0] is not None else end
            end = chunk["timestamp"][1] if chunk["timestamp"][1] is not None else max(duration, start)
            segments.append({"text": chunk["text"], "start_time": float(start), "end_time": float(end)})
        if params.timestamps == "word":
            words = [{"text": w["text"], "start_time": float(w["timestamp"][0]), "end_time": float(w["timestamp"][1])}
                     for w in self._decode(outputs, "word")[1]]
            group_words(segments, words)
        return Transcript(text, segments)

    def _decode(self, outputs: List[Dict[str, Any]], timestamps: Any) -> Tuple[str, List[Dict[str, Any]]]:
        text, optional = self.tokenizer._decode_asr(outputs, return_timestamps=timestamps, return_language=False,
                                                    time_precision=self.time_precision)
        return text, optional.get("chunks", [])

    def generate_stream(self, recording: Recording, params: TranscribeParams, stop: Any) -> Iterator[str]:
        with holding_back(WHISPER_LOGGERS, _quiet_whisper):
            yield from self._stream(recording, params, stop)

    def _stream(self, recording: Recording, params: TranscribeParams, stop: Any) -> Iterator[str]:
        self.tokens_generated = 0          # over the whole recording, clip after clip (the footer's count)
        for clip in recording.clips:
            if stop.is_set():
                return
            windows = self.windows(clip.samples, params.chunk_length)
            if len(windows) == 1:
                yield from stream_generate(self, self.features([clip.samples]), self.generation_arguments(params),
                                           _ClipStop(stop), counted=self.tokens_generated)
            else:
                yield from self._stream_windows(windows, clip.samples, params, stop)

    def _stream_windows(self, windows: List[Window], samples: Any, params: TranscribeParams,
                        stop: Any) -> Iterator[str]:
        """A long clip's text a window at a time: after each window, the text the next windows cannot change
        (the merge keeps all but the newest window's tokens), and the rest at the end."""
        from transformers.models.whisper.tokenization_whisper import _find_longest_common_sequence

        outputs: List[Dict[str, Any]] = []
        texts: List[List[int]] = []
        shown, counted = "", self.tokens_generated
        special, first_time = set(self.tokenizer.all_special_ids), self.model.generation_config.no_timestamps_token_id + 1
        for number, (window, _) in enumerate(windows, 1):
            if stop.is_set():
                return
            [output] = self._generate([window], params)
            outputs.append(output)
            texts.append([t for t in output["tokens"][0].tolist() if t not in special and t < first_time])
            self.tokens_generated = counted + sum(len(t) for t in texts)
            last = number == len(windows)
            if last:
                text = self.transcript(outputs, [s for _, s in windows], len(samples) / self.sampling_rate, params).text
            else:
                merged = _find_longest_common_sequence(texts)
                text = self.tokenizer.decode(merged[:len(merged) - len(texts[-1])], skip_special_tokens=True)
            if len(text) > len(shown) and text.startswith(shown) and (last or not text.endswith("\ufffd")):
                yield text[len(shown):]      # (half a character waits for the rest)
                shown = text


def group_words(segments: List[Dict[str, Any]], words: List[Dict[str, Any]]) -> None:
    """Give each segment its ``words``: the next words in order, as many as its text holds (both are
    decoded from the same tokens, so the words of a segment spell its text); any left over go to the last."""
    at = 0
    for segment in segments:
        taken, spelled = [], ""
        while at < len(words) and len(spelled) < len(segment["text"]):
            spelled += words[at]["text"]
            taken.append(words[at])
            at += 1
        segment["words"] = taken
    if segments and at < len(words):
        segments[-1]["words"] += words[at:]


#: Where transformers logs what :func:`_quiet_whisper` holds back (during this driver's own calls only).
WHISPER_LOGGERS = ("transformers.generation.utils", "transformers.models.whisper.tokenization_whisper")


def _quiet_whisper(record: logging.LogRecord) -> bool:
    """Hold back what transformers warns of on every Whisper call that is no news to the user (a notebook
    shows it in pink): ``generate`` handing the base ``generate`` its own config with keyword arguments, and
    its config's ``max_length`` with ``max_new_tokens``; a last segment without a closing timestamp (the
    transcript closes it at the clip's end)."""
    message = record.getMessage()
    return not ("together with generation-related arguments" in message
                or "seem to have been set. `max_new_tokens` will take precedence" in message
                or "Whisper did not predict an ending timestamp" in message)
