"""The chat widget in a real JupyterLab, driven through Debian's Chromium with Playwright (the sidebar test's
server and browser). The model is tests/chat_models.py's EchoChat (a real ``driver: custom`` class) whose
reply names the first user message, so the second turn's reply shows the model received the first.

Type a message and press Enter, see the reply stream into its bubble; a second turn; Stop during a long
generation, then the next cell runs at once. ``MC_JUPYTER_UPDATE_DOCS=1`` writes docs/chat.png.
"""

from __future__ import annotations

import json
import time

import pytest

from tests import test_sidebar_browser as sidebar
from tests.test_sidebar_browser import ROOT, TIMEOUT_MS, Lab, Page, notebook
from tests.test_widgets_browser import keep

browser = sidebar.browser

pytestmark = pytest.mark.slow

ECHO = f"{ROOT / 'tests' / 'chat_models.py'}:EchoChat"
CELLS = [
    "import mc_jupyter\n%load_ext mc_jupyter",
    "%%compose\ncomponents:\n"
    f"  - id: echo\n    type: model\n    task: chat-completion\n    driver: custom\n    class: {ECHO}\n"
    "    options: {delay: 0.03}\n    messages: [{role: user, content: '${input.prompt}'}]\n"
    f"  - id: slow\n    type: model\n    task: chat-completion\n    driver: custom\n    class: {ECHO}\n"
    "    options: {delay: 0.05, words: 5000}\n    messages: [{role: user, content: '${input.prompt}'}]",
    "w = mc_jupyter.chat('echo')\nw",
    "s = mc_jupyter.chat('slow')\ns",
    "print('next cell ran')",
]


@pytest.fixture
def lab(models, tmp_path):
    server = Lab(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct")
    (server.root / "chat.ipynb").write_text(json.dumps(notebook("", cells=CELLS)))
    yield server
    server.stop()


def send(cell, text: str) -> None:
    box = cell.get_by_placeholder("Message (Enter sends)")
    box.fill(text)
    box.press("Enter")


def test_a_chat_streams_remembers_and_stops(browser, lab, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{lab.url}/lab?token={lab.token}")
    ui = Page(page)
    ui.open_notebook("chat.ipynb")
    for i in range(3):
        ui.run(i)
    chat = ui.notebook.locator(".jp-CodeCell").nth(2)
    chat.locator(".mc-jupyter-chat").wait_for()
    send(chat, "hello")
    # the reply grows in place: a partial text (with the cursor) before the whole one
    chat.locator("text=▌").first.wait_for()
    chat.locator("text=turn 1; you said: hello; first: hello").wait_for()
    send(chat, "and then?")
    chat.locator("text=turn 2; you said: and then?; first: hello").wait_for()   # it got the first turn

    ui.run(3)
    slow = ui.notebook.locator(".jp-CodeCell").nth(3)
    slow.locator(".mc-jupyter-chat").wait_for()
    send(slow, "go")
    slow.locator("text=turn 1; you said: go").wait_for()
    slow.locator("button", has_text="Stop").click()
    slow.locator("text=stopped").first.wait_for(timeout=5_000)
    started = time.monotonic()
    assert "next cell ran" in ui.run(4)
    assert time.monotonic() - started < 10          # the kernel was free: the Stop did not wait for the reply
    shot = tmp_path / "chat.png"
    chat.locator(".mc-jupyter-chat").screenshot(path=str(shot))
    keep(shot, "chat.png")
    page.close()
