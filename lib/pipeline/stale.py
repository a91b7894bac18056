"""Stale results (DESIGN §7): the code a result depends on differs between its provenance commit and HEAD.

    stale(commit, chapter, notebook, repo, profile)  ->  "yes" | "no" | "unknown"

What a notebook's results depend on is computed, not listed: its code cells' imports of the package,
resolved to modules and followed through every module's imports (module- and function-level,
relative ones resolved), each revision read in its own tree (`git ls-tree`, `git cat-file`); plus
the lock file and the notebook's entry in its chapter's profiles.yml. Third-party imports are not
followed (the lock file pins them).

Results are stale when that code differs, compared as code (deps.py): docstrings, comments,
markdown cells and data/paper/*.yml never count, and a file or function moved unchanged, with the
imports that point at it rewritten, does not count either. The fingerprint of one notebook at one
revision is the notebook's statements in order, the multiset of its closure's statements (a
module's definitions each on its own, so they may move between modules; its other statements in
order), each paired with the identity of every name it reads that an import or a definition binds;
plus the third-party modules imported, the lock file and the profile entry.

"unknown" when the commit is missing, not an ancestor of HEAD, git fails, or the notebook did not
exist at the commit; the scoreboard shows it as such rather than guessing.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections import Counter
from functools import lru_cache
from pathlib import Path

import yaml

from .. import repo_root
from .deps import PACKAGE, Parsed, Spec, digest, parse_module, parse_notebook

STATES = ("yes", "no", "unknown")
LOCK = "requirements/lock.txt"
PACKAGE_DIRS = {PACKAGE: "lib", f"{PACKAGE}.kernels": "kernels"}  # pyproject's, where a tree has none
HOPS = 4  # re-exports followed this far before a name counts as unresolved


class GitError(Exception):
    pass


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        out = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(str(e)) from e
    if out.returncode:
        raise GitError(out.stderr.decode(errors="replace").strip())
    return out.stdout


_BLOBS: dict[str, bytes] = {}  # blob id -> content; content-addressed, so shared by every revision


def _read_blobs(repo: Path, ids: list[str]) -> None:
    """Fills _BLOBS with the missing ones of `ids`, in one `git cat-file --batch`."""
    missing = sorted({i for i in ids if i not in _BLOBS})
    if not missing:
        return
    data, pos = _git(repo, "cat-file", "--batch", stdin="\n".join(missing).encode() + b"\n"), 0
    for blob in missing:
        end = data.index(b"\n", pos)
        size = int(data[pos:end].split()[2])
        _BLOBS[blob] = data[end + 1:end + 1 + size]
        pos = end + 1 + size + 1


class Tree:
    """One revision's files, read once: modules resolved, parsed and given identities."""

    def __init__(self, repo: Path, commit: str):
        self.repo, self.commit = repo, commit
        listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", commit).split(b"\0")
        self.files = {p.decode(): meta.split()[2].decode() for meta, _, p in (e.partition(b"\t") for e in listing if e)}
        self.dirs = self._package_dirs()
        _read_blobs(repo, [b for p, b in self.files.items() if p.endswith(".py") and self._under_package(p)])
        self._idents: dict[tuple, tuple] = {}
        self._items: dict[str, list[str]] = {}

    def text(self, path: str) -> str | None:
        blob = self.files.get(path)
        if blob is None:
            return None
        _read_blobs(self.repo, [blob])
        return _BLOBS[blob].decode(errors="replace")

    def _package_dirs(self) -> dict[str, str]:
        try:
            dirs = tomllib.loads(self.text("pyproject.toml") or "")["tool"]["setuptools"]["package-dir"]
        except (tomllib.TOMLDecodeError, KeyError, TypeError):
            return PACKAGE_DIRS
        return {k: v.rstrip("/") for k, v in dirs.items()} or PACKAGE_DIRS

    def _under_package(self, path: str) -> bool:
        return any(path.startswith(d + "/") for d in self.dirs.values())

    def path_of(self, module: str) -> str | None:
        """The file of a module (a package is its __init__.py), by the longest package-dir prefix."""
        keys = [k for k in self.dirs if module == k or module.startswith(k + ".")]
        if not keys:
            return None
        key = max(keys, key=len)
        base = "/".join([self.dirs[key], *module[len(key):].split(".")[1:]])
        return next((p for p in (base + ".py", base + "/__init__.py") if p in self.files), None)

    def parsed(self, module: str) -> Parsed | None:
        path = self.path_of(module)
        if path is None:
            return None
        self.text(path)  # reads the blob if the listing's prefetch did not
        return _parse(self.files[path], module, path.endswith("__init__.py"))

    def ident(self, spec: Spec, hops: int = HOPS) -> tuple:
        """What a binding binds at this revision, independent of where it is defined."""
        if spec[0] in ("def", "ext"):
            return (spec,)
        key = (spec, hops)
        if key not in self._idents:
            self._idents[key] = self._resolve(spec, hops)
        return self._idents[key]

    def _resolve(self, spec: Spec, hops: int) -> tuple:
        if spec[0] == "from" and self.path_of(f"{spec[1]}.{spec[2]}"):
            spec = ("module", f"{spec[1]}.{spec[2]}")  # a submodule, before a symbol of the package
        p = self.parsed(spec[1])
        if spec[0] in ("module", "star"):
            return (("module", p.body if p else ("missing", spec[1])),)
        name = spec[2]
        if p is not None and hops > 0:
            if name in p.binds:
                return tuple(leaf for s in p.binds[name] for leaf in self.ident(s, hops - 1))
            for star in p.binds.get("*", []):
                found = self.ident(("from", star[1], name), hops - 1)
                if found[0][0] != "unresolved":
                    return found
        return (("unresolved", self.path_of(spec[1]) or spec[1], name),)

    def closure(self, refs: set[Spec]) -> dict[str, str | None]:
        """Every module the refs reach through imports, with its parent packages: module -> path."""
        todo, seen = [m for r in refs for m in self._modules(r)], {}
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen[module] = self.path_of(module)
            p = self.parsed(module)
            todo += [m for r in (p.refs if p else ()) for m in self._modules(r)]
        return seen

    def _modules(self, ref: Spec) -> list[str]:
        module = ref[1]
        if ref[0] == "from" and self.path_of(f"{module}.{ref[2]}"):
            module = f"{module}.{ref[2]}"
        parts = module.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]  # importing a.b runs a first

    def module_items(self, module: str) -> list[str]:
        if module not in self._items:
            p = self.parsed(module)
            self._items[module] = self.items(p) if p else [f"missing {module}"]
        return self._items[module]

    def items(self, p: Parsed) -> list[str]:
        """The fingerprint items of one parsed module: each definition alone, the other statements as one."""
        if p.raw is not None:
            return [p.body]
        units = [(u.ordered, digest((u.dump, self._env(p, u), p.future))) for u in p.units]
        script = [h for ordered, h in units if ordered]
        return [h for ordered, h in units if not ordered] + ([digest(script)] if script else [])

    def _env(self, p: Parsed, u) -> list:
        names = sorted(n for n in u.loads | set(u.inner) if n in u.inner or n in p.binds)
        env = [(n, tuple(i for s in u.inner.get(n, []) + p.binds.get(n, []) for i in self.ident(s))) for n in names]
        stars = tuple(i for s in p.binds.get("*", []) for i in self.ident(s))
        return env + ([("*", stars)] if stars else [])


@lru_cache(maxsize=4096)
def _parse(blob: str, module: str, is_package: bool) -> Parsed:
    """Parsed once per content and name (a relative import depends on the name)."""
    return parse_module(_BLOBS[blob].decode(errors="replace"), module, is_package)


@lru_cache(maxsize=256)
def _notebook(blob: str) -> Parsed:
    return parse_notebook(_BLOBS[blob].decode(errors="replace"))


@lru_cache(maxsize=256)
def _profiles(blob: str):
    """profiles.yml parsed (None if it does not parse; then its text counts as a whole)."""
    try:
        return yaml.load(_BLOBS[blob], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None


@lru_cache(maxsize=64)
def _tree(repo: str, commit: str) -> Tree:
    return Tree(Path(repo), commit)


def _notebook_path(chapter: str, notebook: str) -> str:
    return f"notebooks/{chapter}/{notebook}.ipynb"


def _parsed_notebook(tree: Tree, chapter: str, notebook: str) -> Parsed | None:
    path = _notebook_path(chapter, notebook)
    return None if tree.text(path) is None else _notebook(tree.files[path])


def _profile_entry(tree: Tree, chapter: str, notebook: str, profile: str | None):
    """The notebook's parameters under `profile` in profiles.yml (all of the file without a profile)."""
    path = f"notebooks/{chapter}/profiles.yml"
    text = tree.text(path)
    data = _profiles(tree.files[path]) if text else None
    if text and data is None:
        return text
    if profile is None or not isinstance(data, dict):
        return json.dumps(data, sort_keys=True, default=str)
    return json.dumps((data.get(profile) or {}).get(notebook), sort_keys=True, default=str)


@lru_cache(maxsize=1024)
def fingerprint(repo: str, commit: str, chapter: str, notebook: str, profile: str | None = None) -> str | None:
    """One notebook's code and everything it depends on at `commit` (a full id), as one hash;
    None when the notebook is not in that revision."""
    tree = _tree(repo, commit)
    nb = _parsed_notebook(tree, chapter, notebook)
    if nb is None:
        return None
    closure = tree.closure(nb.refs)
    parsed = [p for p in (tree.parsed(m) for m in closure) if p is not None]
    items = Counter(i for m in closure for i in tree.module_items(m))
    external = sorted(set(nb.external).union(*(p.external for p in parsed)))
    return digest((tree.items(nb), sorted(items.items()), external, tree.text(LOCK),
                   _profile_entry(tree, chapter, notebook, profile)))


def dependencies(chapter: str, notebook: str, commit: str = "HEAD", repo: Path | None = None) -> set[str]:
    """The files a notebook's results depend on at `commit`: the notebook, its closure, the lock file."""
    repo = Path(repo or repo_root())
    tree = _tree(str(repo), _resolve(repo, commit))
    nb = _parsed_notebook(tree, chapter, notebook)
    if nb is None:
        return set()
    paths = {p for p in tree.closure(nb.refs).values() if p}
    return paths | {_notebook_path(chapter, notebook)} | ({LOCK} & set(tree.files))


def _resolve(repo: Path, rev: str) -> str:
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()


def stale(commit: str | None, chapter: str, notebook: str, repo: Path | None = None,
          profile: str | None = None) -> str:
    """Whether the code `notebook` of `chapter` depends on differs between `commit` and HEAD."""
    if not commit:
        return "unknown"
    repo = Path(repo or repo_root())
    try:
        commit, head = _resolve(repo, commit), _resolve(repo, "HEAD")
        _git(repo, "merge-base", "--is-ancestor", commit, head)  # else a comparison says nothing here
        before = fingerprint(str(repo), commit, chapter, notebook, profile)
        if before is None:
            return "unknown"
        return "no" if before == fingerprint(str(repo), head, chapter, notebook, profile) else "yes"
    except GitError:
        return "unknown"


def combine(states: list[str]) -> str:
    """One state for several records (a chapter/profile has one per notebook): any yes wins."""
    if "yes" in states:
        return "yes"
    if not states or "unknown" in states:
        return "unknown"
    return "no"
