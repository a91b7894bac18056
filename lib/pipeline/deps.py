"""The code of a module or a notebook up to prose and imports: what the stale check (stale.py) compares.

A source text is parsed into top-level statements ("units") with every docstring and every import
statement removed, wherever it sits. An import is kept instead as a binding, a name and what it names
(a module, a symbol of a module, or a third-party name), so that a file moved to another package, or
a function moved to another module, reads the same once the imports that point at it are rewritten.
The stale check turns each binding into the identity of what it binds, at one revision.

Nothing here runs git or imports the code it reads.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field

PACKAGE = "msrbook"  # imports of this package are followed; every other import is third-party
# A binding spec: ("module", M) | ("from", M, name) | ("star", M) | ("ext", "mod:name") | ("def", hash)
Spec = tuple
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def digest(obj) -> str:
    return hashlib.sha1(repr(obj).encode()).hexdigest()


@dataclass
class Unit:
    ordered: bool  # not a definition: its place among the module's statements matters
    dump: str  # ast.dump of the statement, docstrings and imports removed
    loads: frozenset[str]  # every name the statement reads (a superset of its free names)
    inner: dict[str, list[Spec]]  # names bound by imports inside the statement (function-level)


@dataclass
class Parsed:
    units: list[Unit] = field(default_factory=list)
    binds: dict[str, list[Spec]] = field(default_factory=dict)  # module-level names, in source order
    refs: set[Spec] = field(default_factory=set)  # every import of the package, for the closure
    external: set[str] = field(default_factory=set)  # third-party modules imported anywhere
    future: tuple[str, ...] = ()
    body: str = ""  # hash of the whole canonical body: the module's identity where it is imported whole
    raw: str | None = None  # the text, when it does not parse: then any edit counts


def _internal(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module an ImportFrom names, relative levels resolved against module `name`."""
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
    return ".".join(parts + ([node.module] if node.module else []))


def _bindings(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, out: Parsed) -> list[tuple[str, Spec]]:
    """(bound name, spec) for each alias of an import; records package refs and third-party modules."""
    pairs = []
    if isinstance(node, ast.Import):
        for a in node.names:
            bound = a.asname or a.name.split(".")[0]
            if _internal(a.name):
                pairs.append((bound, ("module", a.name)))
            else:
                out.external.add(a.name)
                pairs.append((bound, ("ext", a.name)))
        return pairs
    base = _absolute(node, name, is_package)
    for a in node.names:
        if not _internal(base):
            out.external.add(base)
            pairs.append((a.asname or a.name, ("ext", f"{base}:{a.name}")))
        elif a.name == "*":
            pairs.append(("*", ("star", base)))
        else:
            pairs.append((a.asname or a.name, ("from", base, a.name)))
    for _, spec in pairs:
        if spec[0] in ("module", "from", "star"):
            out.refs.add(spec)
    return pairs


_BODIES = ("body", "orelse", "finalbody")


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _strip(stmt: ast.stmt, name: str, is_package: bool, out: Parsed) -> tuple[dict[str, list[Spec]], frozenset[str]]:
    """Removes, in place and in one walk, the docstrings and import statements inside a top-level
    statement; returns what the imports bind and every name the statement reads."""
    bound: dict[str, list[Spec]] = {}
    loads = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loads.add(node.id)
        for attr in _BODIES:
            body = getattr(node, attr, None)
            if not body or not isinstance(body, list):
                continue
            if attr == "body" and isinstance(node, _DEFS) and _is_docstring(body[0]):
                body = body[1:]
            kept = [s for s in body if not isinstance(s, (ast.Import, ast.ImportFrom))]
            for imp in (s for s in body if isinstance(s, (ast.Import, ast.ImportFrom))):
                _record(imp, name, is_package, out, bound)
            setattr(node, attr, kept or ([ast.Pass()] if attr == "body" else []))  # else/finally may be empty
    return bound, frozenset(loads)


def _record(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, out: Parsed,
            bound: dict[str, list[Spec]]) -> None:
    if isinstance(node, ast.ImportFrom) and node.module == "__future__" and not node.level:
        out.future += tuple(a.name for a in node.names)  # a compiler flag of the module, not a binding
        return
    for b, spec in _bindings(node, name, is_package, out):
        bound.setdefault(b, []).append(spec)


def _stored(stmt: ast.stmt) -> set[str]:
    """Module-level names a top-level statement binds (over-approximated for compound statements)."""
    if isinstance(stmt, _DEFS):
        return {stmt.name}
    scope = stmt.targets if isinstance(stmt, ast.Assign) else [stmt]
    names = set()
    for part in scope:
        for n in ast.walk(part):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
            elif isinstance(n, _DEFS):
                names.add(n.name)
    return names


def parse_module(text: str, name: str, is_package: bool = False, script: bool = False) -> Parsed:
    """The canonical form of module `name` (a notebook is a `script`: every statement ordered)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return Parsed(raw=text, body=digest(text))
    return _canonical(tree, name, is_package, script)


def _canonical(tree: ast.Module, name: str, is_package: bool, script: bool) -> Parsed:
    out = Parsed()
    body = tree.body[1:] if tree.body and _is_docstring(tree.body[0]) else tree.body
    dumps = []
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            _record(stmt, name, is_package, out, out.binds)
            continue
        bound, loads = _strip(stmt, name, is_package, out)
        at_module = not isinstance(stmt, _DEFS)  # imports in an if/try bind module names
        for b, specs in bound.items() if at_module else ():
            out.binds.setdefault(b, []).extend(specs)
        if isinstance(stmt, ast.Pass):
            continue
        dump = ast.dump(stmt)
        dumps.append(dump)
        ordered = script or not isinstance(stmt, (*_DEFS, ast.Assign, ast.AnnAssign))
        out.units.append(Unit(ordered, dump, loads, {} if at_module else bound))
        for b in _stored(stmt):
            out.binds.setdefault(b, []).append(("def", digest(dump)))
    out.body = digest((dumps, out.future))
    return out


def _strip_magics(source: str) -> str:
    """A code cell without IPython magics and shell escapes (lines starting with % or !)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def parse_notebook(text: str) -> Parsed:
    """A notebook's code cells, in order, as one script (its whole text where it is not notebook JSON)."""
    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError):
        return Parsed(raw=text, body=digest(text))
    sources = [_strip_magics("".join(c.get("source", ""))) for c in cells if c.get("cell_type") == "code"]
    try:
        tree = ast.Module(body=[s for src in sources for s in ast.parse(src).body], type_ignores=[])
    except (SyntaxError, ValueError):
        return Parsed(raw=json.dumps(sources), body=digest(sources))
    return _canonical(tree, "__notebook__", False, script=True)
