"""Configs: YAML + overrides validated into typed objects, and one clear error for each kind of bad input."""
import subprocess
import sys

import pytest

from lab.config import apply_overrides, load_config, resolve_config_path
from lab.errors import LabError


def error_of(name: str, overrides: list[str]) -> str:
    with pytest.raises(LabError) as info:
        load_config(name, overrides)
    return str(info.value)


def test_overrides_are_typed_and_nested() -> None:
    config = load_config("dqn/cartpole", ["optim.lr=3e-4", "model.hidden=[64,32]", "seed=7", "trainer.max_steps=123"])
    assert config.optim.lr == pytest.approx(3e-4)
    assert config.model.hidden == [64, 32]
    assert (config.seed, config.trainer.max_steps) == (7, 123)
    assert config.tracking.mode == "offline"  # the default: no account, no network


def test_numbers_in_e_notation_are_numbers_in_files_and_overrides(tmp_path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text("task: dqn\nenv: {id: CartPole-v1}\ntrainer: {max_steps: 2e4, eval_every: 1_000}\n"
                           "optim: {lr: 3e-4}\n")
    config = load_config(str(config_file), ["agent.buffer_size=1e5", "tracking.name=1e5x"])
    assert (config.trainer.max_steps, config.trainer.eval_every, config.agent.buffer_size) == (20000, 1000, 100000)
    assert config.optim.lr == pytest.approx(3e-4) and config.tracking.name == "1e5x"
    assert "Input should be a valid integer" in error_of(str(config_file), ["trainer.max_steps=1.5e0"])


def test_a_config_that_is_not_utf8_is_one_line(tmp_path) -> None:
    config_file = tmp_path / "latin1.yaml"
    config_file.write_bytes("task: dqn\ntracking: {name: café}\n".encode("latin-1"))
    assert "is not UTF-8 text (byte 0xe9 at offset 30); save it as UTF-8" in error_of(str(config_file), [])


def test_config_names_resolve_with_or_without_suffix(tmp_path) -> None:
    by_name = resolve_config_path("dqn/cartpole")
    assert by_name.name == "cartpole.yaml" and by_name.parent.name == "dqn"
    assert resolve_config_path("dqn/cartpole.yaml") == by_name
    with pytest.raises(LabError, match="did you mean 'dqn/cartpole'"):
        resolve_config_path("dqn/cartpol")


@pytest.mark.parametrize("override, expected", [
    ("trainer.max_step=10", "unknown key 'trainer.max_step' (did you mean 'max_steps'?)"),
    ("agent.gama=0.9", "unknown key 'agent.gama' (did you mean 'gamma'?)"),
    ("trainer.max_steps=abc", "key 'trainer.max_steps' = 'abc'"),
    ("trainer.max_steps=-5", "key 'trainer.max_steps' = -5: Input should be greater than 0"),
    ("optim.name=adma", "(did you mean 'adam' or 'radam'?)"),
    ("device=gpu", "key 'device' = 'gpu'"),
    ("env.id=CartPol-v1", "unknown environment 'CartPol-v1' (did you mean 'CartPole-v1'"),
    ("seed.x=1", "'seed' is a value, not a section"),
    ("novalue", "must look like key=value"),
])
def test_bad_values_name_the_key_and_the_fix(override: str, expected: str) -> None:
    message = error_of("dqn/cartpole", [override])
    assert expected in message
    assert "\n" not in message


def test_unknown_task_and_unparsable_yaml(tmp_path) -> None:
    bad_task = tmp_path / "bad_task.yaml"
    bad_task.write_text("task: dqm\n")
    assert "unknown task 'dqm' (did you mean 'dqn'?)" in error_of(str(bad_task), [])
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: dqn\nenv: [unclosed\n")
    message = error_of(str(broken), [])
    assert "cannot parse YAML" in message and "line" in message
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- a\n- b\n")
    assert "must be a mapping" in error_of(str(not_mapping), [])
    assert "not found" in error_of(str(tmp_path / "missing.yaml"), [])


def test_apply_overrides_creates_sections() -> None:
    assert apply_overrides({}, ["a.b.c=1", "a.d=[1, 2]", "e=hello"]) == {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": "hello"}


def test_a_dqn_config_loads_without_the_nlp_and_vision_packages() -> None:
    """Registries import the lab's packages only until the name is found, and built-in commands skip the ones
    packages register: `lab config dqn/cartpole` (as `lab train` would load it) never imports the NLP stack."""
    probe = ("import contextlib, io, sys; from lab.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()): code = main(['config', 'dqn/cartpole', '--json'])\n"
             "print(code, sorted(m for m in ('nlp', 'vision', 'tokenizers', 'agents') if m in sys.modules))\n"
             "from lab.registry import TASKS; print('translation' in TASKS.names())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["0", "['agents']", "True"]
