import numpy as np
import pytest
import scipy.linalg
import torch

from modelmine.classifiers import build_classifier
from modelmine.metrics import (
    classifier_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def test_fid_matches_scipy_sqrtm_and_is_zero_on_same_data():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64)
    b = torch.randn(300, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(
        ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real
    )
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-8


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    same, _ = kernel_inception_distance(a, b, subsets=10, subset_size=200)
    shifted, _ = kernel_inception_distance(a, b + 1.0, subsets=10, subset_size=200)
    assert abs(same) < 0.05 < shifted


def test_inception_score_bounds():
    confident = torch.eye(10).repeat(20, 1) * 50  # every class equally, each image sure
    assert inception_score(confident, splits=2)[0] == pytest.approx(10, rel=1e-3)
    assert inception_score(torch.zeros(200, 10))[0] == pytest.approx(1.0)


def test_precision_recall_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 2, generator=g)
    assert precision_recall(a, a.clone()) == (1.0, 1.0)
    far = torch.randn(200, 2, generator=g) + 100
    assert precision_recall(a, far) == (0.0, 0.0)
    collapsed = a[:5].repeat(40, 1) + 1e-4 * torch.randn(200, 2, generator=g)  # mode collapse
    p, r = precision_recall(a, collapsed)
    assert p > 0.9 and r < 0.3


def test_classifier_features_shape():
    f = classifier_features(build_classifier("cnn_small", 10, 1, 16))
    assert f(torch.rand(7, 1, 16, 16)).shape == (7, 64)
