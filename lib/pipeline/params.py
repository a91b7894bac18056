"""Profile parameters: notebooks/<chapter>/profiles.yml, checked against each notebook's
papermill `parameters` cell.

profiles.yml maps profile -> notebook stem -> {name: value}. The parameters cell holds `profile`
and one literal assignment per value a profile sets; its literal gives the type. An unknown key or
a value of the wrong type is an error that names it.

One key per profile is reserved, `requires`: what the profile needs of the machine, as its author
declares it (config, not a result; the measured peaks are in provenance):

    gpu:
      requires: {gpu_memory_gb: 48, host_memory_gb: 16, minutes: 15, size_params: [lengths]}

gpu_memory_gb / host_memory_gb: memory the profile needs (decimal GB); minutes: the design bound
on the sum of its notebooks' wall times; size_params: the notebook parameters that set its size,
which a reader may lower with SET= to fit a smaller machine; gpu_memory_fraction: for a profile
that sizes its work to the GPU it finds, the fraction of that GPU's memory it may fill (its peak is
then bounded by the larger of gpu_memory_gb and this fraction of the GPU). Every key is optional.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import yaml

from ..errors import BookError
from .registry import PROFILES, chapter as get_chapter, check_profile


def notebook_defaults(path: Path) -> dict:
    """{name: default} from the cell tagged `parameters` (literal assignments only)."""
    if not Path(path).exists():
        raise BookError(f"notebook {path} is listed in chapters.yml but does not exist")
    nb = json.loads(Path(path).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"])
            out = {}
            for node in ast.parse(src).body:
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                    raise BookError(f"{path.name}: the parameters cell may hold only `name = literal` lines")
                out[node.targets[0].id] = ast.literal_eval(node.value)
            return out
    raise BookError(f"{path.name}: no cell tagged 'parameters'")


def _type_ok(default, value) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, list):  # each element like one of the default's (a list may mix, e.g. lists and dicts)
        return isinstance(value, list) and (not default or all(any(_type_ok(d, v) for d in default) for v in value))
    return type(value) is type(default)


def check(defaults: dict, values: dict, where: str) -> dict:
    """Values merged over defaults; raises on an unknown key or a wrong type, naming it."""
    merged = dict(defaults)
    for key, value in values.items():
        if key not in defaults:
            raise BookError(f"{where}: unknown parameter {key!r}; valid: {', '.join(sorted(defaults))}")
        if not _type_ok(defaults[key], value):
            raise BookError(f"{where}: parameter {key!r} must be {type(defaults[key]).__name__}, got {type(value).__name__} {value!r}")
        merged[key] = float(value) if isinstance(defaults[key], float) else value
    return merged


REQUIRES = "requires"  # the reserved key of a profile; never a notebook stem
_NEEDS = ("gpu_memory_gb", "host_memory_gb", "minutes")
_VALID = ", ".join((*_NEEDS, "gpu_memory_fraction", "size_params"))


def _profiles(chapter: str) -> tuple[Path, dict]:
    path = get_chapter(chapter).folder / "profiles.yml"
    raw = (yaml.safe_load(path.read_text()) if path.exists() else {}) or {}
    for p in raw:
        check_profile(p)
    return path, raw


def profile_names(chapter: str) -> list[str]:
    """The profiles the chapter's profiles.yml defines, in PROFILES order."""
    return [p for p in PROFILES if p in _profiles(chapter)[1]]


def profile_values(chapter: str, profile: str) -> dict[str, dict]:
    """{notebook stem: {name: value}} for one profile of a chapter."""
    check_profile(profile)
    ch = get_chapter(chapter)
    path, raw = _profiles(chapter)
    per_nb = raw.get(profile) or {}
    for stem in per_nb:
        if stem != REQUIRES and stem not in ch.notebooks:
            raise BookError(f"{path}: unknown notebook {stem!r} under {profile!r}; valid: {', '.join(ch.notebooks)}")
    requires(chapter, profile)  # a malformed `requires` fails here too, before anything runs
    return {stem: dict(per_nb.get(stem) or {}) for stem in ch.notebooks}


def requires(chapter: str, profile: str) -> dict:
    """The profile's declared needs, checked: {gpu_memory_gb, host_memory_gb, minutes: positive
    number or None, gpu_memory_fraction: (0, 1] or None, size_params: [names]}. A wrong key or
    type is one line naming the file and the key."""
    check_profile(profile)
    path, raw = _profiles(chapter)
    declared = (raw.get(profile) or {}).get(REQUIRES)
    where = f"{path}: {profile}.{REQUIRES}"
    if declared is None:
        declared = {}
    if not isinstance(declared, dict):
        raise BookError(f"{where} must be a mapping of {_VALID}; got {declared!r}")
    out = {k: None for k in _NEEDS} | {"gpu_memory_fraction": None, "size_params": []}
    for key, value in declared.items():
        if key == "gpu_memory_fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise BookError(f"{where}.{key} must be a number in (0, 1], got {value!r}")
            out[key] = float(value)
        elif key in _NEEDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BookError(f"{where}.{key} must be a positive number, got {value!r}")
            out[key] = float(value)
        elif key == "size_params":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise BookError(f"{where}.size_params must be a list of parameter names, got {value!r}")
            out[key] = list(value)
        else:
            raise BookError(f"{where}: unknown key {key!r}; valid: {_VALID}")
    return out


def resolve(chapter: str, stem: str, profile: str, overrides: dict | None = None) -> dict:
    """The checked parameters papermill injects into one notebook (profile included)."""
    ch = get_chapter(chapter)
    defaults = notebook_defaults(ch.notebook_path(stem))
    if "profile" not in defaults:
        raise BookError(f"{stem}.ipynb: the parameters cell must set `profile`")
    values = profile_values(chapter, profile)[stem]
    merged = check(defaults, {**values, **(overrides or {})}, f"{chapter}/{stem} ({profile})")
    merged["profile"] = profile
    return merged


def parse_overrides(text: str) -> dict:
    """`a=1 b=[1,2] c=name` -> {'a': 1, 'b': [1, 2], 'c': 'name'} (YAML scalars)."""
    out = {}
    for item in text.split():
        if "=" not in item:
            raise BookError(f"cannot read override {item!r}; write name=value")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def resolve_all(chapter: str, profile: str, overrides: dict | None = None) -> list[tuple[str, dict]]:
    """[(stem, params)] for every notebook; an override applies to each notebook that has it."""
    ch = get_chapter(chapter)
    overrides = overrides or {}
    defaults = {stem: notebook_defaults(ch.notebook_path(stem)) for stem in ch.notebooks}
    for key in overrides:
        if key == "profile" or not any(key in d for d in defaults.values()):
            valid = sorted({k for d in defaults.values() for k in d} - {"profile"})
            raise BookError(f"{chapter}: unknown parameter {key!r}; valid: {', '.join(valid)}")
    return [(stem, resolve(chapter, stem, profile, {k: v for k, v in overrides.items() if k in defaults[stem]}))
            for stem in ch.notebooks]

