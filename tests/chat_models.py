"""A chat model for the chat tests: a real ``driver: custom`` class that says what it was sent.

It answers ``"turn N; you said: <last user message>; first: <first user message>"`` word by word, so a test
(and the browser) sees from the reply alone whether the earlier turns reached the model, and it keeps
every conversation it received in ``EchoChat.received``. ``options: {delay: S}`` waits S seconds per word
(a long generation to stop), ``{words: N}`` pads the reply to N words.
"""

from __future__ import annotations

import time

from mc_jupyter.drivers.custom import CustomModel


class EchoChat(CustomModel):
    received: list = []

    def load(self):
        self.delay = float(self.options.get("delay", 0))
        self.words = int(self.options.get("words", 0))

    def _reply(self, fields):
        messages = fields["messages"]
        EchoChat.received.append([dict(m) for m in messages])
        users = [m["content"] for m in messages if m["role"] == "user"]
        words = f"turn {len(users)}; you said: {users[-1]}; first: {users[0]}".split()
        words += [f"w{i}" for i in range(max(self.words - len(words), 0))]
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def run(self, fields):
        return "".join(self._reply(fields))

    def stream(self, fields, stop):
        for word in self._reply(fields):
            if stop.is_set():
                return
            if self.delay:
                time.sleep(self.delay)
            yield word

    def info(self):
        return {"device": "cpu", "parameters": 0}
