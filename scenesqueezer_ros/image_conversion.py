"""sensor_msgs Image / CompressedImage <-> (H, W, 3) uint8 RGB, the core's image format.

The real ROS 2 ``cv_bridge`` is used for raw images when it is importable (a full ROS 2 install);
otherwise (pip installs: PyPI's ``cv-bridge`` is ROS 1 code that breaks with numpy 2) the core's
decoder (``scenesqueezer_core.bag.messages``, the one the offline replay uses) handles the common
encodings. 16-bit images are scaled to 8 bits over the full 16-bit range (value / 257), as
cv_bridge does.
"""

from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from scenesqueezer_core.bag.messages import compressed_image_to_rgb, raw_image_to_rgb
from scenesqueezer_core.errors import ImageError

def _real_cv_bridge():
    """The ROS 2 cv_bridge, or None. PyPI's ROS 1 ``cv-bridge`` has no compiled boost module."""
    try:
        from cv_bridge import CvBridge
        from cv_bridge.boost.cv_bridge_boost import cvtColor2  # noqa: F401 - probes the compiled module
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None
    return CvBridge()


_CV_BRIDGE = _real_cv_bridge()


def image_msg_to_rgb(msg: Image, use_cv_bridge: bool | None = None) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (a new array, not a view of the message).

    use_cv_bridge: None uses the real cv_bridge when importable; False forces the built-in converter.
    Raises ImageError for unsupported encodings and for buffers inconsistent with width/height/step.
    """
    if use_cv_bridge is None:
        use_cv_bridge = _CV_BRIDGE is not None
    if use_cv_bridge:
        if _CV_BRIDGE is None:
            raise ImageError("cv_bridge was requested but the ROS 2 cv_bridge is not importable")
        rgb = _CV_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        return np.ascontiguousarray(rgb)
    return raw_image_to_rgb(msg)


def compressed_msg_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB (the core's decoder)."""
    return compressed_image_to_rgb(msg)


def rgb_to_image_msg(rgb: np.ndarray, encoding: str = "rgb8", header=None) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8,
    mono16, bayer_*8). For publishers and tests; 16-bit output spans the full range (value * 257)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == "bgra8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif encoding in ("mono8", "8UC1"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding in ("mono16", "16UC1"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    elif encoding.startswith("bayer_") and encoding.endswith("8"):
        pixels = bayer_mosaic(rgb, encoding[len("bayer_"):-1])
    else:
        raise ImageError(f"rgb_to_image_msg cannot write encoding {encoding!r}")
    pixels = np.ascontiguousarray(pixels)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = pixels.strides[0]
    msg.data = pixels.tobytes()
    return msg


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) single-channel Bayer mosaic; pattern like 'rggb' (row-major 2x2)."""
    if sorted(pattern) != sorted("rggb"):
        raise ImageError(f"unknown Bayer pattern {pattern!r}; use rggb, bggr, gbrg or grbg")
    channel_of = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for index, letter in enumerate(pattern):
        dy, dx = divmod(index, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel_of[letter]]
    return mosaic
