"""Image conversion for every supported encoding (pure unit tests, no DDS)."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from scenesqueezer_core.bag.messages import SUPPORTED_ENCODINGS
from scenesqueezer_core.errors import ImageError
from scenesqueezer_ros.image_conversion import (
    bayer_mosaic,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    rgb_to_image_msg,
)


def random_rgb(height=24, width=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip_exactly(encoding):
    rgb = random_rgb()
    out = image_msg_to_rgb(rgb_to_image_msg(rgb, encoding), use_cv_bridge=False)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1", "mono16", "16UC1"])
def test_mono_encodings_give_grey_rgb(encoding):
    rgb = random_rgb()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = image_msg_to_rgb(rgb_to_image_msg(rgb, encoding), use_cv_bridge=False)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], grey)


def test_mono16_big_endian_and_full_range():
    values = np.array([[0, 257, 65535, 32896]], dtype=">u2")
    msg = Image(height=1, width=4, encoding="mono16", is_bigendian=1, step=8, data=values.tobytes())
    out = image_msg_to_rgb(msg, use_cv_bridge=False)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_demosaic_recovers_a_flat_colour(pattern):
    rgb = np.zeros((16, 20, 3), np.uint8)
    rgb[...] = (200, 90, 30)
    out = image_msg_to_rgb(rgb_to_image_msg(rgb, f"bayer_{pattern}8"), use_cv_bridge=False)
    # Borders of a demosaic are approximate; the interior of a flat field is exact.
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3), [[200, 90, 30]] * (12 * 16), atol=1)


def test_bayer16_is_scaled_and_demosaiced():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[...] = (10, 200, 60)
    mosaic = bayer_mosaic(rgb, "rggb").astype(np.uint16) * 257
    msg = Image(height=8, width=8, encoding="bayer_rggb16", step=16, data=mosaic.tobytes())
    out = image_msg_to_rgb(msg, use_cv_bridge=False)
    np.testing.assert_allclose(out[3, 3], (10, 200, 60), atol=1)


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_packed_yuv422_grey_image(encoding):
    # A grey image has U = V = 128 in both byte orders; Y is video range (16..235).
    packed = np.full((4, 8, 2), 128, np.uint8)
    y_channel = 1 if encoding == "yuv422" else 0
    packed[..., y_channel] = 77
    msg = Image(height=4, width=8, encoding=encoding, step=16, data=packed.tobytes())
    out = image_msg_to_rgb(msg, use_cv_bridge=False)
    np.testing.assert_allclose(out, (77 - 16) * 255 / 219, atol=2)


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 9), width=st.integers(1, 9), padding=st.integers(0, 7),
       encoding=st.sampled_from(["rgb8", "bgr8", "mono8", "mono16", "bgra8"]))
def test_padded_rows_are_ignored(height, width, padding, encoding):
    rgb = random_rgb(height, width, seed=height * 31 + width)
    plain = rgb_to_image_msg(rgb, encoding)
    rows = np.frombuffer(plain.data, np.uint8).reshape(height, plain.step)
    padded_rows = np.concatenate([rows, np.full((height, padding), 255, np.uint8)], axis=1)
    padded = Image(height=height, width=width, encoding=encoding, step=plain.step + padding,
                   data=padded_rows.tobytes())
    np.testing.assert_array_equal(image_msg_to_rgb(padded, use_cv_bridge=False),
                                  image_msg_to_rgb(plain, use_cv_bridge=False))


def test_every_supported_encoding_converts():
    for encoding in SUPPORTED_ENCODINGS:
        channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "rgb16": 6, "bgr16": 6}.get(encoding)
        if channels is None:
            channels = 2 if ("yuv" in encoding or encoding in ("uyvy", "yuyv") or "16" in encoding) else 1
        msg = Image(height=4, width=6, encoding=encoding, step=6 * channels, data=bytes(4 * 6 * channels))
        out = image_msg_to_rgb(msg, use_cv_bridge=False)
        assert out.shape == (4, 6, 3) and out.dtype == np.uint8, encoding


def test_errors_name_the_cause():
    rgb = random_rgb(4, 4)
    msg = rgb_to_image_msg(rgb, "rgb8")
    msg.encoding = "32FC1"
    with pytest.raises(ImageError, match="unsupported image encoding '32FC1'"):
        image_msg_to_rgb(msg, use_cv_bridge=False)
    msg = rgb_to_image_msg(rgb, "rgb8")
    msg.step = 5
    with pytest.raises(ImageError, match="step 5 is smaller"):
        image_msg_to_rgb(msg, use_cv_bridge=False)
    msg = rgb_to_image_msg(rgb, "rgb8")
    msg.height = 8
    with pytest.raises(ImageError, match="truncated"):
        image_msg_to_rgb(msg, use_cv_bridge=False)


@pytest.mark.parametrize("ext,fmt", [(".png", "rgb8; png compressed bgr8"), (".jpg", "jpeg")])
def test_compressed_images(ext, fmt):
    rgb = random_rgb(32, 48)
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    out = compressed_msg_to_rgb(CompressedImage(format=fmt, data=buffer.tobytes()))
    assert out.shape == rgb.shape
    if ext == ".png":
        np.testing.assert_array_equal(out, rgb)
    with pytest.raises(ImageError, match="could not decode"):
        compressed_msg_to_rgb(CompressedImage(format="jpeg", data=b"not an image"))
