"""DSQ quantizers: the quantizer math, serialization, and the shipped weights on real held-out images."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scenesqueezer_core.compression.quantizer_training import (
    ap_loss,
    evaluate_descriptor_quantizer,
    train_descriptor_quantizer,
    train_global_quantizer,
)
from scenesqueezer_core.compression.train_quantizer import extract_features
from scenesqueezer_core.errors import ConfigError, MapFileError
from scenesqueezer_core.maps.quantizer import (
    DSQ,
    DescriptorQuantizer,
    GlobalQuantizer,
    load_descriptor_quantizer,
    shipped_weights_path,
)
from scenesqueezer_core.maps.quantizer_file import read_safetensors_metadata

torch.set_num_threads(2)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FOUNTAIN = DATA / "strecha_fountain_p11"

finite = st.floats(-2.0, 2.0, allow_nan=False, width=32)


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- DSQ math ----


@given(arrays(np.float32, st.integers(1, 64), elements=finite))
def test_dsq_hard_output_is_integer_levels_in_range(x):
    dsq = DSQ(bits=8).eval()
    t = torch.from_numpy(x)
    codes = dsq.codes(t)
    assert codes.min() >= 0 and codes.max() <= 255
    out = dsq(t)  # eval mode: hard
    index = (out - dsq.lower) / dsq.delta
    assert torch.allclose(index, index.round(), atol=1e-3)
    assert torch.equal(index.round().long(), codes)


@given(arrays(np.float32, st.integers(1, 64), elements=st.floats(-0.5, 0.5, width=32)))
def test_dsq_error_bounded_by_half_interval(x):
    dsq = DSQ(bits=8)
    t = torch.from_numpy(x)
    assert (dsq.hard(t) - t).abs().max() <= dsq.delta / 2 + 1e-6
    # The soft value stays inside the interval that holds x.
    assert (dsq.soft(t) - t).abs().max() <= dsq.delta + 1e-6


@given(arrays(np.float32, st.integers(1, 64), elements=st.floats(-0.48828125, 0.48828125, width=32)))
def test_dsq_soft_tends_to_hard_as_alpha_shrinks(x):
    dsq = DSQ(bits=8)
    t = torch.from_numpy(x).double()
    offset = ((t - dsq.lower) / dsq.delta) % 1.0
    away_from_centre = (offset - 0.5).abs() > 0.25  # at the centre itself the soft value is the midpoint
    soft = dsq.soft(t, alpha=1e-9)
    hard = dsq.hard(t).double()
    assert ((soft - hard).abs()[away_from_centre] <= 0.01 * dsq.delta).all()
    # A large alpha is far from rounding: the two differ somewhere for generic inputs.
    assert (dsq.soft(t, alpha=0.5) - t).abs().max() <= dsq.delta


def test_dsq_soft_is_monotone_and_differentiable_in_alpha():
    dsq = DSQ(bits=4).train()
    x = torch.linspace(-0.6, 0.6, 2001, requires_grad=True)
    y = dsq(x)
    assert (y[1:] - y[:-1] >= -1e-6).all()
    y.sum().backward()
    assert dsq.alpha.grad is not None and torch.isfinite(dsq.alpha.grad)
    assert x.grad is not None and (x.grad >= 0).all()


def test_dsq_rejects_bits_beyond_a_byte():
    with pytest.raises(ConfigError, match="bits"):
        DSQ(bits=9)


# ---- model API ----


@pytest.mark.parametrize("in_dim,code_dim,hidden", [(64, 64, 128), (128, 128, 256), (128, 32, 0)])
def test_encode_decode_shapes_and_dtypes(in_dim, code_dim, hidden):
    model = DescriptorQuantizer(in_dim=in_dim, code_dim=code_dim, hidden_dim=hidden)
    x = _unit(np.random.default_rng(0), 300, in_dim)
    codes = model.encode(x, batch_size=128)
    assert codes.shape == (300, code_dim) and codes.dtype == np.uint8
    decoded = model.decode(codes)
    assert decoded.shape == (300, in_dim) and decoded.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match=r"\(N, %d\)" % in_dim):
        model.encode(x[:, :-1])
    with pytest.raises(ConfigError, match="uint8"):
        model.decode(codes.astype(np.int32))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_fresh_quantizer_is_a_fine_quantizer_and_codes_are_stable(seed):
    """The initial companding quantizer: decode(encode(x)) ~ x, and encode(decode(c)) ~ c."""
    torch.manual_seed(seed % 1000)
    model = DescriptorQuantizer(in_dim=64, code_dim=64, hidden_dim=128)
    x = _unit(np.random.default_rng(seed), 64, 64)
    codes = model.encode(x)
    decoded = model.decode(codes)
    assert (decoded * x).sum(1).min() > 0.999
    again = model.encode(decoded)
    assert np.abs(again.astype(int) - codes.astype(int)).max() <= 2
    np.testing.assert_array_equal(model.encode(model.decode(again)).astype(int) - again, 0 * again)


@given(arrays(np.float32, (16, 64), elements=st.floats(-1, 1, width=32)).filter(lambda a: (np.abs(a).sum(1) > 1e-3).all()))
@settings(max_examples=25, deadline=None)
def test_quantization_error_in_dsq_space_is_at_most_half_a_step(x):
    model = DescriptorQuantizer(in_dim=64, code_dim=64, hidden_dim=128)
    with torch.no_grad():
        latent = model.latent(torch.from_numpy(x))
    levels = model.dsq.dequantize(torch.from_numpy(model.encode(x)).long())
    assert (latent - levels).abs().max() <= model.dsq.delta / 2 + 1e-6


# ---- serialization ----


def test_safetensors_round_trip_is_bit_exact_and_loads_no_pickle(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = _unit(rng, 2000, 64)
    model = train_descriptor_quantizer(x, {"epochs": 1, "progress": False, "batch_size": 500})
    path = model.to_safetensors(tmp_path / "q.safetensors")

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle used while loading quantizer weights")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = DescriptorQuantizer.from_safetensors(path, expected_hash=model.content_hash)
    monkeypatch.undo()

    assert loaded.content_hash == model.content_hash
    assert loaded.conf == model.conf
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    codes = model.encode(x)
    np.testing.assert_array_equal(loaded.encode(x), codes)
    np.testing.assert_array_equal(loaded.decode(codes), model.decode(codes))

    assert read_safetensors_metadata(path.read_bytes()) == read_safetensors_metadata(loaded.to_bytes())


def test_corrupt_or_foreign_weights_are_refused(tmp_path):
    model = DescriptorQuantizer(in_dim=64, code_dim=64, hidden_dim=0)
    data = bytearray(model.to_bytes())
    with pytest.raises(MapFileError, match="hash"):
        DescriptorQuantizer.from_bytes(bytes(data), expected_hash="0" * 64)
    data[-5] ^= 0xFF  # flip bits in the last tensor
    with pytest.raises(MapFileError, match="corrupt"):
        DescriptorQuantizer.from_bytes(bytes(data))
    with pytest.raises(MapFileError, match="'descriptor' quantizer, expected 'global'"):
        GlobalQuantizer.from_bytes(model.to_bytes())
    with pytest.raises(MapFileError, match="not a safetensors"):
        DescriptorQuantizer.from_bytes(b"garbage")
    with pytest.raises(MapFileError, match="train-quantizer"):
        DescriptorQuantizer.from_safetensors(tmp_path / "missing.safetensors")


def test_unknown_conf_is_an_error():
    with pytest.raises(ConfigError, match="unknown"):
        DescriptorQuantizer(in_dim=64, code_size=3)
    with pytest.raises(ConfigError, match="unknown training option"):
        train_descriptor_quantizer(np.ones((4, 8), np.float32), {"epoch": 1})


# ---- global quantizer / APLoss ----


def test_ap_loss_matches_exact_average_precision():
    # Similarities on bin centres make the binned AP exact: ranking + - + - - gives AP = (1 + 2/3) / 2.
    query = torch.tensor([[1.0, 0.0]])
    sims = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    angles = torch.arccos(sims)
    database = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    positives = torch.tensor([[True, False, True, False, False]])
    loss = ap_loss(query, database, positives, num_bins=9)  # bin width 0.25
    assert loss.item() == pytest.approx(1 - (1 + 2 / 3) / 2, abs=1e-5)
    perfect = ap_loss(query, database, torch.tensor([[True, True, False, False, False]]), num_bins=9)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)


def _retrieval_map(query: np.ndarray, database: np.ndarray, positives: np.ndarray) -> float:
    sim = query @ database.T
    np.fill_diagonal(sim, -np.inf)
    aps = []
    for i in range(len(query)):
        order = np.argsort(-sim[i])[:-1]
        hits = positives[i, order]
        if hits.any():
            ranks = np.nonzero(hits)[0] + 1
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return float(np.mean(aps))


def test_global_quantizer_trains_in_seconds_and_keeps_retrieval():
    rng = np.random.default_rng(0)
    places, per_place, dim = 8, 10, 256
    centres = _unit(rng, places, dim)
    labels = np.repeat(np.arange(places), per_place)
    desc = centres[labels] + 0.08 * rng.normal(size=(places * per_place, dim)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    positives = labels[:, None] == labels[None]
    model = train_global_quantizer(desc, positives, {"code_dim": 128, "epochs": 15, "progress": False, "max_seconds": 30})
    assert isinstance(model, GlobalQuantizer)
    codes = model.encode(desc)
    assert codes.shape == (len(desc), 128) and codes.dtype == np.uint8
    decoded = model.decode(codes)
    assert _retrieval_map(desc, decoded, positives) >= 0.95 * _retrieval_map(desc, desc, positives)
    assert model.training_history["seconds"] < 30
    with pytest.raises(ConfigError, match="positives"):
        train_global_quantizer(desc, positives[:5], {"progress": False})


# ---- shipped weights on real held-out images ----


def _held_out_pair(setup: str):
    if not FOUNTAIN.is_dir():
        pytest.skip(f"real data not found at {FOUNTAIN}")
    items = extract_features(FOUNTAIN, setup, "query")  # 0003.jpg, 0007.jpg: never used in training
    return items[0][1].descriptors, items[1][1].descriptors


@pytest.mark.parametrize(
    "features,bound",
    [("xfeat", 0.95), ("sift", 0.9), pytest.param("aliked", 0.9, marks=pytest.mark.slow)],
)
def test_shipped_weights_preserve_mutual_nn_matches_on_held_out_pair(features, bound):
    if not shipped_weights_path(features).is_file():
        pytest.fail(f"shipped weights {shipped_weights_path(features)} missing: run scripts/train_quantizers.py")
    model = load_descriptor_quantizer(features)
    desc0, desc1 = _held_out_pair(features)
    assert model.in_dim == desc0.shape[1]
    numbers = evaluate_descriptor_quantizer(model, desc0, desc1)
    print(features, numbers)
    assert numbers["num_raw_matches"] > 100
    assert numbers["cosine"] > 0.99
    assert numbers["mnn_agreement_map"] >= bound
    assert numbers["mnn_agreement_both"] >= bound - 0.05
