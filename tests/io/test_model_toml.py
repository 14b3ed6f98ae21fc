"""Model TOML files: names and sizes refused when the file is read, one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipesim.errors import InputError
from pipesim.io.readers import load_gpu_toml, load_model_toml
from pipesim.io.scenario_file import parse_experiment
from pipesim.specs.model import ModelSpec

SHAPE = "num_layers = 2\nhidden_size = 64\nnum_attention_heads = 4\nvocab_size = 100\nseq_length = 32\n"


@pytest.mark.parametrize("name", ['""', '"   "', '"a\\tb"', '"a\\nb"'])
def test_an_empty_or_multi_line_model_name_is_refused(tmp_path: Path, name: str) -> None:
    f = tmp_path / "m.toml"
    f.write_text(f"name = {name}\n{SHAPE}")
    with pytest.raises(InputError, match=r"key 'name' = .* must be a non-empty name on one line") as err:
        load_model_toml(f)
    assert str(err.value).startswith(f"{f}: ") and "\n" not in str(err.value)


def test_a_missing_name_is_the_files_stem(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    f.write_text(SHAPE)
    assert load_model_toml(f).name == "tiny"


def test_an_experiment_files_model_and_gpu_need_names_too(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^exp.toml: key 'model.name' = '' must be a non-empty name"):
        parse_experiment(f'[model]\nname = ""\n{SHAPE}', "exp.toml", {})
    g = tmp_path / "g.toml"
    g.write_text('base = "h100-sxm"\nname = ""\n')
    with pytest.raises(InputError, match=r"key 'name' = '' must be a non-empty name on one line"):
        load_gpu_toml(g)


def test_the_spec_itself_refuses_an_empty_name() -> None:
    with pytest.raises(InputError, match="name must be a non-empty name"):
        ModelSpec("", 2, 64, 4, 100, 16, 256, 4)
