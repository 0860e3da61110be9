"""The vision-language lesson runs top to bottom on a tiny Idefics3 stand-in placed under SmolVLM's repo id.

The kernel inherits this process's environment, so it reads the same offline Hugging Face cache.
"""

from __future__ import annotations

import re

import pytest

from tests import tiny_vlms
from tests.test_examples import execute, outputs_of, text_of
from tests.test_examples_images import html_of, plain_of, pngs

pytestmark = pytest.mark.slow   # a real kernel and notebook: CI runs these (pytest -m slow)


@pytest.fixture(scope="module")
def vlms(hub_cache, tmp_path_factory):
    """Tiny Idefics3 under HuggingFaceTB/SmolVLM-256M-Instruct (and LLaVA under its id)."""
    return tiny_vlms.build_all(tmp_path_factory.mktemp("vlms"), hub_cache)


def test_vision_language_chat_describes_follows_up_with_memory_streams_batches_and_chats(vlms):
    nb = execute("vision_language_chat.ipynb")
    composed = text_of(outputs_of(nb, "%%compose"))
    assert "load `vlm`: image-text-to-text · huggingface · HuggingFaceTB/SmolVLM-256M-Instruct" in composed

    described = outputs_of(nb, "%%run -o described")
    reply = plain_of(described)
    assert reply.strip()
    html = html_of(described)
    assert "Describe this picture in one sentence." in html                 # the question above the reply
    assert [im.size for im in pngs(described)] == [(160, 160)]              # a thumbnail of the 384x384 photo
    assert text_of(outputs_of(nb, "print(repr(described.output))")).strip() == repr(reply)

    streamed = text_of(outputs_of(nb, "%%run -o follow_up"))
    assert re.search(r"\[64 tokens · [\d.]+ s · first token \d+ ms · decode [\d.]+ tokens/s\]", streamed), streamed
    assert text_of(outputs_of(nb, "conversation.append")) == \
        "4 messages: ['user', 'assistant', 'user', 'assistant']\n"

    many = outputs_of(nb, "%%run -o many")
    assert [im.size for im in pngs(many)] == [(160, 160)] * 3
    listed = text_of(outputs_of(nb, "for i, reply in enumerate(many.output")).splitlines()
    assert len(listed) == 3 and all(re.match(r"^\d\. \S", line) for line in listed)
    assert plain_of(many).splitlines() == listed                            # the display numbers them the same

    view = outputs_of(nb, 'w = mc_jupyter.chat("vlm"')[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in view and "mc-jupyter-chat-static" in view["text/html"]
    assert text_of(outputs_of(nb, "first = w.send")) == "4 messages; ['user', 'assistant', 'user', 'assistant']\n"
    assert text_of(outputs_of(nb, "same reply as transformers")) == "same reply as transformers: True\n"
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded vlm"
