"""The audit report: the epsilon lower bound against a hand-computed case, scores.csv, the report files."""

import csv
import json
import math

import pytest
import torch
from scipy.stats import beta

from modelmine.audit.privacy_report import (
    clopper_pearson,
    epsilon_from_rates,
    epsilon_lower_bound,
    per_class_auc,
    write_scores_csv,
)


def test_epsilon_from_rates_by_hand():
    # TPR 0.5, FPR 0.05: log(0.5 / 0.05) = log 10 beats log(0.95 / 0.5)
    assert epsilon_from_rates(0.5, 0.05, delta=0.0) == pytest.approx(math.log(10))
    # the second inequality wins when TPR is near 1: log((1 - 0.5) / (1 - 0.99)) = log 50
    assert epsilon_from_rates(0.99, 0.5, delta=0.0) == pytest.approx(math.log(50))
    assert epsilon_from_rates(0.3, 0.3) == 0.0  # a test at chance rules nothing out


def test_clopper_pearson_matches_the_beta_quantiles():
    lo, hi = clopper_pearson(7, 20, 0.05)
    assert lo == pytest.approx(beta.ppf(0.05, 7, 14)) and hi == pytest.approx(beta.ppf(0.95, 8, 13))
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0


def test_epsilon_lower_bound_by_hand():
    """A perfect attack: on the evaluation half every member is above the threshold and no
    non-member, so the bound is log(TPR_lower / FPR_upper) with the exact Clopper-Pearson bounds of
    n / n and 0 / n; an attack at chance gives (about) nothing."""
    n = 200
    is_member = torch.tensor([True] * n + [False] * n)
    perfect = is_member.double()
    e = epsilon_lower_bound(perfect, is_member, delta=1e-5, alpha=0.05)
    lo, hi = 0.05 ** (1 / (n // 2)), 1 - 0.05 ** (1 / (n // 2))  # CP bounds of 100/100 and 0/100
    assert (e["tpr"], e["fpr"]) == (1.0, 0.0)
    assert e["eps_lower_bound"] == pytest.approx(math.log((lo - 1e-5) / hi), rel=1e-6)
    noise = torch.rand(2 * n, generator=torch.Generator().manual_seed(0))
    assert epsilon_lower_bound(noise, is_member)["eps_lower_bound"] < 0.5


def test_per_class_auc_and_scores_csv(tmp_path):
    is_member = torch.tensor([True, False, True, False, True, True])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    scores = {"lira": torch.tensor([0.9, 0.1, 0.2, 0.8, 0.5, 0.6]), "rmia": torch.arange(6.0)}
    auc = per_class_auc(scores["lira"], is_member, labels, ["a", "b", "c"])
    assert auc == {"a": 1.0, "b": 0.0, "c": None}  # class c has no non-member
    write_scores_csv(tmp_path / "scores.csv", [f"x/{i}.png" for i in range(6)], is_member, scores)
    rows = list(csv.reader(open(tmp_path / "scores.csv")))
    assert rows[0] == ["file", "member", "lira", "rmia"] and len(rows) == 7
    assert rows[1] == ["x/0.png", "1", "0.9", "0"] and rows[4][:2] == ["x/3.png", "0"]


def test_audit_membership_writes_the_report(tmp_path):
    from modelmine.cli import main

    out = tmp_path / "mia"
    args = ["audit", "membership", "--out", str(out), "--shadows", "2", "--set", "teacher.epochs=1",
            "--set", "teacher.image_size=8", "--set", "teacher.preset=cnn_small", "--set", "device=cpu"]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["eps_lower_bound"] >= 0 and m["eps_delta"] == 1e-5
    rows = list(csv.reader(open(out / "scores.csv")))
    assert rows[0][:2] == ["file", "member"] and {"lira_online_fixed", "rmia_online"} <= set(rows[0])
    assert len(rows) - 1 == m["num_members"] + m["num_nonmembers"]
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "| attack | AUC | TPR at 1% FPR | TPR at 0% FPR |" in md and "eps >=" in md
    assert "not reported" in md  # 360 non-members: no TPR at 0.1% FPR, and the report says why
    assert 'src="data:image/png;base64,' in page  # self-contained: nothing fetched when opened
    assert not any(x in page for x in ('src="http', 'href="http', "<link", "<script"))
