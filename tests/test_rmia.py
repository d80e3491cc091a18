"""RMIA: batched scores equal a plain loop, a perfect separator has AUC 1, the offline approximation,
and `audit membership` (LiRA and RMIA from one set of reference models) end to end."""

import json

import pytest
import torch
from sklearn.metrics import roc_auc_score

from modelmine.audit.lira import balanced_keep_rows
from modelmine.audit.rmia import (
    RmiaConfig,
    leave_one_out,
    reference_probability,
    score_rmia,
    score_target,
    true_class_probability,
)
from modelmine.cli import main


def _looped_rmia(target_logits, labels, ref_logits, keep, is_population, a, gamma, offline):
    """Reference: the paper's definitions one example and one pair at a time."""
    m, n, views, _ = ref_logits.shape

    def prob(logits, i):  # Pr(x_i | theta): true-class softmax averaged over views
        return sum(torch.softmax(logits[i, v].double(), -1)[labels[i]].item() for v in range(views)) / views

    p_target = [prob(target_logits, i) for i in range(n)]
    pr = []
    for i in range(n):
        refs = [prob(ref_logits[j], i) for j in range(m)]
        if not offline:
            pr.append(sum(refs) / m)
            continue
        outs = [refs[j] for j in range(m) if not keep[j, i]]
        ins = [refs[j] for j in range(m) if keep[j, i]]
        p_out = sum(outs) / len(outs) if outs else max(0.0, (sum(ins) / len(ins) - (1 - a)) / a)
        pr.append(((1 + a) * p_out + (1 - a)) / 2)
    zs = [k for k in range(n) if is_population[k]]
    left_out = leave_one_out(is_population, seed=0)  # x itself, or for a member a seeded random z
    scores = []
    for i in range(n):
        others = [k for j, k in enumerate(zs) if j != left_out[i]]
        assert len(others) == len(zs) - 1 and (not is_population[i] or i not in others)
        hits = sum((p_target[i] / pr[i]) / (p_target[k] / pr[k]) >= gamma for k in others)
        scores.append(hits / len(others))
    return torch.tensor(scores, dtype=torch.float64)


@pytest.mark.parametrize("num_models", [1, 2, 5])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_batched_rmia_equals_looped(num_models, gamma):
    g = torch.Generator().manual_seed(num_models)
    n, views, k = 24, 3, 4
    labels = torch.randint(0, k, (n,), generator=g)
    keep = balanced_keep_rows(num_models, n, 18, seed=2)  # p = 3/4: with few models some x have no OUT model
    ref_logits = torch.randn(num_models, n, views, k, generator=g) * 2
    target_logits = torch.randn(n, views, k, generator=g) * 2
    is_population = torch.arange(n) % 3 == 0
    cfg = RmiaConfig(offline_a=0.3, gamma=gamma)
    ours = score_target(target_logits, labels, ref_logits, keep, is_population, cfg)
    for variant in ("online", "offline"):
        ref = _looped_rmia(
            target_logits, labels, ref_logits, keep, is_population, 0.3, gamma, variant == "offline"
        )
        assert torch.allclose(ours[variant].double(), ref, atol=1e-6), variant


def test_perfect_separation_gives_auc_one():
    g = torch.Generator().manual_seed(0)
    n, m, k = 60, 4, 10
    labels = torch.randint(0, k, (n,), generator=g)
    member = torch.arange(n) < 40
    keep = balanced_keep_rows(m, n, 40, seed=0)

    def logits_with_true_prob(p: torch.Tensor) -> torch.Tensor:
        """Logits ``(..., n, views, k)`` whose true-class softmax is ``p`` ``(..., n, views)``."""
        onehot = torch.nn.functional.one_hot(labels, k).bool()[:, None, :]  # (n, 1, k)
        return torch.where(onehot, torch.log(p / (1 - p) * (k - 1))[..., None], 0.0)

    views = 2
    p_nonmember = 0.2 + 0.05 * torch.rand(n, generator=g)
    target = logits_with_true_prob(torch.where(member, 0.99, p_nonmember)[:, None].expand(n, views))
    refs = logits_with_true_prob(torch.full((m, n, views), 0.5))
    # members' ratios exceed every non-member's by more than gamma, non-members' lie within gamma
    for gamma in (1.5, 2.0):
        scores = score_target(target, labels, refs, keep, ~member, RmiaConfig(gamma=gamma))
        for variant, sc in scores.items():
            assert roc_auc_score(member.numpy(), sc.numpy()) == 1.0, (gamma, variant)
    # with gamma = 1 a non-member that no other beats counts every pair too (x is scored against
    # the other non-members): at most a tie between the top non-member and the members
    for variant, sc in score_target(target, labels, refs, keep, ~member).items():
        assert roc_auc_score(member.numpy(), sc.numpy()) >= 1 - 1 / (~member).sum().item(), variant
    assert torch.allclose(
        true_class_probability(target, labels)[member], torch.tensor(0.99, dtype=torch.float64)
    )


def test_offline_linear_approximation():
    keep = torch.tensor([[True, False, True], [False, False, True]])
    probs = torch.tensor([[0.9, 0.4, 0.8], [0.6, 0.2, 0.7]], dtype=torch.float64)
    a = 0.3
    pr = reference_probability(probs, keep, offline=True, offline_a=a)
    assert torch.allclose(pr[0], torch.tensor(((1 + a) * 0.6 + (1 - a)) / 2, dtype=torch.float64))
    assert torch.allclose(pr[1], torch.tensor(((1 + a) * 0.3 + (1 - a)) / 2, dtype=torch.float64))
    # no OUT model: Pr_OUT from the IN models, inverting Pr_IN = a Pr_OUT + (1 - a), clipped at 0
    p_out = max(0.0, (0.75 - (1 - a)) / a)
    assert torch.allclose(pr[2], torch.tensor(((1 + a) * p_out + (1 - a)) / 2, dtype=torch.float64))
    assert torch.allclose(reference_probability(probs, keep), probs.mean(0))


def test_score_rmia_counts_pairs_and_leaves_one_out():
    ratio = torch.tensor([4.0, 1.0, 2.0, 0.5])
    z = torch.tensor([False, True, True, True])
    assert torch.allclose(score_rmia(ratio, ratio[z], gamma=2.0), torch.tensor([1.0, 1 / 3, 2 / 3, 0.0]))
    left_out = torch.tensor([2, 0, 1, 2])  # x0 (a member) leaves out z = 0.5; the others themselves
    sc = score_rmia(ratio, ratio[z], gamma=2.0, left_out=left_out)
    # LR(x, z) >= 2: x0 = 4 against {1, 2} -> 2/2; x1 = 1 against {2, 0.5} -> 1/2;
    # x2 = 2 against {1, 0.5} -> 2/2; x3 = 0.5 against {1, 2} -> 0/2
    assert sc.tolist() == [1.0, 0.5, 1.0, 0.0]
    lo = leave_one_out(torch.tensor([True, False, True, False, True]), seed=3)
    assert lo[0] == 0 and lo[2] == 1 and lo[4] == 2 and (lo[[1, 3]] < 3).all()
    assert torch.equal(lo, leave_one_out(torch.tensor([True, False, True, False, True]), seed=3))


def test_membership_never_changes_how_a_score_is_counted():
    """Targets and references that say nothing: members and non-members score alike (AUC near 1/2)
    even when nearly every pair counts, where leaving out only the non-members' own pair would order
    them by membership through c / |Z| against c / (|Z| - 1)."""
    n, k = 400, 10
    labels = torch.zeros(n, dtype=torch.long)
    member = torch.arange(n) % 4 != 0
    logits = torch.zeros(n, 1, k)
    logits[:, 0, 0] = 5.0
    refs = logits.repeat(2, 1, 1, 1)
    refs[:, 0, 0, 0] = -5.0  # population sample 0: a ratio that no other x reaches, LR(x, z_0) < 1/2
    keep = balanced_keep_rows(2, n, int(member.sum()), seed=0)
    sc = score_target(logits, labels, refs, keep, ~member, RmiaConfig(gamma=0.5))
    for variant, s in sc.items():
        assert abs(roc_auc_score(member.numpy(), s.numpy()) - 0.5) < 0.05, variant


def _membership_args(out, *extra):
    return ["audit", "membership", "--out", str(out), "--set", "teacher.epochs=1",
            "--set", "teacher.preset=cnn_small", "--set", "device=cpu", *extra]  # fmt: skip


def test_audit_membership_end_to_end_and_more_reference_models(tmp_path, capsys):
    out = tmp_path / "mia"
    assert main(_membership_args(out, "--shadows", "2")) == 0
    m = json.loads((out / "metrics.json").read_text())
    pinned = {  # the seeded tiny run's values (LiRA's equal `audit lira`'s on the same references)
        "lira_auc": 0.51648, "lira_tpr_at_1pct_fpr": 0.01021, "rmia_auc": 0.50266, "rmia_tpr_at_1pct_fpr": 0.0065,
        "lira_online_auc": 0.52406, "lira_online_fixed_auc": 0.51648, "lira_offline_auc": 0.48280,
        "lira_offline_fixed_auc": 0.48280, "rmia_online_auc": 0.50266, "rmia_offline_auc": 0.49852,
    }  # fmt: skip
    assert {k: round(m[k], 5) for k in pinned} == pinned
    for variant in ("lira_online", "lira_online_fixed", "lira_offline", "lira_offline_fixed", "rmia_online",
                    "rmia_offline"):  # fmt: skip
        assert f"{variant}_tpr_at_1pct_fpr" in m
    assert m["lira_auc"] == m["lira_online_fixed_auc"] and m["rmia_auc"] == m["rmia_online_auc"]
    assert not [k for k in m if "0.1pct" in k]  # 360 non-members
    assert capsys.readouterr().err.count("TPR at 0.1% FPR not reported") == 1
    assert m["num_reference_models"] == 2 and m["shadow_train_size"] == 1077 == m["num_members"]
    assert (out / "roc.png").is_file() and (out / "scores.safetensors").is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shadows").glob("*.safetensors")}
    assert len(stamps) == 2
    # the same folder with more reference models: the first two are reused, one more is trained
    assert main(_membership_args(out, "--shadows", "3")) == 0
    m3 = json.loads((out / "metrics.json").read_text())
    assert m3["num_reference_models"] == 3
    after = {p.name: p.stat().st_mtime_ns for p in (out / "shadows").glob("*.safetensors")}
    assert len(after) == 3 and all(after[k] == v for k, v in stamps.items())
    # a bad request loses nothing: LiRA with one model is refused before anything is touched
    assert main(_membership_args(out, "--shadows", "1")) == 2
    assert "at least 2" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shadows").glob("*.safetensors")} == after
    # RMIA alone with one reference model: offline only (online needs IN and OUT models)
    assert main(_membership_args(out, "--shadows", "1", "--attacks", "rmia")) == 0
    m1 = json.loads((out / "metrics.json").read_text())
    assert m1["rmia_auc"] == m1["rmia_offline_auc"] and "rmia_online_auc" not in m1 and "lira_auc" not in m1
    # deterministic: the same seed gives the same scores
    assert main(_membership_args(out, "--shadows", "2")) == 0
    assert json.loads((out / "metrics.json").read_text())["rmia_auc"] == m["rmia_auc"]
