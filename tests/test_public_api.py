"""Every public name has a numpydoc docstring with an example, and every example in the
package runs as a doctest."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import types

import pytest

import coreselect as cs

# Modules whose doctests need an optional package: skipped when it is not installed.
_OPTIONAL = {
    "coreselect.integrations.torch": "torch",
    "coreselect.backends.torch": "torch",
    "coreselect.backends.dask": "dask",
    "coreselect.backends.faiss": "faiss",
    "coreselect.integrations.huggingface": "datasets",
}


def _public_objects():
    """(qualified name, object) for coreselect.__all__, modules expanded to their __all__."""
    for name in cs.__all__:
        obj = getattr(cs, name)
        if name.startswith("__"):
            continue  # __version__: a string
        if isinstance(obj, types.ModuleType):
            for sub in getattr(obj, "__all__", []):
                value = getattr(obj, sub)
                if callable(value):
                    yield f"{name}.{sub}", value
        else:
            yield name, obj


PUBLIC = list(_public_objects())


def test_all_names_exist():
    missing = [name for name in cs.__all__ if not hasattr(cs, name)]
    assert missing == []
    assert len(set(cs.__all__)) == len(cs.__all__)
    assert isinstance(cs.__version__, str)


def test_contract_names_are_exported():
    # DESIGN.md's public API
    for name in ("sensitivity_sample", "SensitivitySampler", "adaptive_sample",
                 "regression_sample", "Selection", "Estimate", "baselines"):
        assert name in cs.__all__, name
    for name in ("uniform", "k_center_greedy", "margin", "least_confidence", "entropy",
                 "leverage_scores", "leverage_sample"):
        assert name in cs.baselines.__all__, name


@pytest.mark.parametrize("name,obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_name_has_numpydoc_example(name, obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    summary = doc.strip().splitlines()[0]
    assert summary.strip(), f"{name}: the docstring must start with a one-line summary"
    assert "\nExamples\n--------\n" in doc, f"{name}: no numpydoc 'Examples' section"
    examples = doctest.DocTestParser().get_examples(doc)
    assert examples, f"{name}: the Examples section has no >>> example"


def _package_modules():
    names = ["coreselect"]
    for info in pkgutil.walk_packages(cs.__path__, "coreselect."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


MODULES = _package_modules()


def _quiet_torch():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.mark.parametrize("modname", MODULES)
def test_doctests_run(modname):
    if modname in _OPTIONAL:
        pytest.importorskip(_OPTIONAL[modname])
    if "torch" in modname:
        _quiet_torch()
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        if "pip install coreselect[" in str(exc):
            pytest.skip(str(exc))  # an optional package this module needs is missing
        raise
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in finder.find(module, modname):
        if not test.examples:
            continue
        out: list[str] = []
        result = runner.run(test, out=out.append, clear_globs=True)
        if result.failed:
            failures.append("".join(out))
    assert not failures, "\n".join(failures)


def test_doctests_can_fail():
    """The doctest runner used above reports a wrong example."""

    def wrong():
        """
        >>> 1 + 1
        3
        """

    test = doctest.DocTestFinder().find(wrong, "wrong")[0]
    runner = doctest.DocTestRunner()
    assert runner.run(test, out=lambda s: None).failed == 1


def test_public_example_runs_for_every_public_name():
    """Each public name's own examples (not only the module's) run and pass."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failed = []
    for name, obj in PUBLIC:
        module = importlib.import_module(obj.__module__) if hasattr(obj, "__module__") else cs
        for test in doctest.DocTestFinder(recurse=False).find(obj, name, module=module,
                                                              globs=vars(module).copy()):
            if test.examples and runner.run(test, out=lambda s: None).failed:
                failed.append(name)
    assert failed == []
