"""The sidebar in a real JupyterLab, driven through Debian's Chromium with Playwright.

A real ``jupyter lab`` serves this checkout's built extension (mc_jupyter/labextension) and runs a
real kernel on the tiny models. Without Chromium these tests skip, saying why; in CI (``CI`` set) they
fail instead, since ``.ci/run`` installs it. Playwright's own browser download is never used.

Set ``MC_JUPYTER_UPDATE_DOCS=1`` to also write the screenshot to docs/sidebar.png (taken while a cell
runs, with a chat's activity mark on the card).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow   # a real JupyterLab and browser: CI runs these (pytest -m slow)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MC_JUPYTER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"   # Debian's package
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
COMPONENT = "tiny-writer"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"   # a hub id (the tiny stand-in in the test's offline cache)
COMPOSE = (f"%%compose\ncomponent:\n  id: {COMPONENT}\n  type: model\n  task: text-generation\n"
           f"  model: {{model}}\n  text: ${{{{input.prompt}}}}")
# A cell that keeps the kernel's main thread busy (pure Python: it holds the GIL but for the interpreter's
# switches) until the test writes the file `stop`, with a chat's activity mark on the component meanwhile.
BUSY_CELL = (
    "import os, time\n"
    "from mc_jupyter import activity\n"
    f"token = activity.begin({COMPONENT!r}, 'chat: generating')\n"
    "deadline = time.monotonic() + 120\n"
    "while not os.path.exists('stop') and time.monotonic() < deadline:\n"
    "    sum(i * i for i in range(20_000))\n"
    "activity.end(token)\n"
    "print('stopped' if os.path.exists('stop') else 'timed out')")


def notebook(model: str, cells=None) -> dict:
    cells = cells or [
        # Registry events are stamped before the panel's own listener hears them (it connects later).
        "import json, time, mc_jupyter\n"
        "stamps = []\n"
        "mc_jupyter.REGISTRY.subscribe(lambda kind, data: stamps.append((kind, time.time())))\n"
        "%load_ext mc_jupyter",
        COMPOSE.format(model=model),
        "print(json.dumps(stamps))",
        "from mc_jupyter import sidebar\n"
        "[panel] = sidebar.open_connections()\n"
        "print(json.dumps({'samples': panel.samples, 'cpu_seconds': panel.sampling_cpu_seconds}))",
        "for _ in range(600):   # the panel's comm_close may take a moment (it can travel on a subshell)\n"
        "    if not sidebar.open_connections():\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "print(len(sidebar.open_connections()))",
        "print(mc_jupyter.REGISTRY.snapshot())",
    ]
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "execution_count": None, "outputs": [],
                       "source": source} for i, source in enumerate(cells)]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """``jupyter lab`` in a temporary root, with its own config, data, settings, workspaces and IPython
    profile: nothing of the user's is read or written."""

    def __init__(self, tmp: Path, model: str):
        self.token, self.port = secrets.token_hex(16), free_port()
        self.root = tmp / "root"
        self.root.mkdir()
        (self.root / "sidebar.ipynb").write_text(json.dumps(notebook(model)))
        (self.root / "other.ipynb").write_text(json.dumps(notebook(model, cells=["1 + 1"])))
        (self.root / "busy.ipynb").write_text(json.dumps(notebook(model, cells=[
            "%load_ext mc_jupyter", COMPOSE.format(model=model), BUSY_CELL])))
        built = ROOT / "mc_jupyter" / "labextension"
        assert (built / "package.json").exists(), f"no built extension in {built}: cd labextension && npm ci && " \
                                                  "npm run build (docs/sidebar.md)"
        data = tmp / "jupyter-data"                  # this checkout's built extension, found first
        (data / "labextensions").mkdir(parents=True)
        (data / "labextensions" / "mc-jupyter").symlink_to(built)
        config = tmp / "jupyter-config"
        (config / "labconfig").mkdir(parents=True)   # no "news?" prompt over the panel
        (config / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        # A notebook opened while the kernel specs are still loading (a busy machine) asks "Select Kernel" in a
        # dialog that takes every click; a user who ticked "Always start the preferred kernel" is never asked
        tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True)
        tracker.write_text(json.dumps({"autoStartDefaultKernel": True}))
        env = dict(os.environ, JUPYTER_PATH=str(data), JUPYTER_CONFIG_DIR=str(config),
                   JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
                   IPYTHONDIR=str(tmp / "ipython"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.log = open(tmp / "lab.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", f"--port={self.port}",
             "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={self.token}",
             f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={tmp / 'settings'}",
             f"--LabApp.workspaces_dir={tmp / 'workspaces'}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"jupyter lab exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"jupyter lab did not answer within 60 s:\n{self.log_text()}")

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def stop(self) -> None:
        """Stop the server and everything it started (kernels run in sessions of their own)."""
        try:
            family = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)      # the server shuts its kernels down
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for child in family:
            try:
                child.wait(timeout=10)
            except psutil.TimeoutExpired:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.log.close()


@pytest.fixture
def lab(models, tmp_path):
    server = Lab(tmp_path, MODEL)   # a hub id, so the screenshot shows what a user writes
    yield server
    server.stop()
    assert server.process.returncode is not None


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        why = ("Chromium is not installed (no `chromium` on PATH, nothing at /usr/bin/chromium): the browser "
               "tests need it; install it with `apt-get install -y chromium` (Debian/Ubuntu)")
        if os.environ.get("CI"):
            pytest.fail(why + ". CI installs it (.ci/run), so there they never skip.")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """The JupyterLab page, used as a person would: tabs, cells, the sidebar."""

    def __init__(self, page):
        self.page = page
        self.panel = page.locator("#mc-jupyter-sidebar")

    def open_notebook(self, name: str) -> None:
        """Open ``name`` from the file browser (a double click) and wait for its kernel to be idle."""
        self.page.locator(".jp-DirListing-content .jp-DirListing-itemText", has_text=name).dblclick()
        self.show_notebook(name)
        self.notebook.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()

    def show_notebook(self, name: str) -> None:
        tab = self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name)
        tab.click()
        self.notebook = self.page.locator(f'[id="{tab.get_attribute("data-id")}"]')
        self.notebook.locator(".jp-Notebook").wait_for()

    def run(self, index: int) -> str:
        """Run cell ``index`` of the notebook shown (Shift+Enter), wait for it to finish; its output text."""
        self.start(index)
        return self.wait_for_cell(index)

    def start(self, index: int) -> None:
        """Run cell ``index`` (Shift+Enter) and return while it runs (its prompt shows ``[*]``).

        Right after a notebook opens its session may not be ready yet, and JupyterLab then skips the
        run (the prompt stays ``[ ]``: nothing was sent), so that case is tried again."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        cell = self.notebook.locator(".jp-CodeCell").nth(index)
        prompt = cell.locator(".jp-InputArea-prompt").element_handle()
        for attempt in range(3):
            self.no_dialog()
            cell.locator(".jp-InputPrompt").click()
            self.page.keyboard.press("Shift+Enter")
            try:
                self.page.wait_for_function("el => /\\[[\\d*]+\\]/.test(el.textContent)", arg=prompt,
                                            timeout=3_000 if attempt < 2 else TIMEOUT_MS)
                return
            except PlaywrightTimeout:
                if prompt.text_content().strip() != "[ ]:":
                    raise

    def no_dialog(self) -> None:
        """Fail with its words when a JupyterLab dialog is open (it would take every click: a kernel that
        died, a lost server connection), instead of a click that times out without saying why."""
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            raise AssertionError(f"a JupyterLab dialog is open: {dialog.first.inner_text()!r}")

    def running(self, index: int) -> bool:
        return "[*]" in self.notebook.locator(".jp-CodeCell").nth(index).locator(".jp-InputArea-prompt").inner_text()

    def wait_for_cell(self, index: int) -> str:
        """Wait for cell ``index`` to finish; its output text."""
        cell = self.notebook.locator(".jp-CodeCell").nth(index)
        self.page.wait_for_function("el => /\\[\\d+\\]/.test(el.textContent)",
                                    arg=cell.locator(".jp-InputArea-prompt").element_handle(), timeout=TIMEOUT_MS)
        return cell.locator(".jp-OutputArea").inner_text()

    def toggle_sidebar(self) -> None:
        self.page.locator('.jp-SideBar.jp-mod-right li[data-id="mc-jupyter-sidebar"]').click()

    def samples(self) -> int:
        """How many memory figures the panel has received over its connection."""
        return int(self.panel.locator(".mc-Sidebar-devices").get_attribute("data-samples"))

    def wait_for_status(self, status: str, notebook: str = "") -> None:
        self.panel.locator(f'.mc-Sidebar-body[data-status="{status}"]').wait_for(timeout=TIMEOUT_MS)
        if notebook:
            assert self.panel.locator(".mc-Sidebar-notebook").inner_text() == notebook


def test_the_sidebar_follows_the_kernel_through_load_compose_unload_and_restart(browser, lab, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{lab.url}/lab?token={lab.token}")
    ui = Page(page)
    page.locator('.jp-SideBar.jp-mod-right li[data-id="mc-jupyter-sidebar"]').click()   # open the sidebar
    ui.wait_for_status("no-notebook")
    assert "No notebook is open" in ui.panel.inner_text()

    ui.open_notebook("sidebar.ipynb")
    ui.wait_for_status("not-loaded", "sidebar.ipynb")
    assert "%load_ext mc_jupyter" in ui.panel.inner_text()

    ui.run(0)
    ui.wait_for_status("connected")
    assert "Nothing is loaded" in ui.panel.inner_text()
    card = ui.panel.locator(f'[data-component-id="{COMPONENT}"][data-state="ready"]')
    page.evaluate("""selector => {   // when the ready card is on screen: the frame after the DOM has it
        window.mcSeen = null;
        new MutationObserver((_, observer) => {
            if (document.querySelector(selector)) {
                observer.disconnect();
                requestAnimationFrame(() => { window.mcSeen = Date.now() / 1000; });
            }
        }).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""", f'[data-component-id="{COMPONENT}"][data-state="ready"] [data-fact="memory"]')

    ui.run(1)
    card.wait_for(timeout=5_000)                 # "within a few seconds" of the compose
    facts = {label: card.locator(f'[data-fact="{label}"]').inner_text() for label in
             ("type", "driver", "device", "dtype", "memory", "load")}
    assert facts["type"] == "model · text-generation" and facts["driver"] == "huggingface"
    assert facts["device"] == "cpu" and facts["dtype"] == "float32"
    assert facts["memory"].endswith(("KiB", "MiB")) and float(facts["memory"].split()[0]) > 0
    assert facts["load"].endswith(" s")
    assert "Kernel RSS" in ui.panel.inner_text() and "Host RAM" in ui.panel.inner_text()
    assert "No GPU" in ui.panel.locator(".mc-Sidebar-noGpu").inner_text()
    page.wait_for_function("() => window.mcSeen !== null")
    changed = [t for kind, t in json.loads(ui.run(2)) if kind == "changed"][-1]
    latency = page.evaluate("() => window.mcSeen") - changed
    assert 0 <= latency < 2, latency


    ui.open_notebook("other.ipynb")              # the panel follows the active notebook ...
    ui.wait_for_status("not-loaded", "other.ipynb")
    ui.show_notebook("sidebar.ipynb")            # ... and back
    ui.wait_for_status("connected", "sidebar.ipynb")
    card.wait_for()

    time.sleep(3)                                 # a memory sample or two
    sampling = json.loads(ui.run(3))
    assert sampling["samples"] >= 1
    print(f"\nsidebar: compose-to-panel latency {latency * 1000:.0f} ms; sampling {sampling['samples']} samples, "
          f"{sampling['cpu_seconds'] / sampling['samples'] * 1e3:.2f} ms CPU each")

    sidebar_tab = page.locator('.jp-SideBar.jp-mod-right li[data-id="mc-jupyter-sidebar"]')
    sidebar_tab.click()                           # collapsed: nobody is looking, the kernel stops sampling
    assert ui.run(4).strip() == "0"
    # ... and what it showed is stale: shown again, it says "Connecting" until the kernel's next snapshot
    # (not a card whose Unload would go to a comm that is not open yet)
    assert ui.panel.locator(".mc-Sidebar-body").get_attribute("data-status") == "connecting"
    assert ui.panel.locator(f'[data-component-id="{COMPONENT}"]').count() == 0
    sidebar_tab.click()
    ui.wait_for_status("connected")
    card.wait_for()

    card.locator("button.mc-Component-free").click()
    ui.panel.locator(f'[data-component-id="{COMPONENT}"]').wait_for(state="detached")
    ui.panel.get_by_text("Nothing is loaded").wait_for()   # the panel may say "Connecting" a moment first
    assert ui.run(5).strip() == "[]"             # gone from the kernel's registry too

    ui.notebook.locator('.jp-NotebookPanel-toolbar [data-command="notebook:restart-kernel"]').click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    ui.wait_for_status("not-loaded")             # a new process: the panel says what to run
    assert "%load_ext mc_jupyter" in ui.panel.inner_text()
    page.close()


def test_the_sidebar_opened_while_a_cell_runs_connects_and_keeps_its_memory_figures_coming(browser, lab, tmp_path):
    """The panel's question and comm travel on a kernel subshell: a kernel busy running a cell answers at
    once, and the sampling thread's figures reach the panel while the main thread is still busy."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{lab.url}/lab?token={lab.token}")
    ui = Page(page)
    ui.open_notebook("busy.ipynb")                # the sidebar is closed: nothing has asked the kernel yet
    ui.run(0)
    ui.run(1)
    ui.start(2)
    assert ui.running(2)

    ui.toggle_sidebar()                           # opened while the cell runs
    ui.wait_for_status("connected", "busy.ipynb")
    assert ui.running(2), "the panel connected only once the cell had ended"
    card = ui.panel.locator(f'[data-component-id="{COMPONENT}"][data-state="ready"]')
    card.wait_for(timeout=5_000)
    memory = card.locator('[data-fact="memory"]').inner_text()
    assert memory.endswith(("KiB", "MiB")) and float(memory.split()[0]) > 0
    assert "Kernel RSS" in ui.panel.inner_text()
    mark = card.locator('[data-activity="chat: generating"]')   # the chat's mark, set in the running cell
    mark.wait_for(timeout=5_000)
    assert mark.inner_text() == "chat: generating"

    before = ui.samples()
    page.wait_for_function("n => Number(document.querySelector('#mc-jupyter-sidebar .mc-Sidebar-devices')"
                           ".dataset.samples) >= n", arg=before + 2, timeout=30_000)   # 1.5 s apart; a
    # loaded 2-core CI machine took over 10 s once (the busy cell runs up to 120 s, so it still runs after)
    assert ui.running(2), "the memory figures came only once the cell had ended"

    # Names are shown whole: wrapped inside the card, never cut with an ellipsis.
    for label, text in (("model", MODEL), ("type", "model · text-generation")):
        fact = card.locator(f'[data-fact="{label}"]')
        assert fact.inner_text() == text and fact.get_attribute("title") == text
        fits = fact.evaluate("el => el.scrollWidth <= el.clientWidth && "
                             "el.getBoundingClientRect().right <= el.closest('.mc-Component').getBoundingClientRect().right")
        assert fits, f"the {label} {text!r} overflows its card"

    shot = tmp_path / "sidebar.png"
    ui.panel.locator(".mc-Sidebar-body").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("MC_JUPYTER_UPDATE_DOCS"):
        shutil.copyfile(shot, ROOT / "docs" / "sidebar.png")

    (lab.root / "stop").write_text("")
    assert ui.wait_for_cell(2).strip() == "stopped"
    mark.wait_for(state="detached", timeout=5_000)   # the mark ended: a snapshot without it
    card.wait_for()
    page.close()
