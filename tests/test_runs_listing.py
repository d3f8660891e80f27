"""`lab runs`: each run's progress, best evaluation and outcome, read from what the trainer leaves on disk."""
import json
import signal
from pathlib import Path

import pytest

from lab.checkpoint import find_checkpoint
from lab.cli import main
from lab.config import load_config
from lab.runs import RESULT_FILE, create_run_dir, describe_run, list_runs
from lab.trainer import Trainer, TrainingInterrupted
from tests.conftest import TINY_DQN


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """Four runs: finished, stopped early by trainer.stop_at, interrupted at step 300, and never started."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "dqn/cartpole", *TINY_DQN, "--run-dir", str(root / "a-finished")]) == 0
    assert main(["train", "dqn/cartpole", *TINY_DQN, "trainer.stop_at=5", "--run-dir", str(root / "b-early")]) == 0
    config = load_config("dqn/cartpole", TINY_DQN)
    create_run_dir(root / "c-stopped", config, "dqn/cartpole")
    stop = [lambda t: t.request_stop(signal.SIGTERM) if t.step >= 300 else None]
    with pytest.raises(TrainingInterrupted):
        Trainer(config, root / "c-stopped", callbacks=stop).fit()
    create_run_dir(root / "d-new", config, "dqn/cartpole")
    (root / "not-a-run").mkdir()
    return root


def test_each_run_has_its_status_progress_and_best(runs_root: Path) -> None:
    rows = {Path(row["run"]).name: row for row in list_runs(runs_root)}
    assert list(rows) == ["a-finished", "b-early", "c-stopped", "d-new"]  # oldest first; not-a-run left out
    finished = rows["a-finished"]
    best = json.loads((runs_root / "a-finished" / "checkpoints" / "best.json").read_text())
    assert (finished["status"], finished["step"], finished["max_steps"]) == ("finished", 600, 600)
    assert (finished["best_metric"], finished["best"], finished["best_step"]) == (best["metric"], best["value"],
                                                                                  best["step"])
    assert rows["b-early"]["status"] == "early stop" and "eval/mean_return" in rows["b-early"]["early_stop"]
    assert rows["b-early"]["step"] < 600
    assert (rows["c-stopped"]["status"], rows["c-stopped"]["step"]) == ("unfinished", 300)
    assert rows["c-stopped"]["last_log_s"] >= 0
    assert (rows["d-new"]["status"], rows["d-new"]["step"], rows["d-new"]["best"]) == ("not started", None, None)


def test_a_result_left_before_a_resume_does_not_make_the_run_finished(runs_root: Path, tmp_path: Path) -> None:
    stopped = runs_root / "c-stopped"
    result = json.loads((runs_root / "a-finished" / RESULT_FILE).read_text())
    assert result["step"] == 600 and "finished" in result
    (stopped / RESULT_FILE).write_text(json.dumps({**result, "step": 200}))
    try:
        assert describe_run(stopped)["status"] == "unfinished"
    finally:
        (stopped / RESULT_FILE).unlink()


def test_resuming_to_the_end_makes_it_finished(runs_root: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / "resumed"
    shutil.copytree(runs_root / "c-stopped", run_dir)
    Trainer(load_config("dqn/cartpole", TINY_DQN), run_dir).fit(resume_from=find_checkpoint(run_dir, "latest"))
    assert describe_run(run_dir)["status"] == "finished"


def test_lab_runs_table_and_json(runs_root: Path, capsys) -> None:
    assert main(["runs", str(runs_root)]) == 0
    out = capsys.readouterr().out
    for text in ("a-finished", "finished", "early stop", "300/600", "not started", "lab train --resume"):
        assert text in out, text
    assert main(["runs", str(runs_root / "a-finished"), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["status"] == "finished"


def test_lab_runs_on_an_empty_or_missing_folder(tmp_path: Path, capsys) -> None:
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs in" in capsys.readouterr().out
    assert main(["runs", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a directory" in err


def test_odd_run_dirs_are_listed_as_unreadable_and_the_rest_still_shows(runs_root: Path, tmp_path: Path,
                                                                        capsys) -> None:
    import shutil

    for name, damage in [("torn", lambda d: (d / "run.json").write_text('{"task": "dq')),
                         ("list", lambda d: (d / "run.json").write_text("[1, 2]")),
                         ("pointer", lambda d: (d / "checkpoints" / "latest.json").write_text("{")),
                         ("result", lambda d: (d / "result.json").write_text('{"no": "step"}'))]:
        shutil.copytree(runs_root / "a-finished", tmp_path / name)
        damage(tmp_path / name)
    shutil.copytree(runs_root / "b-early", tmp_path / "fine")
    rows = {Path(row["run"]).name: row for row in list_runs(tmp_path)}
    assert rows["fine"]["status"] == "early stop"
    assert all(rows[name]["status"].startswith("unreadable: ") for name in ("torn", "list", "pointer"))
    assert rows["result"]["status"] == "finished"  # a result without its step: the steps done decide
    assert main(["runs", str(tmp_path)]) == 0
    assert "unreadable" in capsys.readouterr().out


def test_lab_runs_before_any_run(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/ folder here yet
    assert main(["runs"]) == 0
    assert "no runs in runs/ yet" in capsys.readouterr().out


def test_a_run_made_before_a_change_of_meaning_reads_as_it_was_made(tmp_path: Path, capsys) -> None:
    """Run format 1: data.channels applied to image folders only, so a digits run saved `channels: 3` and
    trained on grey images. It still evaluates, on grey images, and its config file is left as it is."""
    import yaml

    from lab.runs import open_run
    from tests.conftest import TINY_DIGITS

    run_dir = tmp_path / "old-digits"
    assert main(["train", "vision/digits", *TINY_DIGITS, "--run-dir", str(run_dir)]) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"]["channels"] = 3  # what the old default wrote
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    info = json.loads((run_dir / "run.json").read_text())
    assert info.pop("format") == 2
    (run_dir / "run.json").write_text(json.dumps(info))
    assert open_run(run_dir)[0].data.channels is None
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] > 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["channels"] == 3


def test_a_resume_that_rewrites_the_config_records_todays_format(runs_root: Path, tmp_path: Path) -> None:
    import shutil

    from lab.runs import RUN_FORMAT, open_run, save_resumed_config

    old = tmp_path / "old"
    shutil.copytree(runs_root / "a-finished", old)
    info = json.loads((old / "run.json").read_text())
    del info["format"]
    (old / "run.json").write_text(json.dumps(info))
    config, info = open_run(old, ["trainer.max_steps=700"])
    save_resumed_config(old, config, info)
    assert json.loads((old / "run.json").read_text())["format"] == RUN_FORMAT
    assert open_run(old)[0].trainer.max_steps == 700


def test_a_damaged_run_record_is_a_one_line_error(runs_root: Path, tmp_path: Path, capsys) -> None:
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(runs_root / "a-finished", damaged)
    (damaged / "run.json").write_text("[1, 2]")
    assert main(["eval", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json is not a run's record" in err


def test_a_run_being_trained_is_locked_and_listed_as_training(tmp_path: Path, capsys) -> None:
    import os
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "live"
    root = Path(__file__).resolve().parent.parent
    live = subprocess.Popen([sys.executable, "-m", "lab", "train", "dqn/cartpole", *TINY_DQN,
                             "trainer.max_steps=1000000", "trainer.checkpoint_every=200", "--run-dir", str(run_dir)],
                            cwd=root, env={**os.environ, "WANDB_MODE": "disabled"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (run_dir / "checkpoints" / "latest.json").is_file():
            assert live.poll() is None and time.time() < deadline, live.stderr and live.stderr.read()
            time.sleep(0.05)
        assert describe_run(run_dir)["status"] == "training"
        before = (run_dir / "config.yaml").read_text()
        assert main(["train", "--resume", str(run_dir), "trainer.max_steps=2000000"]) == 2
        assert f"is being trained by another process (pid {live.pid} on " in capsys.readouterr().err
        assert (run_dir / "config.yaml").read_text() == before  # the refused resume changed nothing
    finally:
        live.send_signal(signal.SIGTERM)
        live.communicate(timeout=60)
    assert live.returncode == 128 + signal.SIGTERM
    assert describe_run(run_dir)["status"] == "unfinished"  # the lock went with the process
