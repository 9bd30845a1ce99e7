"""The supplement and the notebooks in a real browser: Debian's Chromium driven by Playwright
(no browser download: ``executable_path`` is the system's ``chromium``).

- index.html and every page it links (each rendered notebook) of the session's smoke grid,
  offline: every local link resolves, every image loads, no console error, no request
  leaves the machine (any request that is not file:/data: fails the test), and the
  tables fit a 1280-px window;
- JupyterLab from the project's .venv opens notebooks/01_train.ipynb with the project's
  kernel, "rkdo-suite (.venv)" (the Makefile's ``ipykernel install --sys-prefix``).

Skipped, with the reason, where playwright is not installed or no chromium is on PATH.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
WIDTH = 1280
KERNEL_DISPLAY_NAME = "rkdo-suite (.venv)"


def _why_no_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("browser tests skipped: playwright is not installed (it is in the dev extras: "
                "pip install -e '.[dev]')")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "browser tests skipped: no chromium on PATH (Debian: apt-get install chromium)"
    return None


# a mark, not a skip inside a fixture: the session's smoke grid (a session fixture, set up
# before any module fixture) must not run for tests that are skipped anyway
NO_BROWSER = _why_no_browser()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(NO_BROWSER is not None,
                                                   reason=NO_BROWSER or "")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=shutil.which("chromium") or shutil.which("chromium-browser"))
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(smoke_aggregated):
    """The session's smoke grid, aggregated once (tests/conftest.py)."""
    return smoke_aggregated


class OfflinePage:
    """A page opened from disk in its own context; ``problems`` collects console errors,
    page errors, failed loads and every request that would leave the machine (aborted)."""

    LOCAL = ("file:", "data:", "blob:", "about:")

    def __init__(self, browser, path: Path):
        self.path = path
        self.context = browser.new_context(viewport={"width": WIDTH, "height": 900})
        self.problems: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(
            f"failed to load {r.url}: {r.failure}"))
        self.page.goto(path.as_uri(), wait_until="load")

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.LOCAL):
            route.continue_()
        else:
            self.problems.append(f"request leaves the machine: {url}")
            route.abort()

    def local_links(self) -> list[str]:
        return self.page.eval_on_selector_all("a[href]", "els => els.map(e => "
                                              "e.getAttribute('href'))")

    def broken_images(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0))"
                   ".map(e => e.getAttribute('src').slice(0, 80))")

    def widths(self) -> tuple[int, list[float]]:
        """The document's scroll width and the right edge of every table."""
        return (self.page.evaluate("document.scrollingElement.scrollWidth"),
                self.page.eval_on_selector_all(
                    "table", "els => els.map(e => e.getBoundingClientRect().right)"))

    def close(self):
        self.context.close()


def _target(page: Path, href: str) -> tuple[Path | None, str]:
    """The file a relative link points at (None for an in-page anchor) and its fragment."""
    parsed = urlparse(href)
    assert not parsed.scheme and not parsed.netloc, f"{page.name}: non-local link {href}"
    path = (page.parent / unquote(parsed.path)).resolve() if parsed.path else None
    return path, parsed.fragment


def test_index_and_every_linked_page_work_offline_and_fit(browser, site):
    started = time.perf_counter()
    index = OfflinePage(browser, site / "index.html")
    try:
        assert index.problems == []
        assert index.broken_images() == []
        scroll, rights = index.widths()
        assert scroll <= WIDTH, f"index.html is {scroll} px wide at a {WIDTH}-px window"
        assert rights and max(rights) <= WIDTH, max(rights)
        pages = []
        for href in index.local_links():
            target, fragment = _target(site / "index.html", href)
            if target is None:
                assert index.page.locator(f"[id='{fragment}']").count() == 1, href
                continue
            assert target.is_file(), href
            assert site.resolve() in target.parents, f"{href} leaves the results folder"
            if target.suffix == ".html" and target not in pages:
                pages.append(target)
    finally:
        index.close()
    assert len(pages) >= 6 * 2 + 1 + 2  # every run's two notebooks, 05_aggregate, diagnostics
    for path in pages:
        page = OfflinePage(browser, path)
        try:
            assert page.problems == [], path
            assert page.broken_images() == [], path
            scroll, _ = page.widths()  # a notebook's wide output scrolls inside its cell
            assert scroll <= WIDTH, f"{path} is {scroll} px wide"
            for href in page.local_links():
                target, _ = _target(path, href)
                assert target is None or target.exists(), (path, href)
        finally:
            page.close()
    print(f"\n{len(pages) + 1} pages checked in {time.perf_counter() - started:.1f} s")


def test_index_leads_with_bottom_line_contents_and_html_tables(browser, site):
    """A reader's first screen: the smoke banner and the bottom line, then a table of
    contents whose links jump to their sections; each table's link opens an HTML table,
    not Markdown's raw pipes."""
    index = OfflinePage(browser, site / "index.html")
    try:
        page = index.page
        banner = page.locator("p.smoke").first
        assert banner.is_visible() and "these numbers mean nothing" in banner.inner_text()
        bottom = page.locator("#bottom-line p.bottom-line")
        assert bottom.is_visible()
        assert bottom.inner_text().startswith("The paper claims that RKDO")
        assert bottom.bounding_box()["y"] + bottom.bounding_box()["height"] < 900
        nav = page.locator("nav#contents")
        assert nav.bounding_box()["y"] < 1800  # within two screens, before the statistics
        hrefs = nav.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert len(hrefs) >= 20 and all(h.startswith("#") for h in hrefs)
        for href in hrefs:
            assert page.locator(f"[id='{href[1:]}']").count() == 1, href
        for href in ("#audit-claims", "#tables", "#figures"):
            page.evaluate("window.scrollTo(0, 0)")
            nav.locator(f"a[href='{href}']").click()
            assert page.evaluate("location.hash") == href
            top = page.locator(f"[id='{href[1:]}']").bounding_box()["y"]
            assert -2 <= top < 60, (href, top)  # jumped: the section at the window's top
        assert page.locator("#audit h3, h3[id^='audit-']").count() >= 4
        tables = page.locator("a", has_text="table (HTML)").evaluate_all(
            "els => els.map(e => e.getAttribute('href'))")
        assert len(tables) == len(json.loads((site / "aggregate.json").read_text())["tables"])
        assert page.locator("h2#tables ~ table").count() > 0  # tables inline, as HTML
    finally:
        index.close()
    for href in tables:
        table_page = OfflinePage(browser, site / href)
        try:
            assert table_page.problems == [], href
            shown = table_page.page.locator("table").count() > 0 or \
                table_page.page.get_by_text("(no rows)").count() == 1
            assert shown, href
            body = table_page.page.inner_text("body")
            assert "|---" not in body and "|:--" not in body, href
            scroll, rights = table_page.widths()
            assert scroll <= WIDTH and (not rights or max(rights) <= WIDTH), href
        finally:
            table_page.close()


def test_rendered_notebook_shows_math_without_any_script(browser, site):
    path = sorted((site / "diagnostics").glob("*.html"))[0]  # 04_figures: TeX in Markdown
    page = OfflinePage(browser, path)
    try:
        assert page.problems == []
        assert page.page.locator("script[src]").count() == 0
        boxes = page.page.eval_on_selector_all(
            "math", "els => els.map(e => [e.getBoundingClientRect().width, "
                    "e.getBoundingClientRect().height])")
        assert len(boxes) > 5 and all(w > 0 and h > 0 for w, h in boxes), boxes
        text = page.page.eval_on_selector_all(
            ".jp-RenderedMarkdown", "els => els.map(e => e.innerText).join(' ')")
        assert "$" not in text, "TeX delimiters left for a script to typeset"
    finally:
        page.close()


# ---- JupyterLab ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"jupyter lab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def test_jupyterlab_opens_01_train_with_the_project_kernel(browser, tmp_path):
    from jupyter_client.kernelspec import find_kernel_specs

    assert "rkdo" in find_kernel_specs(), (
        "the project's kernelspec is not installed; `make test` installs it "
        "(ipykernel install --sys-prefix --name rkdo)")
    started = time.perf_counter()
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    # Jupyter's per-user state (runtime files, trust database, settings, workspaces,
    # checkpoints) in tmp_path; the kernelspec is found in the .venv (sys-prefix) all the same
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"))
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
           "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.token={token}", f"--notebook-dir={REPO}",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           # the checkpoint Lab makes of an opened notebook: in tmp_path, not notebooks/
           f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp_path / "lab.log"
    had_checkpoints = (REPO / "notebooks" / ".ipynb_checkpoints").exists()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    context = None
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc, log)
        context = browser.new_context(viewport={"width": WIDTH, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/lab/tree/notebooks/01_train.ipynb?token={token}")
        kernel = page.locator("[data-jp-item-name='kernelName']").first
        kernel.wait_for(timeout=90_000)
        deadline = time.monotonic() + 90
        while KERNEL_DISPLAY_NAME not in kernel.inner_text() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert kernel.inner_text().strip() == KERNEL_DISPLAY_NAME
        # and the kernel starts: the status bar reads "rkdo-suite (.venv) | Idle"
        status = page.locator("#jp-main-statusbar")
        while f"{KERNEL_DISPLAY_NAME} | Idle" not in status.inner_text() \
                and time.monotonic() < deadline:
            time.sleep(0.3)
        assert f"{KERNEL_DISPLAY_NAME} | Idle" in status.inner_text(), status.inner_text()
        assert not (REPO / "notebooks" / ".ipynb_checkpoints").exists() or had_checkpoints
    finally:
        if context is not None:
            context.close()
        try:  # the server shuts its kernels down, then exits
            urllib.request.urlopen(urllib.request.Request(
                f"{base}/api/shutdown?token={token}", method="POST"), timeout=10)
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\nJupyterLab: kernel shown and idle after {time.perf_counter() - started:.1f} s")
