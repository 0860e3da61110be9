"""The chat: a conversation with a composed chat-completion component, in a widget and from Python.

    w = mc.chat("assistant")            # or %mc chat assistant
    w.send("Why is the sky blue?")      # waits for the reply and returns it (wait=False returns at once)
    w.stop(); w.clear(); w.messages; w.to_markdown(); w.save("chat.json")
    mc.chat("assistant", messages="chat.json")   # resume a saved conversation
    mc.chat(["base", "lora"])           # one question, a pane per component (see mc.compare)

An image-text-to-text component with ``messages: ${input.messages}`` chats too: ``mc.chat("vlm",
inputs={"image": photo})`` shows it the picture with the first question, and each turn asks about it.

**The conversation rule.** Each turn sends the whole conversation. The component's ``messages:`` template
is rendered as for a ``%%run`` with the new turn's inputs: the variable of its *last user message* (e.g.
``content: ${input.prompt}``) gets what was typed, its system message's variable the system-prompt field,
other variables their values from ``inputs=`` or their defaults. The conversation so far (earlier user
and assistant turns) then goes in just before that last user message. A template that is one
``${input.messages}`` gets the whole list (system prompt first). The same holds for an http-server or
http-client component whose ``body:`` carries ``messages``. When the history would not fit (``max_turns``,
or the model's positions less the reply's ``max_output_length``), the oldest turns are left out of what is
sent, and the widget says so; they stay in :attr:`ChatWidget.messages`.

**Threads.** A turn runs on a thread of its own: the kernel stays free, so the Stop button is handled while
tokens are produced. Stop ends the generation at the next token; the partial reply is kept, marked
stopped; the model stays loaded. A turn that fails (a server down, a bad input) shows its error and leaves
the conversation as it was.
"""

from __future__ import annotations

import copy
import html
import json
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .. import activity
from ..binding import Expr, Scope, Template, render
from ..engine import StreamSink, run as run_engine
from ..errors import InputError, McJupyterError, UserError
from ..registry import Entry, Registry
from ..secrets import scrub
from ..tasks.text_generation import DEFAULT_MAX_OUTPUT_LENGTH

MAX_UPDATES_PER_SECOND = 30
#: The keys an HTTP body may use for the reply's length (OpenAI/vLLM/TGI, Ollama's options).
_LENGTH_KEYS = ("max_tokens", "max_new_tokens", "max_completion_tokens", "num_predict", "max_output_length")
#: The model tasks a chat talks to: an image-text-to-text component's ``image:`` (from ``inputs=``) opens the
#: conversation, and every turn asks about it (:func:`mc_jupyter.tasks.image_text_to_text.conversation_of`).
CHAT_TASKS = ("chat-completion", "image-text-to-text")
#: Room kept for a chat template's role markers, per message, when the history is fitted to the positions.
_TOKENS_PER_MESSAGE = 8

Message = Dict[str, str]


# ------------------------------------------------------------------------------------------------
# How a component's `messages:` is written


def _input_variable(value: Any) -> Optional[str]:
    """``X`` of the first ``${input.X...}`` in a compiled value (a Template), else None."""
    if isinstance(value, Template):
        for expr in value.exprs:
            if isinstance(expr, Expr) and expr.source == "input" and expr.path and isinstance(expr.path[0], str):
                return expr.path[0]
    return None


def _whole_variable(value: Any) -> Optional[str]:
    """``X`` when the value is exactly ``${input.X}`` (the whole value is that input)."""
    single = value.single if isinstance(value, Template) else None
    if single is not None and single.source == "input" and len(single.path) == 1 and isinstance(single.path[0], str):
        return single.path[0]
    return None


@dataclass(frozen=True)
class ChatShape:
    """Where a component's action takes its conversation, and which variables its template uses."""

    path: Tuple[str, ...]            # ("messages",) for a model; ("body", "messages") for an HTTP component
    whole: Optional[str] = None      # `messages: ${input.X}`: X takes the whole conversation
    user: Optional[str] = None       # the variable of the template's last user message
    system: Optional[str] = None     # the variable of the template's system message
    model: bool = True               # a model component (params: in the fields) or an HTTP one (the body's keys)

    @classmethod
    def of(cls, entry: Entry, action_id: Optional[str] = None) -> "ChatShape":
        action = entry.actions[action_id or entry.spec.default_action]
        fields = action.fields
        model = entry.spec.type == "model"
        if model and entry.task not in CHAT_TASKS:
            raise InputError(f"mc.chat needs a chat-completion component (or an image-text-to-text one); `{entry.id}` "
                             f"is {entry.task or entry.spec.type}.\n  Compose one with `task: chat-completion` and "
                             f"`messages:`, or use %%run for this component.")
        for path in (("messages",), ("body", "messages")):
            value: Any = fields
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is None:
                continue
            whole = _whole_variable(value)
            if whole is not None:
                return cls(path, whole=whole, model=model)
            if isinstance(value, list):
                user = system = None
                for message in value:
                    if not isinstance(message, dict):
                        continue
                    role = message.get("role")
                    if role == "user":
                        user = _input_variable(message.get("content")) or user
                    elif role == "system" and system is None:
                        system = _input_variable(message.get("content"))
                if user is None:
                    raise InputError(f"component `{entry.id}`: its `messages:` has no user message that takes an "
                                     f"input, so a chat has nowhere to put what you type.\n  Write the last user "
                                     f"message as `- {{role: user, content: ${{input.prompt}}}}`, or "
                                     f"`messages: ${{input.messages}}`.")
                return cls(path, user=user, system=system, model=model)
        where = "`messages:`" if model else "`body: {messages: ...}`"
        raise InputError(f"component `{entry.id}` takes no conversation ({where} is missing), so mc.chat cannot "
                         f"talk to it.\n  Give it `messages: [{{role: user, content: ${{input.prompt}}}}]`.")


# ------------------------------------------------------------------------------------------------
# The conversation (no widgets)


@dataclass
class Turn:
    """One exchange: what was typed, the reply (partial when stopped), and how it went."""

    user: str
    reply: str = ""
    stopped: bool = False
    seconds: float = 0.0
    tokens: Optional[int] = None


class TurnSink(StreamSink):
    """Chunks of one reply, handed to ``on_text(text_so_far, done)`` at most ~30 times a second; a chunk
    that comes between two updates is shown by a timer within one interval (never held back)."""

    def __init__(self, on_text: Callable[[str, bool], None], rate: float = MAX_UPDATES_PER_SECOND):
        self.on_text, self.interval = on_text, 1.0 / rate
        self.stop_event = threading.Event()
        self.text, self.tokens, self.updates = "", None, 0
        self.started = self.last = 0.0
        self._lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None
        self.latencies: List[float] = []     # chunk -> update, seconds (the benchmark reads them)
        self._waiting_since: Optional[float] = None

    def start(self, job_id: str, component_id: str) -> None:
        self.started = time.perf_counter()

    def chunk(self, text: str, tokens: Optional[int] = None) -> None:
        now = time.perf_counter()
        with self._lock:
            self.text += text
            self.tokens = tokens
            if self._waiting_since is None:
                self._waiting_since = now
            due = now - self.last >= self.interval
            if not due and self._timer is None:
                self._timer = threading.Timer(self.last + self.interval - now, self._flush)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self._flush()

    def _flush(self, done: bool = False) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            text, waiting = self.text, self._waiting_since
            self._waiting_since = None
            self.last = time.perf_counter()
        if waiting is None and not done:
            return
        self.on_text(text, done)
        self.updates += 1
        if waiting is not None:
            self.latencies.append(time.perf_counter() - waiting)

    def finish(self, interrupted: bool = False) -> None:
        self._flush(done=True)


class Conversation:
    """A conversation with one composed component: the turns so far and how the next one is sent."""

    def __init__(self, component_id: str, registry: Registry, messages: Optional[Sequence[Message]] = None,
                 system: Optional[str] = None, inputs: Optional[Dict[str, Any]] = None,
                 max_turns: Optional[int] = None, max_history_tokens: Optional[int] = None,
                 action: Optional[str] = None):
        self.component_id, self.registry, self.action = component_id, registry, action
        entry = registry.get(component_id)
        if action is not None and action not in entry.actions:
            raise InputError(f"component `{component_id}` has no action `{action}`; it has "
                             f"{', '.join(entry.actions)}.")
        self.shape = ChatShape.of(entry, action)
        self.inputs = dict(inputs or {})
        self.max_turns, self.max_history_tokens = max_turns, max_history_tokens
        self.turns: List[Turn] = []
        self.system = system
        self.dropped = 0                  # turns left out of the last request (the cap)
        self.last_request: Optional[List[Message]] = None   # the conversation the backend got last
        defaults = self._defaults(entry)
        self.temperature: Optional[float] = defaults.get("temperature")
        self.max_output_length: int = int(defaults.get("max_output_length") or DEFAULT_MAX_OUTPUT_LENGTH)
        if system is None and defaults.get("system"):
            self.system = defaults["system"]
        if messages:
            self.load(messages)

    # -- the history -----------------------------------------------------------------------------
    def load(self, messages: Sequence[Message]) -> None:
        """Take a saved conversation (``{role, content}`` mappings: an optional system message first, then
        user and assistant turns)."""
        turns: List[Turn] = []
        for number, m in enumerate(messages, 1):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise InputError(f"message #{number} of the saved conversation is not a mapping with `role` and "
                                 f"`content`: {scrub(repr(m))[:80]}")
            role, content = m["role"], str(m["content"])
            if role == "system":
                self.system = content
            elif role == "user":
                turns.append(Turn(content))
            elif role == "assistant" and turns and not turns[-1].reply:
                turns[-1].reply, turns[-1].stopped = content, bool(m.get("stopped"))
            else:
                raise InputError(f"message #{number} of the saved conversation has the role `{role}` where a "
                                 f"{'user' if not turns or turns[-1].reply else 'assistant'} message was expected.")
        self.turns = turns

    @property
    def messages(self) -> List[Message]:
        """The conversation as ``{role, content}`` (the system prompt first, when set)."""
        out: List[Message] = [{"role": "system", "content": self.system}] if self.system else []
        for turn in self.turns:
            out.append({"role": "user", "content": turn.user})
            if turn.reply or turn.stopped:
                out.append({"role": "assistant", "content": turn.reply})
        return out

    def clear(self) -> None:
        self.turns, self.dropped, self.last_request = [], 0, None

    # -- one turn --------------------------------------------------------------------------------
    def send(self, text: str, sink: Optional[TurnSink] = None) -> Turn:
        """Send ``text`` with the conversation so far; the turn is added when it ends (stopped or not).
        A failure raises and changes nothing."""
        if not isinstance(text, str) or not text.strip():
            raise InputError("a chat message needs some text.")
        history = [m for t in self.turns for m in ({"role": "user", "content": t.user},
                                                   {"role": "assistant", "content": t.reply})]
        started = time.perf_counter()
        outcome = run_engine(self.registry, "component:" + self.component_id, self._inputs(text, history), sink,
                             adjust=lambda entry, fields: self._adjust(entry, fields, text, history))
        record = outcome.jobs[-1]
        output = record.output
        reply = output if isinstance(output, str) else "" if output is None else json.dumps(output, default=str)
        turn = Turn(text, reply, record.interrupted, time.perf_counter() - started, record.tokens)
        self.turns.append(turn)
        return turn

    def _inputs(self, text: str, history: List[Message]) -> Dict[str, Any]:
        inputs = dict(self.inputs)
        shape = self.shape
        if shape.whole:     # the system prompt and the new message; the history goes in as for any template
            inputs[shape.whole] = ([{"role": "system", "content": self.system}] if self.system else []) + \
                [{"role": "user", "content": text}]
        else:
            inputs[shape.user] = text
            if shape.system:
                inputs[shape.system] = self.system or None
        return inputs

    def _adjust(self, entry: Entry, fields: Dict[str, Any], text: str, history: List[Message]) -> Dict[str, Any]:
        """The rendered fields with the conversation so far put in (the rule above), the history fitted, the
        controls' temperature and length, and streaming on for a model that streams."""
        fields = copy.copy(fields)
        holder = fields
        for key in self.shape.path[:-1]:
            holder[key] = copy.copy(holder.get(key) or {})
            holder = holder[key]
        messages = [dict(m) for m in holder.get(self.shape.path[-1]) or [] if isinstance(m, dict)]
        messages = [m for m in messages if m.get("content") is not None]   # an optional system prompt left unset
        if self.system and not self.shape.system:
            systems = [m for m in messages if m.get("role") == "system"]
            if systems:
                systems[0]["content"] = self.system
            else:
                messages.insert(0, {"role": "system", "content": self.system})
        kept = self._fit(entry, messages, history)
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages))
        messages[last_user:last_user] = kept
        holder[self.shape.path[-1]] = messages
        self.last_request = [dict(m) for m in messages]
        self._controls(entry, fields, holder)
        return fields

    def _controls(self, entry: Entry, fields: Dict[str, Any], body: Dict[str, Any]) -> None:
        if self.shape.model:
            params = fields["params"] = dict(fields.get("params") or {})
            params["max_output_length"] = self.max_output_length
            if self.temperature is not None:
                params["temperature"] = self.temperature     # params: wins over a top-level one (tasks.base.param)
            if entry.driver is not None and getattr(entry.driver, "streams", False):
                fields["streaming"] = True
            return
        if self.temperature is not None and "temperature" in body:
            body["temperature"] = self.temperature
        for where in (body, body.get("options") if isinstance(body.get("options"), dict) else None):
            if where is None:
                continue
            for key in _LENGTH_KEYS:
                if key in where:
                    if where is not body:
                        body["options"] = where = dict(where)
                    where[key] = self.max_output_length

    def _fit(self, entry: Entry, messages: List[Message], history: List[Message]) -> List[Message]:
        """The newest whole turns of ``history`` that fit ``max_turns`` and the model's positions."""
        turns = [history[i:i + 2] for i in range(0, len(history), 2)]
        if self.max_turns is not None:
            turns = turns[-self.max_turns:] if self.max_turns > 0 else []
        budget = self.max_history_tokens
        if budget is None:
            positions = context_length(entry)
            if positions is not None:
                budget = positions - self.max_output_length - sum(
                    count_tokens(entry, m["content"]) + _TOKENS_PER_MESSAGE for m in messages)
        if budget is not None:
            kept: List[List[Message]] = []
            used = 0
            for turn in reversed(turns):
                cost = sum(count_tokens(entry, m["content"]) + _TOKENS_PER_MESSAGE for m in turn)
                if used + cost > budget:
                    break
                kept.insert(0, turn)
                used += cost
            turns = kept
        self.dropped = len(history) // 2 - len(turns)
        return [m for turn in turns for m in turn]

    def _defaults(self, entry: Entry) -> Dict[str, Any]:
        """The temperature, reply length and system prompt the component's action starts from."""
        action = entry.actions[self.action or entry.spec.default_action]
        try:
            fields = render(action.fields, Scope({"input": dict(self.inputs)}, lenient=True))
        except McJupyterError:
            return {}
        out: Dict[str, Any] = {}
        source = fields.get("params") if self.shape.model else fields.get("body")
        source = dict(source) if isinstance(source, dict) else {}
        if self.shape.model:
            source = {**{k: fields[k] for k in ("temperature", "max_output_length") if k in fields}, **source}
        else:
            options = source.get("options") if isinstance(source.get("options"), dict) else {}
            source = {**options, **source}
        if isinstance(source.get("temperature"), (int, float)) and not isinstance(source.get("temperature"), bool):
            out["temperature"] = float(source["temperature"])
        for key in ("max_output_length",) + _LENGTH_KEYS:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out["max_output_length"] = value
                break
        holder: Any = fields
        for key in self.shape.path:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, list):
            for m in holder:
                content = m.get("content") if isinstance(m, dict) and m.get("role") == "system" else None
                if isinstance(content, str) and scrub(content) == content:   # a secret is never shown as the field
                    out["system"] = content
                    break
        return out


def context_length(entry: Entry) -> Optional[int]:
    """The model's positions, where its backend says (transformers' config, the fast path, llama.cpp's n_ctx)."""
    driver = entry.driver
    if driver is None:
        return None
    for name in ("max_positions", "context_length"):
        value = getattr(driver, name, None)
        if isinstance(value, int) and value > 0:
            return value
    llm = getattr(driver, "llm", None)
    if llm is not None and callable(getattr(llm, "n_ctx", None)):
        try:
            return int(llm.n_ctx())
        except Exception:
            return None
    model = getattr(driver, "model", None)
    if model is not None:
        from ..drivers.hf_generation import max_positions
        found = max_positions(model)
        return found[0] if found else None
    return None


def count_tokens(entry: Entry, text: str) -> int:
    """Tokens of ``text`` by the component's own tokenizer; about four characters a token without one."""
    driver = entry.driver
    tokenizer = getattr(driver, "tokenizer", None)
    try:
        if tokenizer is not None and callable(tokenizer):
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        llm = getattr(driver, "llm", None)
        if llm is not None and callable(getattr(llm, "tokenize", None)):
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False))
    except Exception:
        pass
    return len(text) // 4 + 1


# ------------------------------------------------------------------------------------------------
# The widget


_BUBBLE = ("border-radius:10px;padding:6px 10px;margin:3px 0;max-width:92%;font-family:var(--jp-content-font-family,"
           "sans-serif);font-size:13px;line-height:1.45;overflow-wrap:anywhere")
_USER = _BUBBLE + ";background:#2f7ed8;color:white;margin-left:auto;white-space:pre-wrap"
_ASSISTANT = _BUBBLE + ";background:#f1f3f5;color:#222;margin-right:auto"
_NOTE = "color:#777;font-size:11px;margin:2px 0"
_ERROR = "color:#b00020;font-size:12px;margin:2px 0;white-space:pre-wrap"


def markdown_html(text: str) -> str:
    """Markdown as HTML, with any raw HTML in it escaped (a model's reply is not trusted markup)."""
    try:
        import mistune
    except ImportError:       # nbconvert brings mistune; without it, the text as it is
        return f'<div style="white-space:pre-wrap">{html.escape(text)}</div>'
    return mistune.create_markdown(escape=True, plugins=["strikethrough", "table"])(text)


def bubble_html(role: str, text: str, done: bool = True, note: str = "") -> str:
    text = scrub(text)
    if role == "user":
        body = html.escape(text)
        style = _USER
    else:
        body = markdown_html(text) if done else f'<span style="white-space:pre-wrap">{html.escape(text)}</span>▌'
        style = _ASSISTANT
    extra = f'<div style="{_NOTE}">{html.escape(note)}</div>' if note else ""
    return f'<div style="display:flex;flex-direction:column"><div style="{style}">{body}</div>{extra}</div>'


def _turn_note(turn: Turn) -> str:
    parts = ["stopped"] if turn.stopped else []
    if turn.tokens:
        parts.append(f"{turn.tokens} tokens · {turn.tokens / max(turn.seconds, 1e-9):.1f} tokens/s")
    if turn.seconds:
        parts.append(f"{turn.seconds:.1f} s")
    return " · ".join(parts)


class Pane:
    """One component's column: its bubbles and a line under them (tokens/s, memory, errors, the cap)."""

    def __init__(self, conversation: Conversation, title: bool):
        import ipywidgets as w
        self.conversation = conversation
        self.bubbles = w.VBox(layout=w.Layout(overflow="auto", max_height="420px", padding="4px"))
        self.status = w.HTML()
        header = w.HTML(f"<b>{html.escape(conversation.component_id)}</b>") if title else None
        self.box = w.VBox(([header] if header else []) + [self.bubbles, self.status],
                          layout=w.Layout(flex="1 1 0", min_width="0", border="1px solid #ddd", padding="4px"))
        self.redraw()

    def redraw(self) -> None:
        import ipywidgets as w
        children = []
        for turn in self.conversation.turns:
            children.append(w.HTML(bubble_html("user", turn.user)))
            children.append(w.HTML(bubble_html("assistant", turn.reply, note=_turn_note(turn))))
        self.bubbles.children = children

    def add(self, role: str, text: str, done: bool = True):
        import ipywidgets as w
        bubble = w.HTML(bubble_html(role, text, done))
        self.bubbles.children = self.bubbles.children + (bubble,)
        return bubble

    def remove(self, count: int) -> None:
        self.bubbles.children = self.bubbles.children[:len(self.bubbles.children) - count]

    def say(self, text: str, error: bool = False) -> None:
        self.status.value = f'<div style="{_ERROR if error else _NOTE}">{html.escape(scrub(text))}</div>' if text else ""


class ChatWidget:
    """A chat with one component (or several side by side, one pane each, as :func:`compare` makes).

    In a notebook it shows a message box (Enter sends), Send, Stop, Regenerate and Clear, a system-prompt
    field and the temperature and reply-length controls; from Python, :meth:`send`, :meth:`stop`,
    :meth:`clear`, :attr:`messages`, :meth:`to_markdown`, :meth:`save` do the same without a browser."""

    def __init__(self, conversations: Sequence[Conversation], registry: Registry):
        import ipywidgets as w
        if not conversations:
            raise InputError("mc.chat needs at least one component id.")
        self.conversations = list(conversations)
        self.registry = registry
        first = self.conversations[0]
        self._busy = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._sinks: List[TurnSink] = []
        self._last_sink: Optional[TurnSink] = None   # the last pane turn's (its latencies, for the benchmark)
        self._stopping = threading.Event()      # Stop asked for this turn (before a pane's sink exists, too)
        self._last_reply: Optional[str] = None
        self._error: Optional[BaseException] = None
        self.panes = [Pane(c, title=len(self.conversations) > 1) for c in self.conversations]
        self.input = w.Text(placeholder="Message (Enter sends)", layout=w.Layout(flex="1 1 auto", width="auto"))
        self.input.on_msg(self._on_input_msg)
        self.send_button = w.Button(description="Send", button_style="primary", layout=w.Layout(width="70px"))
        self.stop_button = w.Button(description="Stop", disabled=True, layout=w.Layout(width="60px"))
        self.regenerate_button = w.Button(description="Regenerate", layout=w.Layout(width="100px"))
        self.clear_button = w.Button(description="Clear", layout=w.Layout(width="60px"))
        self.send_button.on_click(lambda _: self._send_typed())
        self.stop_button.on_click(lambda _: self.stop())
        self.regenerate_button.on_click(lambda _: self._start(None, regenerate=True))
        self.clear_button.on_click(lambda _: self.clear())
        self.system = w.Text(value=first.system or "", placeholder="System prompt (optional)",
                             description="System", layout=w.Layout(width="100%"))
        self.system.observe(lambda change: self._set_system(change["new"]), "value")
        self.temperature = w.BoundedFloatText(value=first.temperature if first.temperature is not None else 0.7,
                                              min=0.0, max=5.0, step=0.05, description="Temperature",
                                              layout=w.Layout(width="190px"))
        self.temperature.observe(lambda change: self._set("temperature", float(change["new"])), "value")
        self.max_tokens = w.BoundedIntText(value=first.max_output_length, min=1, max=1_000_000, description="Max tokens",
                                           layout=w.Layout(width="190px"))
        self.max_tokens.observe(lambda change: self._set("max_output_length", int(change["new"])), "value")
        self.note = w.HTML()
        controls = w.HBox([self.temperature, self.max_tokens])
        row = w.HBox([self.input, self.send_button, self.stop_button, self.regenerate_button, self.clear_button])
        panes = w.HBox([p.box for p in self.panes], layout=w.Layout(width="100%"))
        self.view = w.VBox([self.system, controls, panes, row, self.note])
        self.view.add_class("mc-jupyter-chat")
        self._marks = [activity.begin(c.component_id, "chat") for c in self.conversations]
        weakref.finalize(self, _end_marks, self._marks)

    # -- Python side -----------------------------------------------------------------------------
    @property
    def messages(self) -> List[Message]:
        """The conversation as ``{role, content}`` (of the first pane's component)."""
        return self.conversations[0].messages

    @property
    def generating(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def send(self, text: str, wait: bool = True, timeout: Optional[float] = None) -> Optional[Union[str, Dict[str, str]]]:
        """Send ``text`` (with the conversation so far). ``wait`` (the default) waits for the reply and returns
        it (a dict by component id with several panes); ``wait=False`` returns at once. A failed turn raises
        (with ``wait``) and shows in the widget; the conversation stays as it was."""
        self._start(text)
        if not wait:
            return None
        return self.wait(timeout)

    def wait(self, timeout: Optional[float] = None) -> Optional[Union[str, Dict[str, str]]]:
        """Wait for the turn on its way (a kernel interrupt stops it and keeps the partial reply)."""
        thread = self._thread
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while thread is not None and thread.is_alive():
                thread.join(0.05)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"no reply within {timeout} s (the turn goes on; w.stop() ends it)")
        except KeyboardInterrupt:
            self.stop()
            if thread is not None:
                thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._last_reply

    def stop(self) -> None:
        """End the reply on its way at the next token (its partial text is kept, marked stopped)."""
        self._stopping.set()
        for sink in list(self._sinks):
            sink.stop_event.set()

    def clear(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        if self.generating:
            self.stop()
            self._thread.join()
        for conversation, pane in zip(self.conversations, self.panes):
            conversation.clear()
            pane.redraw()
            pane.say("")
        self.note.value = ""

    def regenerate(self, wait: bool = True):
        """Ask again for the last reply (the last user message is sent again)."""
        self._start(None, regenerate=True)
        return self.wait() if wait else None

    def to_markdown(self) -> str:
        """The conversation as Markdown (one section per pane with several)."""
        parts = []
        for conversation in self.conversations:
            lines = [f"## {conversation.component_id}"] if len(self.conversations) > 1 else []
            if conversation.system:
                lines.append(f"**System:** {conversation.system}")
            for turn in conversation.turns:
                lines.append(f"**You:** {turn.user}")
                lines.append(f"**{conversation.component_id}:** {turn.reply}" + (" *(stopped)*" if turn.stopped else ""))
            parts.append("\n\n".join(lines))
        return scrub("\n\n".join(parts) + "\n")

    def save(self, path: Union[str, os.PathLike]) -> str:
        """Write the conversation as JSON (``{"component", "messages"}``); ``mc.chat(ID, messages=path)`` resumes it."""
        data: Dict[str, Any] = {"component": self.conversations[0].component_id,
                                "messages": self._saved(self.conversations[0])}
        if len(self.conversations) > 1:
            data["panes"] = {c.component_id: self._saved(c) for c in self.conversations}
        text = scrub(json.dumps(data, indent=2, ensure_ascii=False))
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        return os.fspath(path)

    @staticmethod
    def _saved(conversation: Conversation) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        for m in conversation.messages:
            out.append(dict(m))
        for m, turn in zip([m for m in out if m["role"] == "assistant"], conversation.turns):
            if turn.stopped:
                m["stopped"] = True
        return out

    def close(self) -> None:
        """Stop any reply, close the widget's views and take the chat off the sidebar's cards."""
        self.stop()
        _end_marks(self._marks)
        self.view.close()

    # -- display ---------------------------------------------------------------------------------
    def _repr_mimebundle_(self, include=None, exclude=None) -> Dict[str, Any]:
        bundle = self.view._repr_mimebundle_() or {}
        bundle = dict(bundle)
        bundle["text/html"] = self.static_html()
        bundle["text/plain"] = self.to_markdown() if any(c.turns for c in self.conversations) else \
            f"Chat with {', '.join(c.component_id for c in self.conversations)} (a live widget: run the notebook to use it)"
        return bundle

    def static_html(self) -> str:
        """The conversation as it is now, as plain HTML (what a saved notebook or nbconvert shows)."""
        columns = []
        for conversation in self.conversations:
            bubbles = [f"<b>{html.escape(conversation.component_id)}</b>"] if len(self.conversations) > 1 else []
            for turn in conversation.turns:
                bubbles.append(bubble_html("user", turn.user))
                bubbles.append(bubble_html("assistant", turn.reply, note=_turn_note(turn)))
            if not conversation.turns:
                bubbles.append(f'<div style="{_NOTE}">Chat with <code>{html.escape(conversation.component_id)}</code> '
                               f'(no messages yet; the live widget shows in JupyterLab, Notebook 7, VS Code, Colab).</div>')
            columns.append(f'<div style="flex:1 1 0;min-width:0;border:1px solid #ddd;padding:4px">{"".join(bubbles)}</div>')
        return f'<div class="mc-jupyter-chat-static" style="display:flex;gap:6px">{"".join(columns)}</div>'

    # -- the widget's events -----------------------------------------------------------------------
    def _on_input_msg(self, _widget: Any, content: Dict[str, Any], _buffers: Any) -> None:
        if content.get("event") == "submit":
            self._send_typed()

    def _send_typed(self) -> None:
        text = self.input.value
        if not text.strip() or self.generating:
            return
        self.input.value = ""
        try:
            self._start(text)
        except UserError as e:
            self.note.value = f'<div style="{_ERROR}">{html.escape(scrub(str(e)))}</div>'

    def _set(self, name: str, value: Any) -> None:
        for conversation in self.conversations:
            setattr(conversation, name, value)

    def _set_system(self, value: str) -> None:
        for conversation in self.conversations:
            conversation.system = value or None

    def _buttons(self, generating: bool) -> None:
        self.stop_button.disabled = not generating
        for button in (self.send_button, self.regenerate_button, self.clear_button):
            button.disabled = generating

    def _start(self, text: Optional[str], regenerate: bool = False) -> None:
        if not self._busy.acquire(blocking=False):
            raise UserError("a reply is still on its way: wait for it, or stop it (w.stop()) first.")
        try:
            if self.generating:
                raise UserError("a reply is still on its way: wait for it, or stop it (w.stop()) first.")
            if regenerate:
                if not self.conversations[0].turns:
                    raise UserError("there is no reply to regenerate yet: send a message first.")
                text = self.conversations[0].turns[-1].user
                for conversation, pane in zip(self.conversations, self.panes):
                    if conversation.turns:
                        conversation.turns.pop()
                    pane.redraw()
            assert text is not None
            if not text.strip():
                raise InputError("a chat message needs some text.")
            self._error, self._last_reply = None, None
            self._stopping.clear()
            self._buttons(True)
            for mark in self._marks:
                activity.change(mark, "chat: generating")
            self._thread = threading.Thread(target=self._turn, args=(text,), daemon=True,
                                            name="mc_jupyter-chat-turn")
            self._thread.start()
        finally:
            self._busy.release()

    def _turn(self, text: str) -> None:
        """One turn on every pane: one after the other on a shared device, side by side on different ones."""
        replies: Dict[str, str] = {}
        groups: Dict[str, List[int]] = {}
        for i, conversation in enumerate(self.conversations):
            try:
                device = self.registry.get(conversation.component_id).describe().get("device") or "?"
            except McJupyterError:
                device = "?"
            groups.setdefault(str(device).split(" ")[0], []).append(i)
        errors: List[BaseException] = []

        def run_group(indexes: List[int]) -> None:
            for i in indexes:
                try:
                    replies[self.conversations[i].component_id] = self._pane_turn(i, text)
                except BaseException as e:      # shown in the pane; raised by wait()
                    errors.append(e)

        threads = [threading.Thread(target=run_group, args=(g,), daemon=True) for g in list(groups.values())[1:]]
        for t in threads:
            t.start()
        run_group(list(groups.values())[0])
        for t in threads:
            t.join()
        self._sinks = []
        self._buttons(False)
        for mark in self._marks:
            activity.change(mark, "chat")
        if errors:
            self._error = errors[0]
        ids = [c.component_id for c in self.conversations]
        self._last_reply = replies.get(ids[0]) if len(ids) == 1 else {i: replies[i] for i in ids if i in replies}

    def _pane_turn(self, index: int, text: str) -> str:
        conversation, pane = self.conversations[index], self.panes[index]
        pane.say("")
        pane.add("user", text)
        bubble = pane.add("assistant", "", done=False)
        sink = TurnSink(lambda shown, done: setattr(bubble, "value", bubble_html("assistant", shown, done=done)))
        self._sinks.append(sink)
        self._last_sink = sink
        if self._stopping.is_set():
            sink.stop_event.set()
        try:
            turn = conversation.send(text, sink)
        except BaseException as e:
            pane.remove(2)
            pane.say(f"{type(e).__name__ if not isinstance(e, McJupyterError) else 'Error'}: {e}", error=True)
            if len(self.conversations) == 1 and not self.input.value:
                self.input.value = text        # what was typed is not lost
            raise
        bubble.value = bubble_html("assistant", turn.reply, note=_turn_note(turn))
        notes = []
        if conversation.dropped:
            notes.append(f"{conversation.dropped} earlier turn{'s' if conversation.dropped != 1 else ''} left out of "
                         f"what was sent, to fit the model")
        memory = self._memory(conversation.component_id)
        if memory:
            notes.append(memory)
        pane.say(" · ".join(notes))
        return turn.reply

    def _memory(self, component_id: str) -> str:
        from ..devices import human_bytes
        try:
            row = self.registry.get(component_id).describe()
        except McJupyterError:
            return ""
        if row.get("memory_bytes"):
            return f"{human_bytes(row['memory_bytes'])} on {row.get('device') or '?'}"
        return ""


def _end_marks(marks: List[int]) -> None:
    for mark in marks:
        activity.end(mark)
    marks.clear()


def chat(component: Union[str, Sequence[str]], registry: Registry, messages: Union[None, str, os.PathLike,
         Sequence[Message]] = None, system: Optional[str] = None, inputs: Optional[Dict[str, Any]] = None,
         max_turns: Optional[int] = None, max_history_tokens: Optional[int] = None,
         action: Optional[str] = None) -> ChatWidget:
    """A :class:`ChatWidget` on one component id (or several, a pane each); ``messages`` resumes a
    conversation: a list of ``{role, content}`` or the path of a file :meth:`ChatWidget.save` wrote."""
    ids = [component] if isinstance(component, str) else list(component)
    if not ids or not all(isinstance(i, str) for i in ids):
        raise InputError("mc.chat takes a component id (a str) or a list of them, e.g. mc.chat(\"assistant\").")
    saved: Dict[str, Any] = {}
    if isinstance(messages, (str, os.PathLike)):
        path = os.fspath(messages)
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        except FileNotFoundError:
            raise InputError(f"no saved conversation at `{path}` (w.save(path) writes one).") from None
        except (OSError, ValueError) as e:
            raise InputError(f"`{path}` is not a saved conversation: {e}") from None
        if not isinstance(saved, dict) or not isinstance(saved.get("messages"), list):
            raise InputError(f"`{path}` is not a saved conversation (w.save(path) writes one).")
        messages = saved["messages"]
    conversations = []
    for cid in ids:
        own = (saved.get("panes") or {}).get(cid, messages) if saved else messages
        conversations.append(Conversation(cid, registry, messages=own, system=system, inputs=inputs,
                                          max_turns=max_turns, max_history_tokens=max_history_tokens, action=action))
    return ChatWidget(conversations, registry)
