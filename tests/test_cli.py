"""The `lab` CLI: every command works, explains itself, and bad input is one line with exit code 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import main
from lab.runs import LOCK_FILE

TINY = ["device=cpu", "tracking.mode=disabled", "trainer.progress=false", "trainer.max_steps=300",
        "trainer.eval_every=150", "trainer.eval_episodes=2", "agent.learning_starts=50", "model.hidden=[16]"]


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "cartpole"
    assert main(["train", "dqn/cartpole", *TINY, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_train_writes_a_complete_run(trained_run: Path, capsys) -> None:
    assert (trained_run / "config.yaml").is_file() and (trained_run / "run.json").is_file()
    assert (trained_run / "checkpoints" / "best.json").is_file()
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/mean_return" in r for r in records) and any("train/loss" in r for r in records)


def test_train_json_is_the_whole_stdout_with_the_progress_bar_on(tmp_path: Path) -> None:
    result = lab("train", "dqn/cartpole", *TINY, "trainer.progress=true", "--run-dir", str(tmp_path / "run"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["eval"]["eval/episodes"] == 2  # the bar went to stderr


def test_eval_json_has_the_protocol_keys(trained_run: Path, capsys) -> None:
    assert main(["eval", str(trained_run), "--episodes", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3
    assert {"mean_return", "std_return"} <= result.keys() and result["mean_return"] > 0


def test_plot_draws_a_png(trained_run: Path, capsys) -> None:
    assert main(["plot", str(trained_run)]) == 0
    png = Path(capsys.readouterr().out.strip())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_new_run_in_a_non_empty_dir_is_refused_and_nothing_is_touched(trained_run: Path, capsys) -> None:
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()}
    assert main(["train", "dqn/cartpole", *TINY, "--run-dir", str(trained_run)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert before == {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()}  # the lock too


def test_a_run_that_cannot_be_built_leaves_no_run_dir(tmp_path: Path, capsys) -> None:
    new = tmp_path / "new"
    assert main(["train", "dqn/cartpole", *TINY, "model.torso=natur_cnn", "--run-dir", str(new)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model.torso 'natur_cnn'" in err
    assert not new.exists()
    made_by_user = tmp_path / "empty"
    made_by_user.mkdir()
    assert main(["train", "dqn/cartpole", *TINY, "model.torso=natur_cnn", "--run-dir", str(made_by_user)]) == 2
    assert made_by_user.is_dir() and not any(made_by_user.iterdir())


def test_resume_of_a_finished_run_extends_it(trained_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    assert main(["train", "--resume", str(copy), "trainer.max_steps=400"]) == 0
    assert (copy / "checkpoints" / "step_000000400").is_dir()
    assert main(["train", "--resume", str(copy), "agent.gamma=0.5"]) == 2
    assert "only trainer.* and tracking.*" in capsys.readouterr().err


def test_resume_before_the_first_checkpoint_trains_from_the_start(trained_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    shutil.rmtree(copy / "checkpoints")  # as a run killed before its first checkpoint
    (copy / "checkpoints" / ".step_000000100.tmp-1").mkdir(parents=True)  # and a write the kill cut off
    (copy / "checkpoints" / ".step_000000100.tmp-1" / "state.json").write_text("{")
    old_log = (copy / "metrics.jsonl").read_text()
    old_id = json.loads((copy / "run.json").read_text())["run_id"]
    assert main(["train", "--resume", str(copy)]) == 0
    assert json.loads((copy / "run.json").read_text())["run_id"] != old_id  # a new W&B run: its steps start at 0
    assert "no checkpoint yet; training it from the start with its config (its old log is kept as " \
           "metrics-before-restart.jsonl)" in capsys.readouterr().err
    steps = [json.loads(line)["step"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 300  # a new log, not the old one continued
    assert (copy / "metrics-before-restart.jsonl").read_text() == old_log  # and the old one is not lost
    assert (copy / "checkpoints" / "step_000000300").is_dir()


def test_resume_finishes_a_run_killed_between_its_last_checkpoint_and_its_result(trained_run: Path, tmp_path: Path,
                                                                                   capsys) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    (copy / "result.json").unlink()  # as a kill during the final evaluation leaves it
    assert main(["train", "--resume", str(copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 300
    assert json.loads((copy / "result.json").read_text())["step"] == 300


def saved_files(run_dir: Path) -> dict[Path, int]:
    """Every file of a run and when it last changed, but the lock that says who trains it."""
    return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != LOCK_FILE}


def test_resume_asks_for_more_steps_than_done_and_changes_nothing(trained_run: Path, capsys) -> None:
    before = saved_files(trained_run)
    assert main(["train", "--resume", str(trained_run)]) == 2
    assert main(["train", "--resume", str(trained_run), "trainer.max_steps=200"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "has trained 300 steps of its trainer.max_steps=300 already" in err[0]
    assert "trainer.max_steps=N (N > 300)" in err[1]
    assert before == saved_files(trained_run)


def test_damaged_checkpoint_files_are_one_line_errors(trained_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    pointer = tmp_path / "pointer"
    shutil.copytree(trained_run, pointer)
    (pointer / "checkpoints" / "latest.json").write_text('{"name": "step_00')
    for args in (["eval", str(pointer), "--checkpoint", "latest"], ["train", "--resume", str(pointer)]):
        assert main(args) == 2
        assert "latest.json' is damaged" in capsys.readouterr().err
    weights = tmp_path / "weights"
    shutil.copytree(trained_run, weights)
    for model in (weights / "checkpoints").glob("*/model.safetensors"):
        model.write_bytes(b"")
    assert main(["eval", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged or incomplete" in err


def test_strings_that_look_like_numbers_survive_a_saved_config(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "dqn/cartpole", *TINY, 'tracking.tags=["1e-3", ".5e3"]', 'tracking.name="2e5"',
                 "--run-dir", str(run_dir)]) == 0
    assert main(["train", "--resume", str(run_dir), "trainer.max_steps=400", "--json"]) == 0  # reads its config back
    capsys.readouterr()
    assert main(["config", str(run_dir / "config.yaml"), "--json"]) == 0
    tracking = json.loads(capsys.readouterr().out)["tracking"]
    assert (tracking["tags"], tracking["name"]) == (["1e-3", ".5e3"], "2e5")


def test_a_run_dir_without_locks_still_trains_and_one_without_write_access_is_one_line(
        tmp_path: Path, monkeypatch, capsys) -> None:
    import errno
    import fcntl
    import os

    def no_locks(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    with monkeypatch.context() as patch:
        patch.setattr(fcntl, "flock", no_locks)  # NFS without lockd, some FUSE mounts
        assert main(["train", "dqn/cartpole", *TINY, "--run-dir", str(tmp_path / "nfs")]) == 0
        assert "note: cannot lock" in capsys.readouterr().err

    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK_FILE):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    assert main(["train", "dqn/cartpole", *TINY, "--run-dir", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot train in") and err.count("\n") == 1
    assert not (tmp_path / "ro").exists()  # the run dir this command made is gone again


def test_run_dir_that_cannot_be_a_run_is_one_line(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for run_dir, message in ((a_file, "is a file, not a directory"), (a_file / "sub", "cannot make run dir")):
        assert main(["train", "dqn/cartpole", *TINY, "--run-dir", str(run_dir)]) == 2
        assert message in capsys.readouterr().err
    assert main(["eval", str(a_file)]) == 2
    assert "is a file, not a run dir" in capsys.readouterr().err
    assert a_file.read_text() == "mine"


def test_a_crash_while_building_the_run_leaves_no_run_dir(tmp_path: Path, monkeypatch) -> None:
    import lab.trainer

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(lab.trainer, "Trainer", broken)
    with pytest.raises(RuntimeError):
        main(["train", "dqn/cartpole", *TINY, "--run-dir", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()  # so the same command works once the bug is fixed


@pytest.mark.parametrize("args, message", [
    (["train", "dqn/cartpole", "trainer.max_step=5"], "unknown key 'trainer.max_step' (did you mean 'max_steps'?)"),
    (["train", "nope/missing"], "config file 'nope/missing' not found"),
    (["eval", "/nonexistent/run"], "run dir '/nonexistent/run' does not exist"),
    (["eval", "."], "is not a run dir"),
    (["config", "dqn/cartpole", "env.id=Pong"], "unknown environment 'Pong'"),
    (["list", "bogus"], "invalid choice: 'bogus'"),
    (["train", "dqn/cartpole", "seed=-1"], "key 'seed' = -1: Input should be greater than or equal to 0"),
])
def test_bad_input_is_one_line_exit_2_no_traceback(args: list[str], message: str) -> None:
    result = lab(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if "invalid choice" not in message:  # argparse puts its usage line first
        assert result.stderr.strip().count("\n") == 0


def test_list_comes_from_registries(capsys) -> None:
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"dqn", "image_classification"} <= set(listing["tasks"])
    assert "dqn/cartpole" in listing["configs"] and "vision/digits" in listing["configs"]
    assert "lenet5" in listing["models"] and "CartPole-v1" in listing["envs"]
    assert "dqn" in listing["agents"]


def test_config_prints_the_resolved_config(capsys) -> None:
    assert main(["config", "dqn/cartpole", "optim.lr=0.005", "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["optim"]["lr"] == 0.005
    assert resolved["trainer"]["eval_episodes"] == 10  # a default filled in


@pytest.mark.parametrize("command", ["train", "eval", "config", "list", "plot", "runs"])
def test_help_explains_with_an_example(command: str) -> None:
    result = lab(command, "--help")
    assert result.returncode == 0
    assert "example" in result.stdout and f"lab {command}" in result.stdout
