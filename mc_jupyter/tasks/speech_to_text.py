"""speech-to-text: ``audio:`` (one or a list) -> its transcript, in model-compose's shapes.

::

    fields ──► prepare ──► Call(items = [Recording], params = TranscribeParams)
                 audio:        what media.audio_samples reads (a WAV path or bytes, base64, a data URI,
                               (array, rate), {array, sampling_rate}, ``as audio``), made mono at the
                               model's rate; a list is transcribed in batches
                 span:         only these stretches are transcribed (their times stay the audio's)
                 time_offset:  added to every time: one for all, or one per audio
           backend.generate(recordings, params) ──► per recording, a Transcript per clip (clip times)
           finish ──► the text; with ``return_timestamps`` the segments
                      ``[{text, start_time, end_time}]`` (``timestamp_level: word`` adds their ``words``)

The shapes and the time offset follow model-compose's runtime (``services/model/tasks/speech_to_text``).
Nothing here imports torch.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..catalog import Task
from ..config.positions import clip as shorten
from ..errors import InputError
from ..media import audio_samples, is_sample_pair, resample, to_mono
from ..secrets import scrub
from .base import Call, ModelTask, flag_param, number_param, param, single_or_list

NO_AUDIO = "speech-to-text got no audio: give `audio:`, e.g. `audio: ${input.audio as audio}`."
WHISPER_TASKS = ("transcribe", "translate")
TIMESTAMP_LEVELS = ("segment", "word")


@dataclass
class Clip:
    """A stretch of one audio: its samples (mono, at the model's rate) and where it starts, in seconds."""

    samples: Any
    start: float = 0.0


@dataclass
class Recording:
    """One audio of the action: its clips (the whole audio, or its spans), its length and time offset."""

    clips: List[Clip]
    duration: float
    time_offset: float = 0.0


@dataclass
class Transcript:
    """What a backend gives for one clip: the text and, with timestamps, the segments (clip times)."""

    text: str
    segments: Optional[List[Dict[str, Any]]] = None


@dataclass(frozen=True)
class TranscribeParams:
    language: Optional[str]
    task: Optional[str]                  # Whisper's transcribe | translate
    timestamps: Optional[str]            # None, "segment" or "word"
    chunk_length: Optional[float]        # seconds per window for longer audio (None: the model's window)
    max_output_length: Optional[int]
    num_beams: Optional[int]
    temperature: Optional[float]
    compression_ratio_threshold: Optional[float]
    log_prob_threshold: Optional[float]
    no_speech_threshold: Optional[float]
    batch_size: int


def parse_time(value: Any, name: str) -> float:
    """Seconds from a number or text: ``12.5``, ``"12.5"``, ``"500ms"``, ``"10s"``, ``"1.5m"``, ``"1h"``,
    ``"01:02.5"``, ``"00:01:02.5"`` (model-compose's time values)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower() if isinstance(value, str) else None
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    if text:
        if ":" in text and re.fullmatch(r"(\d+:){1,2}\d+(\.\d+)?", text):
            seconds = 0.0
            for part in text.split(":"):
                seconds = seconds * 60 + float(part)
            return seconds
        found = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?", text)
        if found:
            return float(found.group(1)) * units[found.group(2) or "s"]
    raise InputError(f"`{name}` must be a time, not {shorten(scrub(repr(value)), 60)}.\n  Write seconds (`12.5`), "
                     f"with a unit (`500ms`, `10s`, `1.5m`), or as a clock (`00:01:02.5`).")


def _spans(value: Any) -> List[Tuple[float, float]]:
    """``span:`` (one ``{start_time, end_time}`` or a list) as (start, end) seconds, checked."""
    spans = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for number, span in enumerate(spans, 1):
        where = "`span`" if len(spans) == 1 else f"`span` #{number}"
        if not isinstance(span, dict) or "start_time" not in span or "end_time" not in span:
            raise InputError(f"{where} must be a mapping with `start_time` and `end_time`, not "
                             f"{shorten(scrub(repr(span)), 60)}.\n  Write e.g. `span: {{start_time: 10s, end_time: 20s}}`.")
        start, end = parse_time(span["start_time"], "span.start_time"), parse_time(span["end_time"], "span.end_time")
        if start < 0 or end <= start:
            raise InputError(f"{where} runs from {start:g} s to {end:g} s: it must start at 0 s or later and end "
                             f"after it starts.\n  Write e.g. `span: {{start_time: 10s, end_time: 20s}}`.")
        out.append((start, end))
    return out


class SpeechToTextTask(ModelTask):
    """Backends fill :meth:`load`, :meth:`generate` (per recording, one :class:`Transcript` per clip) and
    :meth:`generate_stream` (one recording's text as it is written), and set :attr:`sampling_rate`."""

    task = Task.SPEECH_TO_TEXT
    streams = True
    default_batch_size = 8
    #: The rate the model's feature extractor reads (the backend sets its own at load).
    sampling_rate: int = 16000

    def prepare(self, fields: Dict[str, Any]) -> Call:
        audio = fields.get("audio")
        if audio is None:
            raise InputError(NO_AUDIO)
        values, many = ([audio], False) if is_sample_pair(audio) else single_or_list(audio)
        if not values:
            raise InputError("speech-to-text got an empty list as `audio:`: there is nothing to transcribe.\n  Give "
                             "one audio or a list of them.")
        offsets = self._time_offsets(fields.get("time_offset"), len(values), many)
        spans = _spans(fields["span"]) if fields.get("span") is not None else None
        recordings = [self._recording(value, offset, spans, f" (#{i} of the list)" if many else "")
                      for i, (value, offset) in enumerate(zip(values, offsets), 1)]
        return Call(recordings, many, self._params(fields), self.batch_size(fields))

    def _recording(self, value: Any, offset: float, spans: Optional[List[Tuple[float, float]]], where: str) -> Recording:
        try:
            samples, rate = audio_samples(value)
            samples = resample(to_mono(samples), rate, self.sampling_rate)
        except InputError as e:
            raise InputError(f"speech-to-text `audio:`{where}: {e}") from None
        duration = len(samples) / self.sampling_rate
        if len(samples) == 0:
            raise InputError(f"speech-to-text `audio:`{where} is empty (0 samples): there is nothing to transcribe."
                             f"\n  Check the file or the array that made it.")
        if spans is None:
            return Recording([Clip(samples)], duration, offset)
        clips = []
        for start, end in spans:
            first, last = int(round(start * self.sampling_rate)), int(round(min(end, duration) * self.sampling_rate))
            if last <= first:
                raise InputError(f"`span` starts at {start:g} s, at or after the end of `audio:`{where} "
                                 f"({duration:.2f} s).\n  Give a span inside the audio.")
            clips.append(Clip(samples[first:last], start))
        return Recording(clips, duration, offset)

    @staticmethod
    def _time_offsets(value: Any, count: int, many: bool) -> List[float]:
        """``time_offset:`` as one offset per audio: a single time for all, or a list pairing with a list."""
        if value is None:
            return [0.0] * count
        if isinstance(value, (list, tuple)):
            if not many or len(value) != count:
                raise InputError(f"`time_offset` is a list of {len(value)}, but `audio:` holds {count} "
                                 f"{'audios' if count != 1 else 'audio'}.\n  Give one time for every audio, or one "
                                 f"list item per audio.")
            return [parse_time(v, "time_offset") for v in value]
        return [parse_time(value, "time_offset")] * count

    def _params(self, fields: Dict[str, Any]) -> TranscribeParams:
        task = fields.get("task")
        if task is not None and task not in WHISPER_TASKS:
            raise InputError(f"`task` must be `transcribe` or `translate` (Whisper's tasks), not "
                             f"{shorten(scrub(repr(task)), 60)}.\n  `translate` writes English whatever the speech.")
        level = param(fields, "timestamp_level", "segment")
        if level not in TIMESTAMP_LEVELS:
            raise InputError(f"`timestamp_level` must be `segment` or `word`, not {shorten(scrub(repr(level)), 60)}.")
        language = param(fields, "language")
        if language is not None and (not isinstance(language, str) or not language.strip()):
            raise InputError(f"`language` must be a language code or name (`en`, `french`), not "
                             f"{shorten(scrub(repr(language)), 60)}.\n  Leave it out to detect the language.")
        chunk = number_param(fields, "chunk_length", None, float, 1)
        return TranscribeParams(
            language=language.strip() if language else None, task=task,
            timestamps=level if flag_param(fields, "return_timestamps", False) else None,
            chunk_length=chunk,
            max_output_length=number_param(fields, "max_output_length", None, int, 1),
            num_beams=number_param(fields, "num_beams", None, int, 1),
            temperature=number_param(fields, "temperature", None, float, 0),
            compression_ratio_threshold=number_param(fields, "compression_ratio_threshold", None, float, 0),
            log_prob_threshold=number_param(fields, "log_prob_threshold", None, float),
            no_speech_threshold=number_param(fields, "no_speech_threshold", None, float, 0),
            batch_size=self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        results = [assemble(recording, transcripts, call.params) for recording, transcripts in zip(call.items, outputs)]
        return results if call.many else results[0]

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        call = self.prepare(fields)
        if call.many and len(call.items) != 1:
            raise InputError("streaming transcribes one audio, not a list.\n  Set `streaming: false` for a list of "
                             "audios.")
        if call.params.timestamps:
            raise InputError("streaming writes the text as it comes; timestamps come with the whole transcript.\n  "
                             "Set `streaming: false` to get `return_timestamps`, or leave them out to stream the text.")
        self.check(call)
        yield from self.generate_stream(call.items[0], call.params, stop)


def assemble(recording: Recording, transcripts: List[Transcript], params: TranscribeParams) -> Any:
    """One audio's result from its clips' transcripts: the text joined, or the segments with each clip's
    start and the audio's ``time_offset`` added to every time (model-compose's ``_apply_time_offset``)."""
    if params.timestamps is None:
        return "".join(t.text for t in transcripts)
    segments = []
    for clip, transcript in zip(recording.clips, transcripts):
        segments += [_shifted(s, clip.start + recording.time_offset) for s in transcript.segments or []]
    return segments


def _shifted(value: Dict[str, Any], by: float) -> Dict[str, Any]:
    out = dict(value, start_time=round(value["start_time"] + by, 3), end_time=round(value["end_time"] + by, 3))
    if isinstance(value.get("words"), list):
        out["words"] = [_shifted(w, by) for w in value["words"]]
    return out


def is_transcript(value: Any) -> bool:
    """Whether ``value`` has the shape of one audio's result: a text, or a list of segments."""
    if isinstance(value, str):
        return True
    return isinstance(value, list) and all(isinstance(s, dict) and {"text", "start_time", "end_time"} <= set(s)
                                           for s in value)
