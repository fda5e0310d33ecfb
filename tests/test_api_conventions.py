"""One vocabulary across the public API, enforced on the signatures themselves.

Every public callable of every public module is inspected: its parameter names,
the values its string options admit, and which parameters are keyword-only.
A new function that spells a concept another way, or takes an option
positionally, fails here with the name and the rule it breaks.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable, Iterator

import pytest

import camseg

PUBLIC_MODULES = (
    "camseg",
    "camseg.functional",
    "camseg.losses",
    "camseg.postprocess",
    "camseg.metrics",
    "camseg.slide",
    "camseg.synthetic",
    "camseg.viz",
)

#: parameter names that spell a concept of the vocabulary another way -> the name to use
#: (``x``/``y`` stay free: slide readers use them for pixel coordinates)
BANNED_PARAMETERS = {
    "img": "images",
    "imgs": "images",
    "image": "images",
    "inputs": "images",
    "input": "images",
    "y_true": "labels",
    "y_pred": "preds",
    "y_score": "scores",
    "gt": "masks",
    "ground_truth": "masks",
    "target_masks": "masks",
    "pred": "preds",
    "predictions": "preds",
    "candidates": "thresholds",
    "empty": "zero_division",
    "cams": "maps",
    "heatmaps": "maps",
}

#: British spellings; identifiers use American spelling, as torch does
BRITISH = re.compile(
    r"normalis|regularis|randomis|localis|optimis|standardis|initialis|visualis|summaris|"
    r"penalis|tumour|colour|centre|neighbour|behaviour|favour|labelled|modell"
)

AVERAGE_VALUES = {"micro", "macro", "none"}
REDUCTION_VALUES = {"mean", "sum", "none"}

#: parameters that may stay positional-or-keyword with a default: data arguments that
#: are optional (a second data tensor), or the `name` used in error messages of checks
POSITIONAL_DEFAULT_OK = {
    "targets",  # the data a map explains: cam(images, targets)
    "masks",  # an optional second data argument (e.g. a tissue mask)
    "labels",
    "maps",  # e.g. maps already computed for the images, so no second pass is needed
    "valid",  # a data mask of the pixels that count
    "layers",  # the layer(s) an extractor hooks: GradCAM(model, "layer4")
    "self",
}


def _public_callables() -> Iterator[tuple[str, Callable[..., object]]]:
    seen: set[int] = set()
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            qual = f"{mod_name}.{name}"
            if inspect.isclass(obj):
                if _is_data_type(obj):
                    continue
                yield qual, obj
                for meth_name, meth in vars(obj).items():
                    if meth_name.startswith("_") and meth_name != "__call__":
                        continue
                    if isinstance(meth, (staticmethod, classmethod)):
                        meth = meth.__func__
                    if inspect.isfunction(meth):
                        yield f"{qual}.{meth_name}", meth
            elif callable(obj) and (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                yield qual, obj


def _is_data_type(cls: type) -> bool:
    """Named tuples, dataclass records, enums, protocols and typing aliases carry no options."""
    return bool(
        issubclass(cls, tuple)
        or getattr(cls, "_is_protocol", False)
        or (hasattr(cls, "__dataclass_fields__") and "__call__" not in vars(cls))
    )


def _signature(fn: Callable[..., object]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _literal_values(fn: Callable[..., object], param: str) -> set[object] | None:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: nothing to check
        return None
    hint = hints.get(param)
    if hint is None:
        return None
    values: set[object] = set()

    def walk(h: object) -> None:
        origin = typing.get_origin(h)
        if origin is typing.Literal:
            values.update(typing.get_args(h))
        elif origin is not None:
            for a in typing.get_args(h):
                walk(a)

    walk(hint)
    return values or None


CALLABLES = sorted(_public_callables(), key=lambda kv: kv[0])

#: the remainder of issue 10: signatures not yet converted. Each is a strict xfail, so
#: converting one makes its test pass and fail as XPASS until it is removed from here.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def _cases(rule: str) -> list[object]:
    cases: list[object] = []
    for qual, fn in CALLABLES:
        marks = []
        if (rule, qual) in KNOWN_VIOLATIONS:
            marks.append(pytest.mark.xfail(reason="not yet converted (issue 10)", strict=True))
        cases.append(pytest.param(qual, fn, id=qual, marks=marks))
    return cases


def test_the_inventory_is_not_empty():
    # the checks below would pass vacuously on an empty inventory
    names = {q for q, _ in CALLABLES}
    assert len(names) > 100
    assert "camseg.metrics.iou" in names and "camseg.GradCAM" in names


@pytest.mark.parametrize(("qual", "fn"), _cases("vocabulary"))
def test_vocabulary(qual, fn):
    sig = _signature(fn)
    if sig is None:
        pytest.skip("no inspectable signature")
    problems = []
    short = qual.rsplit(".", 1)[-1]
    if BRITISH.search(short.lower()):
        problems.append(f"name {short!r} uses British spelling")
    for p in sig.parameters.values():
        if p.name in BANNED_PARAMETERS:
            problems.append(f"parameter `{p.name}` should be `{BANNED_PARAMETERS[p.name]}`")
        if BRITISH.search(p.name):
            problems.append(f"parameter `{p.name}` uses British spelling")
    assert not problems, f"{qual}: " + "; ".join(problems)


@pytest.mark.parametrize(("qual", "fn"), _cases("reductions"))
def test_reductions(qual, fn):
    sig = _signature(fn)
    if sig is None:
        pytest.skip("no inspectable signature")
    params = sig.parameters
    in_losses = ".losses." in qual + "."
    in_metrics = ".metrics." in qual + "."
    if "average" in params:
        assert not in_losses, f"{qual}: losses reduce with `reduction=`, not `average=`"
        values = _literal_values(fn, "average")
        if values is not None:
            assert values <= AVERAGE_VALUES, f"{qual}: `average` admits {sorted(values)}"
        default = params["average"].default
        assert default in AVERAGE_VALUES, f"{qual}: `average` defaults to {default!r}"
    if "reduction" in params:
        assert not in_metrics, f"{qual}: metrics reduce with `average=`, not `reduction=`"
        values = _literal_values(fn, "reduction")
        if values is not None:
            assert values <= REDUCTION_VALUES, f"{qual}: `reduction` admits {sorted(values)}"
        assert params["reduction"].default == "mean", f"{qual}: `reduction` must default to 'mean'"
    for banned in ("mode_reduction", "reduce", "aggregate_mode"):
        assert banned not in params, f"{qual}: `{banned}` should be `average=`/`reduction=`"


@pytest.mark.parametrize(("qual", "fn"), _cases("keyword"))
def test_options_are_keyword_only(qual, fn):
    sig = _signature(fn)
    if sig is None:
        pytest.skip("no inspectable signature")
    positional_options = [
        p.name
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        and p.default is not inspect.Parameter.empty
        and p.name not in POSITIONAL_DEFAULT_OK
    ]
    assert not positional_options, (
        f"{qual}: options {positional_options} must be keyword-only (after `*`)"
    )


def test_one_default_per_average_concept():
    """A metric computed by several functions has one default reduction."""
    defaults: dict[str, set[object]] = {}
    for qual, fn in CALLABLES:
        sig = _signature(fn)
        if sig is None or "average" not in sig.parameters or ".metrics." not in qual + ".":
            continue
        module = getattr(fn, "__module__", "")
        defaults.setdefault(module, set()).add(sig.parameters["average"].default)
    assert defaults, "no metric with `average=` found"
    for module, values in defaults.items():
        assert len(values) == 1, f"{module}: `average` defaults differ: {sorted(map(str, values))}"


def test_public_names_resolve():
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod_name}.__all__ lists {name!r}, which is missing"
    assert camseg.__version__
