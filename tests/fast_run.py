"""A `dream3d run` small enough for a test: every output, a few seconds of training."""

FAST_RUN = {
    "train": {"steps": 20, "save_every": 10},
    "nerf": {"render": {"samples": 16, "shading": {"warmup": 10}}},
    "outputs": {
        "views_size": 32,
        "views_samples": 16,
        "video_frames": 4,
        "video_size": 32,
        "video_samples": 8,
        "mesh": {"resolution": 32},
    },
}
