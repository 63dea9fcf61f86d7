"""Point selection: co-visible clustering, QP point selection (SMO), hand-crafted scores, baselines.

Shared by ``compression`` (hand-crafted and learned scores) and ``learned`` (training through the
QP). Every function here is a pure function of arrays (no file I/O), so per-cluster work can run in
a process pool.
"""

from .baselines import select_kcover, select_kcover_prioritized, select_random
from .clustering import Cluster, cluster_frames, covisibility_distances, presample_reference_frames
from .scores import descriptor_distinctiveness, handcrafted_scores, kernel_features, select_points_qp
from .smo import SMOResult, initial_alpha, qp_objective, solve_qp_smo

__all__ = [
    "Cluster", "SMOResult", "cluster_frames", "covisibility_distances", "descriptor_distinctiveness",
    "handcrafted_scores", "initial_alpha", "kernel_features", "presample_reference_frames", "qp_objective",
    "select_kcover", "select_kcover_prioritized", "select_points_qp", "select_random", "solve_qp_smo",
]
