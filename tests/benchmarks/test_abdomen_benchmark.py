"""The abdomen benchmark's bookkeeping: a disjoint split by case, jobs, and the tables (no training)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def abdomen() -> ModuleType:
    return load_benchmark("abdomen")


def test_split_is_by_case_disjoint_and_stable(abdomen, nnunet_factory, tmp_path: Path) -> None:
    src = nnunet_factory("CT", n_cases=8)
    train, test = abdomen.split_dataset(src, tmp_path / "data", 0.25, seed=0)
    names = lambda root: {p.name for p in (root / "imagesTr").iterdir()}  # noqa: E731
    assert len(names(test)) == 2 and len(names(train)) == 6 and not names(train) & names(test)
    again = abdomen.split_dataset(src, tmp_path / "data", 0.25, seed=0)
    assert again == (train, test)
    with pytest.raises(Exception, match="outside this subset"):  # another seed never mixes into the same folders
        abdomen.split_dataset(src, tmp_path / "data", 0.25, seed=1)


def test_default_directions_split_the_shared_data_or_read_a_copy(abdomen, nnunet_factory, monkeypatch,
                                                                 tmp_path: Path) -> None:
    shared = tmp_path / "abdomen"
    nnunet_factory("abdomen/CT_BTCV", n_cases=8), nnunet_factory("abdomen/MR_CHAOS_T2", n_cases=4)
    monkeypatch.setattr(abdomen, "ABDOMEN", shared)
    ct2mr, mr2ct = abdomen.default_directions(tmp_path / "out", 0)
    data = tmp_path / "out" / "data"
    assert (ct2mr.name, ct2mr.train_source, ct2mr.train_target, ct2mr.test_target) == (
        "CT->MR", data / "CT_BTCV_train", data / "MR_CHAOS_T2_train", data / "MR_CHAOS_T2_test")
    assert (mr2ct.train_source, mr2ct.train_target) == (data / "MR_CHAOS_T2_train", data / "CT_BTCV_train")
    monkeypatch.setattr(abdomen, "ABDOMEN", tmp_path / "elsewhere")  # a machine with only the copied split
    assert abdomen.default_directions(tmp_path / "out", 0) == [ct2mr, mr2ct]


def test_the_train_phase_plans_the_default_directions(abdomen, nnunet_factory, monkeypatch, tmp_path: Path,
                                                      capsys) -> None:
    nnunet_factory("abdomen/CT_BTCV", n_cases=8), nnunet_factory("abdomen/MR_CHAOS_T2", n_cases=4)
    monkeypatch.setattr(abdomen, "ABDOMEN", tmp_path / "abdomen")
    planned = []
    monkeypatch.setattr(abdomen, "warm_caches", lambda *a: None)
    monkeypatch.setattr(abdomen, "run_jobs", lambda jobs, *a: planned.extend(jobs))
    abdomen.main(["--phase", "train", "--out", str(tmp_path / "out"), "--device", "cpu", "--variants", "source_only",
                  "--seeds", "0", "--direction", "MR->CT", "--hold-out-target", "0.34"])
    [job] = planned
    assert job.direction.train_target.name == "CT_BTCV_train_fit" and "training phase finished" in capsys.readouterr().out


def test_held_out_target_cases_train_no_run(abdomen, nnunet_factory, tmp_path: Path) -> None:
    src, tgt = nnunet_factory("MR", n_cases=4), nnunet_factory("CT", n_cases=6)
    d = abdomen.Direction("MR->CT", src, tgt, tmp_path / "test")
    held = abdomen.hold_out_target(d, tmp_path / "data", 1 / 3, seed=0)
    names = lambda root: {p.name for p in (root / "imagesTr").iterdir()}  # noqa: E731
    fit, rest = tmp_path / "data" / "CT_fit", tmp_path / "data" / "CT_held"
    assert held == abdomen.Direction("MR->CT", src, fit, tmp_path / "test")
    assert len(names(fit)) == 4 and len(names(rest)) == 2 and names(fit) | names(rest) == names(tgt)
    assert (fit / "labelsTr").is_dir() and not (rest / "labelsTr").exists()  # no label of a held-out case linked
    with pytest.raises(SystemExit, match="cannot give 0.9 of them"):
        abdomen.hold_out_target(abdomen.Direction("MR->CT", src, src, tmp_path / "t"), tmp_path / "d2", 0.9, seed=0)


def test_jobs_seeds_and_order(abdomen, tmp_path: Path) -> None:
    d = abdomen.Direction("CT->MR", tmp_path / "a", tmp_path / "b", tmp_path / "c")
    jobs = abdomen.plan_jobs([d], ["source_only", "lmisa", "no_shape"], [0, 1, 2], tmp_path)
    assert sorted((j.variant, j.seed) for j in jobs) == sorted(
        [("source_only", s) for s in (0, 1, 2)] + [("lmisa", s) for s in (0, 1, 2)] + [("no_shape", 0)]
    )
    assert jobs[0].variant == "lmisa"  # costliest first
    two = abdomen.plan_jobs([d], ["lmisa", "no_shape"], [0, 1, 2], tmp_path, ablation_seeds=2)
    assert sorted((j.variant, j.seed) for j in two if j.variant == "no_shape") == [("no_shape", 0), ("no_shape", 1)]
    assert all(j.run_dir == tmp_path / "runs" / "CT2MR" / j.variant / f"seed{j.seed}" for j in jobs)


def test_quick_on_a_cpu_trains_one_run_per_core(abdomen, monkeypatch) -> None:
    monkeypatch.setattr(abdomen, "usable_cores", lambda: 2)
    assert abdomen.default_parallel(True, "cpu", 4) == 2 and abdomen.threads_per_process(2) == 1
    assert abdomen.default_parallel(True, "cpu", 1) == 1
    assert abdomen.default_parallel(True, "cuda", 4) == 1
    assert abdomen.default_parallel(False, "cpu", 26) == 1


def test_threads_per_process_share_the_usable_cores(abdomen, monkeypatch) -> None:
    monkeypatch.setattr(abdomen, "usable_cores", lambda: 1)  # taskset -c 0
    assert abdomen.threads_per_process(1) == 1 and abdomen.threads_per_process(2) == 1
    monkeypatch.setattr(abdomen, "usable_cores", lambda: 16)
    assert abdomen.threads_per_process(2) == 8


def test_aggregate_table_and_plot(abdomen, tmp_path: Path) -> None:
    def row(variant, seed, dice):
        return {
            "direction": "CT->MR", "protocol": "volume", "variant": variant, "seed": seed, "dice_mean": dice,
            "dice": {o: dice for o in abdomen.ORGANS}, "assd_vox_mean": 1.0, "assd_mm_mean": 2.0,
            "params": 10, "params_train": 12, "peak_mem_mb": 5.0, "wall_s": 60.0, "device": "cpu", "epochs": 20,
        }

    agg = abdomen.aggregate([row("lmisa", 0, 70.0), row("lmisa", 1, 80.0), row("source_only", 0, 50.0)])
    lm = next(r for r in agg if r["variant"] == "lmisa")
    assert lm["dice_mean"] == 75.0 and lm["dice_sd"] == 5.0 and lm["seeds"] == 2
    table = abdomen.markdown_table(agg)
    assert "| lmisa | 2 | 20 | 75.0 ± 5.0 |" in table and "| source_only | 1 | 20 | 50.0 |" in table
    assert "| 2.00 | 12 | 10 | 5 | 1.0 |" in table  # ASSD mm, params in training and at inference, MB, min
    summary = abdomen.summary_table(agg)
    assert "| lmisa | 2 | - | 75.0 ± 5.0 | 12 | 10 | 1.0 |" in summary  # CT->MR: organ slices absent, volume
    abdomen.plot_cost_vs_dice(agg, tmp_path / "cost.png", protocol="volume")
    assert (tmp_path / "cost.png").stat().st_size > 1000


def test_error_shares_and_their_table(abdomen) -> None:
    # background, liver, spleen; liver: 10 voxels, 1 missed, 1 taken for spleen; 3 false positives, 2 beyond
    summary = {"errors": {"classes": ["background", "liver", "spleen"],
                          "confusion_voxels": [[100, 3, 0], [1, 8, 1], [0, 0, 5]],
                          "false_positive_beyond_extent_voxels": {"liver": 2, "spleen": 0}}}
    shares = abdomen.error_shares(summary)
    assert shares["liver"] == {"missed": 10.0, "confused": 10.0, "false_positive": 30.0, "beyond_extent": 20.0}
    assert shares["spleen"]["missed"] == 0.0 and abdomen.error_shares({}) is None
    row = {"direction": "MR->CT", "protocol": "organ_slices", "variant": "lmisa", "seed": 0, "dice_mean": 50.0,
           "dice": {}, "assd_vox_mean": 1.0, "assd_mm_mean": 2.0, "params": 10, "peak_mem_mb": 5.0, "wall_s": 60.0,
           "device": "cpu", "errors_pct": shares}
    table = abdomen.errors_table(abdomen.aggregate([row]))
    assert "| MR->CT | lmisa | 5.0 | 5.0 | 15.0 | 10.0 |" in table  # mean over the two organs


def test_case_dice_and_the_per_case_table(abdomen, tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics_per_case.csv"
    csv_path.write_text("case,structure,dice\nc1,liver,90\nc1,spleen,70\nc2,liver,40\nc2,spleen,nan\nc2,aorta,10\n")
    assert abdomen.case_dice(csv_path) == {"c1": 80.0, "c2": 40.0}  # NaN and structures outside ORGANS left out
    assert abdomen.case_dice(tmp_path / "missing.csv") == {}

    def row(seed, cases):
        return {"direction": "MR->CT", "protocol": "organ_slices", "variant": "lmisa", "seed": seed, "dice_mean": 50.0,
                "dice": {}, "assd_vox_mean": 1.0, "assd_mm_mean": 2.0, "params": 10, "peak_mem_mb": 5.0,
                "wall_s": 60.0, "device": "cpu", "dice_cases": cases}

    agg = abdomen.aggregate([row(0, {"c1": 80.0, "c2": 40.0}), row(1, {"c1": 70.0})])
    assert agg[0]["dice_cases"] == {"c1": 75.0, "c2": 40.0}
    table = abdomen.cases_table(agg)
    assert "| variant | c1 | c2 |" in table and "| lmisa | 75.0 | 40.0 |" in table
    assert abdomen.cases_table(abdomen.aggregate([{**row(0, {}), "dice_cases": {}}])) == ""


def test_training_params_from_params_json_or_an_old_log(abdomen, tmp_path: Path) -> None:
    (tmp_path / "params.json").write_text('{"training": 1234, "parts": {"net": 1000, "critic": 234}}')
    assert abdomen._training_params(tmp_path) == 1234
    (tmp_path / "params.json").unlink()
    (tmp_path / "train.log").write_text(
        "INFO variant sifa on cpu: generator 27522032 parameters, critic 0; epochs 10 x 60 steps\n"
        "INFO peer sifa: 43,347,441 parameters in training (net 27,522,032, d_t 2,763,520)\n"
    )
    assert abdomen._training_params(tmp_path) == 43_347_441
    (tmp_path / "train.log").write_text("INFO variant lmisa on cpu: generator 993920 parameters, critic 102352; x\n")
    assert abdomen._training_params(tmp_path) == 1_096_272


def test_time_limit_stops_running_jobs_and_starts_no_more(abdomen, tmp_path: Path, monkeypatch, capsys) -> None:
    import time

    d = abdomen.Direction("CT->MR", tmp_path / "a", tmp_path / "b", tmp_path / "c")
    jobs = abdomen.plan_jobs([d], ["lmisa"], [0, 1, 2], tmp_path)
    monkeypatch.setattr(abdomen.Job, "command", lambda self, config, device: [sys.executable, "-c", "import time; time.sleep(60)"])
    t0 = time.time()
    abdomen.run_jobs(jobs, tmp_path / "cfg.yaml", "cpu", parallel=2, force=False, time_limit=1)
    assert time.time() - t0 < 20
    out = capsys.readouterr().out
    assert out.count("stopped at the time limit") == 2 and "1 not started" in out


def test_evaluate_jobs_skips_runs_without_a_checkpoint_and_keeps_job_order(abdomen, tmp_path: Path, monkeypatch) -> None:
    d = abdomen.Direction("CT->MR", tmp_path / "a", tmp_path / "b", tmp_path / "c")
    jobs = abdomen.plan_jobs([d], ["source_only", "lmisa"], [0, 1], tmp_path)
    for job in jobs[1:]:
        (job.run_dir / "checkpoints").mkdir(parents=True)
        (job.run_dir / "checkpoints" / "best.pt").write_bytes(b"")
    seen = []

    def fake(job, test_target, out, device, force):
        seen.append(test_target)
        return [{"variant": job.variant, "seed": job.seed}]

    monkeypatch.setattr(abdomen, "evaluate_job", fake)
    rows = abdomen.evaluate_jobs(jobs, None, tmp_path, "cpu", force=False, parallel=1)
    assert rows == [{"variant": j.variant, "seed": j.seed} for j in jobs[1:]]
    assert seen == [tmp_path / "c"] * 3
    abdomen.evaluate_jobs(jobs, tmp_path / "other", tmp_path, "cpu", force=False, parallel=1)
    assert seen[3:] == [tmp_path / "other"] * 3


def test_a_resumed_run_keeps_the_module_name_and_drops_only_the_variant(abdomen, tmp_path: Path, monkeypatch) -> None:
    # the variant "lmisa" is also the module's name: `python -m lmisa train` must survive the resume
    d = abdomen.Direction("CT->MR", tmp_path / "a", tmp_path / "b", tmp_path / "c")
    (job,) = abdomen.plan_jobs([d], ["lmisa"], [0], tmp_path)
    (job.run_dir / "checkpoints").mkdir(parents=True)
    (job.run_dir / "checkpoints" / "latest.pt").write_bytes(b"")
    commands = []

    class Done:
        returncode = 0

        def __init__(self, cmd, **kwargs):
            commands.append(cmd)

        def poll(self):
            return 0

    monkeypatch.setattr(abdomen.subprocess, "Popen", Done)
    monkeypatch.setattr(abdomen.time, "sleep", lambda s: None)
    abdomen.run_jobs([job], tmp_path / "cfg.yaml", "cpu", parallel=1, force=False)
    (cmd,) = commands
    assert cmd[1:4] == ["-m", "lmisa", "train"] and cmd[-1] == "--resume"
    assert "--variant" not in cmd and cmd.count("lmisa") == 1


def test_a_failed_evaluation_keeps_the_other_rows(abdomen, tmp_path: Path, monkeypatch, capsys) -> None:
    d = abdomen.Direction("CT->MR", tmp_path / "a", tmp_path / "b", tmp_path / "c")
    jobs = abdomen.plan_jobs([d], ["source_only"], [0, 1], tmp_path)
    for job in jobs:
        (job.run_dir / "checkpoints").mkdir(parents=True)
        (job.run_dir / "checkpoints" / "best.pt").write_bytes(b"")

    def fake(job, test_target, out, device, force):
        if job.seed == 0:
            raise RuntimeError("corrupt checkpoint")
        return [{"seed": job.seed}]

    monkeypatch.setattr(abdomen, "evaluate_job", fake)
    assert abdomen.evaluate_jobs(jobs, None, tmp_path, "cpu", force=False) == [{"seed": 1}]
    out = capsys.readouterr().out
    assert "FAILED evaluating CT->MR source_only seed 0: RuntimeError: corrupt checkpoint" in out
    assert "1 evaluation(s) failed" in out
