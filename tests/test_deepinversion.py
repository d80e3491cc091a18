"""DeepInversion: BN-statistics loss, priors, the BatchNorm requirement, the command."""

import json

import pytest
import torch
import torch.nn as nn

from _tiny import TINY_DATA_FREE_ARGS
from modelmine.bn_statistics import BNStatistics, bn_statistics_loss
from modelmine.classifiers import ClassifierInfo, build_classifier, save_classifier
from modelmine.cli import main
from modelmine.errors import UserError
from modelmine.methods.deepinversion import (
    DeepInversionConfig,
    l2_prior,
    synthesize_batch,
    tv_l2,
)

TINY = TINY_DATA_FREE_ARGS


def test_bn_loss_zero_when_statistics_match_and_first_layer_weighted():
    mu, var = torch.randn(4), torch.rand(4)
    assert bn_statistics_loss([(mu, var, mu, var)] * 3).item() == 0.0
    off = (mu + 1, var, mu, var)  # mean off by 1 in 4 channels: norm 2
    assert bn_statistics_loss([off, (mu, var, mu, var)], 10.0).item() == pytest.approx(20.0)
    assert bn_statistics_loss([(mu, var, mu, var), off], 10.0).item() == pytest.approx(2.0)
    # DDIS's paper squares the norms (dag_norm="squared_l2"): 2^2 per off layer
    assert bn_statistics_loss([off, off], 10.0, squared=True).item() == pytest.approx(44.0)


def test_bn_hooks_see_every_layer():
    teacher = build_classifier("resnet", 10, 1, 8).eval()
    with BNStatistics(teacher, "DeepInversion") as hooks:
        teacher(torch.rand(5, 1, 8, 8))
        stats = hooks.pop()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in teacher.modules())
    assert len(stats) == n_bn
    assert all(m.shape == r.shape for m, _, r, _ in stats)
    teacher(torch.rand(5, 1, 8, 8))  # outside the block the hooks are gone
    assert hooks.pop() == []


@pytest.mark.parametrize("deferred", [False, True])
def test_bn_statistics_loss_equals_the_equation_on_a_model(deferred):
    """The hooks see each BatchNorm layer's input: the loss equals the equation written out by hand,
    and its gradient is the same whether the statistics are computed in the hooks or after."""
    teacher = build_classifier("cnn_small", 10, 1, 8).eval()
    with torch.no_grad():
        for m in teacher.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    inputs = []
    handles = [
        m.register_forward_hook(lambda m, i, o: inputs.append((i[0], m)))
        for m in teacher.modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    with BNStatistics(teacher, "DAG", deferred=deferred) as bn:
        teacher(x)
        loss = bn.loss(first_bn_multiplier=3.0)
    for h in handles:
        h.remove()
    (grad,) = torch.autograd.grad(loss, x, retain_graph=True)  # the hand-written loss shares the graph
    expected = 0.0
    for i, (h, m) in enumerate(inputs):
        mu, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
        d = (mu - m.running_mean).norm() + (var - m.running_var).norm()
        expected = expected + (3.0 if i == 0 else 1.0) * d
    assert len(inputs) >= 2 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(grad, torch.autograd.grad(expected, x)[0], atol=1e-6)


def test_priors():
    assert tv_l2(torch.full((2, 1, 5, 5), 0.3)).item() == 0.0
    assert l2_prior(torch.ones(3, 1, 2, 2)).item() == pytest.approx(2.0)


def test_refuses_teacher_without_batchnorm():
    mlp = build_classifier("mlp", 10, 1, 8).eval()
    with pytest.raises(UserError, match="BatchNorm") as e:
        synthesize_batch(mlp, (1, 8, 8), 10, DeepInversionConfig(), torch.Generator(), torch.device("cpu"))
    assert "\n" not in str(e.value)


def test_command_refuses_mlp_teacher(tmp_path, capsys):
    path = tmp_path / "mlp.safetensors"
    save_classifier(
        path, build_classifier("mlp", 10, 1, 8), ClassifierInfo("mlp", 10, 1, 8, list("0123456789"))
    )
    assert main(["deepinversion", "--out", str(tmp_path / "r"), "--teacher", str(path), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "BatchNorm" in err and "cake" in err


def _quadrant_teacher() -> nn.Module:
    """A cnn_small that learned which quadrant of an 8x8 image is brightest (4 classes)."""
    from modelmine.classifiers import train_classifier

    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 1, 8, 8, generator=g) * 0.5
    y = torch.arange(128) % 4
    for i, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        x[y == i, :, r : r + 4, c : c + 4] += 0.5
    teacher = build_classifier("cnn_small", 4, 1, 8)
    train_classifier(teacher, x, y, epochs=8, batch_size=32, augment=0.0, lr=1e-2)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def test_synthesis_reaches_targets():
    teacher = _quadrant_teacher()
    cfg = DeepInversionConfig(batch_size=16, num_steps=30, jitter=1, w_bn=0.01)
    b = synthesize_batch(teacher, (1, 8, 8), 4, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert b["images"].shape == (16, 1, 8, 8) and b["targets"].bincount().tolist() == [4, 4, 4, 4]
    with torch.no_grad():
        acc = (teacher(b["images"]).argmax(1) == b["targets"]).float().mean().item()
    assert acc > 0.7


def test_keeps_the_batch_iterate_with_the_lowest_total_loss():
    """Official DeepInversion keeps ``best_inputs``: the whole batch at the step whose total loss (one
    number for the batch) was the lowest, scored before that step's update; not a per-image choice."""
    from dataclasses import replace

    from modelmine.data import quantize

    teacher = _quadrant_teacher()
    cfg = DeepInversionConfig(batch_size=16, num_steps=10, jitter=1, w_bn=0.01)
    assert DeepInversionConfig().keep_best
    seen = []

    def make(c):
        g = torch.Generator().manual_seed(0)
        return synthesize_batch(teacher, (1, 8, 8), 4, c, g, torch.device("cpu"), callback=record)

    def record(step, loss, x):
        seen.append((step, loss, x))

    best = make(cfg)
    assert [s for s, _, _ in seen] == list(range(10))
    k = min(range(10), key=lambda i: seen[i][1])
    assert k < 9  # with jitter the loss is not monotone: here the best iterate is not the last one
    assert torch.equal(best["images"], quantize(seen[k][2]))  # every image from that one step
    seen.clear()
    last = make(replace(cfg, keep_best=False))
    assert torch.equal(last["targets"], best["targets"]) and not torch.equal(last["images"], best["images"])


def test_command_writes_metrics_and_resumes(tmp_path):
    out = tmp_path / "run"
    assert main(["deepinversion", "--out", str(out), *TINY, "--preset", "cnn_small"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("teacher_acc", "student_acc", "num_samples", "synthesis_seconds"):
        assert key in m
    assert m["num_samples"] == 40 and (out / "samples_grid.png").exists()
    first = (out / "synthesis" / "batch_00000.safetensors").read_bytes()
    assert (
        main(["deepinversion", "--out", str(out), *TINY, "--preset", "cnn_small"]) == 0
    )  # everything reused
    assert (out / "synthesis" / "batch_00000.safetensors").read_bytes() == first
