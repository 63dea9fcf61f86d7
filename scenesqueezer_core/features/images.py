"""Checks and conversions shared by the extractors: numpy RGB images in, torch batches out."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import ImageError


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a C-contiguous (H, W, 3) uint8 array, or raise ImageError naming the problem."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected an (H, W, 3) uint8 numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(
            f"expected an (H, W, 3) RGB image, got shape {image.shape}; "
            "convert grayscale / RGBA images to RGB first (e.g. cv2.cvtColor)"
        )
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image, got dtype {image.dtype}; scale it to 0..255 and cast to uint8")
    if image.shape[0] < 32 or image.shape[1] < 32:
        raise ImageError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small: need at least 32x32")
    return np.ascontiguousarray(image)


def to_tensor_batch(images: list[np.ndarray], device: str):
    """(H, W, 3) uint8 images of one size -> (B, 3, H, W) float32 tensor in [0, 1] on ``device``."""
    import torch

    stacked = np.stack(images)  # (B, H, W, 3)
    return torch.from_numpy(stacked).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def batches_by_size(images: list[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of ``images`` grouped into batches of equal (H, W), at most ``batch_size`` each."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[image.shape[:2]].append(index)
    return [
        indices[start : start + batch_size]
        for indices in groups.values()
        for start in range(0, len(indices), batch_size)
    ]


def extract_in_batches(images: list, batch_size: int, device: str, run_batch) -> list:
    """Shared batching loop of the PyTorch extractors.

    ``run_batch(tensor (B, 3, H, W), width, height) -> list[Features]`` runs the model on images of
    one size; results come back in input order.
    """
    import torch

    images = [check_rgb_image(im) for im in images]
    results: list = [None] * len(images)
    for batch in batches_by_size(images, batch_size):
        height, width = images[batch[0]].shape[:2]
        with torch.inference_mode():
            features = run_batch(to_tensor_batch([images[i] for i in batch], device), width, height)
        for index, feats in zip(batch, features):
            results[index] = feats
    return results
