"""mc.chat: the conversation rule (what each backend receives), Stop from another thread, the history cap,
saving and resuming, errors that change nothing, the widget's static fallback, and mc.compare."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import mc_jupyter as mc
from mc_jupyter import activity
from mc_jupyter.errors import InputError, UserError
from tests import reference
from tests.chat_models import EchoChat

ROOT = Path(__file__).resolve().parent.parent
ECHO = "tests.chat_models:EchoChat"   # the module the tests import: one EchoChat.received
SERVER = str(Path(__file__).resolve().parent / "model_server.py")

TEMPLATE = """
component:
  id: echo
  type: model
  task: chat-completion
  driver: custom
  class: {cls}
  options: {{delay: {delay}, words: {words}}}
  messages:
    - role: system
      content: ${{input.system | Be brief.}}
    - role: user
      content: ${{input.prompt}}
  params: {{max_output_length: 64, temperature: 0.3}}
"""


def echo(registry, delay=0.0, words=0):
    mc.compose(TEMPLATE.format(cls=ECHO, delay=delay, words=words), registry=registry)
    EchoChat.received.clear()
    return mc.chat("echo", registry=registry)


def tiny_chat(registry, models, max_output_length):
    """A chat on the tiny transformers Llama, greedy."""
    mc.compose(f"""
component:
  id: tiny
  type: model
  task: chat-completion
  model: {models['causal']}
  messages: [{{role: user, content: "${{input.prompt}}"}}]
  params: {{max_output_length: {max_output_length}, temperature: 0}}
""", registry=registry)
    return mc.chat("tiny", registry=registry)


def test_each_turn_sends_the_whole_conversation_before_the_templates_last_user_message(registry):
    w = echo(registry)
    assert w.send("hello") == "turn 1; you said: hello; first: hello"
    assert w.send("and then?") == "turn 2; you said: and then?; first: hello"
    sent = EchoChat.received[-1]
    assert sent == [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "turn 1; you said: hello; first: hello"},
                    {"role": "user", "content": "and then?"}]
    assert w.messages == sent + [{"role": "assistant", "content": "turn 2; you said: and then?; first: hello"}]
    # the controls start from the component's params and reach the backend's fields
    assert (w.conversations[0].temperature, w.conversations[0].max_output_length) == (0.3, 64)
    assert w.system.value == "Be brief."


def test_the_system_prompt_field_fills_the_templates_system_variable(registry):
    w = echo(registry)
    w.system.value = "You are a pirate."
    w.send("ahoy")
    assert EchoChat.received[-1][0] == {"role": "system", "content": "You are a pirate."}


def test_a_template_that_is_one_input_gets_the_whole_list(registry):
    mc.compose(f"""
component:
  id: whole
  type: model
  task: chat-completion
  driver: custom
  class: {ECHO}
  messages: ${{input.history}}
""", registry=registry)
    EchoChat.received.clear()
    w = mc.chat("whole", system="Short answers.", registry=registry)
    w.send("one")
    w.send("two")
    assert EchoChat.received[-1] == [{"role": "system", "content": "Short answers."},
                                     {"role": "user", "content": "one"},
                                     {"role": "assistant", "content": "turn 1; you said: one; first: one"},
                                     {"role": "user", "content": "two"}]


def test_the_transformers_backend_gets_every_turn_through_its_chat_template(registry, models):
    w = tiny_chat(registry, models, 6)
    first = w.send("Hello")
    second = w.send("Again")
    conversation = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": first},
                    {"role": "user", "content": "Again"}]
    assert w.conversations[0].last_request == conversation
    # the reply is what transformers generates for the whole conversation (greedy), streamed
    prompt = reference.chat_prompt(models["causal"], conversation)
    assert second == reference.generate(models["causal"], prompt, 6, add_special_tokens=False)
    assert w.conversations[0].turns[-1].tokens == 6


@pytest.fixture
def chat_server(registry, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mc.compose(f"""
component:
  id: served
  type: http-server
  port: {port}
  manage:
    start: [{sys.executable}, {SERVER}, --port, "{port}"]
    health_path: /health
  path: /v1/chat/completions
  method: POST
  body:
    model: tiny
    stream: true
    temperature: 0.5
    max_tokens: 32
    messages:
      - role: user
        content: ${{input.question}}
  stream_format: json
  output: ${{response[].choices[0].delta.content}}
""", registry=registry)
    yield registry.entries["served"]


def test_an_http_server_whose_body_carries_messages_chats_and_streams(registry, chat_server):
    w = mc.chat("served", registry=registry)
    assert (w.conversations[0].temperature, w.conversations[0].max_output_length) == (0.5, 32)
    assert w.send("first question") == "You said: first question"
    assert w.send("second") == "You said: second"
    assert w.conversations[0].last_request == [
        {"role": "user", "content": "first question"}, {"role": "assistant", "content": "You said: first question"},
        {"role": "user", "content": "second"}]


def test_a_server_that_is_down_shows_in_the_widget_and_leaves_the_conversation(registry, chat_server):
    w = mc.chat("served", registry=registry)
    w.send("hello")
    before = w.messages
    pid = chat_server.driver.process.pid
    psutil.Process(pid).kill()
    psutil.Process(pid).wait(10)
    with pytest.raises(UserError):
        w.send("are you there?")
    assert w.messages == before
    assert "exited" in w.panes[0].status.value or "connect" in w.panes[0].status.value.lower()
    assert len(w.panes[0].bubbles.children) == 2          # the failed turn's bubbles are gone
    assert not w.generating


def test_stop_from_another_thread_ends_the_reply_at_the_next_token_and_keeps_it(registry):
    w = echo(registry, delay=0.05, words=400)
    w.send("go", wait=False)
    time.sleep(0.5)
    assert w.generating
    stopped_at = time.perf_counter()
    threading.Thread(target=w.stop).start()
    reply = w.wait(timeout=5)
    took = time.perf_counter() - stopped_at
    assert took < 0.2 + 0.05, took
    turn = w.conversations[0].turns[-1]
    assert turn.stopped and reply == turn.reply and 3 < len(reply.split()) < 100
    assert reply.startswith("turn 1; you said: go")
    assert "stopped" in w.panes[0].bubbles.children[-1].value
    # the model stays loaded and the next turn gets the partial reply as the assistant's turn
    assert registry.entries["echo"].state.value == "ready"
    w.conversations[0].max_output_length = 8
    EchoChat.received.clear()
    w.send("again", wait=False)
    w.stop()
    w.wait(timeout=5)
    assert EchoChat.received[-1][2] == {"role": "assistant", "content": reply}


def test_a_second_send_while_a_reply_is_on_its_way_is_refused(registry):
    w = echo(registry, delay=0.05, words=100)
    w.send("go", wait=False)
    with pytest.raises(UserError, match="still on its way"):
        w.send("too soon")
    w.stop()
    w.wait(timeout=5)


def test_the_history_cap_drops_the_oldest_turns_and_says_so(registry):
    w = echo(registry)
    w.conversations[0].max_turns = 2
    for text in ("a", "b", "c", "d"):
        w.send(text)
    sent = EchoChat.received[-1]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["b", "c", "d"]
    assert w.conversations[0].dropped == 1
    assert "1 earlier turn left out" in w.panes[0].status.value
    assert len(w.messages) == 1 + 8          # the whole conversation is still there


def test_the_token_cap_keeps_a_long_chat_inside_the_models_positions(registry, models):
    w = tiny_chat(registry, models, 4)
    positions = registry.entries["tiny"].driver.model.config.max_position_embeddings
    long = " ".join(["The sky is blue because air scatters blue light."] * 8)
    for _ in range(12):
        w.send(long)          # would pass the positions after a few turns without the cap
    sent = w.conversations[0].last_request
    tokenizer = registry.entries["tiny"].driver.tokenizer
    assert len(tokenizer.apply_chat_template(sent, add_generation_prompt=True)) + 4 <= positions
    assert w.conversations[0].dropped > 0 and len(w.conversations[0].turns) == 12


def test_save_and_resume(registry, tmp_path):
    w = echo(registry)
    w.send("remember me")
    path = w.save(tmp_path / "chat.json")
    saved = json.loads(Path(path).read_text())
    assert saved["component"] == "echo" and saved["messages"] == w.messages
    resumed = mc.chat("echo", messages=path, registry=registry)
    assert resumed.messages == w.messages
    assert resumed.send("who?") == "turn 2; you said: who?; first: remember me"
    again = mc.chat("echo", messages=w.messages, registry=registry)
    assert again.messages == w.messages
    assert "**You:** remember me" in w.to_markdown()


def test_bad_arguments_are_clear(registry, models):
    mc.compose(f"component:\n  id: emb\n  task: text-embedding\n  model: {models['encoder']}\n  text: ${{input.text}}\n",
               registry=registry)
    with pytest.raises(InputError, match="needs a chat-completion component"):
        mc.chat("emb", registry=registry)
    with pytest.raises(UserError, match="nope"):
        mc.chat("nope", registry=registry)
    with pytest.raises(InputError, match="no saved conversation"):
        mc.chat("emb", messages="/no/such/file.json", registry=registry)


def test_secrets_never_reach_the_widget(registry, monkeypatch):
    monkeypatch.setenv("MC_CHAT_TOKEN", "sk-very-secret-value")
    mc.compose(TEMPLATE.format(cls=ECHO, delay=0, words=0).replace("${input.system | Be brief.}",
                                                                       "${env.MC_CHAT_TOKEN}"), registry=registry)
    w = mc.chat("echo", registry=registry)
    w.send("hi")
    everything = json.dumps(w._repr_mimebundle_()) + w.to_markdown() + w.system.value + \
        "".join(b.value for b in w.panes[0].bubbles.children)
    assert "sk-very-secret-value" not in everything


def test_the_widget_bundle_carries_its_static_picture_and_marks_the_sidebar(registry):
    before = activity.activities("echo")     # chats of earlier tests may still be open
    w = echo(registry)
    assert activity.activities("echo") == before + ["chat"]
    w.send("**bold** and `code`")
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "turn 1; you said:" in bundle["text/html"] and "<strong>bold</strong>" in bundle["text/html"]
    assert "**You:** **bold** and `code`" in bundle["text/plain"]
    w.close()
    assert activity.activities("echo") == before


def test_regenerate_and_clear(registry):
    w = echo(registry)
    w.send("x")
    EchoChat.received.clear()
    assert w.regenerate() == "turn 1; you said: x; first: x"
    assert len(w.conversations[0].turns) == 1 and len(EchoChat.received) == 1
    w.clear()
    assert w.messages == [{"role": "system", "content": "Be brief."}]


def test_compare_sends_one_prompt_to_each_component_side_by_side(registry, models):
    mc.compose(f"""
components:
  - id: echo
    type: model
    task: chat-completion
    driver: custom
    class: {ECHO}
    messages: [{{role: user, content: "${{input.prompt}}"}}]
  - id: tiny
    type: model
    task: chat-completion
    model: {models['causal']}
    messages: [{{role: user, content: "${{input.prompt}}"}}]
    params: {{max_output_length: 5, temperature: 0}}
""", registry=registry)
    w = mc.compare(["echo", "tiny"], prompt="Hello", registry=registry)
    replies = w.wait(timeout=60)
    prompt = reference.chat_prompt(models["causal"], [{"role": "user", "content": "Hello"}])
    assert replies == {"echo": "turn 1; you said: Hello; first: Hello",
                       "tiny": reference.generate(models["causal"], prompt, 5, add_special_tokens=False)}
    assert len(w.panes) == 2 and "tokens/s" in w.panes[1].bubbles.children[-1].value
    with pytest.raises(InputError, match="at least two"):
        mc.compare(["echo"], prompt="x", registry=registry)


def test_the_magic_makes_the_widget(ip):
    from tests.conftest import run_cell
    run_cell(ip, f"%%compose\n{TEMPLATE.format(cls=ECHO, delay=0, words=0)}")
    w = run_cell(ip, "%mc chat echo --system 'Be kind.'")
    assert w.send("hi") == "turn 1; you said: hi; first: hi" and w.messages[0]["content"] == "Be kind."
    with pytest.raises(Exception, match="at least two"):     # the same id twice is one component
        run_cell(ip, "%mc compare echo echo --prompt 'Why is the sky blue?'")
