"""`lab plot` over one or several runs, and the metrics log it reads: training time that survives a resume,
a torn last line that does not break a resume."""
import json
import shutil
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import LabError
from lab.plotting import default_output, run_series, select_metrics, smoothed
from lab.tracking import METRICS_FILE, Tracker, read_metrics, truncate_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(run_dir: Path, records: list[dict], tail: str = "") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny CartPole run and a copy of it whose log has only every other record and no loss."""
    from tests.conftest import TINY_DQN

    root = tmp_path_factory.mktemp("plot")
    first = root / "seed1"
    assert main(["train", "dqn/cartpole", *TINY_DQN, "--run-dir", str(first)]) == 0
    second = root / "seed2"
    shutil.copytree(first, second)
    records = read_metrics(first)[::2]
    write_metrics(second, [{k: v for k, v in r.items() if k != "train/loss"} for r in records])
    return first, second


def test_several_runs_overlay_into_compare_png_beside_them(two_runs, capsys) -> None:
    first, second = two_runs
    assert main(["plot", str(first), str(second), "--metric", "eval/*_re*", "--metric", "train/loss", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["png"]) == first.parent.resolve() / "compare.png"
    assert Path(result["png"]).read_bytes()[:8] == PNG_MAGIC
    # train/loss is drawn though the second run lacks it; std_return is a band, not a panel
    assert result["metrics"] == ["eval/mean_return", "train/loss"]
    assert main(["plot", str(first), str(second), "--out", str(first.parent / "all.png"), "--json"]) == 0
    every = json.loads(capsys.readouterr().out)["metrics"]
    assert {"eval/mean_return", "eval/episodes", "train/loss", "time/steps_per_second"} <= set(every)
    assert not any("std_" in key or key == "time/elapsed" for key in every)


def test_time_axis_and_smoothing(two_runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "by_time.png"
    assert main(["plot", str(two_runs[0]), "--x", "time", "--smooth", "0.9", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("args, message", [
    (["--metric", "eval/nothing*"], "--metric 'eval/nothing*' matches no metric of these runs (they have: eval/"),
    (["--smooth", "1.5"], "--smooth must be in [0, 1)"),
])
def test_bad_plot_options_are_one_line_errors(two_runs, args: list[str], message: str, capsys) -> None:
    assert main(["plot", str(two_runs[0]), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_run_series_against_steps_and_minutes(tmp_path: Path) -> None:
    write_metrics(tmp_path, [{"step": 10, "time/elapsed": 30.0, "train/loss": 2.0, "note": "text"},
                             {"step": 20, "time/elapsed": 90.0, "train/loss": 1.0, "time/steps_per_second": 5.0}])
    assert run_series(tmp_path) == {"train/loss": ([10, 20], [2.0, 1.0]), "time/steps_per_second": ([20], [5.0])}
    assert run_series(tmp_path, "time")["train/loss"] == ([0.5, 1.5], [2.0, 1.0])


def test_smoothing_is_a_debiased_moving_average() -> None:
    assert smoothed([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # no pull towards 0
    # average_2 = 0.5·(0.5·2) + 0.5·4 = 2.5, debiased by 1 − 0.5² → 10/3
    assert smoothed([2.0, 4.0], 0.5) == pytest.approx([2.0, 10 / 3])
    assert smoothed([1.0, 5.0], 0.0) == [1.0, 5.0]


def test_metric_selection_orders_eval_first_and_keeps_std_as_bands() -> None:
    keys = ["train/loss", "eval/std_return", "eval/mean_return", "train/lr"]
    assert select_metrics(keys, None) == ["eval/mean_return", "train/loss", "train/lr"]
    assert select_metrics(keys, ["train/*", "train/loss"]) == ["train/loss", "train/lr"]
    assert select_metrics(keys, ["train/*", "train/l*"]) == ["train/loss", "train/lr"]  # overlapping globs
    assert select_metrics(keys, ["eval/*"]) == ["eval/mean_return"]
    assert select_metrics(keys, ["eval/std_return"]) == ["eval/std_return"]  # asked for by name
    assert select_metrics(keys, ["eval/std*"]) == ["eval/std_return"]  # or by a glob that leaves its mean out
    with pytest.raises(LabError, match="'val/acc' matches no metric"):
        select_metrics(keys, ["val/acc"])


def test_default_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_output([tmp_path / "a"]) == tmp_path / "a" / "plots" / "curves.png"
    assert default_output([tmp_path / "x" / "a", tmp_path / "y" / "b"]) == tmp_path.resolve() / "compare.png"
    monkeypatch.chdir(tmp_path)
    assert default_output([Path("/opt/a"), Path("/srv/b")]) == tmp_path.resolve() / "compare.png"  # not /


@pytest.mark.parametrize("out, message", [
    ("/proc/no/curves.png", "--out /proc/no/curves.png: cannot write there"),
    ("curves.txt", "--out curves.txt: the file must end in .png, .avif, .eps"),
    (".", "--out .: that is a folder; give a file name, e.g. out.png"),
])
def test_an_unwritable_plot_is_a_one_line_error(two_runs, capsys, out: str, message: str) -> None:
    assert main(["plot", str(two_runs[0]), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {message}")


def test_checking_an_output_never_touches_what_is_there(tmp_path: Path) -> None:
    from lab.outputs import figure_suffixes, output_file

    mine = tmp_path / "mine.png"
    mine.write_bytes(b"keep me")
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "figures" / "latest.png")  # dangling until the plot is written through it
    for path in (mine, link):
        assert output_file(path, "--out", figure_suffixes()) == path
    assert mine.read_bytes() == b"keep me" and link.is_symlink() and not (tmp_path / "figures").exists()
    fresh = tmp_path / "new" / "curves.eps"  # a format for LaTeX documents
    assert output_file(fresh, "--out", figure_suffixes()) == fresh and not fresh.exists() and fresh.parent.is_dir()


def test_an_output_without_a_suffix_is_a_png_and_reported_as_one(two_runs, tmp_path: Path, capsys) -> None:
    assert main(["plot", str(two_runs[0]), "--out", str(tmp_path / "curves"), "--json"]) == 0
    png = tmp_path / "curves.png"
    assert json.loads(capsys.readouterr().out)["png"] == str(png) and png.read_bytes()[:8] == PNG_MAGIC


def test_training_time_goes_on_after_a_resume(tmp_path: Path) -> None:
    write_metrics(tmp_path, [{"step": 100, "time/elapsed": 120.0, "train/loss": 1.0}])
    tracker = Tracker(tmp_path, {}, "disabled", "lab", "run")
    tracker.log({"train/loss": 0.5}, 200)
    tracker.finish()
    elapsed = [r["time/elapsed"] for r in read_metrics(tmp_path)]
    assert elapsed[0] == 120.0 and 120.0 <= elapsed[1] < 130.0


def test_a_torn_last_line_is_dropped_and_the_resumed_log_stays_readable(tmp_path: Path) -> None:
    write_metrics(tmp_path, [{"step": 100, "train/loss": 1.0}, {"step": 200, "train/loss": 0.5}],
                  tail='{"step": 300, "train/lo')  # killed mid-write
    assert [r["step"] for r in read_metrics(tmp_path)] == [100, 200]
    truncate_metrics(tmp_path, 100)
    tracker = Tracker(tmp_path, {}, "disabled", "lab", "run")
    tracker.log({"train/loss": 0.7}, 150)
    tracker.finish()
    assert [r["step"] for r in read_metrics(tmp_path)] == [100, 150]


def test_a_corrupt_line_inside_the_log_names_the_file_and_line(tmp_path: Path) -> None:
    write_metrics(tmp_path, [{"step": 1}])
    with open(tmp_path / METRICS_FILE, "a") as log:
        log.write("garbage\n" + json.dumps({"step": 2}) + "\n")
    with pytest.raises(LabError, match="metrics.jsonl: line 2 is not JSON"):
        read_metrics(tmp_path)
