"""Where each prompt-search score ranks the words of the true fine-tuning prompt, per fine-tune.

`--prompt auto` appends, word by word, the candidate that maximises a score
(:mod:`modelmine.audit.prompt`): the prediction shift ``S`` (default) or the response gain ``G``.
This script looks at the first step only, on the fine-tuned models a ``finextract_bench.py`` run
left in its work folder: for every (dataset, seed, mode) it draws the search's own states (the
fine-tuned model's samples, seeded as in the search), scores every candidate word alone with both
scores, and records the rank of each word of the true prompt and the top words. A score that ranks
the class word first gives the attack a usable prompt even when it recovers nothing else.

Run it after ``finextract_bench.py --prompt-auto`` (its ``--work`` folder holds the fine-tunes)::

    python benchmarks/finextract_bench.py --prompt-auto --name finextract_prompt_auto
    python benchmarks/prompt_rank_bench.py --work /tmp/finextract_bench/finextract_prompt_auto

Resumable: each finished fine-tune's ranks go into ``results/prompt_rank.json`` at once, and a
re-run skips them. About 30 s per fine-tune on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _results import machine_info, write_results
from modelmine.audit.prompt import SCORES, PromptSearchConfig, prompt_scores, search_setup
from modelmine.diffusion.finetune import load_lora
from modelmine.diffusion.generator import Generator

RESULTS = Path(__file__).parent / "results"


def load_pair(folder: Path, mode: str, base: str) -> tuple[Generator, Generator | None]:
    """The fine-tuned generator of one run's ``mode`` folder and its pretrained model (None: LoRA off)."""
    gen = Generator.from_pretrained(base).eval()
    if mode == "lora":
        load_lora(gen, folder)
        return gen.eval(), None
    return Generator.from_pretrained(str(folder / "embedded_generator.safetensors")).eval(), gen


@torch.inference_mode()
def ranks(ft: Generator, pre: Generator | None, true: str, seed: int, cfg: PromptSearchConfig) -> dict:
    """Per score: the 1-based rank of each word of ``true`` among the candidates, and the top 3."""
    words, x, timesteps = search_setup(ft, cfg, seed)  # the search's own candidates and states
    out = {}
    for score in SCORES:
        s = prompt_scores(ft, pre, words, x, timesteps, score, cfg.batch_size)
        order = [words[i] for i in s.argsort(descending=True).tolist()]
        out[score] = {
            "ranks": {w: order.index(w) + 1 if w in order else None for w in true.lower().split()},
            "top": order[:3],
        }
    out["candidates"] = len(words)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="a finextract_bench.py work folder (<dataset>_seed<k>/)")
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="prompt_rank")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    runs_ = sorted(p for p in work.glob("*_seed*") if (p / "prompt.json").exists())
    if not runs_:
        raise SystemExit(f"no finished --prompt-auto runs under {work}")
    path = Path(args.results) / f"{args.name}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    results = {"runs": old.get("runs", {}), "work": work.name, **machine_info(), "threads": args.threads}
    cfg = PromptSearchConfig()
    for run_dir in runs_:
        data, seed = run_dir.name.rsplit("_seed", 1)
        true = json.loads((run_dir / "prompt.json").read_text())["true"]
        for mode in ("lora", "full"):
            key = f"{data}/{mode}/{seed}"
            if key in results["runs"] or not (run_dir / mode).is_dir():
                continue
            t0 = time.time()
            ft, pre = load_pair(run_dir / mode, mode, args.base)
            results["runs"][key] = ranks(ft, pre, true, int(seed), cfg) | {"true": true}
            results["runs"][key]["seconds"] = time.time() - t0
            write_results(path, results)
            print(key, {s: results["runs"][key][s]["top"] for s in SCORES}, flush=True)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
