"""The form (``%mc form``, mc_jupyter/widgets/form.py) in a real JupyterLab, driven through Debian's Chromium
with Playwright (the sidebar test's server and browser: tests/test_sidebar_browser.py).

The notebook composes a file in model-compose's shape: a workflow whose job hands a review to a
``text-classification`` component on ``distilbert-base-uncased-finetuned-sst-2-english`` (the tiny trained
stand-in that tests/conftest.py puts in the offline hub cache under that id), its inputs annotated as
model-compose writes them (``as text``, ``as select/...``, ``as integer``, ``as boolean``, ``| default``,
``@(description ...)``). In the page: the fields and their labels and help, the dropdown's choices and
default, a required field left empty (its message, nothing run), a review typed and Run clicked (the button
disabled while it runs, the POSITIVE / NEGATIVE bars below the form), a slower run whose button stays
disabled until it ends; then the notebook saved with its outputs and converted by nbconvert: the static
HTML holds the fields' values and the last output.

Without Chromium these tests skip; in CI (``CI`` set) they fail instead. ``MC_JUPYTER_UPDATE_DOCS=1``
writes docs/form.png (the form's cell after a Run).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import test_sidebar_browser as sidebar
from tests.test_sidebar_browser import ROOT, TIMEOUT_MS, Lab, Page, notebook
from tests.test_widgets_browser import keep

browser = sidebar.browser   # the sidebar test's Chromium fixture (skips without it; fails in CI)

pytestmark = pytest.mark.slow

ECHO = f"{ROOT / 'tests' / 'chat_models.py'}:EchoChat"
LONG_HELP = ("How to read it. Fast reads the first sentence only and answers at once, careful reads the whole "
             "review, every sentence of it, and weighs them before it answers, and both give the same labels")
COMPOSE = """%%compose
workflow:
  title: Classify a review
  description: Reads a review and says whether it is positive or negative.
  jobs:
    - id: classify
      component: sentiment
      input:
        text: ${input.review as text @(description The review to classify, as the customer wrote it)}
        mode: ${input.mode as select/fast,careful | fast @(description LONG_HELP)}
        batch_size: ${input.n as integer | 3}
        return_probabilities: ${input.probabilities as boolean | true @(description Show every label's score)}

component:
  id: sentiment
  type: model
  task: text-classification
  model: distilbert-base-uncased-finetuned-sst-2-english
  text: ${input.text}
  batch_size: ${input.batch_size}
  params:
    return_probabilities: ${input.return_probabilities}
""".replace("LONG_HELP", LONG_HELP)
SLOW = f"""%%compose
component:
  id: writer
  type: model
  task: chat-completion
  driver: custom
  class: {ECHO}
  streaming: true
  options: {{delay: 0.05, words: 60}}
  messages: [{{role: user, content: '${{input.prompt @(description What to say)}}'}}]
"""
CELLS = [
    "import mc_jupyter\n%load_ext mc_jupyter",
    COMPOSE,
    "%mc form",
    # `_` is the form the cell above displayed (a print leaves it so)
    "f = _\nprint(type(f).__name__, 'result:', None if f.result is None else f.result.output['label'])",
    SLOW,
    "mc_jupyter.form('writer')",
]
REVIEW = "I love this movie, it is wonderful"


@pytest.fixture
def lab(models, tmp_path):
    server = Lab(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct")
    (server.root / "form.ipynb").write_text(json.dumps(notebook("", cells=CELLS)))
    yield server
    server.stop()


def run(ui: Page, index: int) -> None:
    """Run cell ``index`` and wait for it to finish (Page.run reads the cell's output area, and a form holds a
    second one: its Output widget)."""
    ui.start(index)
    cell = ui.notebook.locator(".jp-CodeCell").nth(index)
    ui.page.wait_for_function("el => /\\[\\d+\\]/.test(el.textContent)",
                              arg=cell.locator(".jp-InputArea-prompt").element_handle(), timeout=TIMEOUT_MS)


def field(form, n: int):
    return form.locator(".mc-jupyter-form-field").nth(n)


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    yield page
    page.close()


def test_the_form_renders_checks_runs_and_saves(page, lab, tmp_path):
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{lab.url}/lab?token={lab.token}")
    ui = Page(page)
    ui.open_notebook("form.ipynb")
    for i in range(2):
        ui.run(i)
    run(ui, 2)
    cell = ui.notebook.locator(".jp-CodeCell").nth(2)
    form = cell.locator(".mc-jupyter-form")
    form.wait_for()

    # -- the fields, their labels and help, the dropdown's choices and its default ---------------------
    assert form.locator(".mc-jupyter-form-field").count() == 4
    review, mode, n, probabilities = (field(form, i) for i in range(4))
    assert review.locator(".widget-label").first.inner_text() == "review *"       # required: no default
    assert review.locator("textarea").input_value() == ""
    assert review.locator(".mc-jupyter-form-help").inner_text() == "The review to classify, as the customer wrote it"
    assert mode.locator(".widget-label").first.inner_text() == "mode"
    assert mode.locator("select option").all_inner_texts() == ["fast", "careful"]
    assert mode.locator("select").input_value() == "fast"                         # the default, selected
    assert mode.locator(".mc-jupyter-form-help").inner_text() == LONG_HELP
    assert n.locator(".widget-label").first.inner_text() == "n"
    assert n.locator("input").input_value() == "3"
    assert probabilities.locator("label", has_text="probabilities").count() == 1
    assert probabilities.locator("input[type=checkbox]").is_checked()
    assert probabilities.locator(".mc-jupyter-form-help").inner_text() == "Show every label's score"

    # the inputs line up under one another, each help line starts under its input, nothing overflows the form
    inputs = [review.locator("textarea"), mode.locator("select"), n.locator("input"),
              probabilities.locator("input[type=checkbox]")]
    lefts = [box(i)["x"] for i in inputs]
    assert max(lefts) - min(lefts) < 2, lefts
    for f in (review, mode, probabilities):
        assert abs(box(f.locator(".mc-jupyter-form-help .widget-html-content > div"))["x"] - lefts[0]) < 2
    right = box(form)["x"] + box(form)["width"]
    for f in (review, mode, probabilities):
        help_box = box(f.locator(".mc-jupyter-form-help"))
        assert help_box["x"] + help_box["width"] <= right + 1
        assert f.locator(".mc-jupyter-form-help .widget-html-content").evaluate(
            "el => el.scrollWidth <= el.clientWidth + 1"), "the help text overflows its line"
    assert box(mode.locator(".mc-jupyter-form-help"))["height"] > 20     # the long help wraps onto lines

    # -- a required field left empty: its message, and nothing runs --------------------------------------
    button = form.locator("button.mc-jupyter-form-run")
    button.click()
    review.locator(".mc-jupyter-form-message", has_text="required: give a value.").wait_for()
    assert "cannot run" in form.locator(".mc-jupyter-form-status").inner_text()
    assert form.locator(".mc-jupyter-form-output .jp-OutputArea-child").count() == 0
    assert "FormWidget result: None" in ui.run(3)                  # the kernel ran nothing

    # -- a review typed, a choice made, Run: disabled while it runs, the bars below ----------------------
    button.evaluate("""el => { window.mcStates = [el.disabled];
        new MutationObserver(() => window.mcStates.push(el.disabled)).observe(el, {attributes: true}); }""")
    review.locator("textarea").fill(REVIEW)
    mode.locator("select").select_option("careful")
    button.click()
    output = form.locator(".mc-jupyter-form-output")
    output.locator("text=POSITIVE").wait_for()
    page.wait_for_function("() => window.mcStates.length >= 3 && !window.mcStates[window.mcStates.length - 1]")
    states = page.evaluate("window.mcStates")
    assert states[0] is False and True in states and states[-1] is False, states
    assert button.is_enabled()
    assert "NEGATIVE" in output.inner_text()                        # return_probabilities: both labels' bars
    assert review.locator(".mc-jupyter-form-message").inner_text() == ""   # the old message is gone
    assert form.locator(".mc-jupyter-form-status").inner_text().startswith("Done in")
    assert "FormWidget result: POSITIVE" in ui.run(3)
    page.mouse.move(0, 0)
    shot = tmp_path / "form.png"
    cell.locator(".jp-Cell-outputWrapper").screenshot(path=str(shot))
    keep(shot, "form.png")

    # -- a slower run (a streaming model): the button stays disabled, the progress shows, then the reply ----
    ui.run(4)
    run(ui, 5)
    slow = ui.notebook.locator(".jp-CodeCell").nth(5).locator(".mc-jupyter-form")
    slow.wait_for()
    slow.locator("textarea, input[type=text]").first.fill("hello")
    slow_button = slow.locator("button.mc-jupyter-form-run")
    slow_button.click()
    slow.locator(".mc-jupyter-form-status", has_text="Running writer").wait_for()
    assert slow_button.is_disabled()
    slow.locator(".mc-jupyter-form-status", has_text="turn 1; you said: hello").wait_for()   # streamed
    assert slow_button.is_disabled()
    slow.locator(".mc-jupyter-form-output", has_text="turn 1; you said: hello").wait_for()
    slow.locator(".mc-jupyter-form-status", has_text="Done in").wait_for()
    assert slow_button.is_enabled()

    # -- saved with its outputs and converted: the static HTML holds the values and the last output -------
    saved = save(ui, lab.root / "form.ipynb")
    outputs = saved["cells"][2]["outputs"]
    assert len(outputs) == 1, outputs
    html = "".join(outputs[0]["data"]["text/html"])
    assert REVIEW in html and "careful" in html and "POSITIVE" in html, html[:2000]
    converted = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(tmp_path),
                                str(lab.root / "form.ipynb")], capture_output=True, text=True, timeout=120)
    assert converted.returncode == 0, converted.stderr
    page_html = (tmp_path / "form.html").read_text()
    assert page_html.count('class="mc-jupyter-form-static"') == 2      # both forms
    static = page_html[page_html.index('class="mc-jupyter-form-static"'):]
    static = static[:static.index('class="mc-jupyter-form-static"', 10)]
    for text in ("review", "The review to classify", REVIEW, "mode", "careful", "probabilities", "POSITIVE",
                 "NEGATIVE"):
        assert text in static, text


def box(locator) -> dict:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not shown"
    return found


def save(ui: Page, path) -> dict:
    """Save the notebook shown (Ctrl+S) and return what is on disk once the tab is no longer dirty."""
    ui.notebook.locator(".jp-Cell-inputWrapper").first.click()
    ui.page.keyboard.press("Escape")
    ui.page.keyboard.press("Control+s")
    ui.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-dirty", has_text="form.ipynb").wait_for(
        state="detached")
    return json.loads(path.read_text())
