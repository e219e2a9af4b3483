"""The book's sources follow the conventions the build, Colab and readers rely on (fast: nothing executes)."""

import ast
import re
import sys
from pathlib import Path

import pytest

# The book's tooling is installed with the book (make test), not in the lowest-versions
# environment that runs only the package's tests (make test-min).
jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
parse_toc_yaml = pytest.importorskip("sphinx_external_toc.parsing").parse_toc_yaml

import mechshift_lite

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_exercise_notebooks import (  # noqa: E402
    SOLUTION_TAG, bibliography, colab_version, exercises_version, plain_citations, plain_markdown,
)

CHAPTERS = sorted((ROOT / "book").glob("ch*.py"))
REPOSITORY = "https://github.com/mechshift-lite/mechshift-lite"
INSTALL_CELL = f"""\
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+{REPOSITORY}@v{mechshift_lite.__version__}\""""
HEADING = re.compile(r"^#{1,2} +(.*)$", re.MULTILINE)
CODE_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def read_chapter(path: Path) -> nbformat.NotebookNode:
    return jupytext.reads(path.read_text(encoding="utf-8"), fmt="py:percent")


def test_toc_entries_exist() -> None:
    for docname in parse_toc_yaml(ROOT / "_toc.yml").keys():
        sources = [ROOT / f"{docname}{suffix}" for suffix in (".md", ".py", ".ipynb")]
        assert any(source.is_file() for source in sources), f"_toc.yml lists {docname}, which has no source"


def test_every_chapter_is_in_the_toc() -> None:
    # only_build_toc_files: a chapter missing from the toc would silently never be built
    docnames = set(parse_toc_yaml(ROOT / "_toc.yml").keys())
    assert CHAPTERS, "no book/ch*.py chapters"
    missing = [path.name for path in CHAPTERS if path.relative_to(ROOT).with_suffix("").as_posix() not in docnames]
    assert not missing, f"add these chapters to _toc.yml: {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_chapter_starts_with_jupytext_header_and_kernelspec(path: Path) -> None:
    # Without a kernelspec the theme shows no launch (Colab) button.
    assert path.read_text(encoding="utf-8").startswith("# ---\n# jupyter:\n"), "missing the Jupytext header"
    kernelspec = read_chapter(path).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3" and kernelspec.get("language") == "python"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_first_code_cell_is_the_pinned_install_cell(path: Path) -> None:
    first = next(cell for cell in read_chapter(path).cells if cell.cell_type == "code")
    assert set(first.metadata.get("tags", [])) >= {"skip-execution", "remove-cell"}
    assert first.source == INSTALL_CELL, "the install cell must be exactly the one in README.md"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_chapter_ends_with_exercises(path: Path) -> None:
    markdown = "\n".join(cell.source for cell in read_chapter(path).cells if cell.cell_type == "markdown")
    headings = HEADING.findall(CODE_FENCE.sub("", markdown))
    assert headings and "Exercises" in headings[-1], f"last section is {headings[-1:]}, not Exercises"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_exercises_notebook_keeps_the_solutions_names_but_not_their_code(path: Path) -> None:
    def functions(source: str) -> list[str]:
        return [node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]

    chapter = read_chapter(path)
    exercises, replaced = exercises_version(chapter)
    assert replaced == sum(SOLUTION_TAG in cell.metadata.get("tags", []) for cell in chapter.cells)
    for solution, stub in zip(chapter.cells, exercises.cells):
        if SOLUTION_TAG in solution.metadata.get("tags", []):
            assert 'raise NotImplementedError("your code here")' in stub.source
            assert functions(stub.source) == functions(solution.source)
            assert SOLUTION_TAG not in stub.metadata.get("tags", [])


def test_pyproject_version_matches_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == mechshift_lite.__version__


def test_directives_become_blockquotes_that_colab_renders() -> None:
    source = "Before.\n\n```{admonition} Definitions\n:class: note\n- **N**: edges\n- $K$: components\n```\n\n:::{note}\nA note.\n:::\nAfter."
    assert plain_markdown(source) == ("Before.\n\n> **Definitions**\n>\n> - **N**: edges\n> - $K$: components\n\n"
                                      "> **Note**\n>\n> A note.\nAfter.")
    assert plain_markdown("```python\nx = 1\n```") == "```python\nx = 1\n```"   # code blocks stay


def test_hints_stay_collapsed_in_the_notebooks() -> None:
    source = "Try it.\n\n```{dropdown} Hint 1\nUse `torch.einsum`.\n```\nDone."
    assert plain_markdown(source) == "Try it.\n\n<details><summary>Hint 1</summary>\n\nUse `torch.einsum`.\n\n</details>\nDone."


def test_citation_roles_become_linked_author_year_text() -> None:
    works = {"a": {"author": "Hanna, Michael and Pezzelle, Sandro and Belinkov, Yonatan", "year": "2024", "url": "u"},
             "b": {"author": "nostalgebraist", "year": "2020"}}
    assert plain_citations("EAP-IG {cite:p}`a`.", works) == "EAP-IG ([Hanna et al. 2024](u))."
    assert plain_citations("{cite:t}`a,b` showed", works) == "[Hanna et al. (2024)](u); nostalgebraist (2020) showed"
    with pytest.raises(KeyError, match="not in references.bib"):
        plain_citations("{cite:p}`missing`", works)


def test_every_cited_key_is_in_the_bibliography() -> None:
    keys = set(bibliography())
    cited = {key.strip() for path in [*CHAPTERS, ROOT / "book" / "intro.md", *(ROOT / "book").glob("*.md")]
             for group in re.findall(r"\{cite:[tp]\}`([^`]+)`", path.read_text()) for key in group.split(",")}
    assert cited and cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_colab_notebooks_have_no_myst_directives(path: Path) -> None:
    for cell in colab_version(read_chapter(path), path.stem).cells:
        if cell.cell_type == "markdown":
            assert not re.search(r"^(```|:::)\{", cell.source, re.MULTILINE), cell.source[:200]
            assert "{cite" not in cell.source, cell.source[:200]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_every_chapter_states_its_colab_runtime_under_its_title(path: Path) -> None:
    notebook = colab_version(read_chapter(path), path.stem)
    markdown = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
    assert markdown[0].startswith("# "), "the first Markdown cell is the title"
    assert markdown[1].startswith("*Runtime: about "), "the runtime comes right under the title"


def test_banner_links_both_notebooks_of_a_chapter() -> None:
    sys.path.insert(0, str(ROOT / "_ext"))
    from chapter_banner import notebook_urls, runtime_text

    exercises, solutions = notebook_urls(REPOSITORY, "notebooks", "book/ch04_attribution")
    assert solutions == ("https://colab.research.google.com/github/mechshift-lite/mechshift-lite/blob/notebooks/"
                         "book/ch04_attribution.ipynb")
    assert exercises == solutions.replace(".ipynb", "_exercises.ipynb")
    assert (runtime_text(40.2), runtime_text(200)) == ("about 40 s", "about 3 min")
