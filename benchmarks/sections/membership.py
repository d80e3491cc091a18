"""Membership inference on the default teacher: LiRA's variants, and attacks by reference-model count."""

from __future__ import annotations

from _render import BENCH, Results, bench_methods, f3, machine, para, secs, source, table

LIRA_VARIANTS = [
    ("online, per-example variance", "online_"),
    ("online, fixed variance", "online_fixed_"),
    ("offline, per-example variance", "offline_"),
    ("offline, fixed variance", "offline_fixed_"),
]
LIRA_HEADER = ["attack", "AUC", "TPR at 1% FPR", "TPR at 0.1% FPR"]


def lira_rows(m: dict) -> list[list[str]]:
    """One row per variant; older results name online, per-example variance without a prefix, and
    TPR at 0.1% FPR is absent with fewer than 1,000 non-members ("-")."""
    keys = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")
    rows = []
    for label, k in LIRA_VARIANTS:
        k = "" if k == "online_" and "online_auc" not in m else k
        if f"{k}auc" in m:
            rows.append([label, *(f3(m.get(f"{k}{x}")) for x in keys)])
    return rows


def section_lira(r: Results) -> list[str] | None:
    lira = r.get("lira_teacher.json")
    if lira is None:
        return None
    lines = ["## LiRA", ""]
    lines += para(
        f"`modelmine audit lira` on the default teacher: {lira['num_shadows']} shadow models (keep-mask",
        f"seed {lira['keep_seed']}); members the {lira['num_members']} private training digits,",
        f"non-members the {lira['num_nonmembers']} held-out digits. Machine: {machine(lira)}.",
        f"Shadow training {secs(lira['shadow_seconds'])}, whole audit {secs(lira['wall_seconds'])}.",
    )
    lines += table(LIRA_HEADER, lira_rows(lira))
    if m := bench_methods(r).get("audit lira"):
        lines += para(f"{BENCH}, {m['num_shadows']} shadows:") + table(LIRA_HEADER, lira_rows(m))
    return lines + source("lira_teacher.json", "python benchmarks/lira_bench.py --shadows 16 --threads 2")


MIA_REFS_ATTACKS = [
    ("RMIA offline", "rmia_offline"),
    ("RMIA online", "rmia_online"),
    ("LiRA offline, fixed variance", "lira_offline_fixed"),
    ("LiRA online, fixed variance", "lira_online_fixed"),
]


def section_mia_refs(r: Results) -> list[str] | None:
    d = r.get("mia_refs.json")
    if d is None:
        return None
    refs = [str(m) for m in d["refs"]]
    per_model = d.get("seconds_per_reference_model")
    lines = ["## Membership inference against the number of reference models", ""]
    lines += para(
        "`modelmine audit membership` on the default teacher, scored with the first M of one set of",
        f"{refs[-1]} reference models (each trained like the target, on {d['shadow_train_size']} of the",
        f"population's images); members the {d['num_members']} private training digits, non-members the",
        f'{d["num_nonmembers"]} held-out digits. Online attacks need two models or more ("-": not run).',
        f"Training time per reference model {secs(per_model)}." if per_model else "",
        f"Machine: {machine(d)}.",
    )
    for title, key in (("AUC", "auc"), ("TPR at 1% FPR", "tpr_at_1pct_fpr")):
        rows = [
            [label, *(f3(d["results"][m].get(f"{a}_{key}")) for m in refs)] for label, a in MIA_REFS_ATTACKS
        ]
        lines += para(f"{title}:") + table(["attack", *(f"M = {m}" for m in refs)], rows)
    if not d.get("matches_command", True):
        lines += para(f"Warning: the M = {refs[-1]} scores differ from the command's own metrics.")
    return lines + source("mia_refs.json", "python benchmarks/mia_refs.py --threads 2")
