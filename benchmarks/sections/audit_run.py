"""`modelmine audit run` on the TCKR benchmark's run: every target's membership and the LoRA's."""

from __future__ import annotations

from _render import Results, f3, machine, para, secs, source, table


def section_audit_run(r: Results) -> list[str] | None:
    s = r.get("audit_run.json")
    if s is None:
        return None
    m = s["metrics"]
    targets = sorted({k.removesuffix("_eps_lower_bound") for k in m if k.endswith("_eps_lower_bound")})
    rows = [[t, f3(m[f"{t}_auc"]), f3(m[f"{t}_eps_lower_bound"])] for t in targets]
    lora = [
        ["loss attack (fine-tuned vs pretrained denoising error)", f3(m.get("lora_mia_loss_auc")),
         f3(m.get("lora_mia_loss_tpr_at_1pct_fpr"))],
        ["PIA (Kong et al., ICLR 2024)", f3(m.get("lora_mia_pia_auc")), f3(m.get("lora_mia_pia_tpr_at_1pct_fpr"))],
    ]  # fmt: skip
    lines = ["## audit run", ""]
    lines += para(
        "`modelmine audit run` with its defaults on the run folder of `tckr_bench.py` (the embedded",
        "default on the private digits): the run's own LiRA scores of its teacher and students, read",
        "back, with the empirical epsilon lower bound (delta = 1e-5, Clopper-Pearson at 95% per rate, the",
        "threshold chosen on half the points and the bound computed on the other half: a lower bound",
        f"this audit shows, not a guarantee). Whole audit {secs(s['wall_seconds'])}; machine: {machine(s)}.",
    )
    lines += table(["target", "LiRA AUC (headline variant)", "epsilon lower bound"], rows)
    lines += para(
        "Membership inference on the TCKR LoRA: its 1,077 private training images against the",
        f"{m.get('lora_mia_num_nonmembers', '?')} held-out digits, both prompted as TCKR prompts; FineXtract",
        f"on the same LoRA leaks {m.get('lora_leaked_images', '?')} of the private images",
        f"({secs(m.get('lora_mia_seconds', 0))} for both membership attacks).",
    )
    lines += table(["attack on the LoRA", "AUC", "TPR at 1% FPR"], lora)
    return lines + source(
        "audit_run.json", "python benchmarks/audit_run_bench.py", " (report: `audit_run_report.md`)"
    )


def section_report_render(r: Results) -> list[str] | None:
    s = r.get("report_render.json")
    if s is None:
        return None
    lines = ["## The audit report in a browser", ""]
    lines += para(
        f"`{s['report']}` opened in headless {s['browser']} with the network blocked (every host name",
        "unresolvable, a dead proxy), screenshotted, and screenshotted again with its inline images",
        f"removed: {s['inline_images']} inline figures, {s['pixels_differing_without_images']:,} of",
        f"{s['screenshot_pixels']:,} pixels differ between the two, external references:",
        f"{', '.join(s['external_references']) or 'none'}. Figures shown: {'yes' if s['figures_shown'] else 'no'}",
        "(screenshot: `results/report_render.png`).",
    )
    return lines + source("report_render.json", "python benchmarks/report_render.py")


def section_diffusion_mia(r: Results) -> list[str] | None:
    d = r.get("diffusion_mia.json")
    if d is None:
        return None
    lines = ["## Membership inference on the TCKR LoRA", ""]
    lines += para(
        "`modelmine audit generator` on each dataset's TCKR run (the LoRA the command fine-tuned on the",
        "private training split): every private training image (member) against the run's held-out",
        "images (non-members), each prompted as TCKR prompts; the LoRA is the command's default whatever",
        "the run's students and shadows (its cardinality and shadow count are listed). The loss attack scores the pretrained",
        "minus the fine-tuned model's denoising error at fixed timesteps and noise; PIA (Kong et al.,",
        f"ICLR 2024) the consistency of the noise each model infers. Machine: {machine(d)}.",
    )
    rows = []
    for dataset, e in d["runs"].items():
        m = e["metrics"]
        t = e.get("tckr_config", {})
        rows.append([dataset, f"N {t.get('cardinality')}, {t.get('num_shadows')} shadows",
                     f"{m.get('num_train_images', '?')} / {m.get('mia_num_nonmembers', '?')}",
                     f3(m.get("mia_loss_auc")), f3(m.get("mia_loss_tpr_at_1pct_fpr")), f3(m.get("mia_pia_auc")),
                     f3(m.get("mia_pia_tpr_at_1pct_fpr")), secs(m.get("mia_seconds", 0.0))])  # fmt: skip
    header = ["dataset", "TCKR run", "members / non-members", "loss AUC", "loss TPR at 1% FPR", "PIA AUC",
              "PIA TPR at 1% FPR", "both attacks"]  # fmt: skip
    lines += table(header, rows)
    runs = " ".join(f"--run {k}={e['run']}" for k, e in d["runs"].items())
    return lines + source("diffusion_mia.json", f"python benchmarks/diffusion_mia_bench.py {runs}")
