"""The circuitsvis wrapper writes the HTML its mode promises, whatever the network or environment."""

import json
import re

import matplotlib
import pytest
import torch

from mechshift_lite import viz

matplotlib.use("Agg")

TOKENS = ["[BOS]", "Mary", "and", "John", "</script>"]
ATTENTION = torch.softmax(torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
BUNDLE_START = viz.bundle_path().read_text(encoding="utf-8")[:200]


def render_calls(html: str) -> list[tuple[str, str, str]]:
    """(element id, component, props JSON) of every ``CircuitsVis.render`` call in ``html``."""
    return re.findall(r'CircuitsVis\.render\("([^"]+)", CircuitsVis\.(\w+), (\{.*\})\);', html)


def test_page_mode_has_no_bundle_and_exactly_one_render_call() -> None:
    html = viz.attention_patterns(TOKENS, ATTENTION, mode="page")._repr_html_()
    assert BUNDLE_START not in html
    assert len(html) < 5_000
    calls = render_calls(html)
    assert len(calls) == 1
    element_id, component, _ = calls[0]
    assert component == "AttentionPatterns"
    assert f'<div id="{element_id}"' in html


def test_inline_mode_contains_the_bundle_once() -> None:
    html = viz.colored_tokens(TOKENS, [0.5, -1.0, 0.0, 2.0, 1.0], mode="inline")._repr_html_()
    assert html.count(BUNDLE_START) == 1
    assert len(render_calls(html)) == 1


def test_cdn_mode_imports_the_installed_version_from_unpkg() -> None:
    import circuitsvis

    html = viz.colored_tokens(TOKENS, [0.0] * 5, mode="cdn")._repr_html_()
    assert f"https://unpkg.com/circuitsvis@{circuitsvis.__version__}/dist/cdn/esm.js" in html
    assert BUNDLE_START not in html


def test_props_json_round_trips() -> None:
    html = viz.attention_patterns(TOKENS, ATTENTION, head_labels=["a0.h0", "a0.h1"], mode="page")._repr_html_()
    (_, _, props_json), = render_calls(html)
    assert "</script>" not in props_json  # a token must not close the script element
    props = json.loads(props_json)
    assert props["tokens"] == TOKENS
    assert props["headLabels"] == ["a0.h0", "a0.h1"]
    torch.testing.assert_close(torch.tensor(props["attention"]), ATTENTION)


def test_omitted_props_are_left_out() -> None:
    (_, _, props_json), = render_calls(viz.attention_patterns(TOKENS, ATTENTION, mode="page")._repr_html_())
    assert "headLabels" not in json.loads(props_json)


def test_each_display_gets_its_own_element_id() -> None:
    view = viz.colored_tokens(TOKENS, [0.0] * 5, mode="page")
    first, second = render_calls(view._repr_html_()), render_calls(view._repr_html_())
    assert first[0][0] != second[0][0]


def test_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(viz.MODE_ENV_VAR, "page")
    assert viz.colored_tokens(TOKENS, [0.0] * 5).mode == "page"
    monkeypatch.delenv(viz.MODE_ENV_VAR)
    assert viz.colored_tokens(TOKENS, [0.0] * 5).mode == "inline"


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_bad_mode_raises_naming_the_allowed_modes(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if where == "environment":
        monkeypatch.setenv(viz.MODE_ENV_VAR, "offline")
    mode = "offline" if where == "argument" else None
    with pytest.raises(ValueError, match="inline, cdn, page"):
        viz.attention_patterns(TOKENS, ATTENTION, mode=mode)


def test_figure_fallbacks_label_their_axes() -> None:
    fig = viz.attention_patterns_figure(TOKENS, ATTENTION, head_labels=["a0.h0", "a0.h1"])
    heads = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heads] == ["a0.h0", "a0.h1"]
    assert heads[0].get_xlabel() and heads[0].get_ylabel()
    fig = viz.colored_tokens_figure(TOKENS, torch.tensor([0.5, -1.0, 0.0, 2.0, 1.0]), value_label="logit diff")
    assert [text.get_text() for text in fig.axes[0].texts] == TOKENS
    assert fig.axes[1].get_ylabel() == "logit diff"


def test_versions_footer_names_the_packages() -> None:
    import mechshift_lite

    footer = viz.versions_footer()
    assert footer.startswith(f"mechshift_lite {mechshift_lite.__version__} · torch ")
    assert "transformers" in footer
