"""The Colab-style run (scripts/run_like_colab.py): tags ignored, no network, no GPU, errors reported."""

import importlib.util
import os
from pathlib import Path

import pytest

for needed in ("jupytext", "nbclient", "nbformat", "ipykernel"):   # the book's tools, not the package's
    pytest.importorskip(needed)

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_like_colab.py"
spec = importlib.util.spec_from_file_location("run_like_colab", SCRIPT)
run_like_colab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_like_colab)


def chapter(tmp_path, body: str) -> Path:
    path = tmp_path / "chapter.py"
    path.write_text("# %% [markdown]\n# A chapter.\n\n" + body)
    return path


def test_a_chapter_sees_no_gpu_no_hub_and_runs_cells_tagged_to_be_skipped(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    ok, _, error = run_like_colab.run(chapter(tmp_path, (
        '# %% tags=["skip-execution"]\nran_tagged = True\n\n'
        "# %%\nimport os, torch\nassert ran_tagged and not torch.cuda.is_available()\n"
        'assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and os.environ["HF_HUB_OFFLINE"] == "1"\n')))
    assert ok, error
    assert "HF_HUB_OFFLINE" not in os.environ   # the runner's own environment is left alone


def test_a_connection_to_another_host_fails_the_chapter_and_a_local_one_does_not(tmp_path):
    local = ("# %%\nimport socket\nserver = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()\n"
             "socket.create_connection(server.getsockname(), timeout=5).close()\n")
    ok, _, error = run_like_colab.run(chapter(tmp_path, local))
    assert ok, error
    ok, _, error = run_like_colab.run(chapter(tmp_path, local + "\n# %%\nsocket.create_connection(('192.0.2.1', 80), timeout=5)\n"))
    assert not ok and "network access is blocked" in error


def test_a_cell_over_the_timeout_fails_its_chapter_instead_of_hanging(tmp_path):
    ok, seconds, error = run_like_colab.run(chapter(tmp_path, "# %%\nimport time\ntime.sleep(60)\n"), timeout_s=3)
    assert not ok and "longer than 3 s" in error and seconds < 30
