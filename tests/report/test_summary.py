"""`ista summarize`, best-of-k selection, the consistency study and the plots, over real runs: a 4-seed demo
experiment launched with submitit's local executor, in which one seed fails (a damaged checkpoint) and one
is lost (its run directory and job output deleted, as a scratch purge would), plus evaluation trainings."""

import csv
import io
import json
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from ista.report.kendall import kendall
from ista.space.genotypes import Genotype

TINY = ["network.channels=4", "network.layers=3", "data.workers=1"]
SEARCH = ["--preset", "demo", "data.subset=256", "epochs=2", *TINY, "--cpus-per-task", "1"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ista(cli):
    """`ista ARGS` in this process, as a CompletedProcess; `check` asserts that it succeeded."""

    def run(*args, check: bool = True) -> subprocess.CompletedProcess:
        code, out, err = cli(*args)
        if check:
            assert code == 0, out + err
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def final(run_dir: Path, key: str) -> float:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return next(m[key] for m in map(json.loads, reversed(lines)) if key in m)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ista):
    root = tmp_path_factory.mktemp("summary")
    search = root / "search"
    for seed in (1, 3):  # seed 1 fails; seed 3 stops at once too, and is then lost
        (search / f"seed-{seed}").mkdir(parents=True)
        (search / f"seed-{seed}" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    local = ["--seeds", "0-3", "--cluster", "local", "--experiment", search, "--wait"]
    launched = ista("launch", *SEARCH, *local, check=False)
    assert launched.returncode == 1, launched.stdout + launched.stderr  # seed 1 fails on purpose
    for seed in (0, 2):  # --wait waited for them (the table says why if not)
        assert (search / f"seed-{seed}" / "result.json").is_file(), launched.stdout + launched.stderr
    lost = json.loads((search / "experiment.json").read_text())["jobs"]["3"]
    shutil.rmtree(search / "seed-3")
    shutil.rmtree(search / "submitit" / lost)

    from ista.data.synthetic import write_cifar10_folder

    data = write_cifar10_folder(root / "cifar", per_batch=20)
    train = ["data.root=" + str(data), "epochs=1", "batch_size=50", *TINY]
    quiet = ["--quiet", *train]
    best = root / "eval-best"  # the paper's protocol, end to end: best-of-k, then evaluation seeds
    debug = ["--seeds", "0", "--cluster", "debug", "--experiment", best, "--wait"]
    ista("launch", "--preset", "cifar10-eval", "--genotype", f"best:{search}", *debug, *train)
    evaluations = root / "evaluations"  # ista train runs of other genotypes, for ROME's protocol and Kendall

    def evaluate(run_dir: Path, name: str) -> Path:
        genotype = run_dir / "genotype.json"
        ista("train", "--preset", "cifar10-eval", "--genotype", genotype, "--out", evaluations / name, *quiet)
        return evaluations / name

    chosen = json.loads((best / "experiment.json").read_text())["selection"]["seed"]
    unchosen = ({0, 2} - {chosen}).pop()  # the other finished search, so that both are evaluated
    other = evaluate(search / f"seed-{unchosen}", f"ista-seed-{unchosen}")
    darts = root / "darts"  # the baseline of the consistency study, each search's genotype evaluated
    digits = ["data.dataset=digits", "data.augment=false", "data.subset=128", "epochs=1", *TINY]
    at_once = ["--seeds", "0-1", "--cluster", "debug", "--experiment", darts, "--wait"]
    ista("launch", "--preset", "cifar10-darts", *digits, *at_once)
    for seed in (0, 1):
        evaluate(darts / f"seed-{seed}", f"darts-seed-{seed}")
    return search, best, other, darts


def test_every_seed_state_is_a_row_and_nothing_crashes(runs, ista):
    search, *_ = runs
    table = ista("summarize", search, search.parent / "no-such-run").stdout
    assert "2/4 seeds done" in table
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()[:1].isdigit()}
    assert rows["0"].split()[1] == "done" and rows["2"].split()[1] == "done"
    assert "failed" in rows["1"] and "CheckpointError: cannot read checkpoint" in rows["1"]
    assert "missing" in rows["3"] and "no run directory" in rows["3"]
    lost = table.split("no-such-run")[-1]
    assert "no run directory" in lost  # a path that is not there: a row, not a crash
    damaged = search.parent / "damaged"
    damaged.mkdir()
    (damaged / "experiment.json").write_text('{"preset": "demo", "seeds": [0')  # cut off mid-write
    assert "broken" in ista("summarize", damaged).stdout
    assert "best-of-k (the paper's)" in table and "mean over independent searches" in table


def test_json_numbers_are_those_of_the_run_directories(runs, ista):
    search, *_ = runs
    (group,) = json.loads(ista("summarize", search, "--json").stdout)
    a = group["aggregate"]
    accs = {s: final(search / f"seed-{s}", "valid_acc") for s in (0, 2)}
    assert a["found"] == 2 and a["expected"] == 4
    assert a["states"] == {"done": 2, "failed": 1, "missing": 1}
    assert a["estimate"]["n"] == 2
    assert a["estimate"]["mean"] == pytest.approx(statistics.fmean(accs.values()), abs=1e-12)
    assert a["estimate"]["std"] == pytest.approx(statistics.stdev(accs.values()), abs=1e-12)
    best = max(accs, key=lambda s: (accs[s], -s))
    assert a["best"]["seed"] == best and a["worst"]["seed"] == ({0, 2} - {best}).pop()
    for run in group["runs"]:
        if run["state"] == "done":
            genotype = Genotype.from_json((Path(run["run_dir"]) / "genotype.json").read_text())
            assert run["fingerprint"] == genotype.fingerprint()
            assert run["skip_connects"] == sum(op == "skip_connect" for op, _ in genotype.normal)
            params = json.loads(
                ista("params", genotype.to_text(), "--dataset", run["dataset"], "--json").stdout
            )
            assert (run["params_m"], run["macs_m"]) == (params["params_m"], params["macs_m"])
            epoch_s = [
                json.loads(line)["epoch_s"] for line in (Path(run["run_dir"]) / "metrics.jsonl").open()
            ]
            assert run["cost_h"] == pytest.approx(sum(epoch_s) / 3600) and run["device"] == "cpu"


def test_csv_has_one_row_per_seed(runs, ista):
    search, *_ = runs
    rows = list(csv.DictReader(io.StringIO(ista("summarize", search, "--csv").stdout)))
    assert [(r["seed"], r["state"]) for r in rows] == [
        ("0", "done"),
        ("1", "failed"),
        ("2", "done"),
        ("3", "missing"),
    ]
    assert all(r["group"] == str(search) for r in rows)
    assert float(rows[0]["valid_acc"]) == final(search / "seed-0", "valid_acc")


def test_best_of_k_is_logged_and_both_protocols_are_computed(runs, ista):
    search, best, other, _ = runs
    accs = {s: final(search / f"seed-{s}", "valid_acc") for s in (0, 2)}
    chosen = max(accs, key=lambda s: (accs[s], -s))
    selection = json.loads((best / "experiment.json").read_text())["selection"]
    assert selection["seed"] == chosen and selection["k"] == 2 and "held-out" in selection["rule"]
    assert selection["left_out"] == ["1 (failed)", "3 (missing)"]
    config = json.loads((best / "seed-0" / "config.json").read_text())
    assert Genotype.from_text(config["genotype"]) == Genotype.from_json(
        (search / f"seed-{chosen}" / "genotype.json").read_text()
    )
    groups = {g["group"]: g for g in json.loads(ista("summarize", search, best, other, "--json").stdout)}
    protocols = {p["protocol"]: p for p in groups[str(search)]["protocols"]}
    best_err = final(best / "seed-0", "test_acc")
    assert protocols["best-of-k"]["estimate"]["mean"] == pytest.approx(1 - best_err)
    fingerprint = {
        s: Genotype.from_json((search / f"seed-{s}" / "genotype.json").read_text()).fingerprint()
        for s in (0, 2)
    }
    evaluated: dict[str, list[float]] = {}
    for run_dir in (best / "seed-0", other):
        key = Genotype.from_json((run_dir / "genotype.json").read_text()).fingerprint()
        evaluated.setdefault(key, []).append(1 - final(run_dir, "test_acc"))
    per_search = [statistics.fmean(evaluated[fingerprint[s]]) for s in (0, 2)]
    assert protocols["mean-over-searches"]["estimate"]["mean"] == pytest.approx(statistics.fmean(per_search))
    assert "genotype chosen as best of k=2" in ista("summarize", best).stdout


def test_consistency_study_pairs_each_search_with_its_evaluation(runs, ista):
    search, best, other, darts = runs
    studies = json.loads(
        ista(
            "kendall",
            "--experiment",
            search,
            "--experiment",
            darts,
            "--evaluations",
            best,
            other.parent,
            "--json",
        ).stdout
    )
    assert [s["method"] for s in studies] == ["ista", "darts"]
    for study, experiment, seeds in zip(studies, (search, darts), ([0, 2], [0, 1]), strict=True):
        assert sorted(study["seeds"]) == seeds and study["unevaluated"] == []
        x = [final(experiment / f"seed-{s}", "valid_acc") for s in study["seeds"]]
        assert study["supernet_acc"] == x
        expected = kendall(study["supernet_acc"], study["evaluated_acc"])
        assert study["tau"]["tau_a"] == expected.tau_a and study["tau"]["concordant"] == expected.concordant
    everything_beside = json.loads(ista("kendall", "--experiment", search, "--json").stdout)  # in root/
    assert everything_beside[0]["tau"] == studies[0]["tau"]
    text = ista("kendall", "--experiment", search, "--evaluations", other.parent).stdout
    chosen = json.loads((best / "experiment.json").read_text())["selection"]["seed"]
    assert f"not evaluated (no finished training of their genotype): seeds [{chosen}]" in text


def test_plots_are_written_for_curves_supports_and_each_seed(runs, ista, tmp_path):
    search, *_ = runs
    ista("summarize", search, "--plots", tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == [
        "search-curves.png",
        "search-seed-0-cells.png",
        "search-seed-2-cells.png",
        "search-supports.png",
    ]
    assert all(
        p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in tmp_path.iterdir()
    )


def test_best_of_k_refuses_what_it_cannot_choose_from(runs, ista, tmp_path):
    _, best, *_ = runs
    done = ista(
        "train", "--preset", "cifar10-eval", "--genotype", f"best:{best}", "--out", tmp_path, check=False
    )
    assert done.returncode == 2 and "best-of-k selects among two-stage searches" in done.stderr
    done = ista(
        "train", "--preset", "cifar10-eval", "--genotype", f"best:{tmp_path}", "--out", tmp_path, check=False
    )
    assert done.returncode == 2 and "is not an experiment folder" in done.stderr


def test_fingerprint_ignores_the_order_of_a_nodes_two_pairs():
    g = Genotype.from_text(
        "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),"
        " ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)],"
        " normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2),"
        " ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2),"
        " ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
    )
    swapped = list(g.normal)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    same = Genotype(tuple(swapped), g.normal_concat, g.reduce, g.reduce_concat)
    moved = list(g.normal)
    moved[1], moved[2] = moved[2], moved[1]  # across nodes: another architecture
    other = Genotype(tuple(moved), g.normal_concat, g.reduce, g.reduce_concat)
    assert same.fingerprint() == g.fingerprint() != other.fingerprint()
    assert g.skip_connects() == 3 and g.skip_connects("reduce") == 3


def test_tensorboard_scalars_read_back_with_tensorboards_reader(tmp_path, cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["search", "--preset", "demo", "data.subset=128", *TINY, "epochs=3", "log.tensorboard=true"]
    code, _, err = cli(*args, "--out", tmp_path, "--quiet")
    assert code == 0, err
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    expected = {"train_loss", "train_acc", "valid_acc", "lr", "recovery_s", "support_changes"}
    assert expected <= set(tags["scalars"]), tags
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    loss = [e.value for e in events.Scalars("train_loss")]
    assert [e.step for e in events.Scalars("train_loss")] == [0, 1, 2]
    assert loss == pytest.approx([m["train_loss"] for m in history], rel=1e-6)  # stored as float32
    assert [e.step for e in events.Scalars("support_changes")] == [1, 2]
    assert "genotype/text_summary" in tags["tensors"]  # add_text: a text tensor


def test_each_method_is_reported_by_its_traits():
    """Two-stage searches are ranked by their held-out half; a one-stage run is its own evaluation, so
    best-of-k does not apply; evaluation trainings are judged by test error."""
    from ista.report.runs import RunRecord
    from ista.report.summary import Group, protocol_lines

    kinds = {m: RunRecord("run", 0, method=m).kind for m in ("ista", "darts", "onestage", "train")}
    assert kinds == {"ista": "search", "darts": "search", "onestage": "one-stage", "train": "training"}
    one_stage = [
        RunRecord(f"seed-{s}", s, "done", method="onestage", test_err=e) for s, e in ((0, 0.1), (1, 0.2))
    ]
    group = Group("one-stage", one_stage, expected=2)
    assert group.metric() == ("test_err", "test error")
    lines = {line["protocol"]: line for line in protocol_lines(group, one_stage)}
    assert lines["mean-over-searches"]["estimate"]["n"] == 2
    assert lines["mean-over-searches"]["estimate"]["mean"] == pytest.approx(0.15)
    assert "not applicable" in lines["best-of-k"]["text"]
