"""A data set of your own for trainlab: a callable returning the train and test images and labels.

trainlab calls ``load(**args)`` with the study's ``data.args``. Images may be NCHW, NHWC or NHW
arrays or tensors, uint8 0-255 or float 0-1; labels are integers 0..K-1. A torch Dataset of
(image, label) items works too.
"""

import numpy as np


def load(noise=0.0, seed=0):
    """scikit-learn's 8x8 digits as float images in [0, 1], with Gaussian pixel noise of std ``noise``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images / 16.0  # N x 8 x 8, float in [0, 1]
    rng = np.random.default_rng(seed)
    images = np.clip(images + rng.normal(0.0, noise, images.shape), 0.0, 1.0)
    labels = digits.target
    return {
        "train": (images[:1500], labels[:1500]),
        "test": (images[1500:], labels[1500:]),
        "classes": [str(digit) for digit in range(10)],
    }
