"""A user's own initializer, model or dataset, named by import path or registered as an entry point.

A study names a plugin as `"package.module:attribute"` (importable from
PYTHONPATH or installed), or by a plain name that an installed distribution
registers in the entry-point group `initstudy.initializers`, `initstudy.models`
or `initstudy.datasets`. Workers (threads, spawned processes, Ray tasks)
resolve the same name themselves: run specs carry only the name.

A plugin's identity (the sha256 of its module's source file, or its
distribution's name and version for an entry point) goes into the run id, so
editing the plugin retrains rather than mixing old and new runs.

Nothing here imports torch or any plugin module at import time.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from .errors import StudyError

GROUPS = {"initializer": "initstudy.initializers", "model": "initstudy.models", "dataset": "initstudy.datasets"}
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
REFERENCE = re.compile(rf"({_DOTTED}):({_DOTTED})")
WHOLE_MODEL_ATTR = "initstudy_whole_model"
# The keyword arguments initstudy passes to each kind of plugin; any other parameter is an option.
CONTRACTS = {
    "initializer": ("weight", ("fan_in", "fan_out", "gain", "generator")),
    "whole_model": ("model", ("generator", "batch", "activation")),
    "model": (None, ("in_channels", "image_size", "num_classes", "activation")),
    "dataset": (None, ("data_dir", "split_seed")),
}
# The forms each contract documents, for error messages.
FORMS = {
    "initializer": "fn(weight, *, fan_in, fan_out, gain, generator, **options) -> None",
    "whole_model": "fn(model, *, generator, batch, activation, **options) -> None (marked @initstudy.whole_model)",
    "model": "fn(in_channels, image_size, num_classes, activation, **params) -> nn.Module",
    "dataset": "fn(data_dir, split_seed) -> (x_train, y_train, x_val, y_val, num_classes)",
}


def whole_model(fn: Callable) -> Callable:
    """Mark `fn` as a whole-model initializer: `fn(model, *, generator, batch, activation, **options)`."""
    setattr(fn, WHOLE_MODEL_ATTR, True)
    return fn


@dataclass(frozen=True)
class Plugin:
    name: str  # as the study names it: "package.module:attribute" or an entry-point name
    fn: Callable
    module: str  # the module that defines it
    origin: str  # where it comes from, for `initstudy list` and the report
    identity: str  # goes into the run id: "sha256:<hex>" of the module's source, or "dist==version"
    options: dict  # parameters beyond the contract -> default (inspect.Parameter.empty when required)
    any_options: bool  # the function takes **kwargs: any option is accepted
    whole: bool = False  # a whole-model initializer (marked with `whole_model`)

    @property
    def doc(self) -> str:
        """The first line of the plugin's docstring, or ""."""
        text = inspect.getdoc(self.fn) or ""
        return text.strip().splitlines()[0] if text.strip() else ""


def is_reference(name) -> bool:
    return isinstance(name, str) and REFERENCE.fullmatch(name) is not None


def entry_points(kind: str) -> dict[str, metadata.EntryPoint]:
    """The entry points registered for `kind` ("initializer", "model", "dataset"), by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=GROUPS[kind])}


def registered() -> dict[str, dict[str, dict]]:
    """Every entry-point plugin by kind: name -> {"target": "module:attr", "distribution": "name==version"}.

    Read from the installed distributions' metadata; no plugin module is imported.
    """
    out = {}
    for kind in GROUPS:
        out[kind] = {}
        for name, ep in sorted(entry_points(kind).items()):
            dist = getattr(ep, "dist", None)
            out[kind][name] = {"target": ep.value,
                               "distribution": f"{dist.metadata['Name']}=={dist.version}" if dist else "unknown"}
    return out


def _source_hash(module) -> str:
    path = getattr(module, "__file__", None)
    try:
        data = Path(path).read_bytes() if path else b""
    except OSError:
        data = b""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def _import(kind: str, name: str, target: str) -> tuple[Callable, object]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise StudyError(f"{kind} {name!r}: module {module_name!r} not found; put the folder that holds it "
                             "on PYTHONPATH or pip install its package") from None
        raise StudyError(f"{kind} {name!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc}); "
                         "install what it needs") from None
    except Exception as exc:  # a plugin module that raises while it imports
        text = " ".join(str(exc).split())[:200]
        raise StudyError(f"{kind} {name!r}: importing {module_name!r} raised {type(exc).__name__}: {text}; "
                         "fix the module") from None
    _IMPORTED.add(module_name)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise StudyError(f"{kind} {name!r}: module {module_name!r} has no attribute {attr!r}; check the "
                             "name after the ':'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise StudyError(f"{kind} {name!r}: {target} is a {type(obj).__name__}, not a function; name a callable")
    return obj, module


def _options(kind: str, name: str, fn: Callable, contract: str) -> tuple[dict, bool]:
    """(options -> default, takes **kwargs) of `fn`, checked against `contract`'s keyword arguments."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise StudyError(f"{kind} {name!r}: its signature cannot be read; write it as {FORMS[contract]}") from None
    first, keywords = CONTRACTS[contract]
    params = list(sig.parameters.values())
    any_options = any(p.kind is p.VAR_KEYWORD for p in params)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    bad = None
    if first is not None:
        if not positional or positional[0].name in keywords:
            bad = f"its first parameter must take the {first}"
        rest = params[1:] if positional else params
    else:
        rest = params
        # model and dataset arguments are passed by position, in the contract's order
        names = [p.name for p in positional[:len(keywords)]]
        if len(names) < len(keywords) and not any(p.kind is p.VAR_POSITIONAL for p in params):
            bad = f"it takes {len(names)} positional parameters, the contract passes {len(keywords)}"
        keywords = ()
    for key in keywords:
        if key not in by_name and not any_options:
            bad = bad or f"it has no parameter {key!r}"
        elif key in by_name and by_name[key].kind is inspect.Parameter.POSITIONAL_ONLY:
            bad = bad or f"parameter {key!r} is positional-only but is passed by keyword"
    if bad:
        raise StudyError(f"{kind} {name!r} does not fit the contract: {bad}; write it as {FORMS[contract]}")
    skip = len(CONTRACTS[contract][1]) if first is None else 0
    options = {}
    for p in rest[skip:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in CONTRACTS[contract][1]:
            continue
        options[p.name] = p.default
    return options, any_options


def resolve(kind: str, name: str, contract: str | None = None) -> Plugin:
    """The plugin `name` of `kind` (an import path or an entry-point name), checked against its contract.

    `contract` defaults to `kind`; for initializers it is "whole_model" when the function is marked so.
    Raises StudyError (one line) for a missing module, attribute, entry point or a signature that does not fit.
    """
    if is_reference(name):
        fn, module = _import(kind, name, name)
        origin = f"{module.__name__} ({getattr(module, '__file__', None) or 'no file'})"
        identity = _source_hash(module)
    else:
        eps = entry_points(kind)
        if name not in eps:
            raise StudyError(f"unknown {kind} {name!r}")
        ep = eps[name]
        fn, module = _import(kind, name, ep.value)
        dist = getattr(ep, "dist", None)
        version = f"{dist.metadata['Name']}=={dist.version}" if dist is not None else "unknown distribution"
        origin = f"{ep.value} (entry point of {version})"
        # An installed plugin is identified by its version; a source tree on PYTHONPATH by its file.
        identity = version if dist is not None else _source_hash(module)
    contract = contract or kind
    if kind == "initializer" and getattr(fn, WHOLE_MODEL_ATTR, False):
        contract = "whole_model"
    options, any_options = _options(kind, name, fn, contract)
    return Plugin(name, fn, getattr(module, "__name__", str(module)), origin, identity, options, any_options,
                  contract == "whole_model")


def check_options(kind: str, plugin: Plugin, given: dict) -> dict:
    """The plugin's options filled in from `given`: unknown, missing or non-scalar values raise StudyError."""
    unknown = sorted(set(given) - set(plugin.options))
    if unknown and not plugin.any_options:
        allowed = ", ".join(plugin.options) or "none"
        raise StudyError(f"{kind} {plugin.name!r} takes no option {unknown[0]!r} (its options: {allowed})")
    filled = {}
    for key in {**plugin.options, **given}:
        default = plugin.options.get(key)
        value = given.get(key, default)
        if value is inspect.Parameter.empty:
            raise StudyError(f"{kind} {plugin.name!r} needs option {key!r}; give it in the study entry, e.g. "
                             f"{{name: {plugin.name}, {key}: ...}}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise StudyError(f"{kind} {plugin.name!r}: option {key} must be a number, string or true/false, got "
                             f"{value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise StudyError(f"{kind} {plugin.name!r}: option {key} must be finite, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise StudyError(f"{kind} {plugin.name!r}: option {key} must be a number (its default is {default!r}), "
                             f"got {value!r}")
        filled[key] = value
    return filled


def import_roots(names) -> list[str]:
    """The sys.path folders the plugin modules `names` ("package.module:attribute") were imported from.

    A private local Ray instance gets them on its workers' PYTHONPATH (executors.py), so a plugin found through
    a sys.path entry the driver added at run time is found there too.
    """
    roots = []
    for name in names:
        module = sys.modules.get(name.partition(":")[0]) if is_reference(name) else None
        path = getattr(module, "__file__", None)
        if not path:
            continue
        depth = name.partition(":")[0].count(".") + (Path(path).name == "__init__.py")
        root = str(Path(path).resolve().parents[depth])
        if root not in roots:
            roots.append(root)
    return roots


_CACHE: dict[tuple[str, str], Plugin] = {}
_IMPORTED: set[str] = set()  # plugin modules imported so far


def lookup(kind: str, name: str) -> Plugin:
    """`resolve`, kept per process: a worker imports a plugin once for all its runs."""
    key = (kind, name)
    if key not in _CACHE:
        _CACHE[key] = resolve(kind, name)
    return _CACHE[key]


def forget() -> None:
    """Drop the resolved plugins and their top-level packages' modules, so that the next lookup imports them
    again (tests)."""
    tops = {name.partition(".")[0] for name in _IMPORTED}
    for name in [m for m in sys.modules if m.partition(".")[0] in tops]:
        del sys.modules[name]
    _CACHE.clear()
    _IMPORTED.clear()
    importlib.invalidate_caches()
