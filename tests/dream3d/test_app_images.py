"""The app's Images tab, driven through gradio_client: one-step IKL and SDS next to DDIM."""

import re
import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from dream3d.app import AppConfig, serve  # noqa: E402

PROMPT = "a red chair"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Two one-step generators of "a red chair" as written by ``distill``: guidance -> file.

    Untrained (``distill``'s 2 steps and scoring took 130 s a generator on the shared 2-core
    machine): each is the teacher's x0-prediction at its own noise level, so they differ.
    """
    from dream3d.pipelines.distill import build, resolve, save_generator

    root = tmp_path_factory.mktemp("generators")
    for g, sigma in (("ikl", 2.5), ("sds", 5.0)):
        overrides = {"guidance": {"name": g}, "generator": {"sigma_init": sigma}}
        config = resolve(prompt=PROMPT, overrides=overrides)
        save_generator(build(config), config, root / f"{g}.safetensors")
    return {g: root / f"{g}.safetensors" for g in ("ikl", "sds")}


def _serve(tmp_path_factory, image_weights: dict):
    out = tmp_path_factory.mktemp("app")
    port = _free_port()
    page = serve(AppConfig(out=out, image_weights=image_weights), port=port, block=False)
    return page, Client(f"http://127.0.0.1:{port}/", verbose=False)


@pytest.fixture(scope="module")
def client(weights, tmp_path_factory):
    page, client = _serve(tmp_path_factory, weights)
    yield client
    page.close()


def _sample(client: Client, prompt: str, n=4, seed=0):
    """(status, the grids' labels, the grids (H, W, 3) uint8 or None)."""
    status, *updates = client.predict(prompt, n, seed, api_name="/sample_images")
    labels = [u["label"] for u in updates]
    paths = [u["value"] for u in updates]
    return status, labels, [p and np.array(Image.open(p).convert("RGB")) for p in paths]


def test_sample_gives_three_grids_of_four_32px_images_and_the_ikl_one_is_side_by_sides(
    client, weights
):
    from dream3d.app import IMAGE_GRID
    from dream3d.pipelines.distill import side_by_side
    from dream3d.pipelines.world import grid_array

    status, labels, grids = _sample(client, PROMPT)
    # one row of 4: each 32 px image in a 1 px white border, 34 px a cell, upscaled 3x
    assert [g.shape for g in grids] == [(34 * 3, 4 * 34 * 3, 3)] * 3
    times = re.findall(r"(one-step IKL|one-step SDS|teacher DDIM 50) (\d+\.\d\d) s", status)
    names = ["one-step IKL", "one-step SDS", "teacher DDIM 50"]
    assert [name for name, _ in times] == names
    assert labels == [f"{name} — {s} s" for name, s in times]
    assert status.startswith("4 samples of 'a red chair', seed 0: ")
    expected = side_by_side(PROMPT, 4, 0, weights, ddim_steps=1)  # the same one-step columns
    assert list(expected) == [*names[:2], "teacher DDIM 1"]
    ikl, sds = (grid_array(expected[name][0], **IMAGE_GRID) for name in names[:2])
    np.testing.assert_array_equal(grids[0], ikl)  # the same z: the same pixels
    np.testing.assert_array_equal(grids[1], sds)
    assert not np.array_equal(ikl, sds)
    pixels = grids[0].reshape(-1, 3).astype(float) / 255
    r, g, b = pixels[(pixels < 0.8).any(axis=1)].mean(axis=0)  # not the near-white background
    assert r > g + 0.1 and r > b + 0.1  # the teacher's red chair


def test_a_prompt_outside_the_vocabulary_is_a_status_line_and_the_next_request_works(client):
    status, labels, grids = _sample(client, "an elephant")
    assert "vocabulary" in status and "\n" not in status and grids == [None] * 3
    assert labels == ["one-step IKL", "one-step SDS", "teacher DDIM 50"]
    assert _sample(client, "", n=1)[0].startswith("the prompt is empty")
    assert _sample(client, PROMPT, n=33)[0] == "samples must be from 1 to 32, got 33"
    status, _, grids = _sample(client, PROMPT, n=1, seed=1)
    assert status.startswith("1 samples of 'a red chair', seed 1")
    assert [g.shape for g in grids] == [(34 * 3, 34 * 3, 3)] * 3


def test_a_missing_generator_file_is_a_status_line(weights, tmp_path_factory, tmp_path):
    missing = {"ikl": tmp_path / "none.safetensors", "sds": weights["sds"]}
    page, client = _serve(tmp_path_factory, missing)
    try:
        status, _, grids = _sample(client, PROMPT)
    finally:
        page.close()
    assert status == f"generator weights not found: {missing['ikl']}"
    assert grids == [None] * 3
