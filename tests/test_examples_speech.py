"""The speech example notebook runs top to bottom on the tiny Whisper placed under openai/whisper-tiny.

The notebook writes its tones to a WAV in the temporary folder (no ``my_recording.wav`` sits in
examples/); the test reads that file back and checks the notebook's transcripts against plain
transformers on the same samples.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mc_jupyter.media import Audio
from tests import tiny_whisper
from tests.test_examples import EXAMPLES, execute, outputs_of, text_of

pytestmark = pytest.mark.slow   # a real kernel and notebook: CI runs these (pytest -m slow)


@pytest.fixture(scope="module")
def whisper(hub_cache, tmp_path_factory):
    return tiny_whisper.build_all(tmp_path_factory.mktemp("whisper"), hub_cache)


def raw_text(folder: Path, samples: np.ndarray, **kwargs) -> str:
    from transformers import AutoProcessor, WhisperForConditionalGeneration
    processor, model = AutoProcessor.from_pretrained(folder), WhisperForConditionalGeneration.from_pretrained(folder)
    features = processor([samples], sampling_rate=tiny_whisper.SAMPLING_RATE, return_tensors="pt")
    with torch.inference_mode():
        out = model.eval().generate(**features, max_new_tokens=128, task=kwargs.pop("task", "transcribe"), **kwargs)
    return processor.batch_decode(out, skip_special_tokens=True)[0]


def plain_of(outputs) -> str:
    return [o for o in outputs if "data" in o][-1]["data"].get("text/plain", "")


def html_of(outputs) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def test_speech_transcribes_the_wav_with_times_a_batch_and_a_translation(whisper):
    assert not (EXAMPLES / "my_recording.wav").exists()
    nb = execute("speech.ipynb")
    wav = Path(tempfile.gettempdir()) / "mc_jupyter_tones.wav"
    assert text_of(outputs_of(nb, "wav_path = str(recording)")).strip() == str(wav)
    samples, rate = Audio(wav.read_bytes()).samples()
    assert rate == 16000 and len(samples) == 3 * rate
    samples = samples.astype(np.float32)

    heard = outputs_of(nb, "%%run -o heard")
    text = raw_text(whisper, samples)
    assert text.strip() and plain_of(heard).strip() == text.strip()
    assert '<audio controls src="data:audio/wav;base64,' in html_of(heard) and text.strip() in html_of(heard)
    assert text_of(outputs_of(nb, "print(repr(heard.output))")).strip() == repr(text)

    timed = text_of(outputs_of(nb, "for segment in timed.output")).splitlines()
    assert timed and all(re.match(r"^ *\d+\.\d\d s → +\d+\.\d\d s  ", line) for line in timed)
    assert "<table" in html_of(outputs_of(nb, "%%run -o timed"))

    both = text_of(outputs_of(nb, "for i, text in enumerate(both.output")).splitlines()
    assert len(both) == 2 and both[0] == f"1. {text!r}"

    english = raw_text(whisper, samples, language="de", task="translate")
    assert text_of(outputs_of(nb, "print(repr(english.output))")).strip() == repr(english)
    assert english != text
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded whisper"
