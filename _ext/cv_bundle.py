"""Ship the circuitsvis JavaScript bundle once per site, for views rendered in ``page`` mode.

With ``MECHSHIFT_CV_MODE=page`` (set by the Makefile), ``mechshift_lite.viz`` writes only a
``<div>`` and a ``CircuitsVis.render(...)`` call per view. This extension copies the installed
circuitsvis bundle (it defines the global ``CircuitsVis``) to ``_static/circuitsvis-iife.js`` and
loads it in the ``<head>`` of every page, so the bundle is never committed and always matches
the installed circuitsvis.
"""

import shutil
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

STATIC_NAME = "circuitsvis-iife.js"


def bundle_path() -> Path:
    """The bundle inside the installed circuitsvis wheel, found without importing circuitsvis (and torch)."""
    return Path(find_spec("circuitsvis").origin).parent / "dist" / "cdn" / "iife.js"


def _copy_bundle(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / STATIC_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle_path(), target)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_js_file(STATIC_NAME)
    app.connect("build-finished", _copy_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
