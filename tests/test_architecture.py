"""README.md's architecture map, enforced: which folder imports which, where configs are
read, and no import cycles.

Every import statement of every module under lotto/ (including imports inside
functions) is parsed with `ast`; the rules below are README.md's map, with the
deviation argued in BUILD_NOTES.md (train -> data for the batch order and
inputs).

Cycles: the graph joins each lotto module to the lotto modules its import
statements name, wherever they stand (module level, functions, classes), except
under `if TYPE_CHECKING:` (never executed). Imports inside functions are
included: a lazy import only moves the failure of a cycle from load time to the
first call, and the two modules still need each other (the layering rules above
read the same statements). `from lotto.a import b` is an edge to the module
`lotto.a.b` when there is one, else to `lotto.a`; the parent packages a dotted
import initialises first are not edges (a package's `__init__` importing its own
modules would otherwise always be a cycle). Imports by name string
(`importlib.import_module`, the entry points of `lotto/__init__.py` and the job
registry) are not statements and not edges.
"""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "lotto"

# folder -> lotto folders it may import (itself always allowed).
ALLOWED = {
    "core": set(),
    "topologies": {"core"},
    "pruning": {"core"},
    "dynamic": {"core"},
    "sparse": {"core"},
    "models": {"core", "sparse"},
    "runtime": {"core"},
    "data": {"core"},
    # Condensed execution trains with the condensed layer kernels (sparse/ sits below train/
    # in the module map).
    "train": {"core", "dynamic", "runtime", "data", "sparse"},
    # Reports read the sparse-method registry (order, dense start, controls) rather than
    # repeating its lists.
    "reports": {"core", "runtime", "dynamic"},
}
FORBIDDEN_THIRD_PARTY = {
    "core": {"flax", "ml_collections", "orbax"},
    "train": {"ml_collections"},
    "runtime": {"ml_collections", "flax"},
    "data": {"ml_collections", "flax", "orbax"},
    "pruning": {"ml_collections", "flax", "orbax"},
    "dynamic": {"ml_collections", "flax", "orbax"},
    "reports": {"ml_collections", "flax", "orbax", "jax"},
}


def _modules():
  return sorted(p for p in PACKAGE.rglob("*.py"))


def _imports(path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      if node.module == "lotto":  # `from lotto import data` imports lotto.data
        yield from (f"lotto.{alias.name}" for alias in node.names)


def _folder(path):
  parts = path.relative_to(PACKAGE).parts
  return parts[0] if len(parts) > 1 else None


def test_every_folder_of_the_module_map_exists():
  for folder in ("core", "pruning", "dynamic", "models", "train", "runtime", "data", "jobs",
                 "reports"):
    assert (PACKAGE / folder / "__init__.py").exists(), folder
  assert (PACKAGE / "main.py").exists()


def _violations(path, folder=None):
  folder = folder or _folder(path)
  if folder not in ALLOWED:
    return []  # jobs/ may import everything; main.py and __init__.py are the edge
  where = path.relative_to(PACKAGE) if path.is_relative_to(PACKAGE) else path.name
  allowed = ALLOWED[folder] | {folder}
  found = []
  for name in _imports(path):
    top = name.split(".")[0]
    if top == "lotto" and (name.split(".")[1] if "." in name else None) not in allowed:
      found.append(f"{where} imports {name}")
    if top in FORBIDDEN_THIRD_PARTY.get(folder, ()):
      found.append(f"{where} imports {name}")
  tree = ast.parse(path.read_text())
  names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
  names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
  if "ConfigDict" in names:
    found.append(f"{where} handles a ConfigDict")
  return found


def test_imports_follow_the_module_map():
  violations = [v for path in _modules() for v in _violations(path)]
  assert not violations, violations


def test_the_rule_checker_catches_an_upward_import(tmp_path):
  # The checker itself can fail: a core module importing flax and lotto.train is caught.
  bad = tmp_path / "probe.py"
  bad.write_text("import flax\nfrom lotto.train import loop\n")
  assert _violations(bad, folder="core") == ["probe.py imports flax",
                                             "probe.py imports lotto.train"]


def test_only_the_checkpoints_module_imports_orbax():
  users = [str(p.relative_to(PACKAGE)) for p in _modules()
           if any(n.split(".")[0] == "orbax" for n in _imports(p))]
  assert users == ["runtime/checkpoints.py"]


def test_only_the_config_edge_imports_ml_collections():
  users = {str(p.relative_to(PACKAGE)) for p in _modules()
           if any(n.split(".")[0] == "ml_collections" for n in _imports(p))}
  assert users and all(u.startswith("jobs/") or u == "main.py" for u in users), users


def test_modules_stay_readable_in_one_sitting():
  long = {str(p.relative_to(PACKAGE)): n for p in _modules()
          if (n := len(p.read_text().splitlines())) > 400}
  assert not long, long



def _module_name(path, package):
  parts = path.relative_to(package.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_of(path, package, modules):
  """{module of `modules` that the module at `path` imports: the line of its first import}."""
  own = _module_name(path, package).split(".")
  if path.name != "__init__.py":
    own = own[:-1]  # relative imports start from the module's package

  def imported(node):
    if isinstance(node, ast.Import):
      return [alias.name for alias in node.names]
    module = ".".join(own[:len(own) - node.level + 1] + [node.module or ""]).strip(".") \
        if node.level else node.module
    # `from a import b` imports the module a.b if there is one, else an attribute of a.
    return [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
            for a in node.names]

  def visit(node):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield from ((name, node.lineno) for name in imported(node) if name in modules)
      return
    for child in ast.iter_child_nodes(node):
      if isinstance(node, ast.If) and child in node.body and "TYPE_CHECKING" in ast.unparse(
          node.test):
        continue
      yield from visit(child)

  found = {}
  for name, line in visit(ast.parse(path.read_text())):
    found[name] = min(line, found.get(name, line))
  return found


def import_graph(package=PACKAGE):
  """{module: {module of `package` it imports: the line of that import}}."""
  paths = {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}
  return {name: {target: line for target, line in _imports_of(path, package, paths).items()
                 if target != name}
          for name, path in paths.items()}


def import_cycles(graph):
  """One cycle [a, b, ..., a] per strongly connected group of modules (Tarjan), sorted."""
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def connect(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph.get(node, ())):
      if target not in index:
        connect(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      group = set()
      while True:
        member = stack.pop()
        on_stack.discard(member)
        group.add(member)
        if member == node:
          break
      if len(group) > 1 or node in graph.get(node, ()):
        groups.append(group)

  for node in sorted(graph):
    if node not in index:
      connect(node)
  return sorted(_a_cycle(graph, group) for group in groups)


def _a_cycle(graph, group):
  """A shortest cycle through the group's first module (breadth-first), closed."""
  start = min(group)
  paths = {start: [start]}
  frontier = [start]
  while frontier:
    following = []
    for node in frontier:
      for target in sorted(set(graph[node]) & group):
        if target == start:
          return paths[node] + [start]
        if target not in paths:
          paths[target] = paths[node] + [target]
          following.append(target)
    frontier = following
  raise AssertionError(f"no cycle in {group}")


def _described(graph, cycle, package=PACKAGE):
  """"a (a.py:3) -> b (b/__init__.py:7) -> a": each step with the line that imports."""
  def where(name):
    path = package.parent.joinpath(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return path.relative_to(package.parent)
  steps = [f"{a} ({where(a)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
  return " -> ".join(steps + [cycle[-1]])


def test_no_import_cycles():
  graph = import_graph()
  cycles = import_cycles(graph)
  assert not cycles, "import cycles:\n" + "\n".join(_described(graph, c) for c in cycles)


def test_the_cycle_check_finds_cycles_in_a_module_graph():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"a"}}
  assert import_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
  assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_cycle_check_reads_import_statements_from_files(tmp_path):
  # Modules that import each other are caught through a plain import, a `from` import of
  # a module, a relative one and a lazy one (inside a function), as the jobs `imp` and
  # `imp_population` once did; an import under TYPE_CHECKING and a module's import of an
  # attribute (not a module) of a package are no more than what they name.
  package = tmp_path / "probe"
  (package / "sub").mkdir(parents=True)
  (package / "__init__.py").write_text("from probe import a\n")
  (package / "a.py").write_text("import probe.b\nVALUE = 1\n")
  (package / "b.py").write_text("try:\n  from probe.sub import c\nexcept ImportError:\n  pass\n")
  (package / "sub" / "__init__.py").write_text("")
  (package / "sub" / "c.py").write_text("from ..a import VALUE\n")
  (package / "imp.py").write_text("def run():\n  from probe import imp_population\n")
  (package / "imp_population.py").write_text("from probe.imp import run\n")
  (package / "typed.py").write_text(
      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n  from probe import imp\n"
      "from probe.sub import NAME\n")
  graph = import_graph(package)
  assert {name: set(targets) for name, targets in graph.items()} == {"probe": {"probe.a"}, "probe.a": {"probe.b"}, "probe.b": {"probe.sub.c"},
                   "probe.sub": set(), "probe.sub.c": {"probe.a"},
                   "probe.imp": {"probe.imp_population"}, "probe.imp_population": {"probe.imp"},
                   "probe.typed": {"probe.sub"}}
  assert import_cycles(graph) == [["probe.a", "probe.b", "probe.sub.c", "probe.a"],
                                  ["probe.imp", "probe.imp_population", "probe.imp"]]
  assert _described(graph, import_cycles(graph)[1], package) == (
      "probe.imp (probe/imp.py:2) -> probe.imp_population (probe/imp_population.py:1) -> "
      "probe.imp")
