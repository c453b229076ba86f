"""Study files: YAML grids checked against every registry at load time, expanded into run specs.

A study is a grid of models x activations x initializers x seeds with fixed
training settings. `load_study` reads a shipped preset by name or a YAML path,
applies `--set key=value` overrides, and raises `StudyError` with a one-line
message naming the problem and the fix. `expand` turns a study into `RunSpec`s;
a run's id is a hash of its resolved training config, so a re-run finds the
finished runs by id.

A dataset, model or initializer may also be the user's own: `package.module:attribute`
or an entry-point name (plugins.py), checked against its contract here; its identity
(source hash or package version) goes into the run ids of the runs that use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from .data import DATASETS
from .errors import StudyError
from .initializers import InitSpec, make_spec
from .models import ACTIVATIONS, MODELS

PRESETS_DIR = Path(__file__).parent / "studies"
OPTIMIZERS = ("sgd", "adam")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# endpoint -> the directions a comparison claim on it can take
CLAIM_DIRECTIONS = {"epochs_to_threshold": ("faster", "slower"), "final_accuracy": ("better", "worse", "not_worse")}
CLAIM_KEYS = ("claim", "a", "b", "endpoint", "direction", "margin", "at_most", "at_least", "where", "source")
CLAIM_FACTORS = ("dataset", "model", "depth", "width", "bn", "activation")  # what `where` can restrict
REPLICATION_KEYS = ("source", "name", "initializer", "activation", "mean", "low", "high", "runs", "mapping")
# A study name is one folder under the runs dir: one path component, never "." or "..".
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Upper bounds checked at load time, generous for real studies, so that a typo (width 100000, seeds 1e9)
# is refused at once instead of exhausting memory or training for years.
LIMITS = {"depth": 200, "width": 4096, "epochs": 10_000, "batch_size": 65_536, "split_seed": 2**32 - 1,
          "lr": 100.0, "momentum": 1.0, "weight_decay": 1.0, "target_effect": 10.0}
MAX_SEEDS = 1000  # runs per arm and cell
MAX_SEED = 2**32 - 1
MAX_PARAMS = 500_000_000  # parameters of one model (2 GB of float32 weights)


@dataclass(frozen=True)
class Claim:
    """A hypothesis the report gives a verdict on: arm `a` against arm `b`, or `a`'s final accuracy against a bound.

    Comparison: `b` and `direction` set (faster/slower on epochs_to_threshold; better/worse/not_worse on
    final_accuracy). Bound: `at_most` or `at_least` set, endpoint final_accuracy.
    """

    text: str  # the claim in words, as the report shows it
    a: str  # initializer label, or a registered initializer name the grid may lack (then: not tested)
    b: str | None  # the arm `a` is compared with; None for a bound claim
    endpoint: str  # "epochs_to_threshold" or "final_accuracy"
    direction: str | None  # faster | slower | better | worse | not_worse; None for a bound claim
    margin: float | None  # not_worse only: accuracy (fraction) by which a may trail b and still be "not worse"
    at_most: float | None  # bound claim: a's final validation accuracy (fraction) is at most this
    at_least: float | None  # bound claim: ... at least this
    where: tuple[tuple[str, tuple], ...]  # cell factor -> accepted values, e.g. (("activation", ("relu",)),)
    source: str  # where the claim comes from (author, title, DOI), for the report


@dataclass(frozen=True)
class Reference:
    """A published accuracy set beside the study's own: one arm's mean (and range) over the source's runs."""

    source: str  # where the numbers are printed (author, title, table)
    name: str  # the source's name for the initializer, e.g. "Gaussian initialization"
    initializer: str  # label of the study's arm it is compared with
    activation: str | None  # the study's activation it is compared in; None: every activation
    mean: float  # printed mean final accuracy (fraction)
    low: float | None  # printed range over the runs (fractions); None when the source prints none
    high: float | None
    runs: int | None  # runs behind the printed numbers
    mapping: str  # why this arm and these options stand for the source's name ("" when obvious)


@dataclass(frozen=True)
class Study:
    name: str  # folder name under the runs dir
    description: str
    dataset: str  # key of data.DATASETS, or a plugin (package.module:fn or an entry-point name)
    data_dir: str | None  # where torchvision datasets live; unused by mnist5k and digits
    split_seed: int  # seeds the train/validation split, independent of run seeds
    models: tuple[str, ...]  # keys of models.MODELS, or plugins
    depth: int  # conv layers of the `plain` model
    width: int  # channels of the `plain` model (first stage of `vgg` and `resnet`)
    bn: bool | None  # BatchNorm in `vgg` / `resnet`; None keeps each model's default (on)
    activations: tuple[str, ...]  # keys of models.ACTIVATIONS
    initializers: tuple[InitSpec, ...]
    seeds: tuple[int, ...]  # run seeds; seed k gives every initializer the same data order
    epochs: int  # training epochs per run (the time-to-threshold budget)
    eval_every: float  # validation every this fraction of an epoch (1/k); epochs-to-threshold has this resolution
    batch_size: int  # images per step
    optimizer: str  # "sgd" (with momentum) or "adam"
    lr: float  # learning rate, constant
    momentum: float  # SGD momentum; ignored by adam
    weight_decay: float  # L2 penalty coefficient
    threshold: float  # validation accuracy (fraction) that defines epochs-to-threshold
    alpha: float  # significance level for verdicts
    reference: str | None  # initializer label hazard ratios compare against; None: first arm that reached
    target_effect: float  # standardized effect (Cohen's d / d_z) the power section states seeds needed for
    accelerator: str  # Lightning accelerator: auto, cpu, gpu
    claims: tuple[Claim, ...]  # hypotheses the report gives verdicts on
    loggers: tuple[str, ...]  # Lightning loggers that also receive each run's metrics (LOGGERS); () for none
    loggers_dir: str | None  # their folder, relative to the runs dir; None: <study>/logs
    source: str  # where the study was read from (preset name or path)
    # model -> its parameters given in the study entry ({name: mypkg.nets:tiny, width: 8})
    model_options: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    # (kind, name) -> identity of each plugin the study names; it goes into the run ids (plugins.py)
    plugins: tuple[tuple[tuple[str, str], str], ...] = ()
    replication: tuple[Reference, ...] = ()  # published accuracies the report sets beside the study's
    sequential: object = None  # sequential.Plan: a group-sequential design of the claims; None: fixed design


# field -> (default, kind, help). kind checks and converts a raw YAML value.
_DEFAULTS: dict[str, tuple[object, str, str]] = {
    "name": (None, "name", "study name, used as the folder under the runs dir"),
    "description": ("", "str", "one paragraph for the report"),
    "dataset": ("mnist5k", "dataset", "dataset name"),
    "data_dir": (None, "optstr", "directory holding torchvision datasets"),
    "split_seed": (0, "int>=0", "seed of the train/validation split"),
    "models": (["plain"], "models", "list of model names or {name: ..., param: value} (a plugin: package.module:fn)"),
    "depth": (6, "int>0", "conv layers of the plain model"),
    "width": (16, "int>0", "channels of the plain model, first-stage channels of vgg and resnet"),
    "bn": (None, "optbool", "BatchNorm in vgg and resnet (default: on)"),
    "activations": (["relu"], "activations", "list of activation names"),
    "initializers": (None, "initializers", "list of initializer names or {name: ..., option: value}"),
    "seeds": (5, "seeds", "number of seeds (0..n-1) or a list of seeds"),
    "epochs": (10, "int>0", "training epochs per run"),
    "eval_every": (1.0, "eval_every", "validate every this fraction of an epoch (1, 0.5, 0.25, ...: 1/k); "
                   "epochs-to-threshold is measured in these steps"),
    "batch_size": (64, "int>0", "images per step"),
    "optimizer": ("sgd", "optimizer", "sgd or adam"),
    "lr": (0.01, "float>0", "learning rate"),
    "momentum": (0.9, "float>=0", "SGD momentum"),
    "weight_decay": (0.0, "float>=0", "L2 penalty"),
    "threshold": (0.9, "fraction", "validation accuracy that counts as reached"),
    "alpha": (0.05, "fraction", "significance level"),
    "reference": (None, "optstr", "initializer label that hazard ratios compare against"),
    "target_effect": (0.8, "float>0", "standardized effect (Cohen's d) for which the report states seeds needed"),
    "accelerator": ("auto", "accelerator", "auto, cpu, gpu, cuda or mps"),
    "claims": ([], "claims", "hypotheses the report gives verdicts on (see README: Claims)"),
    "replication": ([], "replication", "published accuracies the report sets beside the study's, one per arm "
                    "(and activation) (see README: Replication)"),
    "loggers": ([], "loggers", "Lightning loggers that also receive each run's metrics: csv, tensorboard"),
    "loggers_dir": (None, "loggers_dir", "their folder, relative to the runs dir (default: <study>/logs)"),
    "sequential": (None, "sequential", "group-sequential claims: {looks: [5, 10], spending: obrien_fleming or "
                   "pocock, futility: |z|} (looks: seeds per arm; see README: Sequential designs)"),
}
LOGGERS = ("csv", "tensorboard")


def check_study_name(name) -> str:
    """`name` if it is a safe folder name under the runs dir, else StudyError (every command checks here)."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise StudyError(f"study name {name!r} is not a plain folder name; use 1-100 letters, digits, '.', '_' "
                         "or '-', starting with a letter or digit (e.g. my-study)")
    return name


def _choices(kind: str, value, registry, what: str):
    items = value if isinstance(value, list) else [value]
    if not items:
        raise StudyError(f"{what} is empty; list at least one of: {', '.join(registry)}")
    for item in items:
        if item not in registry:
            raise StudyError(f"unknown {kind} {item!r}; choose one of: {', '.join(registry)}")
    if len(set(items)) != len(items):
        raise StudyError(f"{what} lists a name twice; list each once")
    return tuple(items)


def _plugin(kind: str, name, registry):
    """The user's `kind` named `name` (import path or entry point), or StudyError listing the built-ins."""
    from .plugins import entry_points, resolve

    if not isinstance(name, str) or not name:
        raise StudyError(f"{kind} names must be strings, got {name!r}")
    try:
        return resolve(kind, name)
    except StudyError as exc:
        if not str(exc).startswith(f"unknown {kind}"):
            raise
        known = [*registry, *entry_points(kind)]
        raise StudyError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}, or name your own as "
                         "package.module:function") from None


def _dataset(value) -> str:
    name = str(value)
    if name not in DATASETS:
        _plugin("dataset", name, DATASETS)
    return name


def _models(value) -> tuple[tuple[str, ...], tuple]:
    """(model names, (name, params given in its entry) pairs): entries are names or {name: ..., param: value}."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise StudyError(f"models is empty; list at least one of: {', '.join(MODELS)}")
    from .plugins import check_options

    names, options = [], []
    for entry in items:
        given = {}
        if isinstance(entry, dict):
            if "name" not in entry:
                raise StudyError(f"model entry {entry!r} needs a name, e.g. {{name: mypkg.nets:tiny, width: 8}}")
            given = dict(entry)
            entry = given.pop("name")
        if entry in MODELS:
            unknown = sorted(set(given) - set(MODELS[entry].params))
            if unknown:
                allowed = ", ".join(MODELS[entry].params) or "none"
                raise StudyError(f"model {entry!r} takes no parameter {unknown[0]!r} (its parameters: {allowed})")
            for k, v in given.items():
                given[k] = _convert(k, "optbool" if k == "bn" else "int>0", v)
        else:
            given = check_options("model", _plugin("model", entry, MODELS), given)
        names.append(entry)
        options.append((entry, tuple(given.items())))
    if len(set(names)) != len(names):
        raise StudyError("models lists a name twice; list each once")
    return tuple(names), tuple(options)


def _loggers(value) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item not in LOGGERS:
            raise StudyError(f"unknown logger {item!r}; choose from: {', '.join(LOGGERS)}")
    if len(set(items)) != len(items):
        raise StudyError("loggers lists a logger twice; list each once")
    return tuple(items)


def _loggers_dir(value) -> str | None:
    if value in (None, ""):
        return None
    parts = Path(str(value)).parts
    if Path(str(value)).is_absolute() or ".." in parts or not parts:
        raise StudyError(f"loggers_dir {value!r} must be a folder inside the runs dir, given relative to it "
                         "(e.g. my-study/logs), without '..'")
    return str(Path(*parts))


def _number(key: str, value, integer: bool, low: float, strict: bool, high: float | None = None):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        raise StudyError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if (value <= low if strict else value < low) or (high is not None and value > high):
        bound = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise StudyError(f"{key} must be {bound}, got {value!r}")
    return int(value) if integer else float(value)


def _initializers(value) -> tuple[InitSpec, ...]:
    if not isinstance(value, list) or not value:
        raise StudyError("initializers must be a non-empty list of names or {name: ..., option: value} maps")
    specs = []
    for entry in value:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise StudyError(f"initializer entry {entry!r} needs a name, e.g. {{name: normal, std: 0.01}}")
        entry = dict(entry)
        name, gain, label = entry.pop("name"), entry.pop("gain", None), entry.pop("label", None)
        bias = entry.pop("bias", None)
        try:
            specs.append(make_spec(name, entry, gain, label, bias))
        except ValueError as exc:
            raise StudyError(str(exc)) from None
    labels = [s.label for s in specs]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup:
        raise StudyError(f"initializer {dup!r} is listed twice; give one a different option or a label")
    # A label is cosmetic (not part of the run id): two labels of one initializer would share every run.
    seen: dict = {}
    for s in specs:
        key = (s.name, s.options, s.gain, s.bias)
        if key in seen:
            raise StudyError(f"initializers {seen[key]!r} and {s.label!r} are the same initializer with the same "
                             "options, so they would share their runs; remove one or change an option")
        seen[key] = s.label
    return tuple(specs)


def _claim_arm(value, labels: list[str], what: str) -> str:
    """A claim's arm: a label of this study, or a registered initializer the grid may not include."""
    from .initializers import INITIALIZERS

    if not isinstance(value, str) or not value:
        raise StudyError(f"{what} must be an initializer name or label, got {value!r}")
    if value not in labels and value.split("(")[0] not in INITIALIZERS:
        raise StudyError(f"{what}: unknown initializer {value!r}; use a label of this study ({', '.join(labels)}) "
                         "or a registered initializer name")
    return value


def _claim_where(value, what: str) -> tuple[tuple[str, tuple], ...]:
    from .plugins import is_reference

    registries = {"dataset": DATASETS, "model": MODELS, "activation": ACTIVATIONS}
    if not isinstance(value, dict):
        raise StudyError(f"{what}: where must be a mapping like {{activation: relu}}, got {value!r}")
    out = []
    for key, accepted in value.items():
        if key not in CLAIM_FACTORS:
            raise StudyError(f"{what}: where cannot restrict {key!r}; use {', '.join(CLAIM_FACTORS)}")
        items = accepted if isinstance(accepted, list) else [accepted]
        if not items:
            raise StudyError(f"{what}: where {key} is empty; name at least one value")
        for item in items:
            if key in registries and item not in registries[key] and not is_reference(item):
                raise StudyError(f"{what}: unknown {key} {item!r}; choose one of: {', '.join(registries[key])}")
            if key in ("depth", "width") and (isinstance(item, bool) or not isinstance(item, int)):
                raise StudyError(f"{what}: where {key} must be an integer, got {item!r}")
            if key == "bn" and not isinstance(item, bool):
                raise StudyError(f"{what}: where bn must be true or false, got {item!r}")
        out.append((key, tuple(items)))
    return tuple(out)


def _entries(value, key: str, item: str, keys: tuple[str, ...], shape: str):
    """(n, "{item} n", entry) for each entry of a list of mappings such as `claims`: the list, each entry's
    being a mapping (`shape` says of what) and its keys are checked here."""
    if not isinstance(value, list):
        raise StudyError(f"{key} must be a list of mappings, got {value!r}")
    for n, raw in enumerate(value, 1):
        what = f"{item} {n}"
        if not isinstance(raw, dict):
            raise StudyError(f"{what} must be a mapping with {shape}")
        unknown = sorted(str(k) for k in set(raw) - set(keys))
        if unknown:
            raise StudyError(f"{what}: unknown key {unknown[0]!r}; valid keys: {', '.join(keys)}")
        yield n, what, raw


def _claims(value, initializers: tuple[InitSpec, ...]) -> tuple[Claim, ...]:
    """Check every claim against the grammar and the registries (see `Claim`)."""
    labels = [i.label for i in initializers]
    claims = []
    for n, what, raw in _entries(value, "claims", "claim", CLAIM_KEYS,
                                 "claim, a, endpoint and b + direction or at_most/at_least"):
        if not isinstance(raw.get("claim"), str) or not raw["claim"].strip():
            raise StudyError(f"{what}: 'claim' must state the hypothesis in words")
        what = f"claim {n} ({raw['claim'][:40]!r})"
        endpoint = raw.get("endpoint")
        if endpoint not in CLAIM_DIRECTIONS:
            raise StudyError(f"{what}: endpoint must be one of {', '.join(CLAIM_DIRECTIONS)}, got {endpoint!r}")
        a = _claim_arm(raw.get("a"), labels, f"{what}: a")
        bounds = {k: raw.get(k) for k in ("at_most", "at_least") if raw.get(k) is not None}
        b, direction, margin = raw.get("b"), raw.get("direction"), raw.get("margin")
        if (b is None) == (not bounds) or len(bounds) > 1:
            raise StudyError(f"{what}: give either b with a direction (a comparison) or one of at_most/at_least "
                             "(a bound)")
        if bounds:
            if endpoint != "final_accuracy" or direction is not None or margin is not None:
                raise StudyError(f"{what}: a bound claim takes endpoint final_accuracy and no direction or margin")
            for k, v in bounds.items():
                bounds[k] = _number(f"{what}: {k}", v, False, 0, False, 1.0)
        else:
            b = _claim_arm(b, labels, f"{what}: b")
            if b == a:
                raise StudyError(f"{what}: a and b are both {a!r}; compare two different initializers")
            if direction not in CLAIM_DIRECTIONS[endpoint]:
                raise StudyError(f"{what}: direction for {endpoint} must be one of "
                                 f"{', '.join(CLAIM_DIRECTIONS[endpoint])}, got {direction!r}")
            if (direction == "not_worse") != (margin is not None):
                raise StudyError(f"{what}: margin goes with direction not_worse, and not_worse needs a margin "
                                 "(e.g. margin: 0.02)")
            if margin is not None:
                margin = _number(f"{what}: margin", margin, False, 0, False, 1.0)
        source = raw.get("source", "")
        claims.append(Claim(raw["claim"].strip(), a, b, endpoint, direction, margin, bounds.get("at_most"),
                            bounds.get("at_least"), _claim_where(raw.get("where", {}), what),
                            "" if source is None else str(source)))
    return tuple(claims)


def _references_in_grid(value, initializers: tuple[InitSpec, ...], activations: tuple[str, ...]):
    """The file's references to arms a --set grid still has: narrowing a preset's grid drops the others, as
    its claims on dropped arms become "not tested"."""
    if not isinstance(value, list):
        return value
    labels = {i.label for i in initializers}
    return [r for r in value if not isinstance(r, dict) or r.get("initializer") in labels
            and r.get("activation", activations[0]) in activations]


def _replication(value, initializers: tuple[InitSpec, ...], activations: tuple[str, ...]) -> tuple[Reference, ...]:
    """Check every published reference value (see `Reference`): its arm and activation must be the study's."""
    labels = [i.label for i in initializers]
    out = []
    for _n, what, raw in _entries(value, "replication", "replication", REPLICATION_KEYS,
                                  "source, name, initializer and mean (low, high, runs, activation and mapping "
                                  "optional)"):
        for key, meaning in (("source", "where the numbers are printed"), ("name", "the source's name for it")):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise StudyError(f"{what}: '{key}' must be text ({meaning}), got {raw.get(key)!r}")
        what = f"{what} ({raw['name'][:40]!r})"
        init = raw.get("initializer")
        if init not in labels:
            raise StudyError(f"{what}: initializer {init!r} is not an arm of this study; use one of: "
                             f"{', '.join(labels)}")
        activation = raw.get("activation")
        if activation is not None and activation not in activations:
            raise StudyError(f"{what}: activation {activation!r} is not one of the study's ({', '.join(activations)}); "
                             "use one of them or leave activation out")
        if "mean" not in raw:
            raise StudyError(f"{what}: 'mean' is required: the printed mean accuracy as a fraction (97.6% -> 0.976)")
        nums = {k: _number(f"{what}: {k}", raw[k], False, 0, False, 1.0) if raw.get(k) is not None else None
                for k in ("mean", "low", "high")}
        low, high, mean = nums["low"], nums["high"], nums["mean"]
        if (low is None) != (high is None):
            raise StudyError(f"{what}: give both low and high (the printed range) or neither")
        if low is not None and not low <= mean <= high:
            raise StudyError(f"{what}: need low <= mean <= high (fractions), got {low:g}, {mean:g}, {high:g}")
        runs = raw.get("runs")
        runs = None if runs is None else _number(f"{what}: runs", runs, True, 0, True, 1_000_000)
        mapping = raw.get("mapping")
        out.append(Reference(raw["source"].strip(), raw["name"].strip(), init, activation, mean, low, high, runs,
                             "" if mapping is None else " ".join(str(mapping).split())))
    return tuple(out)


def _seeds(value) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise StudyError(f"seeds must be a count from 1 to {MAX_SEEDS} or a list, got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                  for s in value):
        if len(set(value)) != len(value):
            raise StudyError("seeds lists a seed twice; list each once")
        if len(value) > MAX_SEEDS or max(value) > MAX_SEED:
            raise StudyError(f"seeds lists {len(value)} seeds up to {max(value)}; list at most {MAX_SEEDS} seeds, "
                             f"each from 0 to {MAX_SEED}")
        return tuple(value)
    raise StudyError(f"seeds must be a count (e.g. 5) or a list of non-negative integers, got {value!r}")


def _convert(key: str, kind: str, value):
    if kind == "name":
        return check_study_name(value)
    if kind == "str":
        return str(value)
    if kind == "optbool":
        if value is not None and not isinstance(value, bool):
            raise StudyError(f"{key} must be true or false, got {value!r}")
        return value
    if kind == "optstr":
        return None if value in (None, "") else str(value)
    if kind == "dataset":
        return _dataset(value)
    if kind == "models":
        return _models(value)
    if kind == "loggers":
        return _loggers(value)
    if kind == "loggers_dir":
        return _loggers_dir(value)
    if kind == "activations":
        return _choices("activation", value, ACTIVATIONS, key)
    if kind == "optimizer":
        return _choices("optimizer", value, OPTIMIZERS, key)[0]
    if kind == "accelerator":
        return _choices("accelerator", value, ACCELERATORS, key)[0]
    if kind == "initializers":
        return _initializers(value)
    if kind == "seeds":
        return _seeds(value)
    if kind == "int>0":
        return _number(key, value, True, 0, True, LIMITS.get(key))
    if kind == "int>=0":
        return _number(key, value, True, 0, False, LIMITS.get(key))
    if kind == "float>0":
        return _number(key, value, False, 0, True, LIMITS.get(key))
    if kind == "float>=0":
        return _number(key, value, False, 0, False, LIMITS.get(key))
    if kind == "fraction":
        return _number(key, value, False, 0, True, 1.0)
    if kind == "eval_every":
        return _eval_every(value)
    raise AssertionError(kind)


MAX_EVALS_PER_EPOCH = 100


def _eval_every(value) -> float:
    """A fraction 1/k of an epoch, k = 1..100: evaluation points then fall on the same fractions every epoch."""
    number = _number("eval_every", value, False, 0, True, 1.0)
    k = round(1 / number)
    if k > MAX_EVALS_PER_EPOCH or abs(k * number - 1) > 1e-9:
        raise StudyError(f"eval_every must be 1/k of an epoch for k = 1..{MAX_EVALS_PER_EPOCH} (1, 0.5, 0.25, "
                         f"0.2, 0.1, ...), got {value!r}")
    return 1 / k


class _StudyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases, and reads 1e-3 as a number (YAML 1.2).

    Aliases are refused because a few nested ones expand into billions of values (an "alias bomb").
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} is not supported; write the "
                                              "value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice (first at line "
                                                        f"{first}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and every user read it as a number.
_StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _yaml(text: str):
    return yaml.load(text, Loader=_StudyLoader)  # noqa: S506 (a SafeLoader subclass)


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _read_yaml(study: str) -> tuple[dict, str, str]:
    """(raw mapping, default name, source) for a preset name or a YAML path.

    A bare name (no folder separator, no .yaml/.yml suffix) that names a preset is the preset, whatever
    the working directory holds; anything else is a path (write ./NAME for a file named like a preset).
    """
    path = Path(study)
    bare = "/" not in study and "\\" not in study and path.suffix not in (".yaml", ".yml")
    preset = bare and (PRESETS_DIR / f"{study}.yaml").is_file()
    if not preset and (not bare or path.exists()):
        if path.is_dir():
            raise StudyError(f"study file {study} is a folder; give the path of a .yaml file or a preset "
                             f"({', '.join(presets())})")
        if not path.is_file():
            raise StudyError(f"study file {study} not found; give an existing path or a preset "
                             f"({', '.join(presets())})")
        source, default_name = str(path), path.stem
    else:
        path = PRESETS_DIR / f"{study}.yaml"
        if not path.is_file():
            raise StudyError(f"unknown study {study!r}; choose a preset ({', '.join(presets())}) "
                             f"or give a path to a .yaml file")
        source, default_name = study, study
    try:
        raw = _yaml(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise StudyError(f"study file {source} is not valid YAML{where}: {problem}; fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"study file {source} is unreadable ({exc}); check the path") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise StudyError(f"study file {source} must be a mapping of keys like 'initializers:' and 'seeds:'")
    return raw, default_name, source


def parse_override(text: str) -> tuple[str, object]:
    """`key=value` with the value parsed as YAML (so `seeds=[0,1]` is a list)."""
    if "=" not in text:
        raise StudyError(f"--set {text!r} must look like key=value, e.g. --set epochs=3")
    key, _, value = text.partition("=")
    key = key.strip()
    if key not in _DEFAULTS:
        raise StudyError(f"--set: unknown key {key!r}; valid keys: {', '.join(_DEFAULTS)}")
    try:
        return key, _yaml(value) if value.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise StudyError(f"--set {key}: value {value!r} is not valid YAML ({problem}); quote it or fix the "
                         "brackets") from None


def load_study(study: str = "default", overrides: list[str] | tuple[str, ...] = (),
               context: str | None = None, build: bool = True) -> Study:
    """Read, override and check a study; every name is checked here, not inside a run.

    `context` replaces "study <source>" at the start of error messages (e.g. for `inspect`). `build`
    False skips the checks that build each model (its size, the initializers it can take): commands that
    only read the run store (status, analyze, report) then need no torch, and no plugin dataset is loaded.
    """
    try:
        return _load_study(study, overrides, build)
    except StudyError as exc:
        if context is None:
            raise
        raise StudyError(str(exc).replace(f"study {study}: ", "", 1)) from None


def _load_study(study: str, overrides, build: bool) -> Study:
    raw, default_name, source = _read_yaml(study)
    unknown = sorted(set(raw) - set(_DEFAULTS))
    if unknown:
        raise StudyError(f"study {source}: unknown key {unknown[0]!r}; valid keys: {', '.join(_DEFAULTS)}")
    overridden = set()
    for text in overrides:
        key, value = parse_override(text)
        raw[key] = value
        overridden.add(key)
    values = {}
    for key, (default, kind, _help) in _DEFAULTS.items():
        value = raw.get(key, default)
        if value is None and key == "name":
            value = default_name
        if value is None and key == "initializers":
            raise StudyError(f"study {source}: 'initializers' is required; e.g. initializers: [xavier_normal, "
                             "kaiming_normal]")
        if kind == "replication" and overridden & {"initializers", "activations"} and "replication" not in overridden:
            value = _references_in_grid(value, values["initializers"], values["activations"])
        try:
            # Claims name initializers, which are converted before them (dict order).
            values[key] = _claims(value, values["initializers"]) if kind == "claims" else \
                _replication(value, values["initializers"], values["activations"]) if kind == "replication" else \
                _sequential(value, values) if kind == "sequential" else \
                _convert(key, kind, value)
        except StudyError as exc:
            raise StudyError(f"study {source}: {exc}") from None
    values["models"], model_options = values["models"]
    study = Study(**values, source=source, model_options=model_options, plugins=_plugin_identities(values))
    _check_grid(study, build)
    return study


def _sequential(value, values: dict):
    """The checked `sequential:` key (after seeds, alpha and claims): None keeps the fixed design."""
    if value is None:
        return None
    from .sequential import check_plan

    plan = check_plan(value, len(values["seeds"]), values["alpha"])
    if not values["claims"]:
        raise StudyError("sequential monitors the study's claims, and it declares none; add a claims: list or "
                         "drop the sequential key")
    return plan


def _plugin_identities(values: dict) -> tuple:
    """(kind, name) -> identity of every plugin the study names, read now (a plugin edited since changes it)."""
    from .plugins import resolve

    named = [("dataset", values["dataset"])] * (values["dataset"] not in DATASETS) + \
        [("model", m) for m in values["models"] if m not in MODELS] + \
        [("initializer", i.name) for i in values["initializers"] if i.name not in _builtin_initializers()]
    return tuple(((kind, name), resolve(kind, name).identity) for kind, name in named)


def _builtin_initializers():
    from .initializers import INITIALIZERS

    return INITIALIZERS


def _check_grid(study: Study, build: bool = True) -> None:
    """Reject model settings and model x initializer pairs that cannot work, before any run starts.

    `build` False: only the checks that need no model built (and no torch).
    """
    from .initializers import check_applicable
    from .models import build_model, get_model

    labels = [i.label for i in study.initializers]
    if study.reference is not None and study.reference not in labels:
        raise StudyError(f"study {study.source}: reference {study.reference!r} is not one of the initializers "
                         f"({', '.join(labels)})")
    for model in study.models:
        reason = get_model(model).check(dict(model_params_for(study, model)))
        if reason:
            raise StudyError(f"study {study.source}: {reason}; change depth")
    if not build:
        return
    import torch

    channels, size, classes = _dataset_shape(study)
    for model in study.models:
        params = dict(model_params_for(study, model))
        with torch.device("meta"):  # shapes only: no memory for the weights, however wide the model
            try:
                net = build_model(model, channels, size, classes, study.activations[0], **params)
            except Exception as exc:
                if model in MODELS:
                    raise
                text = " ".join(str(exc).split())[:200]
                raise StudyError(f"study {study.source}: model {model!r} {params} raised {type(exc).__name__} "
                                 f"when built: {text}; fix the model or its parameters") from None
        n_params = sum(p.numel() for p in net.parameters())
        if n_params > MAX_PARAMS:
            raise StudyError(f"study {study.source}: model {model} {params} has {n_params:,} parameters, more "
                             f"than the {MAX_PARAMS:,} allowed; lower depth or width")
        for spec in study.initializers:
            reason = check_applicable(spec, net, model)
            if reason:
                raise StudyError(f"study {study.source}: initializer {spec.label!r} cannot be used: {reason}; "
                                 "remove it or change the model")


def _dataset_shape(study: Study) -> tuple[int, int, int]:
    """(channels, image side, classes): known for built-ins; a user's dataset is loaded (once per process)."""
    from .data import DATASET_SHAPES, load_dataset
    from .errors import DataError

    if study.dataset in DATASET_SHAPES:
        return DATASET_SHAPES[study.dataset]
    try:
        d = load_dataset(study.dataset, study.data_dir, study.split_seed)
    except DataError as exc:
        raise StudyError(f"study {study.source}: {exc}") from None
    except Exception as exc:  # the user's function raised
        text = " ".join(str(exc).split())[:200]
        raise StudyError(f"study {study.source}: dataset {study.dataset!r} raised {type(exc).__name__}: {text}; "
                         "fix the dataset function") from None
    return d.in_channels, d.image_size, d.num_classes


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's numbers on CPU; its hash is the run id."""

    dataset: str
    split_seed: int
    model: str
    model_params: tuple[tuple[str, object], ...]  # e.g. (("depth", 6), ("width", 16)) for plain
    activation: str
    init: InitSpec
    seed: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    # (kind, name, identity) of each user plugin the run uses; left out of to_dict when empty, so built-in
    # runs keep their ids
    plugins: tuple[tuple[str, str, str], ...] = ()
    eval_every: float = 1.0  # validation every this fraction of an epoch; left out of to_dict at 1, as plugins

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["model_params"] = dict(self.model_params)
        d["init"] = self.init.to_dict()
        if self.eval_every == 1:
            del d["eval_every"]
        if self.plugins:
            d["plugins"] = [list(p) for p in self.plugins]
        else:
            del d["plugins"]
        return d

    @property
    def run_id(self) -> str:
        d = self.to_dict()
        d["init"] = {k: v for k, v in d["init"].items() if k != "label"}  # a label is cosmetic
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def cell(self) -> tuple[tuple[str, object], ...]:
        """The factors other than initializer and seed: runs in one cell are compared."""
        return (("dataset", self.dataset), ("model", self.model), *self.model_params,
                ("activation", self.activation))


def model_params_for(study: Study, model: str) -> tuple[tuple[str, object], ...]:
    """The study's settings for the parameters `model` accepts, in its declared order."""
    explicit = dict(dict(study.model_options).get(model, ()))
    if model not in MODELS:  # a user's model takes only the parameters of its own entry
        return tuple(explicit.items())
    given = {"depth": study.depth, "width": study.width, "bn": study.bn, **explicit}
    return tuple((k, default if given[k] is None else given[k]) for k, default in MODELS[model].params.items())


def expand(study: Study) -> list[RunSpec]:
    """All runs of the grid, ordered seed-major so a partial sweep has whole seeds (paired blocks)."""
    specs, identity = [], dict(study.plugins)

    def plugins(*named):
        return tuple((kind, name, identity[kind, name]) for kind, name in named if (kind, name) in identity)

    for seed in study.seeds:
        for model in study.models:
            model_params = model_params_for(study, model)
            for activation in study.activations:
                for init in study.initializers:
                    specs.append(RunSpec(study.dataset, study.split_seed, model, model_params, activation,
                                         init, seed, study.epochs, study.batch_size, study.optimizer,
                                         study.lr, study.momentum, study.weight_decay,
                                         plugins(("dataset", study.dataset), ("model", model),
                                                 ("initializer", init.name)), study.eval_every))
    return specs


def describe_keys() -> dict[str, str]:
    """Study keys with their help text, for `initstudy list`."""
    return {k: h for k, (_d, _k, h) in _DEFAULTS.items()}


# kind -> the values it accepts, in words, for the generated reference
_KIND_TEXT = {"name": "study name (letters, digits, . _ -)", "str": "text", "optstr": "text or null",
              "optbool": "true, false or null", "dataset": "dataset name or plugin", "models": "list",
              "activations": "list of activation names", "initializers": "list", "seeds": "count or list of integers",
              "optimizer": " | ".join(OPTIMIZERS), "accelerator": " | ".join(ACCELERATORS),
              "claims": "list of claims", "replication": "list of published values", "loggers": "list: " + ", ".join(LOGGERS), "loggers_dir": "path or null",
              "sequential": "mapping or null: looks, spending, futility",
              "int>0": "integer > 0", "int>=0": "integer >= 0", "float>0": "number > 0", "float>=0": "number >= 0",
              "fraction": "fraction in (0, 1]",
              "eval_every": "1/k of an epoch: 1, 0.5, 0.25, 0.2, 0.1, ..."}


def study_key_reference() -> list[dict]:
    """Every study key with its default (as JSON text when `literal`, else in words), the values it accepts (with
    the load-time upper bound) and its help, in file order, for `initstudy list --markdown`."""
    out = []
    for key, (default, kind, help_) in _DEFAULTS.items():
        limit = LIMITS.get(key)
        accepts = _KIND_TEXT[kind] + (f", at most {limit:g}" if isinstance(limit, float) else
                                      f", at most {limit}" if limit is not None else "")
        if key == "seeds":
            accepts += f" (at most {MAX_SEEDS} seeds, each 0 to {MAX_SEED})"
        words = {"name": "the file name without .yaml", "initializers": "required"}.get(key)  # as _load_study
        out.append({"key": key, "default": words or json.dumps(default), "literal": words is None,
                    "accepts": accepts, "help": help_})
    return out



# ---------------------------------------------------------------- analysis settings for imported logs

SETTINGS_KEYS = {  # key -> help; a settings file is checked like a study file, the data checks come with the logs
    "threshold": "validation accuracy (fraction) that counts as reached (default 0.9)",
    "alpha": "significance level (default 0.05)",
    "reference": "initializer that hazard ratios compare against",
    "target_effect": "standardized effect the power section states seeds needed for (default 0.8)",
    "claims": "hypotheses the report gives verdicts on, as in study files",
    "order": "initializers in the order tables and figures show them",
    "labels": "logged initializer name -> label shown in the report",
    "factors": "columns that define the cells (default: every non-reserved column)",
    "budget_epochs": "the epoch budget the runs were given (default: the import's)",
    "design": "auto, paired or unpaired",
}
DESIGNS = ("auto", "paired", "unpaired")


@dataclass(frozen=True)
class Settings:
    """How imported logs are analysed. Initializers are named by their report labels (after `labels`)."""

    threshold: float = 0.9  # validation accuracy (fraction) that defines epochs-to-threshold
    alpha: float = 0.05  # significance level for verdicts
    reference: str | None = None  # arm hazard ratios compare against; None: first arm that reached
    target_effect: float = 0.8  # standardized effect for the seeds-needed statement
    claims: tuple[Claim, ...] = ()
    order: tuple[str, ...] | None = None  # None: sorted
    labels: tuple[tuple[str, str], ...] = ()  # (logged name, label)
    factors: tuple[str, ...] | None = None  # None: every factor column of the logs
    budget_epochs: int | None = None  # None: the import's budget
    design: str = "auto"
    source: str = ""  # the file(s) read, for messages and the report

    def label(self, name: str) -> str:
        return dict(self.labels).get(name, name)


def _names(key: str, value, what: str = "names") -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                           for v in value):
        raise StudyError(f"{key} must be a non-empty list of {what}, got {value!r}")
    items = [str(v) for v in value]
    dup = next((x for x in items if items.count(x) > 1), None)
    if dup is not None:
        raise StudyError(f"{key} lists {dup!r} twice; list each once")
    return tuple(items)


def _settings_claims(value) -> tuple[Claim, ...]:
    """Claims in the study-file grammar; their arms and `where` factors are checked against the logs later."""
    if not isinstance(value, list):
        raise StudyError(f"claims must be a list of mappings, got {value!r}")
    arms = [v for raw in value if isinstance(raw, dict) for v in (raw.get("a"), raw.get("b"))
            if isinstance(v, str) and v]
    plain = [{k: v for k, v in raw.items() if k != "where"} if isinstance(raw, dict) else raw for raw in value]

    class _Arm:  # what _claims reads of an initializer: its label
        def __init__(self, label):
            self.label = label

    claims = list(_claims(plain, tuple(_Arm(a) for a in dict.fromkeys(arms))))
    for n, (raw, claim) in enumerate(zip(value, claims), 1):
        where = raw.get("where", {})
        if not isinstance(where, dict):
            raise StudyError(f"claim {n}: where must be a mapping like {{model: resnet}}, got {where!r}")
        pairs = []
        for key, accepted in where.items():
            items = accepted if isinstance(accepted, list) else [accepted]
            if not items:
                raise StudyError(f"claim {n}: where {key} is empty; name at least one value")
            pairs.append((str(key), tuple(str(x) for x in items)))  # imported factor values are text
        claims[n - 1] = Claim(claim.text, claim.a, claim.b, claim.endpoint, claim.direction, claim.margin,
                              claim.at_most, claim.at_least, tuple(pairs), claim.source)
    return tuple(claims)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """' at line L, column C: what' for a YAML error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{where}: {getattr(exc, 'problem', None) or 'invalid YAML'}"


def read_settings(path: str | Path) -> dict:
    """The raw mapping of a settings YAML file, with unknown keys refused."""
    path = Path(path)
    try:
        raw = _yaml(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"settings file {path} not found; give the path of a .yaml file") from None
    except IsADirectoryError:
        raise StudyError(f"settings file {path} is a folder; give the path of a .yaml file") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"settings file {path} is not valid YAML{_yaml_problem(exc)}; fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"settings file {path} is unreadable ({type(exc).__name__}); check the path") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise StudyError(f"settings file {path} must be a mapping of keys like 'threshold:' and 'claims:'")
    unknown = sorted((str(k) for k in set(raw) - set(SETTINGS_KEYS)))
    if unknown:
        raise StudyError(f"settings file {path}: unknown key {unknown[0]!r}; valid keys: {', '.join(SETTINGS_KEYS)}")
    return raw


def settings_from_dict(raw: dict, source: str = "settings") -> Settings:
    """Check every key's type and range (see SETTINGS_KEYS); StudyError names `source` and the key."""
    unknown = sorted(str(k) for k in set(raw) - set(SETTINGS_KEYS))
    if unknown:
        raise StudyError(f"{source}: unknown key {unknown[0]!r}; valid keys: {', '.join(SETTINGS_KEYS)}")
    values = {}
    try:
        for key, value in raw.items():
            if value is None:
                continue
            if key in ("threshold", "alpha"):
                values[key] = _number(key, value, False, 0, True, 1.0)
            elif key == "target_effect":
                values[key] = _number(key, value, False, 0, True, LIMITS["target_effect"])
            elif key == "budget_epochs":
                values[key] = _number(key, value, True, 0, True, 100_000)
            elif key == "reference":
                if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
                    raise StudyError(f"reference must be an initializer name, got {value!r}")
                values[key] = str(value)
            elif key == "design":
                if value not in DESIGNS:
                    raise StudyError(f"design must be one of {', '.join(DESIGNS)}, got {value!r}")
                values[key] = value
            elif key in ("order", "factors"):
                values[key] = _names(key, value, "initializer names" if key == "order" else "column names")
            elif key == "labels":
                if not isinstance(value, dict) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                          and str(v) for v in value.values()):
                    raise StudyError(f"labels must map logged initializer names to labels, e.g. {{he: Kaiming}}, "
                                     f"got {value!r}")
                pairs = tuple((str(k), str(v)) for k, v in value.items())
                shown = [v for _k, v in pairs]
                dup = next((x for x in shown if shown.count(x) > 1), None)
                if dup is not None:
                    raise StudyError(f"labels gives two initializers the label {dup!r}; give each its own")
                values[key] = pairs
            elif key == "claims":
                values[key] = _settings_claims(value)
    except StudyError as exc:
        raise StudyError(f"{source}: {exc}") from None
    return Settings(**values, source=source)


def load_settings(*paths: str | Path | None) -> Settings:
    """Settings read from the files in order, a later file's keys replacing an earlier one's (None: skipped)."""
    raw, sources = {}, []
    for path in paths:
        if path is not None:
            raw.update(read_settings(path))
            sources.append(str(path))
    return settings_from_dict(raw, " + ".join(sources) or "settings")


def check_settings(settings: Settings, initializers: list[str], factors: list[str], max_epoch: int) -> Settings:
    """The settings with every initializer named by its label (order, reference and claims may name it as logged
    or by label); StudyError when they name what the logs lack: `initializers` as logged, `factors` the logs'
    factor columns, `max_epoch` the last epoch logged."""
    src = settings.source
    logged = ", ".join(initializers)
    for name, _label in settings.labels:
        if name not in initializers:
            raise StudyError(f"{src}: labels names initializer {name!r}, which the logs lack; logged: {logged}")
    shown = [settings.label(i) for i in initializers]
    clash = next((x for x in shown if shown.count(x) > 1), None)
    if clash is not None:
        raise StudyError(f"{src}: labels makes two initializers show as {clash!r}; give each its own label")
    names = ", ".join(shown)
    settings = _relabel(settings)
    named = [("order", x) for x in settings.order or ()] + ([("reference", settings.reference)]
                                                           if settings.reference else [])
    for n, c in enumerate(settings.claims, 1):
        named += [(f"claim {n}", x) for x in (c.a, c.b) if x is not None]
    for what, x in named:
        if x not in shown:
            raise StudyError(f"{src}: {what} names initializer {x!r}, which the logs lack; use one of: {names}")
    for f in settings.factors or ():
        if f not in factors:
            raise StudyError(f"{src}: factors names column {f!r}, which the logs lack; factor columns: "
                             f"{', '.join(factors) or 'none'}")
    cells = settings.factors if settings.factors is not None else factors
    for n, c in enumerate(settings.claims, 1):
        for key, _values in c.where:
            if key not in cells:
                raise StudyError(f"{src}: claim {n}: where names {key!r}, which is not a factor of the logs; factors: "
                                 f"{', '.join(cells) or 'none'}")
    if settings.budget_epochs is not None and settings.budget_epochs < max_epoch:
        raise StudyError(f"{src}: budget_epochs {settings.budget_epochs} is below the last logged epoch "
                         f"{max_epoch}; raise it or leave it out")
    return settings


def _relabel(s: Settings) -> Settings:
    """`s` with the logged names in order, reference and claims replaced by their labels."""
    from dataclasses import replace

    def lab(x):
        return None if x is None else s.label(x)

    claims = tuple(replace(c, a=lab(c.a), b=lab(c.b)) for c in s.claims)
    return replace(s, order=None if s.order is None else tuple(map(lab, s.order)), reference=lab(s.reference),
                   claims=claims)
