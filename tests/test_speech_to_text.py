"""speech-to-text (Whisper) against plain transformers on the same tiny Whisper and the same sounds.

The references are transformers' own calls: ``processor(audio, sampling_rate)`` + ``model.generate`` +
``batch_decode`` for text, and transformers' speech-recognition pipeline for timestamps, words and long
audio cut into windows (``chunk_length_s``), which merges overlapping windows the same way.
"""

from __future__ import annotations

import base64
import io
import re
import threading
from typing import List

import numpy as np
import pytest
import torch

import mc_jupyter as mc
from mc_jupyter.display import renderers
from mc_jupyter.display.result import RunResult
from mc_jupyter.display.speech import clock, render_transcript
from mc_jupyter.errors import ConfigError, InputError, ModelLoadError
from mc_jupyter.media import Audio, audio_samples, read_wav
from tests.sinks import Collect
from tests import tiny_whisper as tw
from tests.test_spec_blocks import registry_state

TOKENS = 12
RATE = tw.SAMPLING_RATE
SOUNDS = [tw.tone(440), tw.tone(880, 3.0), tw.chirp(200, 2000)]
WINDOW = tw.WINDOW                                                        # the stand-in reads 3 s at once
LONG = np.concatenate([tw.chirp(200, 2000, 4), tw.tone(300, 3.5)])       # 7.5 s: four 3 s windows


@pytest.fixture(scope="session")
def whisper(hub_cache, tmp_path_factory):
    """The tiny Whisper's folder; the hub cache holds it as openai/whisper-tiny and openai/whisper-small."""
    return tw.build_all(tmp_path_factory.mktemp("whisper"), hub_cache)


@pytest.fixture(scope="module")
def raw(whisper):
    """The same model and processor, loaded by plain transformers."""
    from transformers import AutoProcessor, WhisperForConditionalGeneration
    return AutoProcessor.from_pretrained(whisper), WhisperForConditionalGeneration.from_pretrained(whisper).eval()


@pytest.fixture(scope="module")
def pipe(raw):
    from transformers import pipeline
    processor, model = raw
    return pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                    feature_extractor=processor.feature_extractor, device="cpu", ignore_warning=True)


def raw_texts(raw, audios: List[np.ndarray], **kwargs) -> List[str]:
    """The model card's call: features, generate, decode."""
    processor, model = raw
    features = processor(audios, sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**features, max_new_tokens=TOKENS, **kwargs)
    return processor.batch_decode(out, skip_special_tokens=True)


def pipeline_result(pipe, audio: np.ndarray, **kwargs) -> dict:
    return pipe({"raw": audio, "sampling_rate": RATE}, generate_kwargs={"max_new_tokens": TOKENS, "num_beams": 1},
                **kwargs)


def segments_of(chunks: List[dict], audio: np.ndarray) -> List[dict]:
    """The pipeline's chunks in model-compose's shape; a time the model left open (no closing timestamp)
    closed as the driver closes it: a start at the previous end, an end at the audio's end."""
    segments, end = [], 0.0
    for chunk in chunks:
        start = chunk["timestamp"][0] if chunk["timestamp"][0] is not None else end
        end = chunk["timestamp"][1] if chunk["timestamp"][1] is not None else max(len(audio) / RATE, start)
        segments.append({"text": chunk["text"], "start_time": start, "end_time": end})
    return segments


def component(audio: str = "${input.audio}", extra: str = "", params: str = "temperature: 0.0",
              model: str = "openai/whisper-tiny", top: str = "") -> str:
    """A component in model-compose's shape: its action's keys under ``action:`` (where ``task:`` is
    Whisper's transcribe/translate), decoding under ``params:``; ``top`` adds component keys."""
    extra = extra.replace("\n  ", "\n    ")
    return f"""
component:
  type: model
  task: speech-to-text
  model: {model}
  device: cpu{top}
  action:
    audio: {audio}
    max_output_length: {TOKENS}{extra}
    params: {{{params}}}
"""


def transcribe(registry, audio, **inputs):
    return mc.run(inputs={"audio": audio, **inputs}, registry=registry).output


def wav_samples(data: bytes) -> np.ndarray:
    """What a 16-bit WAV holds, as the standard library reads it (the existing ``Audio.samples``)."""
    samples, rate = Audio(data).samples()
    assert rate == RATE
    return samples.astype(np.float32)


def test_whisper_notices_are_held_back_on_its_own_calls_and_not_on_anyone_elses(registry, whisper, monkeypatch):
    """transformers' every-call Whisper notices (the notebook's pink block) are held back while a Whisper
    component runs, batch or streamed; the same message from another model's call still gets through."""
    import logging

    from mc_jupyter.drivers.hf_speech_to_text import WHISPER_LOGGERS
    notice = "Both `max_new_tokens` and `max_length` seem to have been set. `max_new_tokens` will take precedence."
    logger = logging.getLogger(WHISPER_LOGGERS[0])
    heard: List[str] = []

    class Ear(logging.Handler):
        def emit(self, record):
            heard.append(record.getMessage())

    ear = Ear()
    logger.addHandler(ear)
    try:
        mc.compose(component(), registry=registry)
        model = registry.entries[next(iter(registry.entries))].driver.model
        real = model.generate

        def generate_and_warn(*args, **kwargs):     # transformers' own notice, on Whisper's own call
            logger.warning(notice)
            return real(*args, **kwargs)

        monkeypatch.setattr(model, "generate", generate_and_warn)
        assert transcribe(registry, (SOUNDS[0], RATE))
        assert mc.run(inputs={"audio": (SOUNDS[0], RATE)}, stream=Collect(), registry=registry).output
        assert heard == []
        logger.warning(notice)                      # another model's call: not held back
        assert heard == [notice]
        assert all(not logging.getLogger(name).filters for name in WHISPER_LOGGERS)
    finally:
        logger.removeHandler(ear)


# ------------------------------------------------------------------------------------------------
# Text equals plain transformers; every form of audio


def test_a_transcript_equals_the_raw_whisper_call_and_sounds_differ(registry, whisper, raw):
    mc.compose(component(), registry=registry)
    texts = [transcribe(registry, (s, RATE)) for s in SOUNDS]
    assert texts == raw_texts(raw, SOUNDS)
    assert all(isinstance(t, str) and t.strip() for t in texts) and len(set(texts)) == 3


def test_every_form_of_audio_reads_the_same_samples_as_the_raw_call(registry, whisper, raw, tmp_path):
    mc.compose(component(), registry=registry)
    wav = tw.wav_bytes(SOUNDS[0])
    path = tmp_path / "tone.wav"
    path.write_bytes(wav)
    text = base64.b64encode(wav).decode()
    from_wav = raw_texts(raw, [wav_samples(wav)])[0]
    for form in (str(path), wav, text, "data:audio/wav;base64," + text, Audio(wav), {"path": "x", "bytes": None,
                                                                                       "array": wav_samples(wav),
                                                                                       "sampling_rate": RATE}):
        assert transcribe(registry, form) == from_wav, type(form)
    # `as audio` makes an Audio of whatever it is given
    mc.compose(component(audio="${input.audio as audio}"), registry=registry)
    assert transcribe(registry, str(path)) == transcribe(registry, wav) == from_wav
    # ... and of each audio of a list (a (samples, rate) pair is one audio)
    assert transcribe(registry, [str(path), (wav_samples(wav), RATE), wav]) == [from_wav] * 3
    assert transcribe(registry, (wav_samples(wav), RATE)) == from_wav
    mc.compose(component(), registry=registry)      # a numpy integer rate is a rate, not a second audio
    assert transcribe(registry, (wav_samples(wav), np.int64(RATE))) == from_wav


@pytest.mark.parametrize("fmt, subtype, lossless", [("FLAC", "PCM_16", True), ("MP3", "MPEG_LAYER_III", False),
                                                    ("OGG", "VORBIS", False), ("OGG", "OPUS", False)])
def test_flac_mp3_and_ogg_are_decoded_as_libsndfile_decodes_them(registry, whisper, raw, tmp_path, fmt, subtype,
                                                                 lossless):
    """FLAC, MP3 and OGG (Vorbis, Opus) bytes or files: decoded by libsndfile (soundfile's wheel), resampled
    where their rate is not the model's (Opus is 48 kHz); FLAC gives exactly the WAV's samples."""
    import io

    import soundfile
    from scipy.signal import resample_poly

    rate = 48000 if subtype == "OPUS" else RATE
    sound = resample_poly(SOUNDS[0], rate // RATE, 1).astype(np.float32) if rate != RATE else SOUNDS[0]
    buffer = io.BytesIO()
    soundfile.write(buffer, sound, rate, format=fmt, subtype=subtype)
    data = buffer.getvalue()
    path = tmp_path / f"tone.{'mp3' if fmt == 'MP3' else fmt.lower()}"
    path.write_bytes(data)
    decoded, got_rate = soundfile.read(io.BytesIO(data), dtype="float32")       # the library's own call
    assert got_rate == rate
    if subtype != "OPUS":       # (Opus's encoder delay shifts the samples)
        assert np.corrcoef(decoded[:len(sound) // 2], sound[:len(sound) // 2])[0, 1] > 0.9
    if rate != RATE:
        decoded = resample_poly(decoded, 1, rate // RATE).astype(np.float32)
    mc.compose(component(), registry=registry)
    expected = raw_texts(raw, [decoded])[0]
    assert transcribe(registry, data) == transcribe(registry, str(path)) == expected
    if lossless:
        assert expected == raw_texts(raw, [wav_samples(tw.wav_bytes(SOUNDS[0]))])[0]
    # the other names these types go by: audio/mp3, audio/x-flac, audio/vorbis, audio/opus
    alias = {"FLAC": "audio/x-flac", "MP3": "audio/mp3", "VORBIS": "audio/vorbis", "OPUS": "audio/opus"}
    uri = f"data:{alias.get(fmt, alias.get(subtype))};base64," + base64.b64encode(data).decode()
    assert transcribe(registry, uri) == expected
    mc.compose(component(audio="${input.audio as audio}"), registry=registry)
    assert transcribe(registry, base64.b64encode(data).decode()) == expected
    subtype_word = {"FLAC": "x-flac", "MP3": "mp3"}.get(fmt, "ogg")
    mc.compose(component(audio=f"${{input.audio as audio/{subtype_word}}}"), registry=registry)
    assert transcribe(registry, data) == expected


def test_samples_at_8_khz_are_resampled_to_the_models_16_khz_with_a_polyphase_filter(registry, whisper, raw):
    from scipy.signal import resample_poly

    slow = tw.tone(440, rate=8000)
    mc.compose(component(), registry=registry)
    expected = raw_texts(raw, [resample_poly(slow, 2, 1).astype(np.float32)])[0]
    assert transcribe(registry, (slow, 8000)) == transcribe(registry, {"array": slow, "sampling_rate": 8000}) == expected
    stereo = np.stack([SOUNDS[1], SOUNDS[1] * 0.5], axis=1)            # (n, 2): the channels averaged
    assert transcribe(registry, (stereo, RATE)) == raw_texts(raw, [stereo.mean(axis=1)])[0]
    pcm = (SOUNDS[2] * 32767).astype(np.int16)                           # int16 PCM scaled to [-1, 1]
    assert transcribe(registry, (pcm, RATE)) == raw_texts(raw, [pcm / 32768.0])[0]


def test_wav_files_of_other_widths_and_float_are_read():
    import struct
    samples = np.array([0.0, 0.5, -0.5, 0.25], dtype=np.float32)

    def wav(tag: int, bits: int, body: bytes, channels: int = 1) -> bytes:
        fmt = struct.pack("<HHIIHH", tag, channels, 8000, 8000 * channels * bits // 8, channels * bits // 8, bits)
        chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
        return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks

    int24 = b"".join(int(round(v * 2 ** 23)).to_bytes(4, "little", signed=True)[:3] for v in [0.0, 0.5, -0.5, 0.25])
    for data in (wav(3, 32, samples.tobytes()), wav(3, 64, samples.astype("<f8").tobytes()), wav(1, 24, int24),
                 wav(1, 32, (samples * 2 ** 31).astype("<i4").tobytes())):
        read, rate = read_wav(data)
        assert rate == 8000 and np.allclose(read, samples, atol=1e-6)
    stereo, _ = read_wav(wav(1, 16, (np.array([0.5, -0.5, 0.25, 0.0]) * 32768).astype("<i2").tobytes(), channels=2))
    assert stereo.shape == (2, 2) and np.allclose(stereo, [[0.5, -0.5], [0.25, 0.0]])
    pcm = tw.wav_bytes(SOUNDS[0])
    assert np.array_equal(read_wav(pcm)[0], wav_samples(pcm))            # what the stdlib reader gives


# ------------------------------------------------------------------------------------------------
# Language, task and decoding parameters reach generate


def test_language_and_translate_reach_generate(registry, whisper, raw):
    mc.compose(component(extra="\n  language: ${input.language}\n  task: ${input.task}"), registry=registry)
    for language, task in (("de", "translate"), ("german", "transcribe"), ("en", "transcribe")):
        ours = [transcribe(registry, (s, RATE), language=language, task=task) for s in SOUNDS]
        assert ours == raw_texts(raw, SOUNDS, language=language, task=task), (language, task)
    detected = raw_texts(raw, SOUNDS)
    assert raw_texts(raw, SOUNDS, language="de", task="translate") != detected   # the prompt tokens changed the text


def test_beams_thresholds_and_sampling_reach_generate(registry, whisper, raw):
    params = ("num_beams: 2, compression_ratio_threshold: 1.35, log_prob_threshold: -1.0, no_speech_threshold: 0.6")
    mc.compose(component(params=params), registry=registry)
    assert transcribe(registry, (SOUNDS[1], RATE)) == raw_texts(
        raw, SOUNDS[1:2], num_beams=2, compression_ratio_threshold=1.35, logprob_threshold=-1.0,
        no_speech_threshold=0.6, temperature=0.0)[0]
    mc.compose(component(params="temperature: 1.5"), registry=registry)
    torch.manual_seed(3)
    sampled = transcribe(registry, (SOUNDS[1], RATE))
    torch.manual_seed(3)
    assert sampled == raw_texts(raw, SOUNDS[1:2], do_sample=True, temperature=1.5)[0]
    assert sampled != raw_texts(raw, SOUNDS[1:2])[0]


def test_max_output_length_bounds_the_tokens(registry, whisper, raw):
    mc.compose(component().replace(f"max_output_length: {TOKENS}", "max_output_length: 3"), registry=registry)
    processor, model = raw
    out = transcribe(registry, (SOUNDS[0], RATE))
    expected = model.generate(**processor(SOUNDS[:1], sampling_rate=RATE, return_tensors="pt"), max_new_tokens=3)
    assert out == processor.batch_decode(expected, skip_special_tokens=True)[0] and len(out.split()) <= 3


# ------------------------------------------------------------------------------------------------
# Timestamps: segments, words, time_offset, span


def test_segments_equal_the_pipelines_chunks_in_model_composes_shape(registry, whisper, pipe):
    mc.compose(component(extra="\n  return_timestamps: true"), registry=registry)
    for sound in SOUNDS[1:]:
        segments = transcribe(registry, (sound, RATE))
        assert segments == segments_of(pipeline_result(pipe, sound, return_timestamps=True)["chunks"], sound)
        assert segments and all(set(s) == {"text", "start_time", "end_time"} for s in segments)
        assert any(s["text"].strip() for s in segments)


def test_word_level_gives_each_segment_its_words_with_the_pipelines_times(registry, whisper, pipe):
    mc.compose(component(extra="\n  return_timestamps: true\n  timestamp_level: word"), registry=registry)
    segments = transcribe(registry, (SOUNDS[1], RATE))
    words = [w for s in segments for w in s["words"]]
    expected = pipeline_result(pipe, SOUNDS[1], return_timestamps="word")["chunks"]
    assert [(w["text"], w["start_time"], w["end_time"]) for w in words] == \
        [(c["text"], *c["timestamp"]) for c in expected]
    assert len(words) >= 2 and all("".join(w["text"] for w in s["words"]) == s["text"] for s in segments)
    assert [{k: s[k] for k in ("text", "start_time", "end_time")} for s in segments] == \
        segments_of(pipeline_result(pipe, SOUNDS[1], return_timestamps=True)["chunks"], SOUNDS[1])


def test_time_offset_moves_every_time_one_for_all_or_one_per_audio(registry, whisper):
    mc.compose(component(extra="\n  return_timestamps: true\n  timestamp_level: word\n  time_offset: ${input.offset}"),
               registry=registry)
    plain = transcribe(registry, (SOUNDS[1], RATE), offset=0)
    moved = transcribe(registry, (SOUNDS[1], RATE), offset="1m")
    assert [s["text"] for s in moved] == [s["text"] for s in plain]
    assert [(s["start_time"], s["end_time"]) for s in moved] == \
        [(round(s["start_time"] + 60, 3), round(s["end_time"] + 60, 3)) for s in plain]
    assert [w["start_time"] for s in moved for w in s["words"]] == \
        [round(w["start_time"] + 60, 3) for s in plain for w in s["words"]]
    pair = transcribe(registry, [(SOUNDS[1], RATE), (SOUNDS[1], RATE)], offset=["00:00:10", 2.5])
    assert pair[0][0]["start_time"] == round(plain[0]["start_time"] + 10, 3)
    assert pair[1][0]["start_time"] == round(plain[0]["start_time"] + 2.5, 3)


def test_a_span_transcribes_only_that_stretch_and_keeps_the_audios_times(registry, whisper, raw):
    sound = np.concatenate([SOUNDS[0], SOUNDS[1], SOUNDS[2]])            # 2 s + 3 s + 2 s
    mc.compose(component(extra="\n  span: {start_time: 2s, end_time: '00:00:05'}"), registry=registry)
    assert transcribe(registry, (sound, RATE)) == raw_texts(raw, [sound[2 * RATE:5 * RATE]])[0]
    mc.compose(component(extra="\n  return_timestamps: true\n  span: [{start_time: 2, end_time: 5}, "
                               "{start_time: 5s, end_time: 60s}]"), registry=registry)
    segments = transcribe(registry, (sound, RATE))
    mc.compose(component(extra="\n  return_timestamps: true"), registry=registry)
    middle, last = transcribe(registry, (sound[2 * RATE:5 * RATE], RATE)), transcribe(registry, (sound[5 * RATE:], RATE))
    assert segments == [dict(s, start_time=round(s["start_time"] + 2, 3), end_time=round(s["end_time"] + 2, 3))
                        for s in middle] + [dict(s, start_time=round(s["start_time"] + 5, 3),
                                                 end_time=round(s["end_time"] + 5, 3)) for s in last]


# ------------------------------------------------------------------------------------------------
# Batches and long audio


def test_a_list_runs_in_batches_and_equals_one_by_one(registry, whisper, raw):
    mc.compose(component(params="batch_size: 2"), registry=registry)
    batched = transcribe(registry, [(s, RATE) for s in SOUNDS])
    singles = [transcribe(registry, (s, RATE)) for s in SOUNDS]
    assert batched == singles == [raw_texts(raw, [s])[0] for s in SOUNDS] == raw_texts(raw, SOUNDS)


def test_long_audio_is_cut_into_windows_and_merged_as_the_pipeline_does(registry, whisper, pipe):
    mc.compose(component(extra="\n  chunk_length: ${input.chunk | 3}"), registry=registry)
    for chunk in (3, 1.5):
        assert transcribe(registry, (LONG, RATE), chunk=chunk) == \
            pipeline_result(pipe, LONG, chunk_length_s=chunk)["text"], chunk
    mc.compose(component(extra="\n  return_timestamps: true"), registry=registry)
    segments = transcribe(registry, (LONG, RATE))
    assert segments == segments_of(pipeline_result(pipe, LONG, chunk_length_s=WINDOW, return_timestamps=True)["chunks"],
                                   LONG)
    assert max(s["end_time"] for s in segments) > WINDOW                # the later windows' times run on


def test_windows_overlap_by_a_sixth_and_cover_the_audio(registry, whisper):
    mc.compose(component(), registry=registry)
    driver = registry.entries["default"].driver
    windows = driver.windows(LONG, None)                                 # the model's window: 3 s, strides of 0.5 s
    assert [(len(w) / RATE, stride) for w, stride in windows] == [
        (3.0, (3.0, 0.0, 0.5)), (3.0, (3.0, 0.5, 0.5)), (3.0, (3.0, 0.5, 0.5)), (1.5, (1.5, 0.5, 0.0))]
    assert driver.windows(SOUNDS[1], None) == [(SOUNDS[1], None)]        # one window: the raw call, no merge


# ------------------------------------------------------------------------------------------------
# Streaming


def test_a_stream_grows_to_the_batch_text_and_stops_on_the_stop_event(registry, whisper):
    mc.compose(component(), registry=registry)
    whole = transcribe(registry, (SOUNDS[0], RATE))
    long_whole = transcribe(registry, (LONG, RATE))
    mc.compose(component(extra="\n  streaming: true"), registry=registry)
    sink = Collect()
    result = mc.run(inputs={"audio": (SOUNDS[0], RATE)}, stream=sink, registry=registry)
    assert result.output == "".join(sink.chunks) == whole and len(sink.chunks) > 1
    assert sink.interrupted is False and result.outcome.last.tokens >= 1
    stopped = Collect(stop_after=2)
    result = mc.run(inputs={"audio": (SOUNDS[0], RATE)}, stream=stopped, registry=registry)
    assert stopped.interrupted is True and whole.startswith(result.output) and len(result.output) < len(whole)
    assert not [t for t in threading.enumerate() if t.name.startswith("mc_jupyter-generate")]
    # a long audio comes a window at a time, and joins to the batch's merged text
    sink = Collect()
    assert mc.run(inputs={"audio": (LONG, RATE)}, stream=sink, registry=registry).output == long_whole
    assert "".join(sink.chunks) == long_whole and len(sink.chunks) >= 2


def test_a_streamed_recording_of_several_spans_counts_the_tokens_of_all_of_them(registry, whisper):
    """The footer's token count runs on over a recording's clips (its spans), not from 0 at each one."""
    def streamed(span: str) -> Collect:
        mc.compose(component(extra=f"\n  streaming: true\n  span: {span}"), registry=registry)
        sink = Collect()
        mc.run(inputs={"audio": (SOUNDS[1], RATE)}, stream=sink, registry=registry)
        return sink

    first, second = streamed("{start_time: 0, end_time: 1.5}"), streamed("{start_time: 1.5, end_time: 3}")
    both = streamed("[{start_time: 0, end_time: 1.5}, {start_time: 1.5, end_time: 3}]")
    assert both.tokens == sorted(both.tokens) and first.tokens[-1] > 0 and second.tokens[-1] > 0
    assert both.tokens[-1] == first.tokens[-1] + second.tokens[-1]


def test_streaming_takes_one_audio_and_no_timestamps(registry, whisper):
    mc.compose(component(extra="\n  streaming: true\n  return_timestamps: ${input.times | false}"), registry=registry)
    with pytest.raises(InputError, match="streaming transcribes one audio, not a list"):
        mc.run(inputs={"audio": [(s, RATE) for s in SOUNDS]}, stream=Collect(), registry=registry)
    with pytest.raises(InputError, match="timestamps come with the whole transcript"):
        mc.run(inputs={"audio": (SOUNDS[0], RATE), "times": True}, stream=Collect(), registry=registry)


# ------------------------------------------------------------------------------------------------
# The model-compose file, loading, precision


MODEL_COMPOSE_FILE = """
components:
  - id: whisper
    type: model
    task: speech-to-text
    driver: huggingface
    architecture: whisper
    model: openai/whisper-small
    device: cpu
    action:
      audio: ${input.audio as audio}
      language: ${input.language}
      task: translate
      return_timestamps: true
      timestamp_level: segment
      max_output_length: 12
      chunk_length: 3
      params:
        num_beams: 1
        temperature: 0.0
    output: ${result}
workflow:
  title: Translate speech to English
  jobs:
    - id: translate
      component: whisper
      input:
        audio: ${input.audio}
        language: ${input.language}
      output:
        english: ${output}
"""


def test_a_model_compose_file_translates_with_segments(registry, whisper, pipe, tmp_path):
    mc.compose(MODEL_COMPOSE_FILE, registry=registry)
    driver = registry.entries["whisper"].driver
    assert type(driver.model).__name__ == "WhisperForConditionalGeneration"
    path = tmp_path / "speech.wav"
    path.write_bytes(tw.wav_bytes(SOUNDS[1]))
    out = mc.run(inputs={"audio": str(path), "language": "fr"}, registry=registry).output
    samples = wav_samples(path.read_bytes())
    expected = pipeline_result(pipe, samples, return_timestamps=True, language="fr", task="translate")
    assert out == {"english": segments_of(expected["chunks"], samples)}


def test_a_model_that_is_not_whisper_is_refused_at_load(registry, models):
    with pytest.raises(ModelLoadError, match="is a `llama` model, not Whisper"):
        mc.compose(component(model=str(models["causal"])), registry=registry)


def test_precision_is_honoured(registry, whisper):
    mc.compose(component(top="\n  precision: bfloat16"), registry=registry)
    [row] = registry.snapshot()
    assert row["dtype"] == "bfloat16" and row["device"] == "cpu"
    assert next(registry.entries["default"].driver.model.parameters()).dtype == torch.bfloat16
    assert isinstance(transcribe(registry, (SOUNDS[0], RATE)), str)


# ------------------------------------------------------------------------------------------------
# Bad input: a clear error naming the field, the registry as it was


@pytest.mark.parametrize("audio, message", [
    (None, "speech-to-text got no audio: give `audio:`"),
    ([], "empty list as `audio:`"),
    ("/nowhere/speech.wav", "`audio:`: file not found: /nowhere/speech.wav"),
    (b"not audio at all" * 4, "`audio:`: the 64 bytes given are not audio"),
    (b"ID3" + bytes(64), "`audio:`: the audio (67 bytes of audio/mpeg) could not be decoded"),
    (b"\x1aE\xdf\xa3" + bytes(64), "`audio:`: audio/webm audio is not decoded here: WAV, FLAC, MP3 and OGG"),
    (b"RIFF\x10\x00\x00\x00WAVEjunk", "`audio:`: the audio is a WAV file without its `fmt` or `data` chunk"),
    ((np.zeros(100, np.float32), 0), "`audio:`: the sample rate 0 is not one audio is recorded at"),
    ((np.zeros(100, np.float32), 16.5), "the sample rate 16.5 is not one audio is recorded at"),
    ({"array": np.zeros(100, np.float32)}, "`audio:`: audio samples without a sample rate"),
    (np.zeros(100, np.float32), "without a sample rate cannot be read"),
    ((np.zeros(0, np.float32), RATE), "`audio:` is empty (0 samples)"),
    ((np.full(10, np.nan, np.float32), RATE), "NaN or infinite"),
    ([(SOUNDS[0], RATE), ("/nowhere.wav")], "`audio:` (#2 of the list): file not found"),
])
def test_unreadable_audio_is_an_input_error_naming_the_field(registry, whisper, audio, message):
    mc.compose(component(), registry=registry)
    before = registry_state(registry)
    with pytest.raises(InputError) as caught:
        transcribe(registry, audio)
    assert message in str(caught.value)
    assert registry_state(registry) == before


@pytest.mark.parametrize("extra, inputs, message", [
    ("\n  language: ${input.x}", {"x": "klingon"}, "`language: klingon` is not a language this model knows"),
    ("\n  chunk_length: 45", {}, "`chunk_length: 45` is longer than the 3 s this model reads at once"),
    ("\n  time_offset: ${input.x}", {"x": "soon"}, "`time_offset` must be a time, not 'soon'"),
    ("\n  time_offset: ${input.x}", {"x": [1, 2]}, "`time_offset` is a list of 2, but `audio:` holds 1 audio"),
    ("\n  span: {start_time: 10s, end_time: 12s}", {}, "`span` starts at 10 s, at or after the end of `audio:` (2.00 s)"),
    ("\n  span: {start_time: 3, end_time: 1}", {}, "`span` runs from 3 s to 1 s"),
    ("\n  task: ${input.x}", {"x": "summarize"}, "`task` must be `transcribe` or `translate`"),
])
def test_bad_parameters_are_input_errors_naming_the_key(registry, whisper, extra, inputs, message):
    mc.compose(component(extra=extra), registry=registry)
    with pytest.raises(InputError) as caught:
        transcribe(registry, (SOUNDS[0], RATE), **inputs)
    assert message in str(caught.value)


def test_max_output_length_past_the_decoder_is_refused_before_generating(registry, whisper):
    mc.compose(component().replace(f"max_output_length: {TOKENS}", "max_output_length: 445"), registry=registry)
    with pytest.raises(InputError, match=r"`max_output_length: 445` is more than this model writes in one window: "
                                         r"its decoder has 448 positions, 4 of them for its prompt.\n  Lower "
                                         r"`max_output_length` to 444 or less"):
        transcribe(registry, (SOUNDS[0], RATE))


def test_a_model_without_alignment_heads_or_languages_says_what_it_cannot_do(registry, whisper, tmp_path):
    import json
    import shutil
    from transformers import AutoProcessor, WhisperForConditionalGeneration
    folder = tmp_path / "whisper-tiny.en"
    shutil.copytree(whisper, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    del config["alignment_heads"]
    config["is_multilingual"] = False
    (folder / "generation_config.json").write_text(json.dumps(config))
    mc.compose(component(model=str(folder), extra="\n  return_timestamps: ${input.times | false}\n"
                                                   "  timestamp_level: word\n  language: ${input.language}\n"
                                                   "  task: ${input.task | transcribe}"), registry=registry)
    english = raw_texts((AutoProcessor.from_pretrained(folder), WhisperForConditionalGeneration.from_pretrained(folder)),
                        SOUNDS[:1])[0]
    assert transcribe(registry, (SOUNDS[0], RATE), language="english") == english   # English, transcribed: as it is
    with pytest.raises(InputError, match="is an English-only Whisper: it takes no `language: de`"):
        transcribe(registry, (SOUNDS[0], RATE), language="de")
    with pytest.raises(InputError, match="is an English-only Whisper: it takes no `task: translate`"):
        transcribe(registry, (SOUNDS[0], RATE), language="en", task="translate")
    with pytest.raises(InputError, match="word timestamps need Whisper's alignment heads"):
        transcribe(registry, (SOUNDS[0], RATE), language="en", times=True)


@pytest.mark.parametrize("extra, params, message", [
    ("\n  timestamp_level: character", "temperature: 0.0", "timestamp_level"),
    ("\n  task: summarize", "temperature: 0.0", "task"),
    ("", "top_k: 3", "top_k"),
])
def test_unknown_values_and_keys_fail_at_compose(registry, whisper, extra, params, message):
    with pytest.raises(ConfigError) as caught:
        mc.compose(component(extra=extra, params=params), registry=registry)
    assert message in str(caught.value)
    assert registry.snapshot() == []


# ------------------------------------------------------------------------------------------------
# The display: the transcript beside a player of the audio


def players(html: str) -> List[np.ndarray]:
    return [read_wav(base64.b64decode(b))[0] for b in re.findall(r'<audio controls src="data:audio/wav;base64,([^"]+)"', html)]


def test_a_transcript_shows_beside_a_player_of_its_audio(registry, whisper, tmp_path):
    mc.compose(component(), registry=registry)
    result = mc.run(inputs={"audio": (SOUNDS[0], RATE)}, registry=registry)
    bundle = RunResult(result.outcome)._repr_mimebundle_()
    assert bundle["text/plain"] == result.output.strip()
    assert result.output.strip() in bundle["text/html"]
    [played] = players(bundle["text/html"])
    assert np.allclose(played, SOUNDS[0], atol=1 / 32767)                # the input's samples, as 16-bit WAV


def test_segments_show_as_a_table_of_times_and_a_list_as_numbered_transcripts(registry, whisper, tmp_path):
    mc.compose(component(extra="\n  return_timestamps: true\n  timestamp_level: word"), registry=registry)
    path = tmp_path / "speech.wav"
    path.write_bytes(tw.wav_bytes(SOUNDS[1]))
    result = mc.run(inputs={"audio": str(path)}, registry=registry)
    bundle = RunResult(result.outcome)._repr_mimebundle_()
    first = result.output[0]
    assert bundle["text/plain"].splitlines()[0] == \
        f"[{clock(first['start_time'])} → {clock(first['end_time'])}] {first['text'].strip()}"
    assert f"{clock(first['start_time'])} → {clock(first['end_time'])}" in bundle["text/html"]
    assert "<table" in bundle["text/html"] and len(players(bundle["text/html"])) == 1
    word = first["words"][0]
    assert f'{word["start_time"]:.2f}–{word["end_time"]:.2f}' in bundle["text/html"]
    many = mc.run(inputs={"audio": [str(path), (SOUNDS[0], RATE)]}, registry=registry)
    html = RunResult(many.outcome)._repr_mimebundle_()["text/html"]
    assert len(players(html)) == 2 and "#2" in html


def test_the_renderer_takes_only_transcripts():
    fields = {"audio": (SOUNDS[0], RATE)}
    assert render_transcript({"english": "hi"}, fields) is None
    assert render_transcript([1, 2], fields) is None
    assert render_transcript(" hello there", fields)["text/plain"] == "hello there"
    assert "(no speech found: no segments)" in render_transcript([], fields)["text/html"]
    assert renderers.task_renderer("speech-to-text") is render_transcript
    assert clock(3725.5) == "1:02:05.50" and clock(65.25) == "1:05.25"
    assert render_transcript("hi", {"audio": b"no audio"})["text/html"].count("<audio") == 0   # no player, still the text


def test_audio_samples_reads_an_audio_made_by_as_audio_the_same_as_the_array():
    made = Audio.from_array(SOUNDS[0], RATE)
    samples, rate = audio_samples(made)
    assert rate == RATE and np.allclose(samples, SOUNDS[0], atol=1 / 32767)
    assert np.array_equal(audio_samples({"audio": SOUNDS[0], "sample_rate": RATE})[0], SOUNDS[0])
    assert np.array_equal(audio_samples(io.BytesIO(made.data).getvalue())[0], samples)
