"""The documentation site builds in strict mode: a broken link, a missing page or a
mkdocstrings reference to a name that does not exist fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings_handlers.python")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=300,
    )


def _copy_project(tmp_path: Path) -> Path:
    """mkdocs.yml, docs/ and src/ in a scratch folder, so that a test can break them."""
    dst = tmp_path / "proj"
    dst.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", dst / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", dst / "docs")
    shutil.copytree(ROOT / "src", dst / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dst


def test_config_is_strict():
    text = (ROOT / "mkdocs.yml").read_text()
    assert "strict: true" in text
    assert "docstring_style: numpy" in text


def test_every_page_is_in_the_nav():
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may hold !!python/name tags; they are not needed to read the nav.
    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                yield from pages(value)
            else:
                yield value

    in_nav = set(pages(config["nav"]))
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk - in_nav == set(), "pages missing from the nav"
    assert in_nav - on_disk == set(), "nav entries without a page"


def test_site_builds_strictly(tmp_path):
    res = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "WARNING" not in res.stderr, res.stderr
    site = tmp_path / "site"
    for page in ("index.html", "concepts/index.html", "api/sampling/index.html",
                 "api/integrations/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "sampling" / "index.html").read_text()
    # mkdocstrings rendered the public API from the docstrings
    assert "sensitivity_sample" in api and "SensitivitySampler" in api
    assert "query_indices_" in api


def test_broken_link_fails_the_build(tmp_path):
    proj = _copy_project(tmp_path)
    page = proj / "docs" / "index.md"
    page.write_text(page.read_text() + "\nSee [a page that is not there](no-such-page.md).\n")
    res = _build(proj / "mkdocs.yml", tmp_path / "site")
    assert res.returncode != 0
    assert "no-such-page.md" in res.stdout + res.stderr


def test_broken_api_reference_fails_the_build(tmp_path):
    proj = _copy_project(tmp_path)
    page = proj / "docs" / "api" / "oracle.md"
    page.write_text(page.read_text() + "\n::: coreselect.no_such_module\n")
    res = _build(proj / "mkdocs.yml", tmp_path / "site")
    assert res.returncode != 0
    assert "no_such_module" in res.stdout + res.stderr


def _documented_modules() -> set[str]:
    found = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        for line in page.read_text().splitlines():
            if line.startswith("::: "):
                found.add(line[4:].strip())
    return found


def test_every_public_module_is_in_the_api_reference():
    import pkgutil

    import coreselect

    documented = _documented_modules()
    missing = []
    for info in pkgutil.walk_packages(coreselect.__path__, "coreselect."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.ispkg and info.name in {
            "coreselect.baselines", "coreselect.datasets", "coreselect.integrations",
            "coreselect.experiments",
        }:
            continue  # private, or a package whose modules are documented one by one
        if info.name not in documented:
            missing.append(info.name)
    assert missing == [], f"add these to a page of docs/api/: {missing}"


def test_every_example_is_on_the_tutorials_page():
    text = (ROOT / "docs" / "tutorials.md").read_text()
    scripts = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
    assert scripts, "no examples"
    assert [s for s in scripts if f"examples/{s}" not in text] == []


def test_rst_roles_hook():
    import runpy

    hook = runpy.run_path(str(ROOT / "docs" / "_hooks" / "rst_roles.py"))["on_page_content"]
    html = ("See :class:<code>~coreselect.Selection</code> and :func:<code>cs.uniform</code>; "
            "keep a:b:<code>x</code>.")
    assert hook(html) == ("See <code>Selection</code> and <code>cs.uniform</code>; "
                          "keep a:b:<code>x</code>.")


# --------------------------------------------------------------------------- snippets
_FENCE = "```python"
_NOT_RUN = "<!-- not run:"
_SNIPPET_PAGES = ["README.md"] + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
# Optional packages a page may need; without them its snippets are skipped, not failed.
_OPTIONAL = ("torch", "datasets", "distributed", "dask", "pyarrow", "matplotlib")


def _snippets(page: str) -> list[str]:
    """The ``python`` code blocks of a page, in order, but those marked ``<!-- not run: -->``
    on the line before (an excerpt, or code that needs a cluster)."""
    lines = (ROOT / page).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == _FENCE:
            j = lines.index("```", i + 1)
            if not (i and lines[i - 1].strip().startswith(_NOT_RUN)):
                blocks.append("\n".join(lines[i + 1:j]))
            i = j
        i += 1
    return blocks


def test_snippet_reader_sees_every_block():
    for page in _SNIPPET_PAGES:
        text = (ROOT / page).read_text()
        marked = text.count(_NOT_RUN)
        assert len(_snippets(page)) + marked == text.count(_FENCE), page


@pytest.mark.parametrize("page", [p for p in _SNIPPET_PAGES if _snippets(p)])
def test_every_snippet_runs_as_written(page, tmp_path):
    """The snippets of a page, run in order in one fresh interpreter, in a folder holding an
    ``embeddings.npy`` (the file the README and the home page start from)."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "embeddings.npy", rng.normal(size=(5_000, 16)).astype(np.float32))
    code = "\n\n".join(_snippets(page))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]), MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    missing = [m for m in _OPTIONAL if f"No module named '{m}'" in res.stderr]
    if res.returncode and missing:
        pytest.skip(f"{page} needs {missing[0]}")
    assert res.returncode == 0, f"{page}:\n{res.stderr[-3000:]}"
