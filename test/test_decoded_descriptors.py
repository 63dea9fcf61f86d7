"""The 16-bit store of a compressed map's decoded descriptors (maps/decoded_descriptors.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scenesqueezer_core.maps.decoded_descriptors import FIXED_MAX, FixedPointDescriptorStore


def unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 40), st.sampled_from([8, 64, 128])),
              elements=st.floats(-1, 1, width=32)),
       st.data())
def test_round_trip_error_is_bounded_and_each_point_is_decoded_once(raw, data):
    """Each element comes back within half a step of its row's scale (peak / 32767); a unit row's cosine
    with any unit vector moves by at most sqrt(D) * half a step; a point is decoded only once."""
    descriptors = unit_rows(raw.astype(np.float64)).astype(np.float32)
    calls = []

    def decode(ids):
        calls.append(ids.copy())
        return descriptors[ids]

    store = FixedPointDescriptorStore(len(descriptors), descriptors.shape[1], decode)
    ids = np.asarray(data.draw(st.lists(st.integers(0, len(descriptors) - 1), min_size=1, max_size=60)))
    out = store(ids)
    assert out.shape == (len(ids), descriptors.shape[1]) and out.dtype == np.float32
    half_step = np.abs(descriptors[ids]).max(axis=1, keepdims=True) / FIXED_MAX / 2
    assert np.all(np.abs(out - descriptors[ids]) <= half_step * 1.001 + 1e-7)
    probe = unit_rows(np.random.default_rng(0).normal(size=(5, descriptors.shape[1])))
    bound = np.sqrt(descriptors.shape[1]) * half_step.max() * 1.001 + 1e-6
    assert np.abs(out @ probe.T - descriptors[ids] @ probe.T).max() <= bound
    store(ids)  # asked again: nothing decoded again, each point was decoded in one call
    decoded = np.concatenate(calls)
    assert len(decoded) == len(np.unique(decoded)) == len(np.unique(ids)) == store.num_decoded


def test_zero_rows_count_as_decoded():
    store = FixedPointDescriptorStore(3, 4, lambda ids: np.zeros((len(ids), 4), np.float32))
    assert np.all(store(np.array([0, 2])) == 0) and store.num_decoded == 2
