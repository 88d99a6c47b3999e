"""Label maps for the selective-compression tests (CamVid's class ids)."""

from __future__ import annotations

import numpy as np

SKY, ROAD, CAR = 0, 3, 8


def street_labels(height: int, width: int) -> np.ndarray:
    """A street-like label map: sky on top, road below, a car in the middle."""
    labels = np.full((height, width), SKY, dtype=np.uint8)
    labels[height // 2 :] = ROAD
    labels[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = CAR
    return labels
