import json

from dream3d.pipelines.lab import LabOptions, dirac_identity, lab_dirac, lab_modes


def test_dirac_identity_in_float64():
    assert dirac_identity(seed=5) <= 1e-6


def test_learned_fake_score_on_a_dirac_generator_ends_where_sds_ends(tmp_path):
    m = lab_dirac(LabOptions(out=tmp_path, steps=300, progress=False))
    assert m["identity_max_abs_diff_float64"] <= 1e-6
    assert m["travel_mean"] > 1.0  # the points really moved...
    assert m["end_gap_max"] < 0.1  # ...and both guidances took them to the same place
    assert (tmp_path / "dirac_paths.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "metrics.json").read_text())["end_gap_max"] == m["end_gap_max"]


def test_ikl_covers_the_modes_sds_collapses(tmp_path):
    m = lab_modes(LabOptions(out=tmp_path, steps=1000, progress=False))
    assert m["ikl"]["modes_covered"] >= 7
    assert m["sds"]["modes_covered"] <= 2
    assert m["mmd2_ratio_sds_over_ikl"] >= 5.0
    assert (tmp_path / "modes.png").exists()
