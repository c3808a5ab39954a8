"""``activation_clustering``: activation clustering (Chen et al. 2018, "Detecting Backdoor
Attacks on Deep Neural Networks by Activation Clustering"), adapted to segmentation.

The last hidden layer of a backdoored model separates the poisoned samples of the target class
from its clean ones: they are classified as the target for a different reason (the trigger).
For each label class the defense reduces the activations of the class's samples to ``dims``
independent components (FastICA, as in the paper), splits them with 2-means, and runs the
paper's *relative size* analysis: the smaller cluster is flagged as poisoned when it holds at
most ``size_threshold`` of the class (a clean class tends to split in two similar halves).

Segmentation specifics: a sample is a *segment* (the pixels labelled class ``k`` in one image),
its activation the mean over its pixels of the classifier's input features (see
``defenses.spectral``); ``level=image`` drops every image with a flagged segment. The
continuous score (for the harness's AUROC) is the distance to the larger cluster's centre minus
the distance to the smaller one's, divided by the distance between the centres. The silhouette
score of each class's split is reported (the paper's second criterion) but decides nothing.
Departure: the paper uses the same analysis on per-class image activations of classifiers.

Official code read: Trusted-AI/adversarial-robustness-toolbox,
``art/defences/detector/poison/activation_defence.py`` (activations of the last layer,
flattened, segmented by label; ``reduce_dimensionality``: FastICA to 10 dims, the class's
default is PCA; 2-means per class) and ``clustering_analyzer.py`` (``analyze_by_relative_size``:
a cluster is poisonous when its share, rounded to 2 decimals, is below 0.35; the class default
``smaller`` flags the smaller cluster of every class). This keeps the paper's ICA and its
relative-size rule, compares the unrounded share with ``<=``, and seeds FastICA and k-means
with the run's seed (ART leaves them unseeded), so a cell is reproducible.

Positive control: ``image_level`` (the BadNets analogue of the paper's patch attacks),
``tests/controls/test_training_time_controls.py``. The poisoned road segments are split off
exactly (smaller share 0.10, recall 1.00) on seeds 0 and 1, but the relative-size rule also
flags clean classes whose natural split is uneven (seed 1: car 0.34, person 0.29, sidewalk
0.28), and removing 29% of the person segments costs 9 points of clean mIoU.
"""

from __future__ import annotations

import logging
import math
import warnings

import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import FastICA
from sklearn.metrics import silhouette_score
from torch import nn

from defenses.training import LEVELS, DataFilterDefense, Flags, PoisonedTrainingSet, segment_features

log = logging.getLogger(__name__)


class ActivationClustering(DataFilterDefense):
    """Activation clustering: 2-means per class; flag the smaller cluster if it is small enough."""

    name = "activation_clustering"

    dims: int = 10
    """Independent components kept before clustering (10 in the paper)."""
    size_threshold: float = 0.35
    """The smaller cluster is flagged when it holds at most this fraction of its class."""
    level: str = "segment"
    """``segment``: set flagged segments to ignore; ``image``: drop images with a flagged segment."""
    min_samples: int = 10
    """Classes with fewer segments than this are not analysed."""

    def __post_init__(self) -> None:
        if self.dims < 1:
            raise ValueError(f"dims must be >= 1, got {self.dims}")
        if not 0 < self.size_threshold < 0.5:
            raise ValueError(f"size_threshold must be in (0, 0.5), got {self.size_threshold}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.min_samples < 4:
            raise ValueError(f"min_samples must be >= 4, got {self.min_samples}")

    def flag(self, model: nn.Module, data: PoisonedTrainingSet) -> Flags:
        features, present = segment_features(model, data, self.name), data.present()
        scores = torch.full(present.shape, math.nan)
        flagged = torch.zeros(present.shape, dtype=torch.bool)
        report = {}
        for k in range(data.num_classes):
            rows = present[:, k].nonzero().flatten()
            if len(rows) < self.min_samples:
                continue
            margin, smaller, silhouette = cluster(features[rows, k], self.dims, data.seed)
            share = float(smaller.float().mean())
            scores[rows, k] = margin
            if share <= self.size_threshold:
                flagged[rows[smaller], k] = True
            report[data.class_names[k]] = {"smaller_share": share, "silhouette": silhouette,
                                           "flagged": share <= self.size_threshold}
        self.report = {"classes": report}
        log.info("activation_clustering: %s", {k: round(v["smaller_share"], 3) for k, v in report.items()})
        return Flags(scores, flagged).at_level(self.level)


def cluster(activations: torch.Tensor, dims: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """ICA to ``dims`` components, then 2-means: the margin towards the smaller cluster, which
    rows are in it, and the silhouette score of the split."""
    points = activations.double().numpy()
    dims = min(dims, points.shape[1], points.shape[0] - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FastICA's convergence warnings on nearly degenerate classes
        reduced = FastICA(n_components=dims, whiten="unit-variance", random_state=seed, max_iter=500).fit_transform(points)
    kmeans = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(reduced)
    labels = torch.from_numpy(kmeans.labels_).long()
    small = int(labels.bincount(minlength=2).argmin())
    centres = torch.from_numpy(kmeans.cluster_centers_)
    reduced_t = torch.from_numpy(reduced)
    to_small = (reduced_t - centres[small]).norm(dim=1)
    to_large = (reduced_t - centres[1 - small]).norm(dim=1)
    margin = (to_large - to_small) / (centres[0] - centres[1]).norm().clamp(min=1e-12)
    silhouette = float(silhouette_score(reduced, kmeans.labels_, sample_size=min(1000, len(points)),
                                        random_state=seed)) if len(set(kmeans.labels_)) == 2 else math.nan
    return margin.float(), labels == small, silhouette
