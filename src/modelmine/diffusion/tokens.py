"""Learnable token embeddings: textual inversion and TCKR/DDIS-style class alignment tokens.

Textual inversion (Gal et al., 2023, "An Image is Worth One Word"): add a placeholder token to the
tokenizer, give it one new row in the text encoder's input embedding, and train only that row
while everything else stays frozen. The row is saved in diffusers' textual-inversion format,
``learned_embeds.safetensors`` = ``{placeholder_token: (D,) tensor}``, which
``StableDiffusionPipeline.load_textual_inversion`` reads, and which :func:`load_learned_embeds`
reads back (several tokens may share one file; diffusers' loader wants one per file).

Two ways to train it:

- :func:`train_textual_inversion`: the denoising loss on example images prompted with
  ``"a <token> three"`` style templates (the original method);
- any other loss through :func:`token_parameter` + :func:`restore_other_rows` (e.g. a classifier
  loss on images from :func:`modelmine.diffusion.sampler.sample` with ``grad_steps=1``,
  which is how class alignment tokens are trained).

Only the new rows change: gradients of other rows are zeroed by a hook and their values are
restored after each optimizer step, so weight decay or momentum cannot move them.

**New words** (open vocabulary): a prompt word the tokenizer maps to its unknown token
(:func:`unknown_words`; a word-level tokenizer like the embedded one, never a BPE one such as CLIP's,
which can spell every word) becomes a token of its own (:func:`add_new_words`), starting at the
embedding of ``"a"`` (:data:`NEW_WORD_INIT`). :func:`modelmine.diffusion.finetune.finetune_or_load`
trains those rows with the fine-tuning, like DreamBooth's identifier or a textual-inversion token,
and saves them beside the LoRA as ``learned_embeds.safetensors`` (``{word: (D,)}``), which
:func:`modelmine.diffusion.finetune.load_lora` reads back (:func:`load_new_words`) and diffusers reads
with ``pipe.load_textual_inversion([{w: v} for w, v in load_file(path).items()])`` (one word: the
path itself).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken

from ..errors import UserError
from ..runs import FLOAT_DTYPES, atomic_save_tensors, item_seed, load_tensors, non_finite, read_header
from .generator import Generator, upcast_trainable
from .pretrain import train_step

LEARNED_EMBEDS = "learned_embeds.safetensors"
# The word a new word's row starts from: in every vocabulary (CLIP's and the embedded one), the most
# generic word there is, and the official CAT/textual-inversion start (DDIS's ``cat_init``). A new
# word of a class name carries no meaning the tokenizer knows, so none of its words "fits" better.
NEW_WORD_INIT = "a"


def add_placeholder_tokens(
    gen: Generator, tokens: Sequence[str], init_word: str | None = None, *, single_word: bool = False
) -> list[int]:
    """Add ``tokens`` to the tokenizer and text encoder; returns their ids.

    Each new embedding row starts as the embedding of ``init_word`` (one known word), else as the
    mean embedding. A token that already exists is an error (pick a fresh placeholder like ``<t1>``).
    ``single_word``: the token matches whole words only (``"he"`` never splits ``"the"``).
    """

    tok = gen.tokenizer
    for t in tokens:
        if t in tok.get_vocab():
            raise UserError(f"token '{t}' already exists in the tokenizer; choose a new placeholder")
    new = [AddedToken(t, single_word=True) for t in tokens] if single_word else list(tokens)
    added = tok.add_tokens(new)
    if added != len(tokens):
        raise UserError(f"could not add tokens {list(tokens)} to the tokenizer")
    emb = gen.text_encoder.get_input_embeddings()
    old = emb.weight.shape[0]
    gen.text_encoder.resize_token_embeddings(len(tok), mean_resizing=False)
    emb = gen.text_encoder.get_input_embeddings()
    ids = tok.convert_tokens_to_ids(list(tokens))
    with torch.no_grad():
        if init_word is not None:
            init_ids = tok(init_word, add_special_tokens=False).input_ids
            if len(init_ids) != 1 or init_ids[0] == tok.unk_token_id:
                raise UserError(f"init word '{init_word}' must be a single known token")
            init = emb.weight[init_ids[0]].clone()
        else:
            init = emb.weight[:old].mean(0)
        for i in ids:
            emb.weight[i] = init
    return ids


def unknown_words(tokenizer, prompts: Sequence[str]) -> list[str]:
    """The words of ``prompts`` that ``tokenizer`` maps to its unknown token, normalised as the
    tokenizer does (e.g. lower-cased), sorted. Empty for a tokenizer without an unknown token or one
    that spells every word (byte-level BPE such as CLIP's)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    norm = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    words = set()
    for p in dict.fromkeys(prompts):
        enc = tokenizer(p, add_special_tokens=False, return_offsets_mapping=True)
        for i, (a, b) in zip(enc.input_ids, enc.offset_mapping, strict=True):
            if i == unk and p[a:b].strip():
                words.add(norm.normalize_str(p[a:b]) if norm is not None else p[a:b])
    return sorted(words)


def add_new_words(gen: Generator, words: Sequence[str], init_word: str = NEW_WORD_INIT) -> list[int]:
    """Add ``words`` as whole-word tokens whose rows start at ``init_word``'s embedding (the mean
    embedding if the tokenizer does not know it as one token); returns their ids."""
    init_ids = gen.tokenizer(init_word, add_special_tokens=False).input_ids
    known = len(init_ids) == 1 and init_ids[0] != gen.tokenizer.unk_token_id
    return add_placeholder_tokens(gen, words, init_word if known else None, single_word=True)


def note_new_words(words: Sequence[str], init_word: str = NEW_WORD_INIT, what: str = "") -> None:
    """One line on stderr naming the new words (the first 12)."""
    shown = ", ".join(repr(w) for w in words[:12]) + (
        f" and {len(words) - 12} more" if len(words) > 12 else ""
    )
    what = what or f"new tokens starting at '{init_word}', trained with the fine-tuning"
    print(f"modelmine: note: the tokenizer does not know {shown}; {what}", file=sys.stderr)


def token_parameter(gen: Generator, token_ids: Sequence[int]) -> torch.nn.Parameter:
    """Make the input-embedding matrix trainable with gradients masked to ``token_ids`` rows.

    Returns the embedding weight ``(V, D)`` to hand to an optimizer; call
    :func:`restore_other_rows` after each step. The rest of the text encoder is frozen.
    """
    gen.text_encoder.requires_grad_(False)
    # float32 under a half-precision generator: diffusers' textual-inversion script keeps the whole
    # text encoder in float32 while it trains embeddings (a float32 row into half layers mixes dtypes)
    upcast_trainable(list(gen.text_encoder.parameters()))
    weight = gen.text_encoder.get_input_embeddings().weight
    weight.requires_grad_(True)
    mask = torch.zeros(weight.shape[0], 1, device=weight.device, dtype=weight.dtype)
    mask[list(token_ids)] = 1
    if not getattr(weight, "_mm_masked", False):
        weight.register_hook(lambda g: g * mask)
        weight._mm_masked = True  # type: ignore[attr-defined]
    return weight


@torch.no_grad()
def restore_other_rows(gen: Generator, token_ids: Sequence[int], reference: torch.Tensor) -> None:
    """Copy every row except ``token_ids`` back from ``reference`` ``(V, D)``."""
    weight = gen.text_encoder.get_input_embeddings().weight
    keep = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
    keep[list(token_ids)] = False
    weight[keep] = reference.to(weight)[keep]


def token_embeddings(gen: Generator, tokens: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{token: (D,) embedding}`` of existing tokens."""
    ids = gen.tokenizer.convert_tokens_to_ids(list(tokens))
    weight = gen.text_encoder.get_input_embeddings().weight
    return {t: weight[i].detach().float().cpu().clone() for t, i in zip(tokens, ids, strict=True)}


def save_learned_embeds(gen: Generator, tokens: Sequence[str], path: str | Path) -> Path:
    """Write ``{token: (D,)}`` as safetensors (a folder gets ``learned_embeds.safetensors``)."""
    p = Path(path)
    if p.suffix != ".safetensors":
        p = p / LEARNED_EMBEDS
    atomic_save_tensors(p, token_embeddings(gen, tokens))
    return p


def load_learned_embeds(gen: Generator, path: str | Path) -> list[str]:
    """Add the tokens of a ``learned_embeds.safetensors`` (diffusers/our format) to ``gen``.

    Each key is a token; a key without angle brackets (e.g. ``emb_params``) is added as
    ``<emb_params>``. Embeddings must be ``(D,)`` or ``(1, D)``. Returns the token strings.
    """
    state = _read_embeds(gen, path)
    tokens = [name if name.startswith("<") else f"<{name}>" for name in state]
    _set_rows(gen, add_placeholder_tokens(gen, tokens), state.values())
    return tokens


def load_new_words(gen: Generator, path: str | Path) -> list[str]:
    """Add the new words saved beside a LoRA (``{word: (D,)}``, names kept) to ``gen`` as whole-word
    tokens; a word already added gets the saved row, a word of the base vocabulary keeps its own.
    Returns the words whose rows were set."""
    state = _read_embeds(gen, path)
    vocab, added = gen.tokenizer.get_vocab(), gen.tokenizer.get_added_vocab()
    missing = [w for w in state if w not in vocab]
    if missing:
        add_new_words(gen, missing)
    state = {w: v for w, v in state.items() if w not in vocab or w in added}  # a base word keeps its row
    _set_rows(gen, gen.tokenizer.convert_tokens_to_ids(list(state)), state.values())
    return list(state)


@torch.no_grad()
def _set_rows(gen: Generator, ids: Sequence[int], vectors) -> None:
    weight = gen.text_encoder.get_input_embeddings().weight
    dim = weight.shape[1]
    for i, v in zip(ids, vectors, strict=True):
        weight[i] = v.reshape(-1)[:dim].to(weight)


def _read_embeds(gen: Generator, path: str | Path) -> dict[str, torch.Tensor]:
    """The checked ``{token: tensor}`` of a learned-embeddings file (a folder: its ``learned_embeds``)."""
    p = Path(path)
    if p.is_dir():
        p = p / LEARNED_EMBEDS
    if not p.is_file():
        raise UserError(f"learned embeddings not found: {p}")
    header = read_header(p)  # shapes checked before anything is loaded
    dim = gen.text_encoder.get_input_embeddings().weight.shape[1]
    if not header.shapes:
        raise UserError(f"{p} holds no embeddings")
    for name, shape in header.shapes.items():
        if shape not in ((dim,), (1, dim)):
            raise UserError(f"{p}: embedding '{name}' has shape {shape}, the text encoder needs ({dim},)")
        if header.dtypes[name] not in FLOAT_DTYPES:
            raise UserError(f"{p}: embedding '{name}' is {header.dtypes[name]}, not floating point")
        if not name.strip() or any(c.isspace() for c in name):
            raise UserError(f"{p}: token {name[:40]!r} is empty or holds spaces")
    state = load_tensors(p)
    bad = non_finite(state)
    if bad is not None:
        raise UserError(f"{p}: embedding '{bad}' has NaN/inf values")
    return state


def train_textual_inversion(
    gen: Generator,
    images: torch.Tensor,
    token: str = "<tok>",
    *,
    templates: Sequence[str] = ("a {t}", "a photo of a {t}", "{t}"),
    init_word: str | None = None,
    steps: int = 200,
    batch_size: int = 16,
    lr: float = 5e-3,
    seed: int = 0,
) -> torch.Tensor:
    """Textual inversion on ``images`` ``(N, C, H, W)`` in [0, 1]; returns the learned ``(D,)`` vector.

    ``templates`` hold ``{t}`` for the placeholder (e.g. ``"a {t} three"`` to learn a style of one
    class). The token is added first if the tokenizer does not know it yet.
    """

    if token not in gen.tokenizer.get_vocab():
        add_placeholder_tokens(gen, [token], init_word)
    tid = gen.tokenizer.convert_tokens_to_ids(token)
    gen.requires_grad_(False)
    weight = token_parameter(gen, [tid])
    reference = weight.detach().clone()
    opt = torch.optim.AdamW([weight], lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    gen.text_encoder.train()
    for step in range(steps):
        g = torch.Generator().manual_seed(item_seed(seed, step))
        idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=g)
        prompts = [rng.choice(list(templates)).format(t=token) for _ in range(len(idx))]
        loss = train_step(gen, images[idx].to(gen.device), prompts, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        restore_other_rows(gen, [tid], reference)
    gen.text_encoder.eval()
    weight.requires_grad_(False)
    return weight[tid].detach().clone()
