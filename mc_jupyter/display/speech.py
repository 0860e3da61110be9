"""speech-to-text's result: each transcript beside a player of the audio it came from.

A text shows as it is; segments (``return_timestamps``) as a table of start, end and text, with each
segment's words and their times under it (``timestamp_level: word``). The player is the job's
``audio:`` as an ``<audio controls>`` with the sound inline (a WAV data URL for samples and WAV files),
so the HTML is static: it plays in a saved notebook, nbconvert's HTML and GitHub's viewer alike.
"""

from __future__ import annotations

import html
from typing import Any, Dict, List, Optional

from ..errors import InputError
from ..media import Audio, is_sample_pair, to_audio
from ..tasks.speech_to_text import is_transcript
from .images import BOX

Bundle = Dict[str, Any]
#: Audio larger than this is not embedded in the notebook (its player says so instead).
MAX_EMBEDDED_BYTES = 10 * 2 ** 20
_MUTED = "color:#777;font-size:12px"


def clock(seconds: float) -> str:
    """``m:ss.ss`` (``h:mm:ss.ss`` from an hour), as players show times."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{int(hours)}:{int(minutes):02d}:{secs:05.2f}" if hours else f"{sign}{int(minutes)}:{secs:05.2f}"


def _player(audio: Any) -> str:
    """The audio as an inline ``<audio controls>``, a note when it is too large to embed, or nothing when it
    cannot be read as audio (the transcript still shows)."""
    try:
        found = audio if isinstance(audio, Audio) else to_audio(audio)
    except (InputError, OSError, TypeError, ValueError):
        return ""
    if len(found.data) > MAX_EMBEDDED_BYTES:
        return f'<div style="{_MUTED}">(audio of {len(found.data) / 2 ** 20:.0f} MB: not embedded in the notebook)</div>'
    return f'<div style="margin-bottom:6px">{found.html()}</div>'


def _words(words: List[Dict[str, Any]]) -> str:
    shown = " · ".join(f'{html.escape(w["text"].strip())} <span style="color:#999">{w["start_time"]:.2f}–'
                       f'{w["end_time"]:.2f}</span>' for w in words)
    return f'<div style="{_MUTED}">{shown}</div>' if shown else ""


def _segments_html(segments: List[Dict[str, Any]]) -> str:
    cell = "padding:2px 8px;vertical-align:top"
    rows = "".join(
        f'<tr><td style="{cell};{_MUTED};white-space:nowrap">{clock(segment["start_time"])} → '
        f'{clock(segment["end_time"])}</td><td style="{cell}">{html.escape(segment["text"].strip())}'
        f'{_words(segment.get("words") or [])}</td></tr>' for segment in segments)
    return f'<table style="border-collapse:collapse">{rows}</table>' if rows else \
        f'<div style="{_MUTED}">(no speech found: no segments)</div>'


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    return "\n".join(f'[{clock(segment["start_time"])} → {clock(segment["end_time"])}] {segment["text"].strip()}'
                     for segment in value)


def _transcript_html(value: Any, audio: Any) -> str:
    body = (f'<div style="white-space:pre-wrap">{html.escape(value.strip())}</div>' if isinstance(value, str)
            else _segments_html(value))
    return f'<div style="{BOX};margin-bottom:10px">{_player(audio) if audio is not None else ""}{body}</div>'


def render_transcript(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    """The transcript(s) beside the audio's player, or None when ``value`` is not a transcript (a workflow's
    output may be something else)."""
    audio = fields.get("audio")
    if is_transcript(value):
        if isinstance(audio, list) and not is_sample_pair(audio):
            audio = audio[0] if len(audio) == 1 else None   # a list of audios gives a list of transcripts
        return {"text/plain": _plain(value), "text/html": _transcript_html(value, audio)}
    if not (isinstance(value, list) and value and all(is_transcript(v) for v in value)):
        return None
    audios = audio if isinstance(audio, (list, tuple)) and len(audio) == len(value) else [None] * len(value)
    plain = "\n".join(f"#{i} {_plain(v)}" for i, v in enumerate(value, 1))
    rows = "".join(f'<div style="{_MUTED}">#{i}</div>{_transcript_html(v, a)}'
                   for i, (v, a) in enumerate(zip(value, audios), 1))
    return {"text/plain": plain, "text/html": f"<div>{rows}</div>"}
