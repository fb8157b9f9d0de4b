import json
import subprocess
import sys
from pathlib import Path

import pytest

from ista.cli.main import main

ISTA = Path(sys.executable).with_name("ista")  # the installed console script


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ISTA), *args], capture_output=True, text=True, timeout=300)


def test_console_script_params_json():
    result = run("params", "DARTS_V2", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["params_m"] == 3.349342 and row["macs_m"] == pytest.approx(528.4, abs=0.05)


@pytest.mark.parametrize(
    ("args", "params_m"),
    [
        (["DARTS_V2", "--dataset", "imagenet"], 4.718752),
        (["DARTS_V2", "--onestage"], 3.358846),
        (["DARTS_V1"], 3.169414),
    ],
)
def test_params_json(args, params_m, capsys):
    assert main(["params", *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params_m"] == params_m


def test_params_table_for_several_genotypes_and_sources(tmp_path, capsys):
    from ista.space.genotypes import PUBLISHED

    path = tmp_path / "mine.json"
    path.write_text(PUBLISHED["DARTS_V2"].to_json())
    text = PUBLISHED["DARTS_V1"].to_text()
    assert main(["params", "ISTA_twostage", str(path), text]) == 0
    out = capsys.readouterr().out
    assert "3.316726" in out and "3.349342" in out and "3.169414" in out
    assert main(["params", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["genotype"] == str(path)


def test_params_bad_genotype_is_a_clear_error(capsys):
    bad = "Genotype(normal=[('none', 0)], normal_concat=[2], reduce=[], reduce_concat=[2])"
    assert main(["params", bad]) == 2
    err = capsys.readouterr().err
    assert "ista params: error:" in err and "normal" in err and "Traceback" not in err
    assert main(["params", "NO_SUCH_GENOTYPE"]) == 2
    err = capsys.readouterr().err
    assert "not a published genotype" in err and "Traceback" not in err


def test_show(tmp_path, cli):
    code, _, err = cli("show", "ISTA_twostage", "-o", tmp_path / "cells.png")
    assert code == 0, err
    assert (tmp_path / "cells.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = cli("show", "ISTA_twostage", "-o", tmp_path / "cells.gif")
    assert code == 2 and "must be .png, .svg or .pdf" in err


def test_python_dash_m_ista_is_the_command():
    done = subprocess.run([sys.executable, "-m", "ista", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("ista ")


def test_overrides_may_stand_anywhere_on_the_line(cli):
    code, out, err = cli("search", "--preset", "demo", "epochs=3", "--out", "/nowhere", "optim.lr=0.3",
                         "--print-config")  # fmt: skip
    assert code == 0, err
    config = json.loads(out)
    assert config["epochs"] == 3 and config["optim"]["lr"] == 0.3
    code, _, err = cli("launch", "--preset", "demo", "--seeds", "0-1", "epochs=2", "--dry-run", "seed=3")
    assert code == 0, err


def test_a_resource_the_executor_would_not_use_is_refused(cli, tmp_path):
    demo = ["launch", "--preset", "demo", "--experiment", tmp_path / "x"]
    code, _, err = cli(*demo, "--cluster", "local", "--partition", "gpu")
    assert code == 2 and "--partition applies to --cluster slurm, not --cluster local" in err, err
    code, _, err = cli(*demo, "--cluster", "debug", "--dry-run")
    assert code == 2 and "--dry-run shows the sbatch script of --cluster slurm" in err, err
    assert not (tmp_path / "x").exists()
