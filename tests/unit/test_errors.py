"""One error tree (pipeline/errors.py): every error wordpipe raises to a caller is a
UsageError (exit 2) or an UnavailableError (exit 1), and the tree drawn there is the tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pipeline
from pipeline import errors

INTERNAL = {"HttpError", "Disconnected", "_Redirect"}  # answers on their way out, a scheduler's own signals


def exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for module in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        if module.name.endswith("__main__"):
            continue
        for name, obj in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.name:
                found[name] = obj
    return found


def test_every_error_is_on_one_branch_of_the_tree():
    classes = exception_classes()
    assert len(classes) >= 18, sorted(classes)  # the scan sees them
    public = {name: cls for name, cls in classes.items() if name not in INTERNAL}
    stray = [
        name
        for name, cls in public.items()
        if cls not in (errors.UsageError, errors.UnavailableError, errors.WordpipeError)
        and not issubclass(cls, (errors.UsageError, errors.UnavailableError))
    ]
    assert not stray, stray


def test_the_docstring_draws_the_tree():
    drawn = set(re.findall(r"── (\w+)", errors.__doc__ or ""))
    classes = exception_classes()
    assert {name for name in classes if name not in INTERNAL | {"WordpipeError"}} == drawn
    usage = _drawn_under("UsageError")
    for name in drawn - {"UsageError", "UnavailableError"}:  # each on the branch it is drawn on
        assert issubclass(classes[name], errors.UsageError if name in usage else errors.UnavailableError), name


def _drawn_under(branch: str) -> set[str]:
    """The names drawn below `branch` and further indented, until the next sibling."""
    lines = [line for line in (errors.__doc__ or "").splitlines() if "──" in line]
    start = next(i for i, line in enumerate(lines) if f"── {branch}" in line)
    names = set()
    for line in lines[start + 1 :]:
        if line.index("──") <= lines[start].index("──"):
            break
        names.add(re.search(r"── (\w+)", line).group(1))
    return names


def test_no_two_classes_share_a_name():
    seen: dict[str, list[str]] = {}
    for path in Path(pipeline.__file__).parent.rglob("*.py"):
        for name in re.findall(r"^class (\w+)", path.read_text(), re.M):
            seen.setdefault(name, []).append(str(path))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}
