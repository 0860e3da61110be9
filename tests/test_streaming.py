"""Streaming: the same text as a plain run, interrupts within a second, errors from the thread."""

import signal
import threading
import time

import pytest

import mc_jupyter as mc
from mc_jupyter.display.result import StreamView
from mc_jupyter.engine import StreamSink

STREAM = """
component:
  id: talker
  type: model
  task: text-generation
  model: {path}
  streaming: {streaming}
  text: ${{input.prompt}}
  params:
    max_output_length: {n}
    temperature: 0
{extra}"""


class Collect(StreamSink):
    def __init__(self):
        self.chunks, self.started, self.finished = [], False, None

    def start(self, job_id, component_id):
        self.started = True

    def chunk(self, text, tokens=None):
        self.chunks.append(text)

    def finish(self, interrupted=False):
        self.finished = interrupted


def compose(registry, models, streaming="true", n=24, extra=""):
    mc.compose(STREAM.format(path=models["causal"], streaming=streaming, n=n, extra=extra), registry=registry)


def test_a_stream_gives_the_same_text_as_a_plain_run_chunk_by_chunk(registry, models):
    compose(registry, models, streaming="false")
    plain = mc.run(inputs={"prompt": "Once upon"}, registry=registry).output
    compose(registry, models, streaming="true")
    sink = Collect()
    result = mc.run(inputs={"prompt": "Once upon"}, stream=sink, registry=registry)
    assert result.output == plain == "".join(sink.chunks)
    assert len(sink.chunks) > 1 and sink.started and sink.finished is False
    assert result.outcome.last.tokens == 24


def test_result_brackets_bind_each_chunk(registry, models):
    compose(registry, models, extra="  output: ${result[]}\n")
    sink = Collect()
    result = mc.run(inputs={"prompt": "Hi"}, stream=sink, registry=registry)
    assert "".join(sink.chunks) == result.output


def test_a_kernel_interrupt_stops_generation_within_a_second_and_the_model_stays_usable(registry, models):
    compose(registry, models, n=1000)   # the tiny model's 1024 positions, less the prompt
    sink = Collect()
    main = threading.main_thread().ident
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    started = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        mc.run(inputs={"prompt": "Hi"}, stream=sink, registry=registry)
    stopped = time.perf_counter() - started
    assert stopped < 0.3 + 1.0
    assert sink.finished is True and len(sink.chunks) > 0      # the partial text was kept
    assert not [t for t in threading.enumerate() if t.name.startswith("mc_jupyter-generate")]
    compose(registry, models, n=5)
    assert len(mc.run(inputs={"prompt": "Hi"}, registry=registry).output) > 0


def test_an_exception_in_the_generation_thread_reaches_the_user(registry, models):
    from mc_jupyter.errors import RunError
    compose(registry, models, n=5)
    model = registry.entries["talker"].driver.model
    original = model.forward

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered (simulated in forward)")

    model.forward = broken   # a fault inside the real generate loop, on its own thread
    try:
        with pytest.raises(RunError) as info:
            mc.run(inputs={"prompt": "Hi"}, stream=Collect(), registry=registry)
    finally:
        model.forward = original
    assert "job `talker` (component `talker`, text-generation) failed: RuntimeError: CUDA error" in str(info.value)
    assert mc.run(inputs={"prompt": "Hi"}, stream=Collect(), registry=registry).output


def _watched_view(shown: list, started: float) -> StreamView:
    """A StreamView whose display updates land in ``shown`` (their text/plain)."""
    class Handle:
        def update(self, bundle, raw=True):
            shown.append(bundle["text/plain"])

    view = StreamView()
    view.handle, view.started = Handle(), started
    return view


def test_the_stream_view_updates_at_most_thirty_times_a_second(monkeypatch):
    shown = []
    view = _watched_view(shown, time.perf_counter())
    started = time.perf_counter()
    for i in range(3000):   # a fast stream: 3000 chunks in well under a second
        view.chunk("x", tokens=i + 1)
    view.finish()
    seconds = time.perf_counter() - started
    assert view.text == "x" * 3000
    assert len(shown) <= 30 * seconds + 2
    assert shown[-1].startswith("x" * 3000) and "3000 tokens" in shown[-1]


def test_the_stream_footer_says_the_time_to_the_first_token_and_the_decode_rate_after_it(monkeypatch):
    """Time to first token (tokenizing and prefill) apart from the decode's own rate: 10 tokens after the
    first one in 1.0 s is 10.0 tokens/s, not the 11 / 1.2 s a single overall rate would say."""
    from mc_jupyter.display import result
    clock = [100.0]
    monkeypatch.setattr(result.time, "perf_counter", lambda: clock[0])
    shown = []
    view = _watched_view(shown, clock[0])
    clock[0] += 0.2
    view.chunk("Hello", tokens=1)
    for i in range(10):
        clock[0] += 0.1
        view.chunk(" x", tokens=i + 2)
    view.finish()
    assert shown[-1].endswith("[11 tokens · 1.2 s · first token 200 ms · decode 10.0 tokens/s]"), shown[-1]
    # a stream that counts no tokens (a server's text) says characters and the time to its first text
    view = _watched_view(shown, clock[0])
    clock[0] += 0.05
    view.chunk("abc")
    clock[0] += 0.45
    view.finish()
    assert shown[-1].endswith("[3 characters · 0.5 s · first text 50 ms]"), shown[-1]
