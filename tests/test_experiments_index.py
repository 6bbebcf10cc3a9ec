"""experiments/README.md lists every study, and every command in it names what exists."""
import re

from tests.conftest import REPO

EXPERIMENTS = REPO / "experiments"
INDEX = (EXPERIMENTS / "README.md").read_text()


def test_every_study_folder_is_listed():
  folders = sorted(p.name for p in EXPERIMENTS.iterdir() if p.is_dir() and
                   not p.name.startswith((".", "__")))
  listed = set(re.findall(r"^\| \[(\w+)\]\(", INDEX, flags=re.MULTILINE))
  assert folders and set(folders) == listed, (folders, listed)


def test_every_command_names_a_config_or_script_that_exists():
  paths = re.findall(r"(?:--config=|python |--execute )(experiments/[\w/.]+)", INDEX)
  assert len(paths) >= 6, paths
  missing = [p for p in paths if not (REPO / p).is_file()]
  assert not missing, missing


def test_every_thumbnail_and_readme_link_exists():
  targets = re.findall(r'src="([^"]+)"', INDEX) + re.findall(r"\]\(([^)]+)\)", INDEX)
  assert targets
  missing = [t for t in targets if not (EXPERIMENTS / t).exists()]
  assert not missing, missing
