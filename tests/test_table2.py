"""Paper Table 2 / Fig. 3 as users run them: a config variant per network, a
trained run, and the summary that puts runs side by side (table + PNG)."""
from __future__ import annotations

import importlib
import json

import pytest
from PIL import Image

from configs.common import NETWORKS
from stra_jax.models import abstract_variables, create_model
from stra_jax.models.complexity import complexity_table
from stra_jax.tools.summary import main as summary_main


@pytest.mark.parametrize("variant", sorted(NETWORKS))
def test_network_variants_build_with_the_shared_reid_head(variant):
    """Every Table 2 row: the registered network with StRA's head (last stride 1,
    512-d embedding) and frozen groups the network has, under both recipes."""
    market = importlib.import_module("configs.reid_market")
    for arg in (variant, f"{variant},authors"):
        config = market.get_config(arg)
        assert config.model.name == NETWORKS[variant]
        assert config.model.kwargs["last_stride"] == 1 and config.model.kwargs["embedding_dim"] == 512
        model = create_model(config.model.name, num_classes=751, **config.model.kwargs)
        assert set(config.train.frozen_groups) <= set(model.FREEZABLE), (arg, config.train.frozen_groups)
    smoke = market.get_config(f"{variant},smoke")
    model = create_model(smoke.model.name, num_classes=7, **smoke.model.kwargs)
    out = abstract_variables(model)  # the narrow smoke network builds at the smoke size
    assert out["params"]


def test_network_and_ablation_variants_do_not_combine():
    market = importlib.import_module("configs.reid_market")
    with pytest.raises(ValueError, match=r"pick one network"):
        market.get_config("se,k5")
    with pytest.raises(ValueError, match=r"pick one network"):
        market.get_config("se,sasa")


def test_complexity_table_lists_registered_networks():
    table = complexity_table(["mobilenetv2_x1_0"], [(64, 32)], [1000])
    row = table.splitlines()[-1].split()
    assert row[0] == "mobilenetv2_x1_0" and row[1] == "1000"
    assert row[2] == "3,504,872"  # torchvision's mobilenet_v2 with 1000 classes
    assert float(row[3]) > 0


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A smoke training run of a Table 2 network on the synthetic set (the
    mobile family: its own frozen groups during the frozen epoch, its own head path)."""
    from configs import reid_synthetic
    from stra_jax.training.loop import train_and_evaluate

    workdir = tmp_path_factory.mktemp("t2") / "stra_mnetv2_smoke"
    config = reid_synthetic.get_config("stra_mnetv2,smoke")
    final = train_and_evaluate(config, workdir)
    assert 0.0 <= final["reid/mAP"] <= 1.0
    return workdir


def test_summary_of_runs_prints_table2_and_draws_fig3(trained_run, tmp_path, capsys):
    png = tmp_path / "fig3.png"
    assert summary_main(["--results", str(trained_run / "final_metrics.json"), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("stra_mnetv2_smoke"))
    metrics = json.loads((trained_run / "final_metrics.json").read_text())
    assert "stra_mobilenetv2_x1_0" in row and "64x32" in row
    assert f"{100 * metrics['reid/mAP']:.1f}" in row.split()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_summary_rejects_a_run_without_metrics_and_writes_nothing(trained_run, tmp_path, capsys):
    bad = tmp_path / "bad_run"
    bad.mkdir()
    (bad / "final_metrics.json").write_text(json.dumps({"face/lfw/accuracy": 0.9}))
    png = tmp_path / "fig3.png"
    rc = summary_main(["--results", str(trained_run), str(bad / "final_metrics.json"), "--plot", str(png)])
    err = capsys.readouterr().err
    assert rc == 1 and "final_metrics.json" in err and "mAP" in err
    assert not png.exists()
    assert summary_main(["--results", str(tmp_path / "missing.json"), "--plot", str(png)]) == 1
    assert "missing.json: no such file" in capsys.readouterr().err
