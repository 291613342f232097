import subprocess
import sys

from bnviz import Run
from bnviz.__main__ import main, parse_value


def test_parse_value():
    assert parse_value("16") == 16
    assert parse_value("1e-3") == 0.001
    assert parse_value("None") is None
    assert parse_value("16,32") == (16, 32)
    assert parse_value("none") == "none"


def test_train_saves_a_run_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "run.json"
    args = ["train", "--set", "batch_size=16", "--set", "norm=none", "--set", "steps=6"]
    assert main([*args, "--set", "widths=8,16", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "status: completed" in printed.out and "test accuracy" in printed.out
    assert "6/6 steps" in printed.err  # the progress bar
    run = Run.load(out)
    assert (run.config.batch_size, run.config.norm, run.num_steps) == (16, "none", 6)


def test_bad_settings_give_a_message_not_a_traceback(capsys):
    assert main(["train", "--set", "batch_size=0"]) == 2
    assert "batch_size must be an integer from 1" in capsys.readouterr().err
    assert main(["train", "--set", "colour=red"]) == 2
    assert "unknown config keys: colour" in capsys.readouterr().err
    assert main(["train", "--set", "steps"]) == 2


def test_help_explains_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "bnviz", "train", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--set KEY=VALUE" in result.stdout and "batch_size" in result.stdout
