"""FineXtract, the recovered prompt, the DreamBooth identifier, and ``modelmine audit generator``."""

from __future__ import annotations

from _render import (
    BENCH,
    Results,
    bench_methods,
    extraction_keys,
    f3,
    machine,
    mean_sd,
    n_threads,
    para,
    secs,
    source,
    table,
    workers,
)
from modelmine.bench import rate_cell
from modelmine.papers import PAPERS


def seed_cell(res: dict | None, data: str, key: str) -> str:
    """``mean +- std`` over seeds of one ``finextract_bench.py`` summary key ("-" when missing)."""
    v = None if res is None else res["summary"].get(data, {}).get("stats", {}).get(key)
    return "-" if v is None else mean_sd(v, pm="+-")


def section_finextract_seeds(
    r: Results, f: dict, name: str = "finextract", heading: str = "## FineXtract"
) -> list[str]:
    """finextract_bench.py's multi-seed, multi-dataset results (``results/<name>.json``): mean +- std
    over seeds per dataset."""
    c, b = f["config"], f["budget"]
    lines = [heading, ""]
    lines += para(
        f"The {c['base']} generator fine-tuned on the first {c['num_train_images']} training images of",
        f"class {c['train_class']} of each dataset with LoRA and fully (steps per image: LoRA",
        f"{c['lora']['steps_per_image']}, full {c['full']['steps_per_image']}), then {b['num_generations']}",
        f"generations per method and model ({b['sample_steps']} steps of {c.get('sampler', 'ddim')}), clustered, and every training",
        "image matched to its best candidate (features: `pixels`); FineXtract against CFG",
        f"{c['baseline_cfg']:g} of the fine-tuned model from the same start noise. Success rate at the fixed",
        "threshold / at the threshold calibrated on real non-members, then the average similarity; mean",
        f"+- std over seeds {', '.join(map(str, f['seeds']))}"
        + ("" if f["complete"] else " (incomplete: some runs missing)")
        + f". Machine: {machine(f, workers(c))}.",
    )
    lines += para(PAPERS["extract"].claim)
    header = ["dataset", "mode", "method", "success rate fixed", "calibrated", "avg similarity"]
    rows = []
    for data in f["summary"]:
        for mode in f["modes"]:
            for label, k in (("FineXtract", ""), (f"CFG {c['baseline_cfg']:g}", "baseline_")):
                metrics = ("success_rate", "calibrated_success_rate", "avg_similarity")
                cells = [seed_cell(f, data, f"{mode}_{k}{metric}") for metric in metrics]
                rows.append([data, mode, label, *cells])
    lines += table(header, rows)
    met = [k for k, t in f["targets"].items() if t["avg_similarity_above_baseline"]]
    lines += para(
        f"FineXtract's mean average similarity is above the baseline's in {len(met)} of",
        f"{len(f['targets'])} (dataset, mode) pairs. Wall time of all runs {secs(f['wall_seconds'])}.",
    )
    for data in f["datasets"]:
        lines += r.image(f"{name}_matches_{data}.png", f"{data}: training images and best candidates")
    command = "python benchmarks/finextract_bench.py" + (
        "" if name == "finextract" else f" --name {name} --sampler dpmpp_2m --sample-steps 10"
    )
    return lines + source(f"{name}.json", command, "; a finished (dataset, seed) run is kept")


def section_finextract(r: Results) -> list[str] | None:
    f = r.get("finextract.json")
    if f is None:
        return None
    if "runs" in f:
        lines = section_finextract_seeds(r, f)
        if (g := r.get("finextract_dpmpp.json")) is not None:
            heading = "### FineXtract with DPM-Solver++(2M) at 10 steps (not the default)"
            lines += section_finextract_seeds(r, g, "finextract_dpmpp", heading)
        return lines
    m, c = extraction_keys(f["metrics"]), f["config"]
    extra = [f"{x:g}" for x in c.get("extra_baseline_cfgs", [])]
    fixed = (
        f"A training image counts as extracted when its best match reaches {m['similarity_threshold']:g}"
        " (the fixed threshold of the paper's success rate; first number) and, second number, above"
        if "similarity_threshold" in m
        else "This run predates the fixed-threshold rate; a training image counts as extracted above"
    )
    lines = ["## FineXtract", ""]
    lines += para(
        f"The {c['base']} generator fine-tuned on {m['num_train_images']} private digits of class",
        f"{c['train_class']} with LoRA ({c['lora']['steps']} steps, rank {c['lora']['rank']}) and fully",
        f"({c['full']['steps']} steps); then {m['num_generations']} generations per method and model",
        f"({c['sample_steps']} steps of {c.get('sampler', 'ddim')}), clustered, and every training image matched to its best",
        f"candidate (features: `{c['features']}`). {fixed}",
        f"{m['calibrated_threshold']:.3f}, the {c['calibration_quantile']:.0%} quantile of real",
        f"non-members' best match. Baselines: CFG {c['baseline_cfg']:g} of the fine-tuned model",
        (f"and CFG {', '.join(extra)}, " if extra else "") + "from the same start noise.",
        f"Seed {f['seed']}; machine: {machine(f, workers(c))}.",
    )
    lines += para(PAPERS["extract"].claim)
    modes = c["modes"]
    header = ["method", *[f"{mode}: success rate fixed / calibrated, avg similarity" for mode in modes]]
    header.append("mean of both")

    def row(label: str, metrics: dict, k: str) -> list[str]:
        cells = [
            f"{rate_cell(metrics, f'{mo}_{k}')}, {metrics[f'{mo}_{k}avg_similarity']:.3f}" for mo in modes
        ]
        return [label, *cells, f"{rate_cell(metrics, k)}, {metrics[f'{k}avg_similarity']:.3f}"]

    rows = [row("FineXtract", m, ""), row(f"CFG {c['baseline_cfg']:g}", m, "baseline_")]
    rows += [row(f"CFG {x}", m, f"baseline_cfg{x}_") for x in extra]
    lines += table(header, rows)
    lines += para(
        f"Whole run {secs(f['wall_seconds'])}. With {m['num_train_images']} images per model, one",
        f"image moves a rate by {1 / m['num_train_images']:.2f}.",
    )
    if bm := bench_methods(r).get("extract"):
        lines += para(
            f"{BENCH}, i.e. `modelmine extract` with its defaults ({bm['num_generations']} generations,",
            f"calibrated threshold {bm['calibrated_threshold']:.3f}, the CFG baseline only):",
        )
        lines += table(header, [row("FineXtract", bm, ""), row("CFG baseline", bm, "baseline_")])
    lines += r.image("finextract_matches.png", "each training image beside its best FineXtract candidate")
    return lines + source("finextract.json", "python benchmarks/finextract_bench.py")


def _recovered_prompts(f: dict, data: str, mode: str) -> str:
    """The recovered prompts of one (dataset, mode), by seed, quoted."""
    found = [
        run["prompts"]["recovered"][mode]
        for key, run in sorted(f["runs"].items())
        if key.split("/")[0] == data and "prompts" in run
    ]
    return "; ".join(f"'{p}'" for p in found) or "-"


def _two_thirds(f: dict) -> str:
    """How many judged (dataset, mode) pairs meet the recovered-prompt target, and which missed."""
    checks = {k: t.get("recovered_prompt_two_thirds") for k, t in f["targets"].items()}
    met = [k for k, v in checks.items() if v]
    judged = [k for k, v in checks.items() if v is not None]
    missed = sorted(set(judged) - set(met))
    return f"{len(met)} of {len(judged)} pairs" + (f" (missed: {', '.join(missed)})" if missed else "")


def section_prompt_recovery(r: Results) -> list[str] | None:
    f, g = r.get("finextract_prompt_auto.json"), r.get("finextract_prompt_response.json")
    main_ = f or g
    if main_ is None:
        return None
    c = main_["config"]
    true = next((run["prompts"]["true"] for run in main_["runs"].values() if "prompts" in run), "-")
    lines = ["## FineXtract with a recovered prompt", ""]
    lines += para(
        "`modelmine extract --prompt auto`: the fine-tuning prompt is searched from the pretrained and",
        "fine-tuned models alone, greedy words by the conditional prediction shift `S` (the default) or by",
        "the response gain `G` (`--set prompt_search.score=response`), then FineXtract runs with it, beside",
        f"FineXtract with the true prompt (`{true}`), from the same start noise. The same runs and",
        "fine-tunes as the FineXtract section's settings (its script with `--prompt-auto`); mean +- std",
        f"over seeds {', '.join(map(str, main_['seeds']))}"
        + ("" if main_["complete"] else " (incomplete: some runs missing)")
        + f". Machine: {machine(main_, workers(c))}.",
    )

    rows, prompts = [], []
    for data in main_["summary"]:
        for mode in main_["modes"]:
            row = [data, mode]
            for metric in ("success_rate", "calibrated_success_rate", "avg_similarity"):
                row.append(seed_cell(main_, data, f"{mode}_{metric}"))
                row += [seed_cell(res, data, f"{mode}_recovered_{metric}") for res in (f, g)]
            rows.append(row)
            prompts.append([
                data, mode, *("-" if res is None else _recovered_prompts(res, data, mode) for res in (f, g)),
                seed_cell(f, data, f"{mode}_prompt_token_accuracy"),
                seed_cell(g, data, f"{mode}_prompt_token_accuracy"),
            ])  # fmt: skip
    lines += table(
        ["dataset", "mode", "rate: true", "S", "G", "calibrated: true", "S", "G", "avg similarity: true", "S", "G"],
        rows,
    )  # fmt: skip
    lines += table(
        ["dataset", "mode", "recovered prompts, S (by seed)", "recovered prompts, G (by seed)",
         "token accuracy S", "G"],
        prompts,
    )  # fmt: skip
    lines += para(
        "The recovered prompt reaches 2/3 of the true prompt's fixed-threshold rate (mean over seeds; judged",
        "where the true prompt's rate is above zero) with `S` in",
        (f"{_two_thirds(f)}" if f else "-")
        + ("; " if f and g else "")
        + (f"with `G` in {_two_thirds(g)}" if g else "")
        + ". Token accuracy: the overlap of the recovered and the true prompt's words.",
    )
    out = []
    if f is not None:
        out += source(
            "finextract_prompt_auto.json",
            "python benchmarks/finextract_bench.py --prompt-auto --name finextract_prompt_auto",
        )
    if g is not None:
        out += source(
            "finextract_prompt_response.json",
            "python benchmarks/finextract_bench.py --prompt-auto --prompt-score response"
            " --name finextract_prompt_response",
        )
    return lines + out + prompt_rank_lines(r, "prompt_rank.json")


def prompt_rank_lines(r: Results, name: str) -> list[str]:
    """prompt_rank_bench.py's ranks of the true prompt's words per score, from ``name`` ([] without it)."""
    f = r.get(name)
    if f is None or not f["runs"]:
        return []
    runs = f["runs"]
    lines = ["### The first word of the search, by score", ""]
    lines += para(
        f"Each candidate word alone (the {next(iter(runs.values()))['candidates']} whole words of the",
        "tokenizer), scored at the search's own states on the fine-tunes of the runs above: the rank of",
        "every word of the true prompt (1 = the word the search takes first) and the top three, per score.",
        f"Machine: {machine(f)}.",
    )

    def cell(run: dict, score: str) -> str:
        return " ".join(f"{w} {k if k is not None else '-'}" for w, k in run[score]["ranks"].items())

    rows = [
        [key, cell(run, "shift"), ", ".join(run["shift"]["top"]), cell(run, "response"), ", ".join(run["response"]["top"])]
        for key, run in sorted(runs.items())
    ]  # fmt: skip
    lines += table(["dataset/mode/seed", "S: ranks", "S: top 3", "G: ranks", "G: top 3"], rows)
    firsts = {
        score: sum(1 for run in runs.values() if 1 in run[score]["ranks"].values())
        for score in ("shift", "response")
    }
    lines += para(
        f"A word of the true prompt ranks first on {firsts['shift']} of {len(runs)} fine-tunes with `S`",
        f"and on {firsts['response']} with `G`.",
    )
    extra = "" if name == "prompt_rank.json" else f" --name {name.removesuffix('.json')}"
    return lines + source(
        name,
        f"python benchmarks/prompt_rank_bench.py --work <finextract_bench work folder>/{f['work']}{extra}",
        ", after that `finextract_bench.py` run has left its fine-tunes",
    )


def section_finextract_identifier(r: Results) -> list[str] | None:
    f = r.get("finextract_sks.json")
    if f is None:
        return None
    c, ident = f["config"], f["settings"]["identifier"]
    true = next((run["prompts"]["true"] for run in f["runs"].values() if "prompts" in run), None)
    lines = ["## FineXtract with a DreamBooth identifier", ""]
    lines += para(
        f"DreamBooth's setting: the same runs as the FineXtract section, fine-tuned on `{true or ident}`",
        f"(`--set identifier={ident}`; the embedded tokenizer does not know the identifier, so it becomes a",
        "new token trained with the fine-tuning)"
        + (
            ", and the prompt recovered with `--prompt auto` beside it"
            if f["settings"]["prompt_auto"]
            else ""
        )
        + f". Mean +- std over seeds {', '.join(map(str, f['seeds']))}"
        + ("" if f["complete"] else " (incomplete: some runs missing)")
        + f". Machine: {machine(f, workers(c))}.",
    )

    rows = [
        [data, mode, *(seed_cell(f, data, f"{mode}_{k}") for k in (
            "success_rate", "baseline_success_rate", "calibrated_success_rate", "baseline_calibrated_success_rate",
            "avg_similarity", "baseline_avg_similarity", "recovered_success_rate")),
         _recovered_prompts(f, data, mode)]
        for data in f["summary"] for mode in f["modes"]
    ]  # fmt: skip
    lines += table(
        ["dataset", "mode", "FineXtract: rate", f"CFG {c['baseline_cfg']:g}: rate", "FineXtract: calibrated",
         "CFG: calibrated", "FineXtract: avg similarity", "CFG: avg similarity", "recovered prompt: rate",
         "recovered prompts (by seed)"],
        rows,
    )  # fmt: skip
    t = f["targets"]
    above = [k for k, v in t.items() if v["avg_similarity_above_baseline"]]
    judged = {
        k: v["success_rate_2x_baseline"] for k, v in t.items() if v["success_rate_2x_baseline"] is not None
    }
    lines += para(
        f"FineXtract's average similarity is above CFG's in {len(above)} of {len(t)} (dataset, mode) pairs;",
        f"its rate is at least twice CFG's in {sum(judged.values())} of the {len(judged)} pairs where CFG's is",
        f"above zero; the recovered prompt reaches 2/3 of the true prompt's rate in {_two_thirds(f)}.",
    )
    cmd = f"python benchmarks/finextract_bench.py --identifier {ident}"
    cmd += " --prompt-auto" if f["settings"]["prompt_auto"] else ""
    lines += source("finextract_sks.json", cmd + " --name finextract_sks")
    return lines + prompt_rank_lines(r, "prompt_rank_sks.json")


def section_audit_generator(r: Results) -> list[str] | None:
    a = r.get("audit_generator.json")
    if a is None:
        return None
    m, c = extraction_keys(a["metrics"]), a["config"]
    n = m["num_train_images"]
    lines = ["## audit generator", ""]
    lines += para(
        "`modelmine audit generator` on the LoRA of the TCKR benchmark run (`results/tckr.json`):",
        f"{m['num_generations']} FineXtract generations (w = {m['w']:g}) and {m['num_generations']}",
        f"CFG {c['baseline_cfg']:g} generations from the same noise, prompted with the private images'",
        f"own captions, {c['sample_steps']} steps of {c.get('sampler', 'ddim')}. A private image leaks when its best match is",
        f"above {m['calibrated_threshold']:.3f}, the {c['calibration_quantile']:.0%} quantile of the",
        "held-out images' best matches"
        + (
            f"; the paper's success rate counts matches of at least {m['similarity_threshold']:g}."
            if "similarity_threshold" in m
            else "."
        ),
        f"Seed {a['seed']}; machine: {machine(a, n_threads(c['threads']))}.",
    )
    rows = [
        ["FineXtract", f"{m['leaked_images']} of {n}", rate_cell(m), f3(m["avg_similarity"])],
        [
            f"CFG {c['baseline_cfg']:g}",
            f"{m['baseline_leaked_images']} of {n}",
            rate_cell(m, "baseline_"),
            f3(m["baseline_avg_similarity"]),
        ],
    ]
    header = ["method", "private images leaked", "success rate fixed / calibrated", "average best similarity"]
    lines += table(header, rows)
    lines += para(
        f"Time {secs(a['wall_seconds'])}. With {m['num_generations']} generations for {n} private",
        "images the leak count is a lower bound.",
    )
    lines += r.image("audit_generator_leaks.png", "private images beside their closest generations")
    return lines + source(
        "audit_generator.json",
        "python benchmarks/audit_generator_bench.py",
        ", after `python benchmarks/tckr_bench.py` has left its run folder",
    )
