"""Make the chapter notebooks Colab-ready and write an exercises version of each.

MyST directives (``{admonition}``, ``{note}``...) are rewritten as Markdown blockquotes, which
Colab and Jupyter render, and citation roles (``{cite:t}`key` ``, ``{cite:p}`key` ``) as plain
"Author et al. (year)" text with a link to the work, from ``references.bib``. In the exercises
version every cell tagged ``solution`` becomes a stub.

A stub keeps the signature (and docstring) of each function the solution defines and replaces its
body with ``raise NotImplementedError("your code here")``, so the checks that follow still find
the names; a solution cell without functions becomes that single line.

``make notebooks`` converts ``book/chNN_slug.py`` to ``_build/notebooks/book/chNN_slug.ipynb``,
then runs this script on those notebooks, which writes ``chNN_slug_exercises.ipynb`` beside each.

Usage: python scripts/make_exercise_notebooks.py _build/notebooks/book/ch*.ipynb
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
from chapter_banner import RUNTIMES, runtime_text  # noqa: E402  (the book's own formatting of the runtime)

SOLUTION_TAG = "solution"
STUB = 'raise NotImplementedError("your code here")'
SUFFIX = "_exercises"


def stub(solution: str) -> str:
    """The source a learner starts from: each top-level function's header with a ``raise`` as its body."""
    try:
        tree = ast.parse(solution)
    except SyntaxError:  # IPython magics: no functions to keep
        return STUB
    lines = solution.splitlines()
    stubs = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body[0].lineno > node.lineno:
            start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            first = node.body[0]
            end = first.end_lineno if ast.get_docstring(node) is not None else first.lineno - 1
            stubs.append("\n".join([*lines[start - 1 : end], " " * first.col_offset + STUB]))
    return "\n\n\n".join(stubs) or STUB


BIBLIOGRAPHY = Path(__file__).resolve().parent.parent / "references.bib"
CITATION = re.compile(r"\{cite:(?P<style>[tp])\}`(?P<keys>[^`]+)`")
_ENTRY = re.compile(r"@\w+\{(?P<key>[^,\s]+),(?P<fields>.*?)\n\}", re.DOTALL)
_FIELD = re.compile(r"(?P<name>\w+)\s*=\s*\{(?P<value>[^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def bibliography(path: Path = BIBLIOGRAPHY) -> dict[str, dict[str, str]]:
    """``{key: {"author": ..., "year": ..., "url": ...}}`` of a BibTeX file (the fields this script reads)."""
    return {m["key"]: {f["name"].lower(): f["value"] for f in _FIELD.finditer(m["fields"])}
            for m in _ENTRY.finditer(path.read_text())}


def _cite(entry: dict[str, str], style: str) -> str:
    surnames = [name.split(",")[0].strip() for name in entry["author"].split(" and ")]
    who = surnames[0] if len(surnames) == 1 else " and ".join(surnames) if len(surnames) == 2 else f"{surnames[0]} et al."
    who = who.replace("{", "").replace("}", "")
    text = f"{who} ({entry['year']})" if style == "t" else f"{who} {entry['year']}"
    return f"[{text}]({entry['url']})" if "url" in entry else text


def plain_citations(source: str, works: dict[str, dict[str, str]]) -> str:
    """``{cite:t}`a,b` `` -> "A et al. (2024), B (2023)"; ``{cite:p}`a` `` -> "(A et al. 2024)"."""

    def replace(match: re.Match) -> str:
        keys = [key.strip() for key in match["keys"].split(",")]
        missing = [key for key in keys if key not in works]
        if missing:
            raise KeyError(f"citation keys {missing} are not in {BIBLIOGRAPHY.name}")
        cited = "; ".join(_cite(works[key], match["style"]) for key in keys)
        return cited if match["style"] == "t" else f"({cited})"

    return CITATION.sub(replace, source)


DIRECTIVE = re.compile(r"^(```|:::)\{(?P<name>[\w-]+)\}[ \t]*(?P<title>[^\n]*)\n(?P<body>.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)


def plain_markdown(source: str) -> str:
    """MyST directive blocks (fenced by ```` ``` ```` or ``:::``) as Colab renders them: a
    ``dropdown`` (a hint) as a collapsed HTML ``<details>`` block, any other as a blockquote headed
    by its title (or the directive's name); ``:option: value`` lines are dropped."""

    def quote(match: re.Match) -> str:
        body = [line for line in match["body"].splitlines() if not re.match(r"^:[\w-]+:", line)]
        heading = match["title"].strip() or match["name"].capitalize()
        if match["name"] == "dropdown":   # collapsed until clicked, as in the book
            return "\n".join([f"<details><summary>{heading}</summary>", "", *body, "", "</details>"])
        return "\n".join([f"> **{heading}**", ">", *(f"> {line}".rstrip() for line in body)])

    return DIRECTIVE.sub(quote, source)


def runtime_cell(stem: str) -> nbformat.NotebookNode:
    """A Markdown cell stating the chapter's Colab-style runtime (from ``make colab-check``)."""
    run = json.loads(RUNTIMES.read_text())["chapters"][stem]
    return nbformat.v4.new_markdown_cell(
        f"*Runtime: {runtime_text(run['seconds'])} on a {run['cpu_cores']}-core CPU runtime with no GPU "
        f"(Runtime > Run all; measured {run['date']}).*")


def colab_version(notebook: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """A copy of ``notebook`` whose Markdown cells use no MyST directives and no citation roles, with
    the runtime under the title (the first Markdown cell)."""
    plain = nbformat.from_dict(notebook)
    works = bibliography()
    for cell in plain.cells:
        if cell.cell_type == "markdown":
            cell.source = plain_citations(plain_markdown(cell.source), works)
    title = next(i for i, cell in enumerate(plain.cells) if cell.cell_type == "markdown")
    plain.cells.insert(title + 1, runtime_cell(stem))
    return plain


def exercises_version(notebook: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """A copy of ``notebook`` with each solution cell replaced by a stub, and how many were replaced."""
    exercises = nbformat.from_dict(notebook)
    replaced = 0
    for index, cell in enumerate(exercises.cells):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            exercises.cells[index] = nbformat.v4.new_code_cell(stub(cell.source), metadata={"tags": ["exercise"]})
            replaced += 1
    return exercises, replaced


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        if path.stem.endswith(SUFFIX):
            continue
        notebook = colab_version(nbformat.read(path, as_version=4), path.stem)
        nbformat.write(notebook, path)
        exercises, replaced = exercises_version(notebook)
        target = path.with_name(f"{path.stem}{SUFFIX}.ipynb")
        nbformat.write(exercises, target)
        print(f"{target}: {replaced} solution cell(s) replaced by a stub")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
