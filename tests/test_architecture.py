"""README.md's architecture map, enforced: which folder imports which, and where configs are read.

Every import statement of every module under lotto/ (including imports inside
functions) is parsed with `ast`; the rules below are README.md's map, with the
deviation argued in BUILD_NOTES.md (train -> data for the batch order and
inputs). pruning may still import runtime, though it no longer does (the CPU
loop policy that needed runtime.devices is gone).
"""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "lotto"

# folder -> lotto folders it may import (itself always allowed).
ALLOWED = {
    "core": set(),
    "topologies": {"core"},
    "pruning": {"core", "runtime"},
    "dynamic": {"core"},
    "sparse": {"core"},
    "models": {"core", "sparse"},
    "runtime": {"core"},
    "data": {"core"},
    "train": {"core", "dynamic", "runtime", "data"},
    "reports": {"core", "runtime"},
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
