"""Walls between modules, read from the source (nothing is imported or run).

Every module of the package (``bindings/`` is ``pmrisk``, ``kernel/`` is ``pmrisk.kernel``;
sub-packages at any depth are walked too) is parsed, and its imports of other ``pmrisk``
modules are collected, at module level and inside functions alike.  Two rules:

1. **Public names only.**  A module never uses another module's underscore name:
   ``from .x import _y``, ``from pmrisk.x import _y`` and ``x._y`` (``x`` an imported pmrisk
   module) all fail.  Dunder names (``__version__``) are public.  A *module* whose own name
   starts with an underscore (``_arrow``, ``kernel/_config``) may be imported: the rule is about
   the names a module keeps to itself, not about file names; its public names are its
   interface.
2. **No import cycles** among pmrisk modules.  An edge ``a -> b`` is any import of ``b`` by
   ``a``, at module level or inside a function: a deferred import still couples the two
   modules, it only hides the cycle from the interpreter, so it counts.  ``ALLOWED_EDGES`` lists
   the deferred imports kept on purpose, each with its reason; it is empty, and an entry must
   name an edge that exists (a stale one fails).  Importing ``pmrisk.a.b`` runs the package
   ``pmrisk.a`` first, but that implicit step is no edge: a package's ``__init__`` gathers the
   public API from its modules, and the modules do not depend on it unless they import a name
   from it (``from .. import x`` with ``x`` not a module is an edge to the package).
   Imports under ``if TYPE_CHECKING:`` are not edges (nothing runs them).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"bindings": "pmrisk", "kernel": "pmrisk.kernel"}

# (importer, imported) -> why a deferred import is kept although it closes a cycle
ALLOWED_EDGES = {}


def _modules():
    """Module name -> (path, is_package) for every .py file under the package roots."""
    out = {}
    for folder, name in PACKAGES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            out[".".join([name, *parts])] = (path, is_pkg)
    return out


MODULES = _modules()


def _type_checking(node):
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk(tree):
    """Every node but those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _base(module, is_pkg, node):
    """The absolute module an ``ImportFrom`` names (None when it is not a pmrisk one)."""
    if node.level == 0:
        name = node.module or ""
        return name if name == "pmrisk" or name.startswith("pmrisk.") else None
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


class _Imports:
    """A module's pmrisk imports: edges (imported module, line) and private names used."""

    def __init__(self, module, source=None):
        path, is_pkg = MODULES[module]
        tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
        self.edges, self.private, bound = [], [], {}
        for node in _walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "pmrisk" or a.name.startswith("pmrisk."):
                        self.edges.append((a.name, node.lineno))
                        if a.asname:
                            bound[a.asname] = a.name
                        # `import pmrisk.x` binds `pmrisk`: attribute chains are read below
                        else:
                            bound.setdefault("pmrisk", "pmrisk")
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, is_pkg, node)
                if base is None:
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in MODULES:              # `from . import x`: the module x
                        self.edges.append((sub, node.lineno))
                        bound[a.asname or a.name] = sub
                        continue
                    self.edges.append((base, node.lineno))
                    if _private(a.name):
                        self.private.append((f"{base}.{a.name}", node.lineno))
        for node in _walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                target = _dotted(node.value, bound)
                if target is not None and f"{target}.{node.attr}" not in MODULES:
                    self.private.append((f"{target}.{node.attr}", node.lineno))


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node, bound):
    """The pmrisk module an expression ``a.b.c`` denotes, if it is one imported here."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value, bound)
        if head is not None and f"{head}.{node.attr}" in MODULES:
            return f"{head}.{node.attr}"
    return None


IMPORTS = {m: _Imports(m) for m in MODULES}


def test_the_walk_sees_the_package():
    # the walk is not vacuous: the known modules and imports are there
    assert {"pmrisk", "pmrisk.errors", "pmrisk.kernel", "pmrisk.kernel.revalue"} <= set(MODULES)
    assert "pmrisk.errors" in [m for m, _ in IMPORTS["pmrisk"].edges]
    assert sum(len(i.edges) for i in IMPORTS.values()) > 100


def test_the_walk_sees_private_names():
    # modules that stay where they are in any layout: the package, errors, results, samples
    # and the kernel
    source = ("from .errors import _restore, MarginError\n"
              "from . import results\n"
              "import pmrisk.samples as s\n"
              "from .kernel import _config\n"
              "from . import __version__\n"
              "def f():\n"
              "    from pmrisk.kernel._config import _hidden\n"
              "    return results._timed, s._check, results.MarginResult, _config.X\n")
    imp = _Imports("pmrisk", source)        # read as if it were the package's __init__
    assert sorted(name for name, _ in imp.private) == [
        "pmrisk.errors._restore", "pmrisk.kernel._config._hidden", "pmrisk.results._timed",
        "pmrisk.samples._check"]
    assert {m for m, _ in imp.edges} == {"pmrisk.errors", "pmrisk.results", "pmrisk.samples",
                                         "pmrisk.kernel._config", "pmrisk"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_of_other_modules(module):
    bad = [f"line {n}: {name}" for name, n in IMPORTS[module].private]
    assert not bad, f"{module} uses another module's private names: {bad}"


def _graph():
    graph = {m: set() for m in MODULES}
    for m, imp in IMPORTS.items():
        for target, _ in imp.edges:
            if target in MODULES and target != m:
                graph[m].add(target)
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = _graph()
    for (a, b), why in ALLOWED_EDGES.items():
        assert b in graph.get(a, ()), f"stale ALLOWED_EDGES entry {a} -> {b} ({why})"
        graph[a].discard(b)
    cycles = _cycles(graph)
    detail = []
    for comp in cycles:
        inside = set(comp)
        for m in comp:
            lines = sorted({n for t, n in IMPORTS[m].edges if t in inside and t != m})
            targets = sorted(graph[m] & inside)
            detail.append(f"{m} -> {targets} (lines {lines})")
    assert not cycles, "import cycles among pmrisk modules:\n" + "\n".join(detail)
