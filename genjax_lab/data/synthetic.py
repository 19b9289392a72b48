"""Synthetic ground truth for generative models: known parameters to sample data from."""

import numpy as np


def bars_topics(side: int = 5) -> np.ndarray:
    """The 2 * side "bars" topics on a side x side grid (Griffiths & Steyvers 2004):
    horizontal bars first, then vertical; each uniform over its side pixels. [2 side, side^2]."""
    topics = np.zeros((2 * side, side, side), np.float32)
    for i in range(side):
        topics[i, i, :] = 1.0
        topics[side + i, :, i] = 1.0
    return topics.reshape(2 * side, side * side) / side
