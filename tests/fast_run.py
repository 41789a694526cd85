"""A `dream3d run` small enough for a test: every output, a few seconds of training."""

SMALLEST_OUTPUTS = {  # every file a run writes, at the cheapest sizes
    "views_size": 16,
    "views_samples": 8,
    "video_frames": 2,
    "video_size": 16,
    "video_samples": 4,
    "mesh": {"resolution": 16},
}

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
