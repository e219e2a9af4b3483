"""Under each chapter's title: its Colab-style runtime and its two Colab notebooks.

The runtime is the wall time of the chapter run as Colab's "Run all" does (every cell, CPU only,
an empty report cache), as ``make colab-check`` records it in ``book/data/colab_runtimes.json``.
The notebooks are the ones CI publishes on the branch ``colab_notebook_branch`` (see
``colab_links``): ``chNN.ipynb`` (solutions) and ``chNN_exercises.ipynb`` (solutions stubbed,
written by ``scripts/make_exercise_notebooks.py``). A chapter missing from the runtimes file
fails the build, so every page states its cost.
"""

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

COLAB = "https://colab.research.google.com/github/"
RUNTIMES = Path(__file__).resolve().parents[1] / "book" / "data" / "colab_runtimes.json"


def runtime_text(seconds: float) -> str:
    """``"about 40 s"`` / ``"about 3 min"``: the scale a reader plans by."""
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def notebook_urls(repository_url: str, branch: str, docname: str) -> tuple[str, str]:
    """Colab URLs of the exercises and solutions notebooks of ``docname`` (``book/chNN_slug``)."""
    repo = repository_url.removeprefix("https://github.com/").strip("/")
    base = f"{COLAB}{repo}/blob/{branch}/{docname}"
    return f"{base}_exercises.ipynb", f"{base}.ipynb"


def _link(text: str, url: str) -> nodes.reference:
    return nodes.reference("", text, refuri=url, internal=False)


def _add_banner(app: Sphinx, doctree: nodes.document) -> None:
    docname = app.env.docname
    if not docname.startswith("book/ch") or Path(app.env.doc2path(docname)).suffix != ".py":
        return
    chapters = json.loads(RUNTIMES.read_text())["chapters"]
    stem = Path(docname).name
    if stem not in chapters:
        raise KeyError(f"{RUNTIMES.name} has no runtime for {stem}: run `make colab-check` and commit the file")
    run = chapters[stem]
    exercises, solutions = notebook_urls(app.config.html_theme_options.get("repository_url", ""),
                                         app.config.colab_notebook_branch or "main", docname)
    banner = nodes.paragraph(classes=["chapter-banner"])
    banner += nodes.emphasis("", f"Runtime: {runtime_text(run['seconds'])} on a {run['cpu_cores']}-core CPU, "
                                 f"run as Colab's Run all does (measured {run['date']}). Open in Colab: ")
    banner += _link("exercises", exercises)
    banner += nodes.Text(" (solutions stubbed) · ")
    banner += _link("solutions", solutions)
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not isinstance(section[0], nodes.title):
        raise ValueError(f"{docname} has no title to put the runtime under")
    section.insert(1, banner)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-read", _add_banner)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
