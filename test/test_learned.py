"""Learned selection: network parts, differentiable QP, losses, training data, exact resume, compress."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from scenesqueezer_core.cli import main
from scenesqueezer_core.compression.compress import compress_map
from scenesqueezer_core.dataset import load_dataset
from scenesqueezer_core.errors import ConfigError
from scenesqueezer_core.learned.data import POINT_STATS_DIM, build_training_samples, load_sample
from scenesqueezer_core.learned.inference import default_weights_path, load_learned_model
from scenesqueezer_core.learned.losses import distinctiveness_loss, pose_success_probability
from scenesqueezer_core.learned.networks import (
    AnchorVerificationFusion,
    LearnedConfig,
    SceneSqueezerNet,
    farthest_point_sampling,
    knn,
)
from scenesqueezer_core.learned.qp import qp_select, rbf_kernel
from scenesqueezer_core.learned.train import train
from scenesqueezer_core.maps.compressed_map import CompressedMap
from scenesqueezer_core.selection.smo import solve_qp_smo


def drop_seconds_column(lines: list[str]) -> list[str]:
    """Training log CSV rows without column 6 (wall seconds, which differ between runs)."""
    return [",".join(value for i, value in enumerate(line.split(",")) if i != 6) for line in lines]


torch.set_num_threads(1)
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL = LearnedConfig(unet_dims=(16, 32), neighbours=8, point_stats_dim=POINT_STATS_DIM)


# ------------------------------------------------------------------------------ geometry helpers
@given(st.integers(1, 300), st.integers(1, 20), st.integers(0, 2**31 - 1))
@SETTINGS
def test_knn_matches_kdtree(n, k, seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3))
    got = knn(torch.tensor(pts), torch.tensor(pts), k, chunk=64).numpy()
    dist, _ = cKDTree(pts).query(pts, k=min(k, n))
    got_dist = np.linalg.norm(pts[:, None] - pts[got], axis=2)
    assert got.shape == (n, min(k, n))
    assert np.allclose(np.sort(got_dist, axis=1), dist.reshape(n, -1), atol=1e-9)


@given(st.integers(2, 200), st.floats(0.05, 1.0), st.integers(0, 2**31 - 1))
@SETTINGS
def test_farthest_point_sampling_is_distinct_and_spread(n, ratio, seed):
    pts = torch.tensor(np.random.default_rng(seed).normal(size=(n, 3)))
    count = max(1, int(np.ceil(ratio * n)))
    chosen = farthest_point_sampling(pts, count)
    assert len(chosen) == count and len(set(chosen.tolist())) == count
    if count >= 2:  # the second pick is the point farthest from the first
        assert int(chosen[1]) == int(((pts - pts[0]) ** 2).sum(1).argmax())


def test_fusion_keeps_anchor_feature_when_no_frame_sees_the_point():
    torch.manual_seed(0)
    fusion = AnchorVerificationFusion(64, 64, 4)
    anchor, ver = torch.randn(5, 64), torch.randn(3, 5, 64)
    visible = torch.ones(3, 5, dtype=torch.bool)
    visible[:, 2] = False
    out = fusion(anchor, ver, visible)
    assert torch.allclose(out[2], anchor[2] + fusion.w_o.bias)  # no frame: attention adds nothing but the bias
    # an invisible frame does not influence a point: changing its feature leaves the output alone
    visible[1, 0] = False
    ver2 = ver.clone()
    ver2[1, 0] += 10.0
    assert torch.allclose(fusion(anchor, ver, visible)[0], fusion(anchor, ver2, visible)[0])


# ------------------------------------------------------------------------------ differentiable QP
def qp_problem(seed, m):
    rng = np.random.default_rng(seed)
    d = torch.tensor(rng.uniform(-1, 1, m), dtype=torch.float64, requires_grad=True)
    f = torch.tensor(rng.normal(size=(m, 3)), dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(rng.uniform(0.1, 2.0), dtype=torch.float64, requires_grad=True)
    nu = float(rng.choice([0.1, 0.2, 0.3]))
    return d, f, tau, nu


@given(st.integers(0, 2**31 - 1), st.integers(10, 40))
@SETTINGS
def test_qp_layer_forward_is_the_smo_optimum(seed, m):
    d, f, tau, nu = qp_problem(seed, m)
    alpha = qp_select(d, f, tau, nu)
    ref = solve_qp_smo(d.detach().numpy(), features=f.detach().numpy(), gamma=1.0, tau=float(tau.detach()), nu=nu, tol=1e-10)
    alpha = alpha.detach()
    assert np.allclose(alpha.numpy(), ref.alpha, atol=1e-6)
    assert abs(float(alpha.sum()) - 1) < 1e-9 and float(alpha.min()) >= -1e-12
    assert float(alpha.max()) <= 1 / (nu * m) + 1e-9


@given(st.integers(0, 2**31 - 1), st.integers(10, 30))
@SETTINGS
def test_qp_layer_gradient_matches_finite_differences(seed, m):
    d, f, tau, nu = qp_problem(seed, m)
    w = torch.tensor(np.random.default_rng(seed + 1).normal(size=m))
    (qp_select(d, f, tau, nu) @ w).backward()

    def value(dd, ff, tt):
        res = solve_qp_smo(dd, features=ff, gamma=1.0, tau=tt, nu=nu, tol=1e-12, max_iter=200000)
        return res.alpha @ w.numpy(), (res.alpha > 0) & (res.alpha < 1 / (nu * m))

    eps = 1e-6
    d0, f0, t0 = d.detach().numpy(), f.detach().numpy(), float(tau.detach())
    direction_d = np.random.default_rng(seed + 2).normal(size=m)
    direction_f = np.random.default_rng(seed + 3).normal(size=f0.shape)
    plus, free_p = value(d0 + eps * direction_d, f0 + eps * direction_f, t0 + eps)
    minus, free_m = value(d0 - eps * direction_d, f0 - eps * direction_f, t0 - eps)
    _, free_0 = value(d0, f0, t0)
    assume(np.array_equal(free_p, free_0) and np.array_equal(free_m, free_0))  # same active set: differentiable
    numeric = (plus - minus) / (2 * eps)
    analytic = float(d.grad @ torch.tensor(direction_d) + (f.grad * torch.tensor(direction_f)).sum() + tau.grad)
    assert abs(numeric - analytic) <= 1e-4 * max(1.0, abs(numeric))


# ------------------------------------------------------------------------------ losses
@given(st.integers(0, 2**31 - 1))
@SETTINGS
def test_pose_success_grows_when_mass_moves_to_correct_matches(seed):
    rng = np.random.default_rng(seed)
    m, q = 50, 4
    match_point = torch.tensor(rng.integers(0, m, 80))
    match_query = torch.tensor(rng.integers(0, q, 80))
    match_correct = torch.tensor(rng.random(80) < 0.5)
    alpha = torch.full((m,), 1.0 / m)
    base = pose_success_probability(alpha, match_query, match_point, match_correct, q, 0.2)
    good = torch.unique(match_point[match_correct])
    bad = torch.tensor(sorted(set(range(m)) - set(good.tolist())))
    assume(len(good) and len(bad))
    moved = alpha.clone()
    moved[bad] *= 0.5
    moved[good] += (alpha[bad].sum() * 0.5) / len(good)
    better = pose_success_probability(moved, match_query, match_point, match_correct, q, 0.2)
    assert torch.all(better >= base - 1e-12) and torch.all((better >= 0) & (better <= 1))


def test_distinctiveness_loss_is_smallest_at_the_target():
    target = torch.linspace(-1, 1, 11)
    log_var = torch.zeros(11)
    assert distinctiveness_loss(target, log_var, target) < distinctiveness_loss(target + 0.1, log_var, target)
    d = torch.zeros(11, requires_grad=True)
    distinctiveness_loss(d, log_var, target).backward()
    assert torch.allclose(d.grad, -(target) / 11)


# ------------------------------------------------------------------------------ data, training, compress
@pytest.fixture(scope="module")
def samples_dir(small_street_scene, small_street_map, tmp_path_factory):
    out = tmp_path_factory.mktemp("learned_samples")
    paths = build_training_samples(small_street_scene, small_street_map, out, device="cpu", max_queries=4)
    assert paths, "the small street scene must give at least one training cluster"
    return out


def test_training_samples_are_consistent(samples_dir, small_street_scene):
    sample = load_sample(sorted(samples_dir.glob("*.npz"))[0])
    m = len(sample["xyz"])
    assert sample["xyz_norm"].shape == (m, 3) and np.abs(sample["xyz_norm"]).max() <= 1
    assert sample["obs_point"].max() < m and len(sample["obs_desc"]) == len(sample["obs_point"])
    n_ver = sample["ver_index"].shape[0]
    assert sample["ver_index"].shape == sample["ver_weight"].shape == (n_ver, m, 4)
    assert sample["ver_index"].max() <= len(sample["ver_desc"])  # == len: the padding row
    assert np.all(sample["ver_weight"][sample["ver_index"] == len(sample["ver_desc"])] == 0)
    assert n_ver >= 1 and np.all(sample["ver_weight"] <= 1.0)
    # labels: every match counted once, correct ones project within the threshold with the true pose
    assert sample["n_correct"].sum() + sample["n_wrong"].sum() == len(sample["match_point"])
    assert sample["match_correct"].sum() == sample["n_correct"].sum() > 0
    assert np.all(np.abs(sample["target"]) <= 1)
    # per-point statistics: log track length >= log1p(2) / 4 (triangulated points have 2+ views), ranks in [0, 1]
    stats = sample["point_stats"]
    assert stats.shape == (m, POINT_STATS_DIM) and np.all(np.isfinite(stats))
    assert stats[:, 0].min() >= np.log1p(2) / 4 - 1e-6 and np.all((stats[:, 2:] >= 0) & (stats[:, 2:] <= 1))
    assert np.array_equal(np.round(np.expm1(4 * stats[:, 1])), np.bincount(sample["obs_point"], minlength=m))
    assert sample["meta"]["queries"] == "query_day+query_night"
    assert load_dataset(small_street_scene).splits["query_day"]


def _train(samples_dir, out, stop_after=None, **overrides):
    conf = {"steps": 6, "stage1_steps": 3, "checkpoint_every": 2, "validate_every": 3, "points_per_step": 200,
            "threads": 1, "device": "cpu", "model": SMALL.to_dict(), **overrides}
    return train([str(samples_dir)], out, [str(samples_dir)], conf, stop_after=stop_after, progress=False)


def test_training_resumes_exactly_after_a_kill(samples_dir, tmp_path):
    from safetensors.torch import load_file

    full = _train(samples_dir, tmp_path / "full")
    stopped = _train(samples_dir, tmp_path / "resumed", stop_after=3)  # checkpoint at 2, killed during step 3 work
    assert stopped["weights"] is None and stopped["step"] == 3
    resumed = _train(samples_dir, tmp_path / "resumed")
    a, b = load_file(full["weights"]), load_file(resumed["weights"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_full = (tmp_path / "full" / "log.csv").read_text().splitlines()
    log_resumed = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    strip = drop_seconds_column
    assert strip(log_full) == strip(log_resumed) and len(log_full) == 7
    assert {row.split(",")[1] for row in log_full[1:]} == {"1", "2"}  # both stages ran
    assert resumed["validation"] == full["validation"]
    # training moved the weights (so equality above is not trivially true of an untouched model)
    init = SceneSqueezerNet(SMALL).state_dict()
    assert any(not torch.equal(a[k], init[k]) for k in a if k in init and a[k].shape == init[k].shape)


def test_training_with_a_ratio_range_resumes_exactly_and_differs_from_a_fixed_ratio(samples_dir, tmp_path):
    """Per-step nu drawn from ratio_range comes from the checkpointed generator: a resumed run is
    bit-identical; and the drawn nu reaches the pose loss (the weights differ from fixed nu)."""
    from safetensors.torch import load_file

    full = _train(samples_dir, tmp_path / "full", ratio_range=[0.01, 0.2])
    assert _train(samples_dir, tmp_path / "resumed", stop_after=4, ratio_range=[0.01, 0.2])["weights"] is None
    resumed = _train(samples_dir, tmp_path / "resumed", ratio_range=[0.01, 0.2])
    fixed = _train(samples_dir, tmp_path / "fixed")
    a, b, c = (load_file(r["weights"]) for r in (full, resumed, fixed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("bad", [[0.1, 0.01], [0.0, 0.1], [0.05, 1.5], "0.1", [0.1]])
def test_training_rejects_a_bad_ratio_range(samples_dir, tmp_path, bad):
    with pytest.raises(ConfigError, match="ratio_range"):
        train([str(samples_dir)], tmp_path / "run", None, {"steps": 1, "device": "cpu", "ratio_range": bad},
              progress=False)
    assert not (tmp_path / "run").exists()


def test_training_resumes_exactly_after_sigkill(samples_dir, tmp_path):
    """A real training process killed with SIGKILL after its first checkpoint, then run again,
    ends with the same weights and log as a run that was never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    conf = {"steps": 12, "stage1_steps": 4, "checkpoint_every": 2, "validate_every": 4, "points_per_step": 200,
            "threads": 1, "device": "cpu", "model": SMALL.to_dict()}
    full = train_with_conf(samples_dir, tmp_path / "full", conf)
    run_dir = tmp_path / "killed"
    code = ("import json, sys; from scenesqueezer_core.learned.train import train; "
            "train([sys.argv[1]], sys.argv[2], [sys.argv[1]], json.loads(sys.argv[3]), progress=False)")
    command = [sys.executable, "-c", code, str(samples_dir), str(run_dir), json.dumps(conf)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, cwd=str(REPO_ROOT), env=env, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (run_dir / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    still_running = process.poll() is None
    if still_running:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert still_running, "training finished before the kill; give it more steps"
    assert not (run_dir / "weights.safetensors").exists()
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    killed_at = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert 2 <= killed_at < conf["steps"]
    resumed = train_with_conf(samples_dir, run_dir, conf)
    a, b = load_file(full["weights"]), load_file(resumed["weights"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = drop_seconds_column
    assert strip((tmp_path / "full" / "log.csv").read_text().splitlines()) == \
        strip((run_dir / "log.csv").read_text().splitlines())
    assert resumed["validation"] == full["validation"]


def train_with_conf(samples_dir, out, conf):
    return train([str(samples_dir)], out, [str(samples_dir)], conf, progress=False)


def test_compress_learned_from_cli(small_street_map, tmp_path):
    if not default_weights_path("xfeat").exists():
        pytest.fail("shipped weights scenesqueezer_core/weights/learned_xfeat.safetensors are missing")
    out = tmp_path / "learned.sqz"
    assert main(["compress", str(small_street_map), str(out), "--method", "learned", "--ratio", "0.05",
                 "--workers", "1"]) == 0
    cmap = CompressedMap.load(out)
    assert cmap.info["conf"]["method"] == "learned"
    for cluster in cmap.info["clusters"]:
        budget = max(int(np.ceil(0.05 * cluster["points_observed"])), 30)
        assert cluster["points_kept"] == min(budget, cluster["points_observed"])


def test_compress_learned_names_missing_weights(small_street_map, tmp_path):
    with pytest.raises(ConfigError, match="scenesqueezer train"):
        compress_map(small_street_map, tmp_path / "x.sqz", {"method": "learned", "learned_weights": str(tmp_path / "no.safetensors")},
                     executor="serial")


def test_network_output_shapes_and_tau_bound():
    torch.manual_seed(0)
    net = SceneSqueezerNet(SMALL)
    m, T, N, S = 120, 300, 2, 50
    x = {"xyz_norm": torch.rand(m, 3) * 2 - 1, "obs_point": torch.randint(m, (T,)), "obs_desc": torch.randn(T, 64),
         "obs_xy": torch.rand(T, 2), "obs_score": torch.rand(T), "ver_desc": torch.randn(S, 64),
         "ver_xy": torch.rand(S, 2), "ver_score": torch.rand(S), "ver_index": torch.randint(S + 1, (N, m, 4)),
         "ver_weight": torch.rand(N, m, 4), "point_stats": torch.rand(m, POINT_STATS_DIM)}
    out = net(x)
    assert out["d"].shape == (m,) and out["log_var"].shape == (m,) and out["kernel_features"].shape == (m, 67)
    with torch.no_grad():
        net.tau_raw.fill_(-50.0)
    assert float(net.tau.detach()) >= 0.1
    K = rbf_kernel(out["kernel_features"], out["kernel_features"])
    assert torch.allclose(torch.diagonal(K), torch.ones(m))
    assert json.loads(json.dumps(SMALL.to_dict())) == SMALL.to_dict()


def test_shipped_weights_load_with_their_model_card_numbers():
    path = default_weights_path("xfeat")
    model, info = load_learned_model(str(path))
    assert model.config.descriptor_dim == 64 and info["steps"] > 0 and info["seed"] == 0
    assert set(info["validation"]) >= {"val_loss_d", "val_spearman", "val_pose_success"}
    card = (path.parent / "LEARNED_MODEL_CARD.md").read_text()
    assert f"{info['validation']['val_spearman']:.4f}" in card  # the card quotes the numbers in the file


def test_training_refuses_samples_of_an_older_format(samples_dir, tmp_path):
    """Samples written before point_stats existed: one clear error saying how to rebuild them."""

    with np.load(sorted(samples_dir.glob("*.npz"))[0], allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "point_stats"}
    old = tmp_path / "old"
    old.mkdir()
    np.savez(old / "c000.npz", **arrays)
    with pytest.raises(ConfigError, match="build-samples"):
        train([str(old)], tmp_path / "run", None, {"steps": 1, "device": "cpu"}, progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
