"""python -m stra_jax.tools.plot_metrics: curves of runs from metrics.jsonl."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from stra_jax.tools.plot_metrics import main, panels, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(workdir, diversity: bool, eval_key: str = "eval/reid/mAP"):
    workdir.mkdir(parents=True)
    rows = []
    for step in range(10, 61, 10):
        row = {"step": step, "train/loss": 3.0 / step, "train/ce": 2.0 / step, "train/accuracy": step / 60,
               "train/lr": 1e-3 if step < 40 else 1e-4}
        if diversity:
            row["train/diversity"] = 5.0 / step
        rows.append(row)
    rows.append({"step": 60, eval_key: 0.42, "eval/reid/rank1": 0.5, "eval/reid/extract_seconds": 3.0})
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return workdir


def test_two_runs_one_without_l_d(tmp_path, capsys):
    stra = _write_run(tmp_path / "stra", diversity=True)
    base = _write_run(tmp_path / "base", diversity=False)
    series = read_metrics(stra / "metrics.jsonl")
    assert series["train/lr"][0] == [10, 20, 30, 40, 50, 60] and series["eval/reid/mAP"] == ([60], [0.42])
    titles = [title for title, _ in panels([series, read_metrics(base / "metrics.jsonl")])]
    assert titles[:5] == ["loss", "cross-entropy (CE)", "L_d (diversity loss)", "train accuracy",
                          "learning rate (log)"]
    assert titles[5:] == ["mAP (eval, %)", "rank-1 (eval, %)"]  # extract_seconds is bookkeeping
    out = tmp_path / "cmp.png"
    assert main([str(stra), str(base), "--out", str(out), "--labels", "StRA,baseline"]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as img:
        assert img.size[0] > 600 and img.size[1] > 300
    assert main([str(stra)]) == 0 and (stra / "curves.png").read_bytes()[:8] == PNG_MAGIC  # default --out
    face = _write_run(tmp_path / "face", diversity=True, eval_key="eval/face/mean_accuracy")
    assert "mean accuracy (eval, %)" in [t for t, _ in panels([read_metrics(face / "metrics.jsonl")])]
    assert "wrote" in capsys.readouterr().out


def test_bad_input_names_path_and_line(tmp_path, capsys):
    empty = tmp_path / "nometrics"
    empty.mkdir()
    out = tmp_path / "x.png"
    assert main([str(empty), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(empty / "metrics.jsonl") in err and "one JSON object per line" in err

    bad = _write_run(tmp_path / "bad", diversity=True)
    with open(bad / "metrics.jsonl", "a") as f:
        f.write('{"step": 70, "train/loss": 0.1\n')
    assert main([str(bad), "--out", str(out)]) == 1
    assert f"{bad / 'metrics.jsonl'}:8: not valid JSON" in capsys.readouterr().err
    (bad / "metrics.jsonl").write_text('{"train/loss": 1.0}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:1: expected a JSON object with an integer \"step\""):
        read_metrics(bad / "metrics.jsonl")
    assert main([str(bad), str(empty)]) == 1 and "--out PNG is required" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("**/*.png"))  # nothing written
