"""Tiny Stable Diffusion folders in the real formats: parity with diffusers, and every generator command."""

from __future__ import annotations

from _render import Results, machine, para, source, table


def section_sd_format(r: Results) -> list[str] | None:
    d = r.get("sd_format.json")
    if d is None:
        return None
    lines = ["## Stable Diffusion format", ""]
    lines += para(
        "Tiny random-weight `StableDiffusionPipeline` folders saved in the real formats",
        "(`modelmine.diffusion.tiny_sd`: SD 1.x and 2-base styles with PNDM + epsilon, the 2-768 style",
        "with DDIM + v-prediction; an AutoencoderKL; CLIP's BPE tokenizer), each with its scheduler config",
        "carrying no `clip_sample` entry, `true` or `false`. Parity: the largest absolute difference",
        "between our latents and `StableDiffusionPipeline`'s with a `DDIMScheduler` loaded from the folder,",
        "same noise, 10 steps, CFG 3; beside it, how far the same DDIM with the latent clamp",
        f"(`clip_sample=True`) lands from the pipeline. Machine: {machine(d.get('machine', {}))}.",
    )
    rows = [
        [key.split("/")[0], key.split("/")[1], f"{p['max_abs_diff']:.1e}", f"{p['clamp_max_abs_diff']:.2f}",
         f"{p['latent_abs_max']:.2f}"]
        for key, p in d.get("parity", {}).items()
    ]  # fmt: skip
    lines += table(
        ["style", "clip_sample entry", "ours vs pipeline", "clamped vs pipeline", "largest latent"], rows
    )
    if v := d.get("v_loss"):
        lines += para(
            "A LoRA (rank 4, 60 steps) on the v-prediction folder's four training images, fixed",
            f"timesteps and noise: v loss {v['v_loss_before']:.3f} -> {v['v_loss_after']:.3f},",
            f"epsilon loss {v['eps_loss_before']:.3f} -> {v['eps_loss_after']:.3f}.",
        )
    rows = []
    for name, c in d.get("commands", {}).items():
        m = c.get("metrics", {})
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
        if "recovered_prompt" in c:
            shown += f"; recovered {c['recovered_prompt']}"
        rows.append([f"`{name}`", c["exit"], f"{c['seconds']:.1f}", shown or " ".join(c.get("stderr", []))])
    if rows:
        lines += para(
            "Every generator command once on the fixtures (16x16 images, 8x8 latents; tiny budgets, one",
            "process each, the time including start-up; the tiny BLIP-2 captions TCKR's images). Random",
            "weights: the metrics show that each command runs and writes them, not quality.",
        )
        lines += table(["command", "exit", "seconds", "metrics"], rows)
    return lines + source("sd_format.json", "python benchmarks/sd_format.py")
