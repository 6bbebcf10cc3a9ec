"""The Colab notebook runs headless on CPU (tiny settings) and shows its figures; its
jupytext twin holds the same cells, so the reviewed text is what runs."""
import base64
import os

import jupytext
import nbclient
import nbformat
import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / "experiments" / "notebooks" / "lotto_colab.ipynb"
TWIN = REPO / "experiments" / "notebooks" / "lotto_colab.md"


def _cells(notebook):
  return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", [])))
          for c in notebook.cells]


def test_notebook_and_its_twin_hold_the_same_cells():
  assert _cells(nbformat.read(NOTEBOOK, as_version=4)) == _cells(jupytext.read(TWIN))


def _install_cell():
  cells = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells
           if "colab-only" in c.metadata.get("tags", []) and "LOTTO_SOURCE =" in c.source]
  assert len(cells) == 1
  return cells[0].source


class _FakeIPython:
  def __init__(self):
    self.magics = []

  def run_line_magic(self, name, line):
    self.magics.append((name, line))


@pytest.mark.parametrize("source, requirement", [
    ("git+https://github.com/someone/lotto", "lotto[digits] @ git+https://github.com/someone/lotto"),
    ("/content/lotto-0.1.0-py3-none-any.whl", "/content/lotto-0.1.0-py3-none-any.whl[digits]"),
    ("/content/lotto", "/content/lotto[digits]")])
def test_the_install_cell_installs_lotto_from_its_one_variable(source, requirement):
  ipython = _FakeIPython()
  code = _install_cell().replace('LOTTO_SOURCE = "git+https://github.com/OWNER/lotto"',
                                 f"LOTTO_SOURCE = {source!r}")
  exec(compile(code, "install_cell", "exec"), {"get_ipython": lambda: ipython})  # pylint: disable=exec-used
  assert ipython.magics == [("pip", f"install -q '{requirement}'")]


def test_the_install_cell_with_its_placeholder_stops_with_one_sentence():
  ipython = _FakeIPython()
  namespace = {"get_ipython": lambda: ipython}
  with pytest.raises(Exception) as error:
    exec(compile(_install_cell(), "install_cell", "exec"), namespace)  # pylint: disable=exec-used
  assert type(error.value).__name__ == "LottoSourceNotSet" and ipython.magics == []
  shown = error.value._render_traceback_()  # what IPython prints instead of a traceback
  assert shown == [str(error.value)] and str(error.value).startswith("Set LOTTO_SOURCE in this "
                                                                     "cell to where lotto comes")


# nbclient closes its kernel's event loop at teardown; pytest then reports the loop's
# "Event loop is closed" from garbage collection: noise, not a failure of the notebook.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("device_count", [1, 3])
def test_notebook_runs_on_cpu_and_produces_its_figures(tmp_path, monkeypatch, device_count):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  notebook.cells = [c for c in notebook.cells if "colab-only" not in c.metadata.get("tags", [])]
  monkeypatch.setenv("LOTTO_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("LOTTO_NOTEBOOK_WORKDIR", str(tmp_path / "runs"))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO),
                                                                 os.environ.get("PYTHONPATH")])))
  # Several simulated devices and no 64-bit arithmetic, as on a TPU runtime.
  monkeypatch.setenv("XLA_FLAGS", f"--xla_force_host_platform_device_count={device_count} "
                     + os.environ.get("XLA_FLAGS", ""))
  monkeypatch.setenv("JAX_ENABLE_X64", "0")
  nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  images = [base64.b64decode(output["data"]["image/png"])
            for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if "image/png" in output.get("data", {})]
  assert len(images) == 5 and all(i[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
  text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.outputs)
  assert "backend: cpu" in text and f"devices: {device_count}" in text
  # The smoke run's global batch of 50 rounded up to divide over the devices.
  assert f"global batch: {-(-50 // device_count) * device_count}" in text
  assert "== level 2/2 done" in text
  assert "[6/6] random_d0.02_none_s0" in text  # the PaI sweep: 3 methods x 2 densities
  assert "hidden_0/kernel" in text  # the per-layer density table
  assert "RigL at 10 % density: final test accuracy" in text
  assert (tmp_path / "runs" / "imp" / "level_2" / "branches" / "random").is_dir()
