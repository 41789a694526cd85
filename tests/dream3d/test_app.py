"""The Gradio app, driven as users drive it: gradio_client, and Chromium for the page."""

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import trimesh
import yaml

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import Status  # noqa: E402

from dream3d.app import TABLE, AppConfig, serve  # noqa: E402

FAST = {  # the preset of these tests: a few seconds of training, every output
    "train": {"steps": 8, "save_every": 4},
    "nerf": {"render": {"samples": 16, "shading": {"warmup": 4}}},
    "outputs": {"views_size": 32, "views_samples": 16},  # the outputs menu leaves these
}
ARGS = {"teacher": "oracle", "steps": 8, "seed": 0, "cfg_sds": 20, "cfg_ikl": 7.5}
TINY = {"video_frames": 4, "video_size": 32, "video_samples": 8, "mesh": {"resolution": 32}}
WARMUP = 10  # the oracle's fake UNet warms up 200 steps in a run; tests/dream3d/guidance test it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def spans():
    """Job folder name -> (start, end) of its ``compare``, timed once it holds a slot (end None
    while it runs). For speed alone, the outputs menu gets a "tiny" choice and the oracle's
    IKL fake a short warm-up."""
    from dream3d.app import RESOLUTIONS
    from dream3d.guidance import ikl
    from dream3d.pipelines import compare as compare_module

    seen, real = {}, compare_module.compare

    def timed(config, seeds, out, **kw):
        start = seen[out.name] = (time.perf_counter(), None)  # (start, end): None till it ends
        try:
            return real(config, seeds, out, **kw)
        finally:
            seen[out.name] = (start[0], time.perf_counter())

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_module, "compare", timed)
        patch.setitem(RESOLUTIONS, "tiny", TINY)
        patch.setattr(ikl, "WARMUP_FROM_SCRATCH", WARMUP)
        yield seen


def _serve(root: Path, concurrency: int = 1, queue: int = 16):
    """The app on a free port with the test preset: (its page, url, output root)."""
    preset = root / "fast.yaml"
    preset.write_text(yaml.safe_dump(FAST))
    port = _free_port()
    app = AppConfig(out=root / "out", preset=str(preset), concurrency=concurrency, queue=queue)
    page = serve(app, port=port, block=False)
    return page, f"http://127.0.0.1:{port}/", root / "out"


@pytest.fixture(scope="module")
def app(tmp_path_factory, spans):
    """The app (concurrency 1) with the test preset; yields (url, its output root)."""
    page, url, out = _serve(tmp_path_factory.mktemp("app"))
    yield url, out
    page.close()


def _submit(url: str, prompt: str, **kw):
    args = ARGS | kw
    client = Client(url, verbose=False)
    return client.submit(prompt, *args.values(), "tiny", api_name="/run_both")


def _folder(status: str) -> str:
    """The job folder's name from a final status line (it ends with the folder in backticks)."""
    return status.rsplit("`", 2)[1].split("/")[-1]


def _pair_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dream3d compare-")]


def test_two_clients_at_once_both_get_two_meshes_and_two_score_rows(app, spans):
    """The second waits in the queue (concurrency 1) and says its place; both finish."""
    url, root = app
    first = _submit(url, "a red cube")
    second = _submit(url, "a blue sphere", seed=3, teacher="oracle-camera")  # told the camera
    ranks = set()
    while not first.done():
        status = second.status()
        if status.code == Status.IN_QUEUE:
            ranks.add(status.rank)
        time.sleep(0.2)
    assert ranks == {0}  # waited, first in line, while the first job ran
    folders = []
    asked = ((first, "a red cube", 0, "oracle"), (second, "a blue sphere", 3, "oracle-camera"))
    for job, prompt, seed, teacher in asked:
        status, table, *panes = job.result(timeout=600)
        assert "**SDS** done · **IKL** done" in status
        folder = root / _folder(status)
        folders.append(folder.name)
        assert table["headers"] == list(TABLE) and len(table["data"]) == 2
        for row, guidance, pane in zip(table["data"], ("sds", "ikl"), (panes[:7], panes[7:])):
            metrics = json.loads((folder / f"{guidance}-{seed}" / "metrics.json").read_text())
            assert metrics["prompt"] == prompt and metrics["steps"] == ARGS["steps"]
            assert metrics["teacher"] == teacher
            truth = metrics["truth"]
            assert row[:7] == [guidance, seed] + [truth.get(k, "") for k in TABLE[2:7]]
            assert row[7] == metrics["train_seconds"] < row[8]  # training, then the outputs
            live, curves, video, mesh, *downloads = pane
            assert Path(video).suffix == ".mp4" and Path(video).stat().st_size > 1000
            glb = trimesh.load(mesh, force="mesh")
            assert len(glb.vertices) == metrics["mesh"]["vertices"] > 0
            assert [Path(d["value"]).name for d in downloads] == [
                "mesh.glb",
                "mesh.obj",
                "mesh.ply",
            ]
        assert (folder / "compare.md").is_file() and (folder / "compare.mp4").is_file()
    assert spans[folders[0]][1] <= spans[folders[1]][0]  # one after the other


def test_with_concurrency_2_two_clients_train_at_once(tmp_path, spans):
    """``--concurrency 2``: neither waits for the other; both train at once (then cancel)."""
    page, url, root = _serve(tmp_path, concurrency=2)
    try:
        jobs = [_submit(url, p, steps=2000) for p in ("a red cube", "a blue sphere")]
        deadline = time.time() + 120
        while time.time() < deadline and len(_started(spans, root)) < 2:
            time.sleep(0.2)
        started = _started(spans, root)
        assert len(started) == 2, "both runs started"
        assert all(end is None for _, end in started.values()), "before either ended"
        for job in jobs:
            job.cancel()
        deadline = time.time() + 60
        while _pair_threads() and time.time() < deadline:
            time.sleep(0.5)
        assert not _pair_threads(), "both stopped"
    finally:
        page.close()


def test_a_full_queue_tells_the_next_client_the_app_is_busy(tmp_path, spans):
    """``queue=1``: one run trains, one waits (told its place), the third is refused at once;
    cancelling the waiting one lets a new request in."""
    from gradio_client.utils import QueueError

    page, url, root = _serve(tmp_path, queue=1)
    try:
        first = _submit(url, "a red cube", steps=2000)
        deadline = time.time() + 120
        while first.status().code != Status.ITERATING and time.time() < deadline:
            time.sleep(0.2)
        second = _submit(url, "a blue sphere", steps=2000)
        while second.status().code != Status.IN_QUEUE and time.time() < deadline:
            time.sleep(0.2)
        assert second.status().rank == 0  # first in line
        with pytest.raises(QueueError, match="Queue is full"):
            _submit(url, "a chair", steps=2000).result(timeout=60)
        second.cancel()
        time.sleep(1)
        third = _submit(url, "a table", steps=2000)  # the freed place is taken
        while third.status().code != Status.IN_QUEUE and time.time() < deadline:
            time.sleep(0.2)
        assert third.status().code == Status.IN_QUEUE
        for job in (third, first):
            job.cancel()
        while _pair_threads() and time.time() < deadline:
            time.sleep(0.5)
        assert not _pair_threads()
    finally:
        page.close()


def _started(spans: dict, root: Path) -> dict:
    """The spans of the jobs in ``root`` that have started."""
    return {p.name: spans[p.name] for p in root.glob("compare-*") if p.name in spans}


def test_a_cancelled_client_stops_its_run_and_the_app_goes_on_serving(app):
    url, root = app
    job = _submit(url, "a table", steps=2000)
    deadline = time.time() + 120
    while job.status().code != Status.ITERATING and time.time() < deadline:
        time.sleep(0.2)
    assert _pair_threads(), "the run started"
    job.cancel()
    deadline = time.time() + 60
    while _pair_threads() and time.time() < deadline:
        time.sleep(0.5)
    assert not _pair_threads(), "training stopped"
    (folder,) = root.glob("compare-a-table-*")
    assert not (folder / "sds-0" / "metrics.json").exists() and not (folder / "ikl-0").exists()
    with pytest.raises(AppError, match="steps must be from 1 to 5000, got 0"):
        _submit(url, "a chair", steps=0).result(timeout=60)


@pytest.mark.parametrize(
    "prompt, kw, words",
    [
        ("", {}, "the prompt is empty"),
        ("a purple xylophone", {}, "not in the toy world's vocabulary (objects: chair"),
        ("a chair", {"steps": 0}, "steps must be from 1 to 5000, got 0"),
        ("a chair", {"steps": 9000}, "steps must be from 1 to 5000, got 9000"),
        ("a chair", {"seed": -1}, "seed must be from 0 to 2147483647, got -1"),
        ("a chair", {"cfg_ikl": -1}, "IKL CFG scale must be from 0 to 200"),
        ("a chair", {"teacher": "nobody/no-such-model"}, "'nobody/no-such-model' is not on this"),
    ],
)
def test_bad_input_is_a_message_and_the_app_answers_the_next_request(app, prompt, kw, words):
    url, _ = app
    with pytest.raises(AppError) as err:
        _submit(url, prompt, **kw).result(timeout=120)
    assert words in str(err.value)


def test_a_failing_run_reports_its_error_and_frees_its_slot(tmp_path):
    from dream3d.app import PairRun
    from dream3d.pipelines.compare import sides
    from dream3d.pipelines.text_to_3d import resolve

    overrides = {"train": {"steps": 5}, "teacher": {"weights": str(tmp_path / "none.st")}}
    config = resolve("a chair", None, overrides)
    slots = threading.Semaphore(1)
    job = PairRun(config, sides(), tmp_path / "job", slots).start()
    job.thread.join(60)
    assert job.done and "no tiny teacher weights at" in job.error
    assert slots.acquire(blocking=False)  # the next run in line may start


def test_stable_diffusion_models_in_the_hub_cache_are_teachers_on_the_page(hub_cache):
    from dream3d.app import app_config, teacher_choices

    assert teacher_choices() == ["tiny", "tiny-camera", "oracle", "oracle-camera", "tiny/sd"]
    config, sides = app_config(AppConfig(), "a red cube", "tiny/sd", 5, 0, [25, 7], "draft")
    assert (config.teacher.name, config.teacher.model, config.train.steps) == ("sd", "tiny/sd", 5)
    assert {name: side.cfg_scale for name, side in sides.items()} == {"sds": 25.0, "ikl": 7.0}
    assert config.outputs.video_size == 64 and config.outputs.mesh.resolution == 48


def _chromium(webgl: bool):
    """Selenium's Chrome driver on Debian's chromium (no downloads), headless.

    Without ``webgl`` the mesh viewers draw nothing and cost no CPU (tests: runs go faster).
    """
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser, driver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (browser.is_file() and driver.is_file()):
        if os.environ.get("DREAM3D_NEEDS_BROWSER"):  # CI installs them: missing is a failure
            pytest.fail("chromium and chromedriver are not installed (apt install chromium-driver)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        *([] if webgl else ["--disable-gpu", "--disable-software-rasterizer"]),
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(driver)), options=options)


def run_in_browser(
    url: str, prompt: str, screenshot: Path, outputs="standard", wait=600, webgl=True
):
    """Type the prompt, click "Run both", wait for both result panes, save a full-page shot.

    Returns the page's score table (a list of rows of cell texts) and whether each pane's
    turntable loops.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chromium(webgl)
    try:
        driver.get(url)
        until = WebDriverWait(driver, wait, poll_frequency=0.5).until
        box = until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"))
        box.send_keys(prompt)
        driver.find_element(By.CSS_SELECTOR, f"#outputs input[value='{outputs}']").click()
        driver.find_element(By.ID, "run-both").click()
        for pane in ("pane-sds", "pane-ikl"):  # the turntable and the mesh viewer of each
            until(lambda d, p=pane: d.find_elements(By.CSS_SELECTOR, f"#{p} video"))
            until(lambda d, p=pane: d.find_elements(By.CSS_SELECTOR, f"#{p} canvas"))
        until(
            lambda d: (
                "**" not in d.find_element(By.ID, "status").text
                and "IKL done" in d.find_element(By.ID, "status").text
            )
        )
        rows = [
            [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "[role=gridcell]")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#scores [role=row].virtual-row")
        ]
        until(lambda d: all(v.get_property("src") for v in d.find_elements(By.TAG_NAME, "video")))
        loops = [
            driver.find_element(By.CSS_SELECTOR, f"#{p} video").get_property("loop")
            for p in ("pane-sds", "pane-ikl")
        ]
        time.sleep(2)  # let the mesh viewers draw
        bottom = driver.execute_script(  # of the page's content, in a window smaller than it
            "return Math.max(...[...document.querySelectorAll('body *')]"
            ".map(e => e.getBoundingClientRect().bottom + window.scrollY))"
        )
        metrics = {"width": 1400, "height": int(bottom) + 16, "deviceScaleFactor": 1}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics | {"mobile": False})
        time.sleep(1)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return rows, loops
    finally:
        driver.quit()


def test_in_chromium_a_prompt_and_run_both_give_both_result_panes(app, tmp_path):
    url, root = app
    shot = Path(os.environ.get("DREAM3D_SHOT", tmp_path / "app.png"))
    rows, loops = run_in_browser(url, "a blue cube", shot, "tiny", wait=300, webgl=False)
    assert [row[:2] for row in rows] == [["sds", "0"], ["ikl", "0"]]
    assert loops == [False, False]  # the turntables play once: looping cost training CPU
    (folder,) = root.glob("compare-a-blue-cube-*")
    for row, guidance in zip(rows, ("sds", "ikl")):  # the page shows the runs' own scores
        truth = json.loads((folder / f"{guidance}-0" / "metrics.json").read_text())["truth"]
        shown = dict(zip(TABLE[2:6], map(float, row[2:6])))
        assert shown == {k: truth[k] for k in TABLE[2:6]}  # occupancy, silhouette IoU, ...
    assert rows[0][2:6] != rows[1][2:6]  # two guidances, two NeRFs
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 1400 and image.height > 1000


def test_the_page_is_updated_at_most_once_a_second_and_at_once_when_the_pair_ends(tmp_path):
    from types import SimpleNamespace

    from dream3d.app import UPDATE_EVERY, PairRun, _updates

    config = SimpleNamespace(train=SimpleNamespace(steps=1000))
    job = PairRun(config, {"sds": None, "ikl": None}, tmp_path, threading.Semaphore(1))
    ended = []

    def steps():  # a step every 10 ms for 2.5 s, then the end
        for _ in range(250):
            time.sleep(0.01)
            job._bump()
        job.done, _ = True, ended.append(time.perf_counter())
        job._bump()

    threading.Thread(target=steps).start()
    times = [
        time.perf_counter() for _ in _updates(None, job, "status", "table", {"sds": {}, "ikl": {}})
    ]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 2 <= len(times) <= 4, times  # not 250
    assert min(gaps[:-1], default=UPDATE_EVERY) >= 0.95 * UPDATE_EVERY, gaps
    assert times[-1] - ended[0] < 0.2  # the last update does not wait out the second


if __name__ == "__main__":  # the README's screenshot: python tests/dream3d/test_app.py OUT.png
    import sys

    port = _free_port()
    page = serve(AppConfig(), port=port, block=False)
    print(
        *run_in_browser(
            f"http://127.0.0.1:{port}/",
            sys.argv[2] if len(sys.argv) > 2 else "a red chair",
            Path(sys.argv[1]),
            wait=1800,
        )
    )
    page.close()


def test_a_particle_run_previews_a_row_per_particle_and_shows_particle_0s_mesh(tmp_path):
    import numpy as np

    from dream3d.app import _finished, preview
    from generators.nerf.particles import NeRFParticles

    particles = NeRFParticles(None, 2, seed=0)
    rows = preview(particles, size=16, samples=8)
    assert rows.shape == (32, 64, 3)
    assert np.array_equal(rows[:16], preview(particles.nerfs[0], size=16, samples=8))
    assert not np.array_equal(rows[:16], rows[16:])  # particle 1 starts elsewhere

    class Stub:  # gradio's DownloadButton, remembering its value
        def __init__(self):
            self.DownloadButton = lambda value, visible: value

    pane = {k: k for k in ("video", "mesh", "glb", "obj", "ply")}
    update = _finished(Stub(), pane, tmp_path)
    assert update["mesh"] == str(tmp_path / "particle-0" / "mesh.glb")
    assert update["ply"] == str(tmp_path / "particle-0" / "mesh.ply")
    (tmp_path / "mesh.glb").touch()  # a single NeRF's run
    assert _finished(Stub(), pane, tmp_path)["mesh"] == str(tmp_path / "mesh.glb")
