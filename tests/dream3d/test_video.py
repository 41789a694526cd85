import math

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from dream3d.cameras import CameraConfig
from dream3d.video import turntable_cameras, write_video


def moving_square(n: int, size: int) -> torch.Tensor:
    """Frames (n, 3, size, size) in [0, 1]: a white square moving right on black, all distinct."""
    frames = torch.zeros(n, 3, size, size)
    for i in range(n):
        frames[i, :, : size // 4, i : i + size // 4] = 1
    return frames


def read_mp4(path) -> tuple[tuple[int, int], list[np.ndarray]]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return (w, h), [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def test_gif_is_upscaled_and_loops(tmp_path):
    frames = moving_square(6, 32)
    path = write_video(frames, tmp_path / "turntable.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 6
        assert gif.size == (128, 128)  # 32 px upscaled 4 x
        assert gif.info["loop"] == 0 and gif.info["duration"] == 100
        gif.seek(1)
        frame = np.asarray(gif.convert("RGB"))
    expected = frames[1].permute(1, 2, 0).repeat_interleave(4, 0).repeat_interleave(4, 1) * 255
    np.testing.assert_array_equal(frame, expected.numpy())  # black and white survive the palette


def test_mp4_frames_and_even_size(tmp_path):
    frames = (moving_square(5, 129) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    path = write_video(frames, tmp_path / "turntable.mp4", fps=24)
    size, decoded = read_mp4(path)
    assert size == (130, 130)  # 129 padded to even for yuv420p
    assert len(decoded) == 5
    error = np.abs(decoded[2][:129, :129].astype(int) - frames[2].astype(int)).mean()
    assert error < 3  # near-lossless


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown video suffix '.avi'.*use .gif or .mp4"):
        write_video(moving_square(2, 8), tmp_path / "a.avi")


def test_turntable_cameras_go_once_round_at_the_asked_height_and_distance():
    s3 = math.sqrt(3)  # elevation 30 at radius 2: height 2 sin 30 = 1, ground radius 2 cos 30
    four = turntable_cameras(4, elevation=30, radius=2.0).origins
    expected = [[-s3, 0, 1], [0, -s3, 1], [s3, 0, 1], [0, s3, 1]]  # back, right, front, left
    assert torch.allclose(four, torch.tensor(expected), atol=1e-5)
    config = CameraConfig(radius=(2.0, 4.0), fov=55.0)
    for n in (3, 7, 30):
        cams = turntable_cameras(n, config=config)
        o = cams.origins.double()
        assert cams.fov == 55.0 and len(cams) == n
        assert o.norm(dim=1).tolist() == pytest.approx([3.0] * n)  # the middle of (2, 4)
        assert o[:, 2].tolist() == pytest.approx([3 * math.sin(math.radians(15))] * n)
        # each step turns the same 360 / n degrees the same way round, so n steps close the
        # circle exactly once: no frame repeats and none is missing
        angle = torch.atan2(o[:, 1], o[:, 0])
        turn = torch.remainder(angle.roll(-1) - angle, 2 * math.pi)
        assert turn.tolist() == pytest.approx([2 * math.pi / n] * n)
        chord = 2 * 3 * math.cos(math.radians(15)) * math.sin(math.pi / n)
        assert torch.cdist(o, o).add(torch.eye(n) * 99).min() == pytest.approx(chord, rel=1e-5)
