"""The embedded generator: its CAS, weight files compared, sampler speed, TCKR on renamed classes."""

from __future__ import annotations

from _render import Results, f3, machine, para, secs, source, table

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def section_pretrain(r: Results) -> list[str] | None:
    d = r.get("diffusion_pretrain.json")
    if d is None:
        return None
    m, prov, samp = d["metrics"], d.get("provenance", {}), d.get("sampling_defaults", {})
    lines = ["## Embedded generator", ""]
    lines += para(
        "The shipped tiny text-to-image generator (`modelmine pretrain`).",
        f"Training data: {prov['data']}." if "data" in prov else "",
        "Classification Accuracy Score (CAS): a classifier's accuracy on generated images against the",
        f"class in their prompt (`{samp.get('prompt', '')}`), {m['cas_images']} images,",
        f"{m['cas_steps']} DDIM steps, CFG {m['cas_cfg']}. `cas_public` is scored by a classifier",
        f"trained on public glyphs (its own accuracy on glyphs {m['public_classifier_acc']:.3f}),",
        "`cas_private` by the default digits teacher: the gap between the two is the domain gap that",
        "LoRA and DAG close.",
    )
    lines += table(
        ["cas_public", "cas_private", "training steps", "training time"],
        [[f3(m["cas_public"]), f3(m["cas_private"]), m["steps"], secs(m["train_seconds"])]],
    )
    names = [k[len("cas_public_") :] for k in m if k.startswith("cas_public_")]
    names.sort(key=lambda n: DIGITS.index(n) if n in DIGITS else len(DIGITS))
    rows = [[n, f3(m[f"cas_public_{n}"]), f3(m.get(f"cas_private_{n}"))] for n in names]
    lines += ["Per class:", ""] + table(["class", "cas_public", "cas_private"], rows)
    if phases := prov.get("phases"):
        lines += para(
            f"Training ran in {len(phases)} warm-started phases, batch {prov['batch_size']},",
            f"on {prov['hardware']}:",
        )
        rows = [
            [i + 1, p["steps"], f"{p['train_seconds']:.0f} s", f"`{p['command']}`" if "command" in p else "-"]
            for i, p in enumerate(phases)
        ]
        lines += table(["phase", "steps", "time", "command"], rows)
    lines += r.image("diffusion_pretrain_samples.png", "embedded generator samples, one column per digit")
    lines += source(
        "diffusion_pretrain.json",
        "python benchmarks/diffusion_pretrain.py --out DIR",
        ", which runs or resumes `modelmine pretrain --out DIR`",
    )
    return lines + (cas_comparison(r) or [])


def cas_comparison(r: Results) -> list[str] | None:
    """CAS of weight files side by side (diffusion_cas.json), on public glyphs, digits and mnist5k."""
    d = r.get("diffusion_cas.json")
    if d is None:
        return None
    lines = ["", "### Generator weights compared", ""]
    lines += para(
        f"The same prompts and seeds for every file ({d['per_class']} images per digit, each file's stored",
        "sampling settings), scored by the public-glyph classifier and by the default teachers of the two",
        "private datasets (mnist5k: images resized to 28x28). `cas_private_mnist5k` is the domain gap",
        "from the public glyphs to real MNIST.",
    )
    rows = [
        [f"{name}: {e['weights']}", f3(e["cas_public"]), f3(e["cas_private"]), f3(e.get("cas_private_mnist5k")),
         e.get("steps"), e.get("cfg")]
        for name, e in d.items() if isinstance(e, dict) and "cas_public" in e
    ]  # fmt: skip
    lines += table(
        ["weights", "cas_public", "cas_private (digits)", "cas_private (mnist5k)", "steps", "cfg"], rows
    )
    return lines + source("diffusion_cas.json", "python benchmarks/diffusion_cas.py --weights NAME=FILE ...")


def section_renamed(r: Results) -> list[str] | None:
    d = r.get("renamed_classes.json")
    if d is None:
        return None
    lines = ["## TCKR on class names the tokenizer does not know", ""]
    lines += para(
        f"The digits of classes {d.get('classes')} as an ImageFolder, once with their digit names and once",
        "renamed; unknown names become new tokens trained with the LoRA. `modelmine tckr --data DIR` with",
        f"its defaults except the reference-model count (see argv). Machine: {machine(d)}.",
        "Target: agreement within 0.1 of the digit-named run, student within 3 points of its teacher.",
        f"Note: {d['note']}." if d.get("note") else "",
    )
    rows = [
        [k, ", ".join(v["class_names"]), v["exit_status"], f3(v["teacher_acc"]), f3(v["student_acc"]),
         f3(v["synthetic_teacher_agreement"]), ", ".join(v.get("added_words", [])) or "-",
         secs(v["wall_seconds"])]
        for k, v in d["runs"].items()
    ]  # fmt: skip
    lines += table(
        [
            "naming",
            "classes",
            "exit",
            "teacher",
            "student",
            "synthetic-teacher agreement",
            "words added",
            "wall",
        ],
        rows,
    )
    if "target_met" in d:
        lines += para(
            f"Agreement gap {d['agreement_gap']:+.3f}, renamed student {d['renamed_student_gap'] * 100:.1f}",
            f"points below its teacher: target {'met' if d['target_met'] else 'missed'}.",
        )
    return lines + source("renamed_classes.json", "python benchmarks/renamed_classes.py")


def section_sampler(r: Results) -> list[str] | None:
    s = r.get("diffusion_sampler_speed.json")
    if s is None:
        return None
    lines = ["## DDIM sampler speed", ""]
    lines += para(
        f"Our DDIM loop on the {s['generator']} generator, batch {s['batch']}, {s['steps']} steps,",
        f"CFG {s['cfg']}; machine: {machine(s)}. The overhead is the loop's time over the time of",
        "the same number of bare UNet calls.",
    )
    lines += table(
        ["images/s", "seconds per batch", "bare UNet seconds", "overhead"],
        [
            [
                f"{s['images_per_second']:.2f}",
                f"{s['seconds_per_batch']:.2f}",
                f"{s['bare_unet_seconds']:.2f}",
                f"{s['overhead_ratio']:.3f}",
            ]
        ],
    )
    return lines + source("diffusion_sampler_speed.json", "python benchmarks/diffusion_sampler_speed.py")


def section_pretrain_rgb(r: Results) -> list[str] | None:
    d = r.get("diffusion_pretrain_rgb.json")
    if d is None:
        return None
    m, c = d["metrics"], d.get("config") or {}
    lines = ["## The colour embedded generator", ""]
    lines += para(
        "The colour model (`embedded_generator_rgb.*`): the grey model widened to three channels",
        f"(`init_from={c.get('init_from')}`), trained {m['steps']} steps on the public corpus through",
        "colour ramps of one dominant hue per image (a quarter left grey), predicting",
        f"`{c.get('prediction_type', 'epsilon')}` and sampled from `{c.get('timestep_spacing', 'leading')}`",
        "timesteps. `cas_public`: a classifier of colourised glyphs",
        f"(its own accuracy {m['public_classifier_acc']:.3f}) on {m['cas_images']} generated digits,",
        f"{m['cas_steps']} DDIM steps, CFG {m['cas_cfg']}; target 0.90.",
        f"Note: {d['note']}." if d.get("note") else "",
    )
    names = [k[len("cas_public_") :] for k in m if k.startswith("cas_public_")]
    names.sort(key=lambda n: DIGITS.index(n) if n in DIGITS else len(DIGITS))
    lines += table(
        ["cas_public", "training steps", "training time", *names],
        [
            [
                f3(m["cas_public"]),
                m["steps"],
                secs(m["train_seconds"]),
                *[f3(m[f"cas_public_{n}"]) for n in names],
            ]
        ],
    )
    if probe := d.get("cfg_probe"):
        cells = ", ".join(f"CFG {s}: {f3(v)}" for s, v in probe.items())
        lines += para(f"CAS (500 images) by CFG scale, the probe that picks the stored scale: {cells}.")
    if hue := d.get("hue_probe"):
        cells = ", ".join(f"{w} {v:.2f}" for w, v in hue["per_word"].items())
        lines += para(
            f"Colour words followed: of 32 images prompted `{hue['prompt'].format('<hue>')}` per hue, the share",
            f"the captioner names with that hue: {cells} (mean {hue['mean']:.2f}; chance 0.17).",
        )
    quick = [f"{t['step']}: {t['cas_public_quick']:.2f}" for t in d.get("cas_during_training", [])]
    lines += (
        para("Quick CAS (100 images) during training, by step: " + ", ".join(quick) + ".") if quick else []
    )
    lines += r.image("diffusion_pretrain_rgb_samples.png", "colour generator samples, one column per digit")
    return lines + source(
        "diffusion_pretrain_rgb.json",
        "python benchmarks/diffusion_pretrain.py --out DIR --name diffusion_pretrain_rgb --set channels=3 "
        "--set init_from=embedded --set prediction_type=v_prediction --set timestep_spacing=trailing "
        "--set steps=10000 --set guidance_scale=3 --set threads=2 --cfg-probe 1.5 2 3 4 --hue-probe",
    )
