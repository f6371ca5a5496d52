"""Promise: SQL is built only with parameters (docs/security.md).

Two halves. A static scan (``ast``) of every ``execute()``-like call in trackiod/ and shim/: the SQL text may be
a literal, or be put together only from literals, module constants made of literals, ``"?"`` placeholders
repeated, and a short allow-list of identifiers vetted by hand below; a function parameter that reaches the SQL
makes that function a sink too, and its callers are checked the same way. And a real round trip: run names,
ids, metric keys, config and text values written like injections go through the shim, the daemon and SQLite
and come back byte for byte, with every table still there.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import ROOT, DaemonProcess
from trackiod.read.connection import open_reader
from trackiod.read.runs import list_runs, run_keys
from trackiod.read.series import read_series, read_texts

SOURCE_ROOTS = ("trackiod", "shim")
SQL_METHODS = {"execute": 0, "executemany": 0, "executescript": 0}
NUMERIC_CALLS = {"range", "len", "int", "float"}

#: Identifiers allowed in SQL text although the scan cannot prove them constant; each was read and vetted.
VETTED: dict[tuple[str, str, str], str] = {
    ("trackiod/store/writer.py", "update_run", "columns"): "keyword names, checked against the runs table's columns",
}


@dataclass
class Module:
    path: str
    tree: ast.Module
    constants: dict[str, ast.expr] = field(default_factory=dict)
    imported: dict[str, str] = field(default_factory=dict)  # local name -> path of the module it comes from
    functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=list)


def _modules() -> list[Module]:
    out = []
    for root in SOURCE_ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            module = Module(str(path.relative_to(ROOT)), tree)
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    module.constants[node.targets[0].id] = node.value
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                    module.constants[node.target.id] = node.value
                elif isinstance(node, ast.ImportFrom) and node.level:
                    base = path.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                    source = base.joinpath(*(node.module or "").split(".")).with_suffix(".py")
                    for alias in node.names:
                        module.imported[alias.asname or alias.name] = str(source.relative_to(ROOT))
                elif isinstance(node, ast.ImportFrom) and node.module:
                    source = ROOT / "shim" / Path(*node.module.split(".")).with_suffix(".py")
                    if not source.exists():
                        source = ROOT / Path(*node.module.split(".")).with_suffix(".py")
                    for alias in node.names:
                        module.imported[alias.asname or alias.name] = str(source.relative_to(ROOT))
            module.functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            out.append(module)
    return out


def _params(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = func.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return names


def _enclosing(module: Module, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    best = None
    for func in module.functions:
        end = func.end_lineno or func.lineno
        if func.lineno <= getattr(node, "lineno", 0) <= end and (best is None or func.lineno >= best.lineno):
            best = func
    return best


class Analysis:
    """Decides whether an expression that becomes SQL text is made only of vetted parts."""

    def __init__(
        self, module: Module, func: ast.FunctionDef | ast.AsyncFunctionDef | None, modules: dict[str, Module]
    ) -> None:
        self.module, self.func, self.modules = module, func, modules
        self.tainted_params: set[str] = set()
        self.problems: list[str] = []

    def _assignments(self, name: str) -> Iterator[ast.expr | None]:
        """Every value ``name`` takes in the function (None: something the scan cannot follow)."""
        assert self.func is not None
        for node in ast.walk(self.func):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        yield node.value
                    elif any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(target)):
                        # a, b = x, y: followed element by element; anything else is not followed
                        pairs = (
                            zip(target.elts, node.value.elts)
                            if isinstance(target, ast.Tuple)
                            and isinstance(node.value, ast.Tuple)
                            and len(target.elts) == len(node.value.elts)
                            else [(target, None)]
                        )
                        for part, value in pairs:
                            if (isinstance(part, ast.Name) and part.id == name) or not isinstance(part, ast.Name):
                                yield value
            elif isinstance(node, ast.AugAssign | ast.AnnAssign) and isinstance(node.target, ast.Name):
                if node.target.id == name and node.value is not None:
                    yield node.value
            elif isinstance(node, ast.For | ast.comprehension):
                if any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(node.target)):
                    yield node.iter
            elif isinstance(node, ast.NamedExpr) and node.target.id == name:
                yield node.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "extend", "insert")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == name
            ):
                yield from node.args[-1:]  # where.append("p.name=?"): what goes into the list

    def safe(self, expr: ast.expr | None, seen: frozenset[str] = frozenset()) -> bool:
        if expr is None:
            return False
        if isinstance(expr, ast.Constant):
            return True
        if isinstance(expr, ast.JoinedStr):
            return all(self.safe(v, seen) for v in expr.values)
        if isinstance(expr, ast.FormattedValue):
            return self.safe(expr.value, seen)
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, ast.Mult):  # "?" * n: a literal repeated; the count is only a number
                sides = (expr.left, expr.right)
                return any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in sides)
            return self.safe(expr.left, seen) and self.safe(expr.right, seen)
        if isinstance(expr, ast.IfExp):
            return self.safe(expr.body, seen) and self.safe(expr.orelse, seen)
        if isinstance(expr, ast.Tuple | ast.List | ast.Set):
            return all(self.safe(e, seen) for e in expr.elts)
        if isinstance(expr, ast.Dict):
            return all(self.safe(v, seen) for v in expr.values)
        if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Name) and self._constant(expr.value.id):
            return True  # MIGRATIONS[i]: an element of a module constant (the index only picks one)
        if isinstance(expr, ast.GeneratorExp | ast.ListComp):
            return self.safe(expr.elt, seen) and all(self.safe(g.iter, seen) for g in expr.generators)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in NUMERIC_CALLS:
            return True  # a number cannot carry SQL
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "join":
            return self.safe(expr.func.value, seen) and all(self.safe(a, seen) for a in expr.args)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and self._function(expr.func.id):
            return self._safe_call(expr, seen)
        if isinstance(expr, ast.Name):
            return self._safe_name(expr.id, seen)
        self.problems.append(f"{self.module.path}:{expr.lineno}: SQL built from {ast.unparse(expr)!r}")
        return False

    def _function(self, name: str) -> tuple[Module, ast.FunctionDef | ast.AsyncFunctionDef] | None:
        """The module-level function ``name`` names here (defined in this module or imported), if any."""
        source = self.module if name not in self.module.imported else self.modules.get(self.module.imported[name])
        if source is None:
            return None
        found = [
            f for f in source.tree.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and f.name == name
        ]
        return (source, found[0]) if found else None

    def _safe_call(self, call: ast.Call, seen: frozenset[str]) -> bool:
        """A helper's result in SQL text (``even_column(conn)``): every value it returns must be vetted in its own
        body; a parameter that reaches one is judged by what this call passes for it."""
        assert isinstance(call.func, ast.Name)
        found = self._function(call.func.id)
        assert found is not None
        module, func = found
        if call.func.id in seen:
            return True  # recursion: judged by its other returns
        inner = Analysis(module, func, self.modules)
        returns = [n.value for n in ast.walk(func) if isinstance(n, ast.Return)]
        ok = bool(returns) and all(inner.safe(value, seen | {call.func.id}) for value in returns)
        self.problems.extend(inner.problems)
        for tainted in inner.tainted_params:
            arg = _argument(call, _params(func).index(tainted), tainted)
            ok = ok and isinstance(arg, ast.expr) and self.safe(arg, seen)
        return ok

    def _constant(self, name: str) -> bool:
        source = self.module if name in self.module.constants else self.modules.get(self.module.imported.get(name, ""))
        return source is not None and name in source.constants and self.safe(source.constants[name], frozenset({name}))

    def _safe_name(self, name: str, seen: frozenset[str]) -> bool:
        if name in seen:
            return True  # a loop (sql += ...): judged by its other values
        where = self.func.name if self.func is not None else "<module>"
        if (self.module.path, where, name) in VETTED:
            return True
        if self.func is not None:
            if name in _params(self.func):
                self.tainted_params.add(name)
                return True  # judged at the call sites
            values = list(self._assignments(name))
            if values:
                return all(self.safe(v, seen | {name}) for v in values)
            outer = _enclosing_outer(self.module, self.func)
            if outer is not None:  # a closure's variable: judged in the function around it
                return Analysis(self.module, outer, self.modules).safe(ast.Name(name, lineno=outer.lineno), seen)
        if name in self.module.constants:
            return self.safe(self.module.constants[name], seen | {name})
        source = self.modules.get(self.module.imported.get(name, ""))
        if source is not None and name in source.constants:
            return Analysis(source, None, self.modules).safe(source.constants[name], seen | {name})
        self.problems.append(f"{self.module.path}: {where}() puts {name!r} into SQL and the scan cannot vet it")
        return False


def _enclosing_outer(
    module: Module, func: ast.FunctionDef | ast.AsyncFunctionDef
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    outer = [
        f
        for f in module.functions
        if f is not func and f.lineno < func.lineno and (f.end_lineno or 0) >= (func.end_lineno or func.lineno)
    ]
    return max(outer, key=lambda f: f.lineno) if outer else None


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | bool | None:
    """The expression passed for a parameter; False when the call does not pass it."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
        if kw.arg is None:
            return None  # **mapping: cannot be followed
    if position < len(call.args):
        arg = call.args[position]
        return None if isinstance(arg, ast.Starred) else arg
    return False


@dataclass(frozen=True)
class Sink:
    """A call whose argument ``param`` (at ``position``) becomes SQL text."""

    position: int
    param: str
    is_method: bool = True
    defined_in: str = ""  # "" for the database driver's own methods

    def matches(self, module: Module, call: ast.Call) -> bool:
        if isinstance(call.func, ast.Attribute):
            owner = call.func.value
            return self.is_method or (isinstance(owner, ast.Name) and self.defined_in.endswith(f"/{owner.id}.py"))
        name = _call_name(call)
        return not self.is_method and self.defined_in in (module.path, module.imported.get(name or ""))


def scan() -> tuple[list[str], dict[str, int]]:
    """Problems found, and the number of SQL calls checked per sink name (for the test's own sanity check)."""
    modules = {m.path: m for m in _modules()}
    sinks: dict[str, Sink] = {m: Sink(i, "sql") for m, i in SQL_METHODS.items()}
    checked: dict[str, int] = {}
    problems: list[str] = []
    done: set[int] = set()
    while True:
        new_sinks: dict[str, Sink] = {}
        for module in modules.values():
            for call in (n for n in ast.walk(module.tree) if isinstance(n, ast.Call)):
                name = _call_name(call)
                if name not in sinks or id(call) in done or not sinks[name].matches(module, call):
                    continue
                done.add(id(call))
                sink = sinks[name]
                arg = _argument(call, sink.position, sink.param)
                if arg is False:
                    continue
                checked[name] = checked.get(name, 0) + 1
                func = _enclosing(module, call)
                analysis = Analysis(module, func, modules)
                if not analysis.safe(arg if isinstance(arg, ast.expr) else None):
                    problems.extend(analysis.problems or [f"{module.path}:{call.lineno}: {name}() argument unknown"])
                for tainted in analysis.tainted_params:
                    assert func is not None
                    params = _params(func)
                    if func.args.vararg is not None and tainted == func.args.vararg.arg:
                        problems.append(f"{module.path}: {func.name}() puts *{tainted} into SQL")
                        continue
                    is_method = bool(params) and params[0] in ("self", "cls")
                    index = params.index(tainted) - (1 if is_method else 0)
                    new_sinks[func.name] = Sink(index, tainted, is_method, module.path)
        fresh = {k: v for k, v in new_sinks.items() if k not in sinks}
        if not fresh:
            return problems, checked
        sinks.update(fresh)


def test_sql_is_built_only_from_literals_constants_and_vetted_names() -> None:
    problems, checked = scan()
    assert not problems, "SQL built from values the scan cannot vet:\n" + "\n".join(problems)
    # The scan must have seen the code it is meant to guard: the direct calls and the helpers they flow through.
    assert checked.get("execute", 0) > 100, checked
    assert {"dict_rows", "_scalar", "rows_by_step"} <= set(checked), checked


def _scan_source(code: str) -> list[str]:
    tree = ast.parse(code)
    module = Module("snippet.py", tree)
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            module.constants[node.targets[0].id] = node.value
    module.functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    problems = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == "execute"):
        analysis = Analysis(module, _enclosing(module, call), {})
        if not analysis.safe(call.args[0]):
            problems.extend(analysis.problems)
        problems.extend(f"parameter {p!r} (no callers here to vet)" for p in analysis.tainted_params)
    return problems


@pytest.mark.parametrize(
    "code",
    [
        "def f(conn, name):\n    conn.execute(f\"SELECT * FROM runs WHERE name='{name.upper()}'\")",
        'def f(conn, run):\n    conn.execute("SELECT * FROM runs WHERE name=" + run["name"])',
        "def f(conn, name):\n    conn.execute(\"SELECT * FROM runs WHERE name='%s'\" % str(name))",
        'def f(conn, name):\n    sql = "SELECT * FROM runs WHERE name={}".format(name)\n    conn.execute(sql)',
        'def f(conn, rows):\n    for r in rows:\n        conn.execute(f"DELETE FROM {r.table}")',
    ],
)
def test_the_scan_catches_interpolated_values(code: str) -> None:
    """The scan is not vacuous: each of these would let a value into SQL text."""
    assert _scan_source(code)


def test_the_scan_follows_a_helper_call_to_its_returns() -> None:
    """A helper returning only literals may build SQL; one returning its argument is as safe as what it is given."""
    vetted = (
        "def column(conn):\n"
        '    return "even" if conn.version >= 9 else "0"\n'
        "def f(conn):\n"
        '    conn.execute(f"SELECT {column(conn)} FROM chunks")\n'
    )
    assert _scan_source(vetted) == []
    passed_through = (
        "def quoted(text):\n"
        "    return text\n"
        "def f(conn, name):\n"
        '    conn.execute(f"SELECT * FROM runs WHERE name={quoted(name.upper())}")\n'
    )
    assert _scan_source(passed_through)


def test_the_scan_accepts_placeholders_and_constants() -> None:
    code = (
        'TABLE = "runs"\n'
        "def f(conn, ids, recent):\n"
        '    marks = ",".join("?" * len(ids))\n'
        '    where = " AND r.updated_at > ?" if recent else ""\n'
        '    conn.execute(f"SELECT * FROM {TABLE} r WHERE r.id IN ({marks})" + where, ids)\n'
    )
    assert _scan_source(code) == []


# ---------------------------------------------------------------------- the real pipeline
NASTY = [
    "'); DROP TABLE runs;--",
    '"; DELETE FROM chunks; --',
    "x' OR '1'='1",
    "Robert'); DROP TABLE projects;-- ",
    "%s %d {} ?",
    "名前\u202eevil",
]


def test_injection_shaped_names_round_trip_intact(daemon: DaemonProcess, shim: Any) -> None:
    project = "p'); DROP TABLE runs;--"
    run = shim.init(project=project, id="r'1;--", name=NASTY[0], config={n: n for n in NASTY}, tags=NASTY[:2])
    for step in range(3):
        run.log({**{f"loss {n}": float(step + i) for i, n in enumerate(NASTY)}, "note": NASTY[step]}, step=step)
    run.finish()
    conn = open_reader(daemon.home / "trackiod.db")
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "projects", "chunks", "keys", "texts"} <= tables
        (stored,) = list_runs(conn, project)
        assert (stored["project"], stored["run_key"], stored["name"]) == (project, "r'1;--", NASTY[0])
        assert stored["config"] == {n: n for n in NASTY}
        assert stored["tags"] == NASTY[:2]
        keys = run_keys(conn, stored["id"])
        for i, n in enumerate(NASTY):
            steps, _, values = read_series(conn, stored["id"], keys[f"loss {n}"][0])
            assert list(steps) == [0, 1, 2] and list(values) == [float(i), float(i + 1), float(i + 2)]
        assert read_texts(conn, stored["id"], keys["note"][0])[2] == NASTY[:3]
        assert [row[0] for row in conn.execute("SELECT COUNT(*) FROM runs")] == [1]
    finally:
        conn.close()
