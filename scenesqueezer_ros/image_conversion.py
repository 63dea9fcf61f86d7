"""sensor_msgs Image / CompressedImage <-> (H, W, 3) uint8 RGB, the core's image format.

The real ROS 2 ``cv_bridge`` is used for raw images when it is importable (a full ROS 2 install);
otherwise (pip installs: PyPI's ``cv-bridge`` is ROS 1 code that breaks with numpy 2) a small
converter built on ``np.frombuffer`` and OpenCV handles the common encodings. 16-bit images are
scaled to 8 bits over the full 16-bit range (value / 257), as cv_bridge does.
"""

from __future__ import annotations

import io
import sys
import warnings

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from scenesqueezer_core.errors import ImageError

# encoding -> (channels, numpy dtype, OpenCV conversion to RGB or None)
_ENCODINGS: dict[str, tuple[int, type, int | None]] = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "rgb16": (3, np.uint16, None),
    "bgr16": (3, np.uint16, cv2.COLOR_BGR2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "16UC1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    # OpenCV names Bayer patterns after the second row's first two pixels, hence the shift.
    "bayer_rggb8": (1, np.uint8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, np.uint8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, np.uint8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, np.uint8, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": (1, np.uint16, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": (1, np.uint16, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": (1, np.uint16, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": (1, np.uint16, cv2.COLOR_BayerGB2RGB),
    # ROS "yuv422" is UYVY byte order; "yuv422_yuy2" is YUYV.
    "yuv422": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)

# A few hundred bytes of JPEG/PNG header can declare a 30000x30000 image; OpenCV would allocate
# its pixels (2.7 GB) before finding out the data is missing. 64 Mpx is far above any camera.
MAX_COMPRESSED_PIXELS = 64_000_000


def _real_cv_bridge():
    """The ROS 2 cv_bridge, or None. PyPI's ROS 1 ``cv-bridge`` has no compiled boost module."""
    try:
        from cv_bridge import CvBridge
        from cv_bridge.boost.cv_bridge_boost import cvtColor2  # noqa: F401
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
    return _convert_raw(msg)


def _convert_raw(msg: Image) -> np.ndarray:
    encoding = msg.encoding
    if encoding not in _ENCODINGS:
        raise ImageError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}. "
            "Republish the images in one of them (e.g. with image_proc) or use the compressed transport."
        )
    channels, dtype, conversion = _ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has no pixels: {width}x{height}")
    item = np.dtype(dtype).itemsize
    row_bytes = width * channels * item
    if channels == 2:  # packed 4:2:2: two bytes per pixel
        row_bytes = width * 2
        if width % 2:
            raise ImageError(f"{encoding} packs pixel pairs, so its width must be even; got {width}")
    if step < row_bytes:
        raise ImageError(
            f"image step {step} is smaller than width * bytes per pixel = {row_bytes} "
            f"({width} px of {encoding}); the publisher filled the message wrongly"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * height:
        raise ImageError(
            f"image data has {data.size} bytes, but height * step = {height} * {step} = "
            f"{height * step}; the message is truncated or its size fields are wrong"
        )
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    if channels == 2:
        pixels = np.ascontiguousarray(rows).reshape(height, width, 2)
    else:
        pixels = np.ascontiguousarray(rows).view(dtype)
        if item > 1:
            if bool(msg.is_bigendian) != (sys.byteorder == "big"):
                pixels = pixels.byteswap()
        pixels = pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)
    if pixels.dtype == np.uint16:
        # Round-to-nearest division by 257 maps 0..65535 onto 0..255 exactly at both ends.
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if conversion is not None:
        try:
            pixels = cv2.cvtColor(pixels, conversion)
        except cv2.error as error:
            raise ImageError(f"OpenCV cannot convert this {width}x{height} {encoding} image: {error}") from error
    return np.ascontiguousarray(pixels)


def compressed_msg_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB."""
    fmt = (msg.format or "").lower()
    if "compresseddepth" in fmt:
        raise ImageError(
            f"compressed format {msg.format!r} is a depth image; subscribe the colour or mono stream"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageError("compressed image message has no data")
    width, height = _compressed_image_size(bytes(msg.data), msg.format)
    if width * height > MAX_COMPRESSED_PIXELS:
        raise ImageError(
            f"compressed image declares {width}x{height} pixels, more than {MAX_COMPRESSED_PIXELS} "
            "(a corrupt header or a decompression bomb); publish camera-sized images"
        )
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageError(
            f"OpenCV could not decode the compressed image (format {msg.format!r}, {buffer.size} "
            "bytes); publish JPEG or PNG"
        )
    if decoded.dtype == np.uint16:
        decoded = ((decoded.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _compressed_image_size(data: bytes, fmt: str) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels (Pillow opens lazily)."""
    from PIL import Image as PilImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PilImage.DecompressionBombWarning)
            with PilImage.open(io.BytesIO(data)) as probe:
                return probe.size
    except Exception as error:  # noqa: BLE001 - any header Pillow cannot read is refused alike
        raise ImageError(
            f"could not decode the header of the compressed image (format {fmt!r}, {len(data)} bytes): "
            f"{error}; publish JPEG or PNG"
        ) from error


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
