"""`ista protocol` on submitit's in-process executor: stages in order, per-stage overrides, resuming only
what is unfinished, an evaluation stage without a finished search, and the protocol's result."""

import json
import os

import pytest
import torch

from ista.launch.protocol import plan

TINY = ["data.subset=128", "network.channels=4", "network.layers=3", "search.epochs=1", "eval.epochs=1",
        "eval.data.subset=96"]  # fmt: skip


def protocol(cli, name, folder, *more, cluster="debug"):
    return cli("protocol", name, "--preset", "demo", *TINY, "--cluster", cluster, "--folder", folder, *more)


def test_stages_and_their_overrides(tmp_path):
    with pytest.raises(ValueError, match="--eval-seeds belongs to two-stage and one-stage; consistency"):
        plan("consistency", tmp_path, "demo", [0, 1], [0], [])
    stages = plan("consistency", tmp_path, "demo", [0, 1], None, ["epochs=3", "eval.epochs=7"], True)
    assert [s.name for s in stages] == ["search", "eval", "darts-search", "darts-eval"]
    search, evaluate, darts, darts_eval = stages
    assert search.overrides == ("epochs=3",) and evaluate.overrides == ("epochs=3", "epochs=7")
    assert darts.overrides == ("method=darts", "epochs=3") and darts_eval.after == ("darts-search",)
    independent = plan("independent", tmp_path, "demo", [0, 1], None, ["epochs=3", "eval.epochs=7"])
    assert independent == [search, evaluate]  # consistency's plan without the DARTS baseline
    assert evaluate.per_seed[1] == (f"genotype={tmp_path / 'search' / 'seed-1' / 'genotype.json'}",)
    one = plan("one-stage", tmp_path, "cifar10-one-stage", [0, 1], [0, 1, 2, 3], ["eval.epochs=5"])
    assert [s.name for s in one] == ["search", "eval-of-seed-0", "eval-of-seed-1"]
    assert one[2].preset == "cifar10-eval" and one[2].seeds == (0, 1, 2, 3)
    genotype = tmp_path / "search" / "seed-1" / "genotype.json"
    assert one[2].overrides == (f"genotype={genotype}", "network.onestage=true", "epochs=5")
    with pytest.raises(ValueError, match="protocol one-stage needs a one-stage preset; demo is method=ista"):
        plan("one-stage", tmp_path, "demo", [0], [0], [])
    two = plan("two-stage", tmp_path, "demo", [0, 1], [0, 1, 2], [])
    assert two[1].preset == "demo-eval" and two[1].seeds == (0, 1, 2)
    assert two[1].overrides == (f"genotype=best:{tmp_path / 'search'}",)


def test_consistency_runs_resumes_only_what_is_unfinished_and_gives_the_result(tmp_path, cli):
    """On a folder of real grey digit images (the user's own data), at their own 8 px. (Consistency is the
    independent protocol's plan, with Kendall τ added to its table.)"""
    from ista.data.synthetic import write_digits_tree

    tree = write_digits_tree(tmp_path / "digits")
    folder = tmp_path / "p"
    threads = torch.get_num_threads()
    own = ["data.dataset=folder", f"data.root={tree}"]
    code, out, err = protocol(cli, "consistency", folder, "--seeds", "0-1", *own)
    assert code == 0, out + err
    assert "4 seed run(s) submitted" in out
    # the debug executor ran the seeds in this process, given 2 CPUs each; it is left as it was
    assert "ISTA_CPUS_PER_TASK" not in os.environ and torch.get_num_threads() == threads
    record = json.loads((folder / "protocol.json").read_text())
    assert [s["name"] for s in record["stages"]] == ["search", "eval"]
    genotype = json.loads((folder / "eval" / "seed-1" / "config.json").read_text())["genotype"]
    assert genotype == str(folder / "search" / "seed-1" / "genotype.json")  # seed 1's own search
    code, out, _ = protocol(cli, "consistency", folder, "--seeds", "0-1", *own)
    assert code == 0 and "0 seed run(s) submitted" in out  # everything is done
    (folder / "eval" / "seed-0" / "result.json").unlink()  # as if it had failed before its end
    (folder / "eval" / "seed-0" / "checkpoint.pt").unlink()
    code, out, err = protocol(cli, "consistency", folder, "--seeds", "0-1", *own)
    assert code == 0 and "1 seed run(s) submitted" in out, out + err
    progress = json.loads((folder / "search" / "seed-1" / "progress.json").read_text())
    assert (progress["epoch"], progress["epochs"], progress["steps"]) == (1, 1, 1) and progress["eta_s"] == 0
    assert {"train_loss", "train_acc", "images_per_s", "updated"} <= set(progress)
    code, out, _ = cli("launch", "--status", folder, "--watch")  # every seed has ended: one view, then out
    assert code == 0 and "img/s" in out and "ETA" in out, out
    code, out, _ = cli("summarize", folder)
    flat = " ".join(out.split())  # a table's title wraps at the table's width
    assert "folder (10 classes, 8 px)" in flat and "Kendall τ (ista)" in flat and "over 2 searches" in flat
    code, out, err = cli("summarize", folder, "--json")
    result = json.loads(out)["protocols"][0]
    assert result["protocol"] == "consistency" and result["test_error"]["n"] == 2
    assert result["searches"] == "2/2 done" and result["params_m"] > 0


def test_two_stage_without_a_finished_search_fails_the_evaluations_clearly(tmp_path, cli):
    folder = tmp_path / "p"
    (folder / "search" / "seed-0").mkdir(parents=True)
    (folder / "search" / "seed-0" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    # local processes: their failures are on record (submitit's result files), unlike in-process ones
    local = ["--seeds", "0", "--eval-seeds", "0", "--cpus-per-task", "1"]
    code, *_ = protocol(cli, "two-stage", folder, *local, cluster="local")
    assert code == 1
    code, out, _ = cli("launch", "--status", folder)
    rows = [line for line in out.splitlines() if "failed" in line]
    assert len(rows) == 2 and "no finished search" in rows[1], out
    assert not (folder / "eval" / "seed-0" / "checkpoint.pt").exists()  # nothing trained
    code, out, _ = cli("summarize", folder)
    assert "no finished search" in out


def test_a_view_of_the_protocol_follows_its_plan_while_the_submitter_runs(tmp_path):
    """Local and debug protocols submit a stage when the one before has ended: `--watch` must not stop in
    between, nor wait for stages whose submitter is gone."""
    import socket
    import subprocess

    from ista.launch.status import stages_to_come

    gone = subprocess.Popen(["true"])
    gone.wait()
    stages = [{"name": "search", "submitted": [0]}, {"name": "eval", "submitted": None}]
    for pid, expected in ((os.getpid(), ["eval"]), (gone.pid, [])):
        record = {
            "protocol": "two-stage",
            "stages": stages,
            "submitter": {"host": socket.gethostname(), "pid": pid},
        }
        (tmp_path / "protocol.json").write_text(json.dumps(record))
        assert stages_to_come(tmp_path) == expected
