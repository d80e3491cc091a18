"""CAKE: loss pieces, schedule, model-agnostic synthesis, the command, resume, --teacher."""

import json
import math

import pytest
import torch

from _tiny import TINY_DATA_FREE_ARGS
from modelmine.classifiers import ClassifierInfo, build_classifier, has_batchnorm, save_classifier
from modelmine.cli import main
from modelmine.errors import UserError
from modelmine.methods.cake import (
    CakeConfig,
    cake_loss,
    contrastive_loss,
    sample_group_targets,
    start_statistics,
    step_size_schedule,
    stretch_contrast,
    synthesize_batch,
    total_variation,
)

TINY = TINY_DATA_FREE_ARGS


def test_contrastive_zero_for_identical_logits():
    z = torch.randn(3, 1, 5).expand(3, 4, 5)  # every group: 4 identical logit vectors
    assert contrastive_loss(z).item() == 0.0
    assert contrastive_loss(torch.randn(3, 4, 5)).item() > 0


def test_contrastive_matches_pairwise_sum():
    z = torch.randn(2, 3, 4)
    ref = (
        sum(((z[g, i] - z[g, j]) ** 2).mean() for g in range(2) for i in range(3) for j in range(i + 1, 3))
        / 2
    )
    assert torch.allclose(contrastive_loss(z), ref)


def test_total_variation():
    assert torch.equal(total_variation(torch.full((2, 3, 5, 5), 0.7)), torch.zeros(2))
    x = torch.zeros(1, 1, 4, 4)
    x[..., 2:] = 1.0  # one vertical edge: 4 of the 12 horizontal differences are 1
    assert total_variation(x).item() == pytest.approx(4 / 12)


def test_stretch_contrast():
    ramp = torch.linspace(0.4, 0.6, 101).view(1, 1, 1, 101)  # a low-contrast image
    out = stretch_contrast(torch.cat([ramp, 1 - ramp]), 0.1)
    assert out.min() == 0 and out.max() == 1
    assert torch.allclose(out[0, 0, 0, 10:91], torch.linspace(0, 1, 81), atol=1e-5)  # affine in between
    assert (out[0, 0, 0, :11] == 0).all() and (out[0, 0, 0, 90:] == 1).all()  # tails clipped
    assert torch.allclose(out[1], out[0].flip(-1), atol=1e-5)  # per image
    assert torch.equal(stretch_contrast(torch.full((1, 1, 4, 4), 0.3), 0.05), torch.zeros(1, 1, 4, 4))


def test_step_size_schedule_endpoints():
    assert step_size_schedule(0, 10, 0.1) == pytest.approx(0.1)
    assert step_size_schedule(9, 10, 0.1) == pytest.approx(1e-5)
    mid = step_size_schedule(5, 11, 0.1)
    assert math.log10(mid) == pytest.approx(-3.0)  # log-linear
    assert step_size_schedule(0, 1, 0.1) == 0.1


def test_group_targets_distinct():
    t = sample_group_targets(50, 4, 10, torch.Generator().manual_seed(0))
    assert t.shape == (50, 4)
    assert all(len(set(r)) == 4 for r in t.tolist())


def test_cake_loss_parts():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    x = torch.rand(6, 1, 4, 4, requires_grad=True)
    total, parts = cake_loss(logits, torch.tensor([[0, 1, 2], [3, 4, 0]]), x, 1.0, 2.0, 3.0)
    assert total.item() == pytest.approx(parts["cls"] + 2 * parts["contr"] + 3 * parts["tv"], rel=1e-5)
    total.backward()
    assert x.grad is not None and logits.grad is not None


def test_cake_on_teacher_without_batchnorm():
    """Model-agnostic: an MLP teacher; synthesis drives samples towards their targets."""
    torch.manual_seed(0)
    teacher = build_classifier("mlp", num_classes=4, in_channels=1, image_size=6).eval()
    assert not has_batchnorm(teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    # the official full-resolution pixels, unjittered (6x6 leaves no room for the image priors)
    cfg = CakeConfig(batch_size=40, num_groups=4, num_steps=60, w_tv=1.0, downsample=1, jitter=0)
    b = synthesize_batch(
        teacher, (1, 6, 6), 4, cfg, 0.05, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    assert b["images"].shape == (40, 1, 6, 6)
    assert 0 <= b["images"].min() and b["images"].max() <= 1
    with torch.no_grad():
        acc = (teacher(b["images"]).argmax(1) == b["targets"]).float().mean().item()
    assert acc > 0.8


def test_start_statistics_from_first_batchnorm():
    """The first BatchNorm layer's running statistics give back the pixel mean / std it was fit on."""
    torch.manual_seed(0)
    model = build_classifier("cnn_small", 3, 1, 8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(0.2 + 0.1 * torch.randn(32, 1, 8, 8))  # i.i.d. pixels: mean 0.2, std 0.1
    mean, std = start_statistics(model.eval(), (1, 8, 8), torch.device("cpu"))
    assert mean == pytest.approx(0.2, abs=0.02) and std == pytest.approx(0.1, abs=0.02)
    assert start_statistics(build_classifier("mlp", 3, 1, 8), (1, 8, 8), torch.device("cpu")) is None


def test_cake_downsampled_and_jittered_synthesis():
    """Optimised at half resolution and seen jittered: full-size images, still driven to their targets."""
    torch.manual_seed(0)
    teacher = build_classifier("mlp", num_classes=4, in_channels=1, image_size=8).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cfg = CakeConfig(batch_size=40, num_groups=4, num_steps=60, w_tv=1.0, downsample=2, jitter=1)
    b = synthesize_batch(
        teacher, (1, 8, 8), 4, cfg, 0.05, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    assert b["images"].shape == (40, 1, 8, 8)
    with torch.no_grad():
        acc = (teacher(b["images"]).argmax(1) == b["targets"]).float().mean().item()
    assert acc > 0.8


def test_cake_command_and_resume(tmp_path):
    out = tmp_path / "run"
    assert main(["cake", "--out", str(out), *TINY, "--preset", "mlp"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("teacher_acc", "student_acc", "num_samples", "synthesis_seconds"):
        assert key in m
    assert m["num_samples"] == 40
    assert len(list((out / "samples").rglob("*.png"))) == 40
    assert (out / "samples" / "soft_labels.safetensors").exists()
    assert (out / "samples_grid.png").exists()
    # resume: a batch already on disk is reused, a missing one is made again, identically
    first = (out / "synthesis" / "batch_00000.safetensors").read_bytes()
    second = out / "synthesis" / "batch_00001.safetensors"
    second_bytes = second.read_bytes()
    second.unlink()
    (out / ".done" / "student").unlink()
    assert main(["cake", "--out", str(out), *TINY, "--preset", "mlp"]) == 0
    assert (out / "synthesis" / "batch_00000.safetensors").read_bytes() == first
    from modelmine.runs import load_tensors

    assert torch.equal(load_tensors(second)["images"], _images(second_bytes))


def _images(raw: bytes) -> torch.Tensor:
    from safetensors.torch import load

    return load(raw)["images"]


def test_cake_user_teacher_file(tmp_path):
    teacher = build_classifier("mlp", num_classes=10, in_channels=1, image_size=8).eval()
    path = tmp_path / "mine.safetensors"
    save_classifier(path, teacher, ClassifierInfo("mlp", 10, 1, 8, [str(i) for i in range(10)]))
    out = tmp_path / "run"
    assert main(["cake", "--out", str(out), "--teacher", str(path), *TINY]) == 0
    assert not (out / "teacher.safetensors").exists()  # the user's teacher is used, not trained
    assert json.loads((out / "metrics.json").read_text())["num_samples"] == 40


def test_cake_user_teacher_wrong_data(tmp_path, capsys):
    teacher = build_classifier("mlp", num_classes=3, in_channels=1, image_size=8).eval()
    path = tmp_path / "three.safetensors"
    save_classifier(path, teacher, ClassifierInfo("mlp", 3, 1, 8, ["a", "b", "c"]))
    assert main(["cake", "--out", str(tmp_path / "r"), "--teacher", str(path), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--test-data" in err


class _Opaque(torch.nn.Module):
    """A teacher whose layers cannot be read: the network hides in a closure, so ``modules()``,
    ``parameters()`` and hooks see nothing but this wrapper; only outputs and input gradients pass."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self._call = lambda x: net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(x)


def test_generic_start_reads_no_layer_and_batchnorm_start_is_named():
    from modelmine.methods.cake import FALLBACK_START, resolve_start

    net = build_classifier("cnn_small", 4, 1, 8).eval()
    opaque = _Opaque(net)
    assert list(opaque.modules()) == [opaque] and not list(opaque.parameters())
    cpu = torch.device("cpu")
    cfg = resolve_start(CakeConfig(start="generic"), opaque, (1, 8, 8), cpu)
    assert (cfg.init_mean, cfg.init_std) == FALLBACK_START
    read = resolve_start(CakeConfig(start="batchnorm"), net, (1, 8, 8), cpu)
    assert (read.init_mean, read.init_std) == start_statistics(net, (1, 8, 8), cpu)
    with pytest.raises(UserError, match="start must be"):
        resolve_start(CakeConfig(start="bn"), net, (1, 8, 8), cpu)


def test_adaptive_steps_stop_once_the_share_reaches_its_target():
    """``target_share``: a batch stops as soon as that share of its samples is classified as its
    target; an unreachable share runs to the ``num_steps`` cap; the steps taken are returned."""
    torch.manual_seed(0)
    teacher = build_classifier("mlp", num_classes=4, in_channels=1, image_size=6).eval().requires_grad_(False)
    base = dict(batch_size=40, num_groups=4, w_tv=1.0, downsample=1, jitter=0)
    run = lambda **kw: synthesize_batch(  # noqa: E731
        teacher,
        (1, 6, 6),
        4,
        CakeConfig(**base, **kw),
        0.05,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
    )
    early = run(num_steps=200, target_share=0.5)
    assert 0 < int(early["steps"]) < 200
    with torch.no_grad():
        reached = (teacher(early["images"]).argmax(1) == early["targets"]).float().mean().item()
    assert reached >= 0.4  # checked before quantisation; the 8-bit images keep most of it
    assert int(run(num_steps=7)["steps"]) == 7  # no share: always the cap
    with pytest.raises(UserError, match="target_share"):
        run(num_steps=3, target_share=1.5)


def test_cake_command_runs_on_an_opaque_teacher(tmp_path, monkeypatch):
    """With its defaults, `cake` distills a teacher whose layers cannot be read."""
    import modelmine.methods.cake as cake

    real = cake.open_data_free_run

    def opaque_run(cfg, out):
        cfg, run_, device, teacher, info, test = real(cfg, out)
        return cfg, run_, device, _Opaque(teacher), info, test

    monkeypatch.setattr(cake, "open_data_free_run", opaque_run)
    out = tmp_path / "run"
    assert main(["cake", "--out", str(out), *TINY]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (m["start_mean"], m["start_std"]) == cake.FALLBACK_START and m["synthesis_steps"] >= 1
    assert "start: generic" in (out / "config.yaml").read_text()


def test_audit_run_scores_a_data_free_runs_teacher_and_student_against_the_teachers_data(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["cake", "--out", str(run), *TINY, "--preset", "mlp"]) == 0
    audit = tmp_path / "audit"
    args = ["audit", "run", "--out", str(audit), "--run", str(run), "--shadows", "2"]
    assert main(args) == 0
    a = json.loads((audit / "metrics.json").read_text())
    for key in ("teacher_auc", "student_auc", "teacher_eps_lower_bound", "student_eps_lower_bound"):
        assert key in a and math.isfinite(a[key]), key
    md = (audit / "report.md").read_text()
    assert "## teacher" in md and "## student" in md and (audit / "roc_student.png").is_file()
    assert len(list((audit / "membership" / "shadows").glob("shadow_*.safetensors"))) == 2  # one set for both
    # a run whose teacher was the user's own: the members must come from the user
    user = tmp_path / "user"
    assert main(["cake", "--out", str(user), "--teacher", str(run / "teacher.safetensors"), *TINY]) == 0
    capsys.readouterr()
    assert main(["audit", "run", "--out", str(tmp_path / "a2"), "--run", str(user), "--shadows", "2"]) == 2
    assert "--population" in capsys.readouterr().err
