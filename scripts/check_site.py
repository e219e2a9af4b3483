"""Open every page of the built book in headless Chromium and check what a reader would see.

For each page in ``_toc.yml`` it saves the rendered DOM and a screenshot to ``_build/screenshots/``
and checks that
- no error output shows (a traceback outside a cell tagged ``raises-exception``),
- every ``<img>`` points at a file of the site (or a ``data:`` URI),
- every circuitsvis view was rendered (its ``<div>`` got children),
- on a chapter (``.py`` source), the Colab button opens an ``.ipynb``.

Installs Debian's ``chromium`` with apt-get when it is missing. Not part of ``make test``.

Usage: python scripts/check_site.py [_build/html]
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from bs4 import BeautifulSoup
from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
COLAB = "https://colab.research.google.com/"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,2400",
    "--virtual-time-budget=10000",  # let module scripts (circuitsvis) run before the dump
]


def chromium() -> str:
    """Path of a Chromium binary, installing Debian's package if there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        print("Installing Debian's chromium with apt-get ...", flush=True)
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=quiet)
        found = shutil.which("chromium")
    if found is None:
        sys.exit("no chromium binary, and apt-get did not provide one")
    return found


def serve(site: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``site`` on 127.0.0.1 at a free port, in a background thread; returns the server and its URL."""

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def render(browser: str, url: str, name: str) -> str:
    """Load ``url`` headless; save its DOM and a screenshot under ``SCREENSHOTS``; return the DOM."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    with tempfile.TemporaryDirectory() as profile:
        flags = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        screenshot = SCREENSHOTS / f"{name}.png"
        subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    (SCREENSHOTS / f"{name}.html").write_text(dom, encoding="utf-8")
    return dom


def page_problems(dom: str, url: str, base_url: str, site: Path, is_chapter: bool) -> list[str]:
    """What a reader would see broken on one rendered page; empty when all is well."""
    page = BeautifulSoup(dom, "html.parser")
    problems = []
    for output in page.select(".cell_output .traceback, .cell_output .output.error"):
        if not output.find_parent(class_="tag_raises-exception"):
            problems.append(f"error output: {output.get_text()[:200]!r}")
    for image in page.find_all("img"):
        source = urljoin(url, image.get("src", ""))
        if source.startswith("data:"):
            continue
        if not source.startswith(base_url) or not (site / unquote(urlparse(source).path).lstrip("/")).is_file():
            problems.append(f"image without a file in the site: {image.get('src')}")
    for view in page.select("div.mechshift-cv, div[id^=circuits-vis-]"):
        if not view.find(True):
            problems.append(f"circuitsvis view {view.get('id')} did not render")
    if is_chapter:
        colab = [link["href"] for link in page.find_all("a", href=True) if link["href"].startswith(COLAB)]
        if not colab:
            problems.append("no Colab button")
        problems += [f"Colab link does not open a notebook: {href}" for href in colab if not href.endswith(".ipynb")]
    return problems


def main(site: Path) -> int:
    if not (site / "index.html").is_file():
        sys.exit(f"{site} has no built book: run `make book` first")
    browser = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    server, base_url = serve(site)
    failures = 0
    try:
        for docname in parse_toc_yaml(ROOT / "_toc.yml").keys():
            url = urljoin(base_url, f"{docname}.html")
            dom = render(browser, url, docname.replace("/", "_"))
            is_chapter = (ROOT / f"{docname}.py").is_file()
            problems = page_problems(dom, url, base_url, site, is_chapter)
            print(f"{'ok  ' if not problems else 'FAIL'} {docname}")
            for problem in problems:
                print(f"     {problem}")
            failures += bool(problems)
    finally:
        server.shutdown()
    print(f"{failures} page(s) with problems; DOM dumps and screenshots in {SCREENSHOTS.relative_to(ROOT)}/")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html").resolve()))
