"""Point the theme's Colab button at the output-free notebooks that CI publishes.

sphinx-book-theme builds the Colab URL from the chapter's source, ``blob/main/book/chNN.py``,
which Colab cannot open. CI converts each chapter to ``.ipynb`` and pushes the result to the
branch named by the config value ``colab_notebook_branch``; this rewrites the button to
``blob/<that branch>/book/chNN.ipynb``. The repository and edit buttons keep ``main``.
"""

from pathlib import PurePosixPath
from typing import Any

from sphinx.application import Sphinx

COLAB = "https://colab.research.google.com/github/"


def _rewrite(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    branch = app.config.colab_notebook_branch
    if not branch:
        return
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if isinstance(group, dict) else []:
            url = button.get("url", "")
            if url.startswith(COLAB):
                org, repo, _blob, _branch, *path = url[len(COLAB):].split("/")
                notebook = PurePosixPath(*path).with_suffix(".ipynb")
                button["url"] = f"{COLAB}{org}/{repo}/blob/{branch}/{notebook}"


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("colab_notebook_branch", "", "html")
    # sphinx-book-theme adds the launch buttons at priority 501; run after it.
    app.connect("html-page-context", _rewrite, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
