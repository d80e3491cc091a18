import torch
from sklearn.metrics import roc_auc_score

from modelmine.metrics import membership_metrics, roc_auc, tpr_at_fpr


def test_perfect_separator_and_chance():
    member = torch.arange(200) < 100
    perfect = member.float() + 0.01 * torch.rand(200)
    m = membership_metrics(perfect, member, prefix="x_")
    assert m == {"x_auc": 1.0, "x_tpr_at_0.1pct_fpr": 1.0, "x_tpr_at_1pct_fpr": 1.0}
    assert roc_auc(-perfect, member) == 0.0


def test_auc_matches_sklearn_and_tpr_is_monotone():
    g = torch.Generator().manual_seed(0)
    member = torch.rand(500, generator=g) < 0.5
    scores = torch.randn(500, generator=g) + member.float()
    assert abs(roc_auc(scores, member) - roc_auc_score(member.numpy(), scores.numpy())) < 1e-9
    assert (
        tpr_at_fpr(scores, member, 0.001)
        <= tpr_at_fpr(scores, member, 0.01)
        <= tpr_at_fpr(scores, member, 0.1)
    )
