"""dream3d bench speed: its phases account for the run's time, and its tables say so."""

import time

import pytest

from dream3d.pipelines.bench_speed import OUTPUT_PARTS, STEP_PHASES, profile_run, speed_markdown
from dream3d.pipelines.text_to_3d import resolve
from tests.fast_run import FAST_RUN

FAST = FAST_RUN | {"train": {"steps": 12, "save_every": 0}}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    result = {}
    for name in ("sds", "ikl"):
        config = resolve("a red sphere", overrides={**FAST, "guidance": {"name": name}})
        start = time.perf_counter()
        row = profile_run(config, out / name)
        result[name] = row, time.perf_counter() - start
    return result


def test_the_phases_add_up_to_the_runs_time(rows):
    for name, (row, seconds) in rows.items():
        steps = row["steps"]
        phases = sum(row[f"{p} ms"] for p in STEP_PHASES) * steps / 1000
        # the step phases are all of a step but the loop's bookkeeping (bar, logs, clock);
        # metrics.json rounds train seconds to 0.1
        assert 0.8 * row["train s"] < phases <= row["train s"] + 0.05, name
        assert sum(row[f"{p} s"] for p in OUTPUT_PARTS) == pytest.approx(row["outputs s"])
        parts = row["start s"] + row["train s"] + row["outputs s"]
        assert parts == pytest.approx(row["wall s"]) and row["wall s"] <= seconds
        assert row["peak MiB"] > 100  # a process with torch and the teacher loaded
    sds, ikl = rows["sds"][0], rows["ikl"][0]
    assert sds["fake-score update ms"] < 0.5 < ikl["fake-score update ms"]  # SDS has no fake


def test_the_table_reads_the_rows(rows):
    sds, ikl = rows["sds"][0], rows["ikl"][0]
    text = speed_markdown([sds, ikl])
    ratio = ikl["s_per_step"] / sds["s_per_step"]
    assert f"IKL / SDS: {ratio:.2f}x per step" in text
    assert text.count("| sds |") == 3 and text.count("| ikl |") == 3
    assert f"{12} steps per run" in text
