"""Tiny random-weight models saved in the formats real users bring, for testing the real path offline.

:func:`build_tiny_sd` writes a ``StableDiffusionPipeline.save_pretrained`` folder (``unet/``,
``vae/`` AutoencoderKL, ``text_encoder/`` CLIPTextModel, ``tokenizer/`` CLIPTokenizer, ``scheduler/``,
``model_index.json``) in one of three styles:

=============  ===============  ===============  ===========================================
style          scheduler        prediction_type  as shipped by
=============  ===============  ===============  ===========================================
``sd1``        PNDMScheduler    epsilon          SD 1.4 / 1.5 (quick-GELU text encoder,
                                                 ``<|endoftext|>`` padding)
``sd2-base``   PNDMScheduler    epsilon          SD 2 / 2.1 base 512 (GELU text encoder,
                                                 ``!`` padding, linear attention projections)
``sd2-v``      DDIMScheduler    v_prediction     SD 2 / 2.1 768-v (as ``sd2-base``, upcast attention)
=============  ===============  ===============  ===========================================

The tokenizer is a real CLIP BPE tokenizer: ``vocab.json`` and ``merges.txt`` are built from CLIP's
merge list ``bpe_simple_vocab_16e6.txt.gz`` (:func:`clip_bpe_file`; it ships inside the
``open_clip_torch`` wheel, which installs without its dependencies), in the layout CLIP's own
tokenizer uses: the 256 byte symbols, the same with the ``</w>`` end-of-word marker, one token per
merge (48,894 merges), then ``<|startoftext|>`` and ``<|endoftext|>`` (49,408 tokens).

``clip_sample`` is written as the given entry (``None`` leaves the key out, as a PNDM config saved
by diffusers has it), so tests can check that no entry makes our sampler clamp latents.

:func:`build_tiny_blip2` writes a tiny ``Blip2ForConditionalGeneration`` with its ``Blip2Processor``
(BLIP image processor, the same CLIP tokenizer, ``<image>`` query tokens).

The VAE halves the resolution once (a real SD VAE: three times) so that a 16x16 image has 8x8
latents; every other module has the real class and config keys, only narrower.

:func:`colour_squares` is data for them: RGB images of a red, green or blue square on a dark
background (the stroke-like colour case the attribute captioner must name).
"""

from __future__ import annotations

import gzip
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Literal

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
)

from ..data import ImageSet
from ..errors import UserError

Style = Literal["sd1", "sd2-base", "sd2-v"]
STYLES: tuple[str, ...] = ("sd1", "sd2-base", "sd2-v")
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # CLIP's vocabulary is 49,408 = 2 * 256 bytes + merges + 2 specials


def clip_bpe_file() -> Path:
    """CLIP's merge list: ``$MODELMINE_CLIP_BPE`` or the copy in the installed ``open_clip_torch``
    distribution (found through its file list; ``open_clip`` itself is never imported)."""
    env = os.environ.get("MODELMINE_CLIP_BPE")
    if env:
        return Path(env)
    try:
        files = metadata.files("open_clip_torch") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == BPE_NAME:
            return Path(f.locate())
    raise UserError(
        f"CLIP's {BPE_NAME} was not found: pip install --no-deps open_clip_torch (or set MODELMINE_CLIP_BPE)"
    )


def _byte_symbols() -> list[str]:
    """The 256 symbols CLIP's BPE uses for bytes, in CLIP's vocabulary order: the printable bytes
    as themselves (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``), then every other byte, in byte order,
    as the characters from U+0100 on."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def write_clip_tokenizer_files(folder: Path, bpe: Path | None = None) -> tuple[Path, Path]:
    """``folder/vocab.json`` and ``folder/merges.txt`` of CLIP's tokenizer, from its merge list."""
    lines = gzip.open(bpe or clip_bpe_file(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    merges_path.write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    return vocab_path, merges_path


def clip_tokenizer(work: Path, pad_token: str = "<|endoftext|>"):
    """A ``CLIPTokenizer`` (77 tokens) built from CLIP's BPE file; its source files go under ``work``."""

    vocab, merges = write_clip_tokenizer_files(work)
    return CLIPTokenizer(str(vocab), str(merges), pad_token=pad_token, model_max_length=77)


def scheduler_for(style: Style):
    """The scheduler an SD folder of ``style`` ships (scaled-linear betas, 1000 steps)."""

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if style == "sd2-v":
        return DDIMScheduler(
            **common, prediction_type="v_prediction", set_alpha_to_one=False, clip_sample=False
        )
    return PNDMScheduler(**common, skip_prk_steps=True, set_alpha_to_one=False)


def build_tiny_sd(
    out: str | Path, style: Style = "sd1", seed: int = 0, clip_sample: bool | None = None
) -> Path:
    """Write a tiny random-weight Stable Diffusion folder of ``style`` at ``out`` (16x16 images,
    8x8x4 latents) with ``StableDiffusionPipeline.save_pretrained``; returns ``out``."""

    if style not in STYLES:
        raise UserError(f"unknown tiny SD style '{style}' (one of {', '.join(STYLES)})")
    out = Path(out)
    sd2 = style != "sd1"
    tokenizer = clip_tokenizer(out / ".tokenizer-src", pad_token="!" if sd2 else "<|endoftext|>")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4) if sd2 else 8, use_linear_projection=sd2, upcast_attention=style == "sd2-v",
        norm_num_groups=32,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), latent_channels=4,
        norm_num_groups=32, sample_size=16, scaling_factor=0.18215,
    )  # fmt: skip
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu" if sd2 else "quick_gelu",
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, projection_dim=32,
        )
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler_for(style), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(out, safe_serialization=True)
    saved = out / "scheduler" / "scheduler_config.json"  # the entry as given, however diffusers wrote it
    on_disk = json.loads(saved.read_text())
    on_disk.pop("clip_sample", None)
    if clip_sample is not None:
        on_disk["clip_sample"] = clip_sample
    saved.write_text(json.dumps(on_disk, indent=2))
    for f in (out / ".tokenizer-src").iterdir():  # real SD folders carry them beside tokenizer.json
        f.replace(out / "tokenizer" / f.name)
    (out / ".tokenizer-src").rmdir()
    return out


def colour_squares(n: int = 24, size: int = 16, seed: int = 0):
    """An ImageSet of ``n`` RGB ``size`` x ``size`` images: a red, green or blue square (the class,
    ``i mod 3``; side ``3 size / 8``) at a seeded place on a dark background (uniform noise up to 0.05)."""

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    side = max(2, 3 * size // 8)
    x = 0.05 * torch.rand(n, 3, size, size, generator=g)
    rows = torch.randint(1, size - side - 1, (n, 1, 1), generator=g)
    cols = torch.randint(1, size - side - 1, (n, 1, 1), generator=g)
    ys, xs = torch.arange(size).view(1, size, 1), torch.arange(size).view(1, 1, size)
    inside = (ys >= rows) & (ys < rows + side) & (xs >= cols) & (xs < cols + side)  # (n, size, size)
    x[torch.arange(n), labels] = torch.where(inside, 0.9, x[torch.arange(n), labels])
    return ImageSet(x, labels, ["red", "green", "blue"])


def build_tiny_blip2(out: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight ``Blip2ForConditionalGeneration`` (OPT decoder) and its
    ``Blip2Processor`` at ``out`` with ``save_pretrained``; returns ``out``."""

    out = Path(out)
    tokenizer = clip_tokenizer(out / ".tokenizer-src")
    num_query = 4
    processor = Blip2Processor(
        BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=num_query
    )
    image_token = tokenizer.convert_tokens_to_ids(processor.image_token.content)
    config = Blip2Config(
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, image_size=32,
            patch_size=8,
        ),
        qformer_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
            vocab_size=len(tokenizer), encoder_hidden_size=32,
        ),
        text_config=dict(
            model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=37, num_hidden_layers=1,
            num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=32,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        num_query_tokens=num_query, image_token_index=image_token,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    for f in (out / ".tokenizer-src").iterdir():
        f.unlink()
    (out / ".tokenizer-src").rmdir()
    return out
