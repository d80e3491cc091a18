"""Recover the instance prompt of a fine-tuned text-to-image model from the (pretrained, fine-tuned)
pair alone: ``modelmine extract --prompt auto``.

FineXtract (Wu et al., arXiv:2410.03039) also treats the case where the attacker does not know the
fine-tuning caption and reports recovering captions of up to 7 words; its official code
(github.com/Nicholas0228/FineXtract) ships no caption extraction. The search here is a greedy,
gradient-free word search on the *prediction shift* of the fine-tuned model (the default,
``score="shift"``):

    S(p) = mean over (x, t) of  || eps_ft(x, t, p) - eps_pre(x, t, p) ||^2 / d

with ``eps_ft`` / ``eps_pre`` the fine-tuned and pretrained models' conditional noise predictions
(each with its own text encoder; a LoRA is switched off for ``eps_pre``), ``d`` the number of
elements of one prediction, and ``(x, t)`` a fixed, seeded set of inputs at each of the
``timesteps``. Fine-tuning moves the model most where it was trained, i.e. under the fine-tuning
prompt *and near the fine-tuning images*, so the shift is largest for prompts close to it when it
is measured at states like the ones it was trained on. The attacker does not have those images but
has the fine-tuned model's own samples (``states="samples"``, the default): ``num_noise`` images
drawn from ``eps_ft`` with the empty prompt (``sample_steps`` steps of the command's sampler,
seeded), noised to each timestep, ``x = sqrt(a_t) x0 + sqrt(1 - a_t) n``. ``states="noise"``
measures at standard normal states instead (where the shift is dominated by where the base model
itself is sensitive to a word). S also grows for a prior concept the fine-tune overwrote (``eps_pre`` still draws, say, a
checkerboard where ``eps_ft`` draws the fine-tuning digit), and such a word can win.

``score="response"`` is the variant built against that: with ``R_m(p) = mean || eps_m(x, t, p) -
eps_m(x, t, "") ||^2 / d``, how strongly model ``m`` responds to ``p`` (the size of its
classifier-free guidance direction), ``G(p) = R_ft(p) - R_pre(p)``, the gain in response a fine-tune
that binds p to its images should show. It ranks overwritten concepts last and helps a LoRA, but a
full fine-tune also moves the empty prompt's prediction toward the images, so the trained word's
response can shrink and G misses it (benchmarks/RESULTS.md compares the two).

Starting from the empty prompt, each step appends the candidate word ``w`` that maximises the score
of ``p + " " + w`` (all candidates scored in one batched pass: candidates x inputs rows, chunked to
``batch_size`` rows, one chunk loop per timestep), and the search stops at ``max_words`` or when the
best extension raises the score by less than ``min_gain`` times its current size (the first word is
always taken: the attack needs a prompt).

Candidates (:func:`candidate_words`): a given list, else the tokenizer's whole words in id order,
the first ``max_candidates`` of them: lower-case ASCII words of letters only that tokenize back to
their one token. Of a small word-level tokenizer (the embedded one) that is its vocabulary less
digits and punctuation; of a CLIP BPE vocabulary the whole-word (``</w>``) tokens in merge order,
which ranks tokens roughly by their frequency in the tokenizer's training text (CLIP: ~49k
tokens, the first ``max_candidates`` words), without byte aliases (``Ċ``) or case duplicates.

| setting | paper or official code | ours | reason |
|---|---|---|---|
| caption search | described in the paper only (up to 7 words recovered); no official code | greedy append of the word maximising ``S`` above; stop when ``S`` gains < 1% or at 7 words | gradient-free, deterministic, one batched pass per position |
| score | not given | ``S``, the conditional prediction shift; ``G`` (response gain) as ``score="response"`` | ``S`` ranked the trained word first on more fine-tunes; ``G`` fails on full fine-tunes (above) |
| score inputs | not given | 16 of the fine-tuned model's own unconditional samples (10 sampling steps), noised to t = 0.1, 0.3, 0.5, 0.7 T | the fine-tuning images are unknown to the attacker; the model's samples stand in for them |
| candidates | not given | lower-case whole words that tokenize back to one token, in vocabulary order, at most `max_candidates` | the full CLIP vocabulary costs 49k prompts per position |
| prompt accuracy | words recovered | word-multiset overlap / max(len true, len recovered) | greedy append does not recover word order |
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..diffusion.guidance import Conditioning, lora_disabled, predict_eps, train_timesteps
from ..diffusion.sampler import sample
from ..errors import UserError
from ..runs import item_seed

if TYPE_CHECKING:
    from ..diffusion.generator import Generator


SCORES = ("shift", "response")  # the search scores: the prediction shift S (default), the response gain G


@dataclass
class PromptSearchConfig:
    """The greedy prompt search of ``--prompt auto`` (:func:`recover_prompt`)."""

    max_words: int = 7  # the paper reports prompts of up to 7 words
    score: str = "shift"  # "shift": S(p), the prediction shift; "response": G(p), the response gain
    candidates: list[str] | None = None  # None: candidate_words(tokenizer, max_candidates)
    max_candidates: int = 1000
    states: str = "samples"  # "samples": the fine-tuned model's own samples, noised; "noise": N(0, I)
    num_noise: int = 16  # states per timestep (samples, or N(0, I) draws)
    sample_steps: int = 10  # sampling steps of the fine-tuned model's samples (states="samples")
    timesteps: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7])  # fractions of T
    min_gain: float = 0.01  # stop when the best word raises the shift by less than this fraction
    batch_size: int = 256  # UNet rows per call


def check_search(cfg: PromptSearchConfig) -> None:
    """One-line UserErrors for settings the search cannot run with."""
    if min(cfg.max_words, cfg.num_noise, cfg.batch_size, cfg.max_candidates, cfg.sample_steps) < 1:
        raise UserError(
            "prompt_search: max_words, num_noise, sample_steps, batch_size and max_candidates must be >= 1"
        )
    check_score(cfg.score)
    if cfg.states not in ("samples", "noise"):
        raise UserError(f"prompt_search.states is samples or noise, got {cfg.states!r}")
    if not cfg.timesteps or any(not 0.0 <= f < 1.0 for f in cfg.timesteps):
        raise UserError(f"prompt_search.timesteps are fractions of T in [0, 1), got {cfg.timesteps}")
    if cfg.candidates is not None and not [w for w in cfg.candidates if w.strip()]:
        raise UserError("prompt_search.candidates is empty")


def check_score(score: str) -> None:
    """A one-line UserError for a score the search does not know."""
    if score not in SCORES:
        raise UserError(f"prompt_search.score is one of {', '.join(SCORES)}, got {score!r}")


def candidate_words(tokenizer, max_candidates: int = 1000) -> list[str]:
    """The tokenizer's whole words in id order, at most ``max_candidates``: tokens that are a lower-case
    ASCII word (letters only; a BPE token only with CLIP's ``</w>`` end-of-word marker, which is
    dropped) and that tokenize back to that one token. This leaves out specials, punctuation, byte
    aliases such as ``Ċ``, word pieces and case duplicates, for a word-level vocabulary (the
    embedded one) as for CLIP's BPE, where the order is merge order (roughly by frequency)."""
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    bpe = any(tok.endswith("</w>") for tok in vocab)
    words: list[str] = []
    for tok, idx in sorted(vocab.items(), key=lambda kv: kv[1]):
        if tok in special or (bpe and not tok.endswith("</w>")):
            continue
        word = tok[:-4] if bpe else tok
        if not (word.isascii() and word.isalpha() and word.islower()) or word in words:
            continue
        if tokenizer(word, add_special_tokens=False).input_ids != [idx]:  # must round-trip
            continue
        words.append(word)
        if len(words) == max_candidates:
            break
    return words


def search_inputs(shape: Sequence[int], num_noise: int, num_timesteps: int, seed: int = 0) -> torch.Tensor:
    """The fixed states ``(num_timesteps, num_noise, *shape)`` the shift is measured at (seeded N(0, I))."""
    g = torch.Generator().manual_seed(item_seed(seed, 7919))
    return torch.randn((num_timesteps, num_noise, *shape), generator=g)


@torch.no_grad()
def sample_states(
    ft: Generator, num: int, timesteps: Sequence[int], sample_steps: int = 10, seed: int = 0
) -> torch.Tensor:
    """States ``(len(timesteps), num, *shape)``: ``num`` samples of ``ft`` with the empty prompt
    (the generator's sampler, ``sample_steps``, seeded), each noised to every timestep with seeded noise."""

    g = torch.Generator().manual_seed(item_seed(seed, 104_729))
    latents = torch.randn((num, *ft.latent_shape), generator=g)
    x0 = sample(ft, [""] * num, steps=sample_steps, cfg=1.0, latents=latents, output="latents").cpu().float()
    if ft.vae is None:  # pixel space: the images' range, as the fine-tuning saw them
        x0 = x0.clamp(-1, 1)
    noise = torch.randn((len(timesteps), num, *ft.latent_shape), generator=g)
    a = ft.scheduler.alphas_cumprod.float()[list(timesteps)].view(-1, 1, *([1] * len(ft.latent_shape)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def _pretrained(ft: Generator, pre: Generator | None):
    """``(generator, context factory)`` of the pretrained prediction: ``pre``, or ``ft`` with LoRA off."""

    if pre is not None:
        return pre, contextlib.nullcontext
    return ft, lambda: lora_disabled(ft.unet)


def _encode(ft, pre_gen, pre_ctx, prompts: Sequence[str], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's prompt embeddings ``(len(prompts) * k, L, D)``, every prompt repeated ``k`` times."""
    cond_ft = ft.encode_prompt(list(prompts)).to(ft.dtype).repeat_interleave(k, 0)
    with pre_ctx():
        cond_pre = pre_gen.encode_prompt(list(prompts)).to(pre_gen.dtype).repeat_interleave(k, 0)
    return cond_ft, cond_pre


def _predictions(ft, pre_gen, pre_ctx, conds: tuple[torch.Tensor, torch.Tensor], xs: torch.Tensor, t: int):
    """Both models' conditional predictions ``(b * K, *shape)`` at the states ``xs`` ``(K, *shape)``
    at timestep ``t`` for the ``b`` prompts of ``conds`` (:func:`_encode`), every prompt against every
    state, in one UNet call per model."""

    b = conds[0].shape[0] // xs.shape[0]
    rows = xs.to(ft.device, ft.dtype).repeat(b, *([1] * (xs.dim() - 1)))  # (b*K, *shape)
    eps_ft = predict_eps(ft, rows, int(t), Conditioning(conds[0])).float()
    with pre_ctx():
        eps_pre = predict_eps(pre_gen, rows, int(t), Conditioning(conds[1])).float()
    return eps_ft, eps_pre


@torch.no_grad()
def prompt_scores(
    ft: Generator,
    pre: Generator | None,
    prompts: Sequence[str],
    x: torch.Tensor,
    timesteps: Sequence[int],
    score: str = "shift",
    batch_size: int = 256,
) -> torch.Tensor:
    """The search score ``(P,)`` of each prompt over the states ``x`` ``(len(timesteps), K, *shape)``
    (row ``i`` at ``timesteps[i]``), averaged over states and timesteps: ``"shift"`` ``S(p)`` or
    ``"response"`` ``G(p)`` (module docstring). ``pre=None``: ``ft``'s LoRA switched off. Batched: every
    (prompt, state) pair of a chunk of ``batch_size`` rows in one UNet call per model."""
    check_score(score)
    pre_gen, pre_ctx = _pretrained(ft, pre)
    k = x.shape[1]
    per_chunk = max(1, batch_size // k)
    mse = lambda d, b: d.pow(2).flatten(1).mean(1).view(b, k).mean(1)  # noqa: E731  (b*K, ...) -> (b,)
    empty = None  # the empty prompt's predictions per timestep, the reference of G
    if score == "response":
        conds = _encode(ft, pre_gen, pre_ctx, [""], k)
        empty = [_predictions(ft, pre_gen, pre_ctx, conds, x[i], t) for i, t in enumerate(timesteps)]
    scores = []
    for lo in range(0, len(prompts), per_chunk):
        chunk = list(prompts[lo : lo + per_chunk])
        b = len(chunk)
        total = torch.zeros(b, device=ft.device)
        conds = _encode(ft, pre_gen, pre_ctx, chunk, k)  # once per chunk, reused at every timestep
        for i, t in enumerate(timesteps):
            eps_ft, eps_pre = _predictions(ft, pre_gen, pre_ctx, conds, x[i], t)
            if empty is None:
                total += mse(eps_ft - eps_pre, b)
            else:
                reps = (b, *([1] * (eps_ft.dim() - 1)))
                r_ft = mse(eps_ft - empty[i][0].repeat(reps), b)  # R_ft(p) at this timestep
                r_pre = mse(eps_pre - empty[i][1].repeat(reps), b)
                total += r_ft - r_pre
        scores.append(total / len(timesteps))
    return torch.cat(scores).cpu()


def search_setup(
    ft: Generator, cfg: PromptSearchConfig, seed: int = 0
) -> tuple[list[str], torch.Tensor, list[int]]:
    """What the search scores over: the candidate words, the states ``x`` ``(len(timesteps), K,
    *shape)`` and the timesteps (``cfg.timesteps`` as fractions of ``T``), seeded by ``seed``."""
    check_search(cfg)
    words = (
        cfg.candidates if cfg.candidates is not None else candidate_words(ft.tokenizer, cfg.max_candidates)
    )
    words = [w.strip() for w in words if w.strip()]
    if not words:
        raise UserError("the tokenizer has no whole-word tokens to search the prompt over")
    timesteps = train_timesteps(ft, cfg.timesteps)
    if cfg.states == "samples":
        x = sample_states(ft, cfg.num_noise, timesteps, cfg.sample_steps, seed)
    else:
        x = search_inputs(ft.latent_shape, cfg.num_noise, len(timesteps), seed)
    return words, x, timesteps


def recover_prompt(
    ft: Generator, pre: Generator | None, cfg: PromptSearchConfig, seed: int = 0
) -> tuple[str, list[float]]:
    """Greedy word-by-word search of the prompt maximising the score ``cfg.score`` (module
    docstring). Returns the prompt and the score after each chosen word (the empty prompt's first)."""
    words, x, timesteps = search_setup(ft, cfg, seed)
    max_words = min(cfg.max_words, ft.tokenizer.model_max_length - 2)

    def score(prompts: list[str]) -> torch.Tensor:
        return prompt_scores(ft, pre, prompts, x, timesteps, cfg.score, cfg.batch_size)

    chosen: list[str] = []
    history = [float(score([""])[0])]  # S(""): the unconditional shift; G("") = 0
    while len(chosen) < max_words:
        scores = score([" ".join([*chosen, w]) for w in words])
        best = int(scores.argmax())
        # G can be negative, so the gain is measured against |current score|
        if chosen and float(scores[best]) - history[-1] <= cfg.min_gain * abs(history[-1]):
            break
        chosen.append(words[best])
        history.append(float(scores[best]))
    return " ".join(chosen), history


def words_of(prompt: str) -> list[str]:
    """The lower-cased words and punctuation marks of a prompt (the candidates are whole words)."""
    return re.findall(r"\w+|[^\w\s]", prompt.lower())


def prompt_token_accuracy(recovered: str, true: str) -> float:
    """Overlap of the two prompts' word multisets (:func:`words_of`) over the longer one's length:
    1 for the same words in any order, 0 for none in common."""
    a, b = Counter(words_of(recovered)), Counter(words_of(true))
    longer = max(sum(a.values()), sum(b.values()))
    return sum((a & b).values()) / longer if longer else 1.0
