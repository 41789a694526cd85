import json

import pytest

from dream3d.guidance.fake_scores import DiracScore
from dream3d.pipelines.lab import LabOptions, dirac_identity, lab_dirac, lab_modes


def test_dirac_identity_reports_a_planted_difference(monkeypatch):
    """dirac_identity is the lab's max |g_SDS - g_IKL(dirac)| (the identity itself is checked
    against hand-computed g in tests/dream3d/guidance): a dirac fake score off by 1e-3 must
    show, since the uniform weighting passes the offset through as it is (w = 1)."""
    assert dirac_identity(seed=5) <= 1e-6
    exact = DiracScore.eps
    monkeypatch.setattr(DiracScore, "eps", lambda self, *a, **k: exact(self, *a, **k) + 1e-3)
    assert dirac_identity(seed=5) >= 1e-3 - 1e-12


def test_learned_fake_score_on_a_dirac_generator_ends_where_sds_ends(tmp_path):
    m = lab_dirac(LabOptions(out=tmp_path, steps=300, progress=False))
    assert m["travel_mean"] > 1.0  # the points really moved...
    assert m["end_gap_max"] < 0.1  # ...and both guidances took them to the same place
    assert (tmp_path / "dirac_paths.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["end_gap_max"] == m["end_gap_max"] and "identity_max_abs_diff_float64" in saved


def test_ikl_covers_the_modes_sds_collapses(tmp_path):
    m = lab_modes(LabOptions(out=tmp_path, steps=1000, progress=False))
    assert m["ikl"]["modes_covered"] >= 7
    assert m["sds"]["modes_covered"] <= 2
    assert m["mmd2_ratio_sds_over_ikl"] >= 5.0
    assert (tmp_path / "modes.png").exists()


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bars_follow_the_option(tmp_path, capsys, progress):
    lab_dirac(LabOptions(out=tmp_path, steps=2, progress=progress))
    bars = capsys.readouterr().err
    assert ("dirac sds start 0" in bars) == progress  # --quiet: not one bar


def test_the_labs_keep_their_own_training_settings_whatever_the_run_defaults():
    """The labs' measured numbers (README) come from batches of 256, a history row every 10
    steps and the MLP fake score's lr 1e-3, not from dream3d run's defaults."""
    from dream3d.pipelines.lab import _guidance_options, _train_config

    config = _train_config(LabOptions(progress=False), 100, 1e-3, 0)
    assert (config.batch, config.log_every, config.lr_schedule) == (256, 10, "cosine")
    assert _guidance_options(LabOptions())["fake_lr"] == 1e-3
    assert _guidance_options(LabOptions(), fake_lr=5e-4)["fake_lr"] == 5e-4


def test_a_lab_keeps_what_makes_dmd_dmd_and_the_user_still_wins():
    from dream3d.pipelines.lab import LabOptions, _guidance_options

    lab = {"weighting": "uniform", "fake_steps": 2}  # lab modes' IKL settings
    assert _guidance_options(LabOptions(), "ikl", **lab)["fake_steps"] == 2
    dmd = _guidance_options(LabOptions(), "dmd", **lab)
    assert (dmd["weighting"], dmd["fake_steps"]) == ("dmd", 5)
    assert _guidance_options(LabOptions(), "sid", **lab)["fake_steps"] == 1
    assert _guidance_options(LabOptions(fake_steps=3), "dmd", **lab)["fake_steps"] == 3
