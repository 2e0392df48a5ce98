"""The start-up benchmark: its arithmetic on made-up times, and a real run on 20 tiny cases
(Snakemake end to end up to preprocess, so marked `workflow`), which must report sane numbers."""

from pathlib import Path

import pytest

from unet.bench.startup import format_startup, job_seconds, measure_startup, startup_report
from unet.bench.synthetic import write_tiny_dataset
from unet.io.msd import load_dataset

REPO = Path(__file__).resolve().parents[2]


def test_startup_report_splits_a_job_into_work_and_start_up():
    # 10 jobs on 2 cores in 5 s: 1 core-second per job, of which 0.1 s work; each job's own
    # process took 0.7 s (its TSV), so Snakemake spent 0.3 s between jobs.
    report = startup_report({"wall": 5.0, "cpu": 4.0}, {"wall": 1.0, "cpu": 0.9}, [0.7] * 10,
                            {"wall": [0.1] * 10, "cpu": [0.05] * 10}, 2, {"shape": [16, 16, 16], "channels": 1})
    assert report["per_job_s"] == pytest.approx(1.0)
    assert report["startup_per_job_s"] == pytest.approx(0.9) and report["startup_share"] == pytest.approx(0.9)
    assert report["in_job_startup_s"] == pytest.approx(0.6)
    assert report["snakemake_per_job_s"] == pytest.approx(0.3)
    assert report["cpu_per_job_s"] == pytest.approx(0.4)
    assert report["startup_cpu_per_job_s"] == pytest.approx(0.35)
    assert report["startup_cpu_share"] == pytest.approx(0.875)
    assert "90.0 %" in format_startup(report) and "87.5 %" in format_startup(report)


def test_job_seconds_reads_the_benchmark_tsvs(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "benchmarks" / "preprocess").mkdir(parents=True)
    for case, seconds in (("a", 1.5), ("b", 2.25)):
        (tmp_path / "benchmarks" / "preprocess" / f"{case}.tsv").write_text(
            header + f"{seconds}\t0:00:01\t65\t228\t39\t43\t0\t0\t1.2\t0.3\n")
    (tmp_path / "benchmarks" / "fingerprint.tsv").write_text(header + "3.0\t0:00:03\t1\t1\t1\t1\t0\t0\t1\t1\n")
    assert job_seconds(tmp_path, "preprocess") == [1.5, 2.25]
    assert job_seconds(tmp_path, "fingerprint") == [3.0]


def test_tiny_dataset_is_an_msd_folder_of_one_channel_cases(tmp_path):
    import nibabel as nib
    import numpy as np

    root = write_tiny_dataset(tmp_path / "TinyCases", 3, shape=(8, 9, 10))
    dataset = load_dataset(root)
    assert [c.id for c in dataset.training] == ["TINY_0000", "TINY_0001", "TINY_0002"]
    assert dataset.modalities == ("MRI",) and dataset.label_values == (0, 1)
    label = np.asarray(nib.load(str(dataset.training[0].label)).dataobj)
    assert label.shape == (8, 9, 10) and 0 < label.mean() < 0.5


@pytest.mark.workflow
def test_measure_startup_on_20_cases(tmp_path):
    report = measure_startup(REPO / "Snakefile", n_cases=20, cores=2, work_dir=tmp_path)

    assert report["jobs"] == 20
    assert 0 < report["work_per_case_s"] < report["job_process_s"] < report["wall_s"]
    assert 0 < report["startup_share"] < 1 and 0 < report["startup_cpu_share"] < 1
    assert report["dry_run_wall_s"] < report["wall_s"]
    assert report["machine"]["threads"] == 2 and report["command"] == "snakemake --cores 2 --until preprocess"
    assert len(list((tmp_path / "workflow" / "results" / "TinyCases" / "preprocessed").glob("*_seg.npy"))) == 20
