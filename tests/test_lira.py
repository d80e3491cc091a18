import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import roc_auc_score

from modelmine.audit.lira import (
    fit_gaussians,
    logit_scaled_confidence,
    make_keep_masks,
    score_offline,
    score_online,
    shifted_views,
)
from modelmine.errors import UserError


def test_logit_scaling_matches_probability_form():
    z = torch.randn(4, 3, 5, dtype=torch.float64)
    y = torch.tensor([0, 2, 4, 1])
    p = torch.softmax(z, -1)
    py = p.gather(-1, y[:, None, None].expand(4, 3, 1)).squeeze(-1)
    assert torch.allclose(logit_scaled_confidence(z, y), torch.log(py) - torch.log(1 - py))
    # stable where the probability form overflows
    big = torch.tensor([[[200.0, 0.0, 0.0]]])
    assert torch.isfinite(logit_scaled_confidence(big, torch.tensor([0]))).all()


def test_keep_masks_balanced_and_seeded():
    keep = make_keep_masks(16, 50, seed=1)
    assert keep.shape == (16, 50) and (keep.sum(0) == 8).all()
    assert torch.equal(keep, make_keep_masks(16, 50, seed=1))
    with pytest.raises(UserError):
        make_keep_masks(1, 5)


def _looped_online(target, shadows, keep, fix_variance):
    """Reference: one example at a time with scipy, as in the paper's pseudo-code."""
    m, n, a = shadows.shape
    s, k, t = shadows.numpy(), keep.numpy(), target.numpy()
    if fix_variance:
        var_in = np.mean([np.var(s[k[:, i], i], axis=0) for i in range(n)])
        var_out = np.mean([np.var(s[~k[:, i], i], axis=0) for i in range(n)])
    out = []
    for i in range(n):
        din, dout = s[k[:, i], i], s[~k[:, i], i]
        sd_in = np.sqrt(var_in) if fix_variance else din.std(0)
        sd_out = np.sqrt(var_out) if fix_variance else dout.std(0)
        lin = scipy.stats.norm.logpdf(t[i], din.mean(0), sd_in)
        lout = scipy.stats.norm.logpdf(t[i], dout.mean(0), sd_out)
        out.append(np.mean(lin - lout))
    return np.array(out)


@pytest.mark.parametrize("fix_variance", [False, True])
def test_batched_online_equals_looped(fix_variance):
    g = torch.Generator().manual_seed(0)
    shadows = torch.randn(8, 20, 3, generator=g, dtype=torch.float64)
    keep = make_keep_masks(8, 20, seed=0)
    shadows = shadows + 2 * keep[..., None]
    target = torch.randn(20, 3, generator=g, dtype=torch.float64)
    ours = score_online(target, shadows, keep, fix_variance).double().numpy()
    assert np.allclose(ours, _looped_online(target, shadows, keep, fix_variance), rtol=1e-4, atol=1e-4)


def test_perfect_separation_gives_auc_one():
    g = torch.Generator().manual_seed(0)
    m, n = 16, 40
    keep = make_keep_masks(m, n, seed=3)
    shadows = torch.randn(m, n, 2, generator=g) * 0.1 + 5.0 * keep[..., None]  # members confident
    member = torch.arange(n) % 2 == 0
    target = torch.randn(n, 2, generator=g) * 0.1 + 5.0 * member[:, None]
    for fn in (score_online, score_offline):
        for fix in (False, True):
            assert roc_auc_score(member.numpy(), fn(target, shadows, keep, fix).numpy()) == 1.0


def test_fit_gaussians_fixed_variance_is_global():
    keep = make_keep_masks(6, 10)
    _, sd_in, _, sd_out = fit_gaussians(torch.randn(6, 10, 2), keep, fix_variance=True)
    assert sd_in.unique().numel() == 1 and sd_out.unique().numel() == 1


def test_shifted_views():
    x = torch.zeros(2, 1, 5, 5)
    x[:, :, 2, 2] = 1
    v = shifted_views(x)
    assert v.shape == (2, 5, 1, 5, 5)
    assert torch.equal(v[:, 0], x)
    assert v[0, 1, 0, 2, 3] == 1  # dx=+1 moves the pixel right
    assert v[0, 3, 0, 3, 2] == 1  # dy=+1 moves it down


def test_audit_lira_command_smoke_and_resume(tmp_path):
    import json

    from modelmine.cli import main

    out = tmp_path / "lira"
    args = ["audit", "lira", "--out", str(out), "--shadows", "2", "--set", "teacher.epochs=1",
            "--set", "teacher.preset=cnn_small"]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "offline_auc", "online_fixed_auc"):
        assert 0 <= m[key] <= 1
    assert m["num_members"] == 1077 and m["num_nonmembers"] == 360
    assert (out / "roc.png").exists() and len(list((out / "shadows").glob("*.safetensors"))) == 2
    stamp = [p.stat().st_mtime for p in sorted((out / "shadows").iterdir())]
    assert main(args) == 0  # resumed: shadows reused, not retrained
    assert [p.stat().st_mtime for p in sorted((out / "shadows").iterdir())] == stamp
    assert json.loads((out / "metrics.json").read_text())["auc"] == m["auc"]


def test_audit_lira_own_target_needs_members(tmp_path, capsys):
    from modelmine.cli import main

    assert (
        main(["audit", "lira", "--out", str(tmp_path / "o"), "--target", str(tmp_path / "t.safetensors")])
        == 2
    )
    assert "--members" in capsys.readouterr().err
