"""The text-to-image generator every diffusion method shares (TCKR, DDIS, FineXtract).

``Generator`` = UNet (``UNet2DConditionModel``) + optional VAE (``AutoencoderKL``; ``None`` for a
pixel-space model) + text encoder (``CLIPTextModel``) + tokenizer + scheduler, all plain
diffusers/transformers objects, so LoRA, textual inversion and diffusers' loaders work on them.

- :meth:`Generator.from_pretrained` loads a diffusers Stable Diffusion (1.x or 2.x) folder.
- :meth:`Generator.embedded` loads the shipped tiny model: a pixel-space 16x16 greyscale UNet with
  cross-attention and a pooled-text embedding added to the time embedding (diffusers'
  ``addition_embed_type="text"``), a 2-layer 64-wide ``CLIPTextModel`` and a word-level tokenizer
  built offline. It was pretrained on the public glyph corpus only (``modelmine pretrain``,
  :mod:`modelmine.diffusion.pretrain`).

Deviation from Stable Diffusion: the embedded model has no VAE (images are small enough to diffuse
in pixel space), a word-level tokenizer instead of CLIP's BPE, and the pooled text embedding
conditions every ResNet block (besides cross-attention), which makes class conditioning from a
text encoder trained from scratch learn much faster.

Images are float in [0, 1] ``(B, C, H, W)`` outside; the diffusion state lives in [-1, 1] (times
the VAE's scaling factor for latent models).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors import safe_open
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from ..errors import UserError
from ..hub import local_model
from ..runs import atomic_save_tensors, atomic_write_text, load_tensors

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EMBEDDED_FILES = {1: "embedded_generator.safetensors", 3: "embedded_generator_rgb.safetensors"}  # by channels
EMBEDDED_WEIGHTS = ASSETS / EMBEDDED_FILES[1]
EMBEDDED_CONFIG = EMBEDDED_WEIGHTS.with_suffix(".json")
EMBEDDED_TOKENIZER = ASSETS / "embedded_tokenizer.json"
EMBEDDED_NAMES = {1: "embedded", 3: "embedded-rgb"}  # what --generator / --base call them
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' file name for LoRA weights
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

BOS, EOS, PAD, UNK = "<|startoftext|>", "<|endoftext|>", "<pad>", "<unk>"
MAX_TOKENS = 16  # the embedded text encoder's context length

# Every word the embedded prompts use (class names, digits, prompt templates, caption attributes),
# plus a few spare generic words so users' short prompts mostly map to known tokens.
BASE_WORDS = (
    "zero one two three four five six seven eight nine 0 1 2 3 4 5 6 7 8 9 "
    "a an the photo picture image drawing of digit number numeral handwritten printed written glyph "
    "font with and in on is style black white grey gray background ink stroke "
    "thin regular thick leaning left upright right small medium large centered high low "
    "bold light italic slanted big tiny tall wide narrow round sharp clean blurry "
    ": , . - ! ? ' \" ( ) / * + = _ # < >"
    # the broader public prior: letters, symbols, procedural shapes and textures, general captions
    " b c d e f g h i j k l m n o p q r s t u v w x y z letter capital symbol plus equals hash star"
    " question exclamation percent ampersand at dollar circle square triangle ring cross line stripes"
    " checkerboard dots noise leaves shape texture pattern dark bright faint moderate strong smooth"
    " detailed busy horizontal vertical diagonal mixed red yellow green cyan blue magenta"
).split()


def build_word_tokenizer(words: list[str] | tuple[str, ...] = BASE_WORDS, max_length: int = MAX_TOKENS):
    """An offline word-level tokenizer (``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel).

    Lower-cases, splits on whitespace and punctuation, maps unknown words to ``<unk>``, wraps every
    prompt in ``<|startoftext|> ... <|endoftext|>`` and pads with ``<pad>``. ``add_tokens`` works
    as for any transformers tokenizer (textual inversion adds its placeholder this way).
    """

    vocab: dict[str, int] = {}
    for w in (PAD, UNK, BOS, EOS, *words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return _wrap_tokenizer(tok, max_length)


def embedded_tokenizer_path(path: Path) -> Path:
    """The tokenizer file beside an embedded-format generator ``X.safetensors``: ``embedded_tokenizer.json``
    for ``embedded_generator.safetensors`` (``generator`` -> ``tokenizer`` in the name), else
    ``X_tokenizer.json`` (never ``X.json``, which holds the model config)."""
    if "generator" in path.stem:
        return path.with_name(path.stem.replace("generator", "tokenizer") + ".json")
    return path.with_name(path.stem + "_tokenizer.json")


def _wrap_tokenizer(tok: Any, max_length: int):

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_length,
        padding_side="right",
    )


def tiny_unet_config(channels: int = 1, image_size: int = 16, text_dim: int = 64) -> dict:
    """The embedded UNet: 16x16, widths 16/32/64, cross-attention at 4x4, pooled text in the time embedding."""
    return dict(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        down_block_types=["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        block_out_channels=[16, 32, 64],
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=text_dim,
        attention_head_dim=4,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def tiny_text_config(vocab_size: int, width: int = 64, layers: int = 2) -> dict:
    """The embedded ``CLIPTextModel``: ``layers`` x ``width``, context :data:`MAX_TOKENS`."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )


def scheduler_config(num_train_timesteps: int = 1000) -> dict:
    """DDIM with a cosine (``squaredcos_cap_v2``) schedule, epsilon prediction, x0 clipping."""
    return dict(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=True,  # pixel space: clamp x0_hat to [-1, 1] while sampling
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


@dataclass
class GeneratorOptions:
    """How a command runs its generator (the configs of the generator commands take these fields).

    ``dtype``: the weights of UNet, VAE and text encoder, and the autocast precision of sampling and
    training (:meth:`Generator.autocast`); weights being trained stay float32 (:func:`upcast_trainable`),
    as diffusers' training scripts keep them. ``gradient_checkpointing``: the UNet (and text encoder)
    recompute activations in backward passes (fine-tuning, DAG, CAT). ``vae_slicing``: the VAE
    encodes and decodes a batch one image at a time. ``sampler``: the sampling loop every ``sample``
    call of the command runs (:mod:`modelmine.diffusion.sampler`): DPM-Solver++(2M), the default
    (benchmarks/sampler_steps.py: the same CAS in a third of DDIM's UNet calls), or DDIM (the default
    of ddis and the FineXtract commands, whose guidance lost quality at fewer steps). Attention
    uses PyTorch's ``scaled_dot_product_attention``, diffusers' default processor where torch has it.
    """

    dtype: str = "float32"  # float32, float16 or bfloat16
    gradient_checkpointing: bool = False
    vae_slicing: bool = False
    sampler: Literal["ddim", "dpmpp_2m"] = "dpmpp_2m"


def check_dtype(name: str) -> torch.dtype:
    """The torch dtype named by a ``dtype`` setting; a one-line UserError for any other name."""
    if name not in DTYPES:
        raise UserError(f"dtype is one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def upcast_trainable(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """Keep the weights an optimiser updates in float32 (a half-precision generator's LoRA, tokens or
    full UNet), as diffusers' training scripts do; returns ``params``."""
    for p in params:
        if p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
    return params


@dataclass
class Generator:
    """UNet + (VAE | None) + text encoder + tokenizer + scheduler; see the module docstring."""

    unet: Any
    vae: Any | None
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    image_size: int
    channels: int
    defaults: dict = field(default_factory=dict)  # recommended sampling settings (steps, cfg)
    # the folder's own scheduler config as read (class and entries), written back by save_pretrained
    scheduler_source: dict | None = None
    compute_dtype: torch.dtype = torch.float32  # autocast precision of sampling and training (configure)
    sampler: str = "ddim"  # the loop sample() runs when not told (configure)

    # construction ----------------------------------------------------------------------------
    @classmethod
    def build_tiny(
        cls,
        channels: int = 1,
        image_size: int = 16,
        seed: int = 0,
        words: tuple[str, ...] = BASE_WORDS,
        unet_overrides: dict | None = None,
        text_width: int = 64,
        scheduler_overrides: dict | None = None,
    ) -> Generator:
        """Freshly initialised embedded architecture (for pretraining and tests), seeded.

        ``unet_overrides`` replace entries of :func:`tiny_unet_config` (tests use smaller widths),
        ``scheduler_overrides`` entries of :func:`scheduler_config` (``prediction_type``, ...).
        """

        tokenizer = build_word_tokenizer(words)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny_text_config(len(tokenizer), text_width)))
        unet_cfg = tiny_unet_config(channels, image_size, text_width) | (unet_overrides or {})
        unet = UNet2DConditionModel(**unet_cfg)
        scheduler = DDIMScheduler(**(scheduler_config() | (scheduler_overrides or {})))
        return cls(unet, None, text_encoder, tokenizer, scheduler, image_size, channels).eval()

    @classmethod
    def embedded(cls, weights: str | Path | None = None) -> Generator:
        """The shipped tiny generator (``weights``: another file written by :meth:`save_embedded`)."""
        path, cfg_path, tok_path = _embedded_files(weights)
        for p in (path, cfg_path, tok_path):
            if not p.is_file():
                raise UserError(f"embedded generator file missing: {p} (run `modelmine pretrain`)")

        cfg = json.loads(cfg_path.read_text())
        tokenizer = _wrap_tokenizer(Tokenizer.from_file(str(tok_path)), cfg.get("max_tokens", MAX_TOKENS))
        unet = UNet2DConditionModel(**cfg["unet"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
        state = load_tensors(path)
        unet.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("unet.")})
        text_encoder.load_state_dict(
            {k[13:]: v for k, v in state.items() if k.startswith("text_encoder.")}, strict=False
        )
        scheduler = DDIMScheduler(**cfg["scheduler"])
        gen = cls(
            unet, None, text_encoder, tokenizer, scheduler, cfg["image_size"], cfg["channels"],
            dict(cfg.get("sampling", {})),
        )  # fmt: skip
        return gen.eval()

    def save_embedded(self, path: str | Path, extra: dict | None = None) -> None:
        """Write the flat embedded format: ``X.safetensors`` + ``X.json`` + the tokenizer file
        (:func:`embedded_tokenizer_path`).

        (``embedded_generator.safetensors`` goes with ``embedded_tokenizer.json``.) Pixel-space only.
        """

        if self.vae is not None:
            raise UserError("save_embedded is for pixel-space generators; use save_pretrained")
        path = Path(path)
        state = {f"unet.{k}": v for k, v in self.unet.state_dict().items()}
        state |= {f"text_encoder.{k}": v for k, v in self.text_encoder.state_dict().items()}
        atomic_save_tensors(path, {k: v.float() for k, v in state.items()})
        unet_cfg = {k: _plain(v) for k, v in dict(self.unet.config).items() if not k.startswith("_")}
        text_cfg = self.text_encoder.config.to_diff_dict()
        text_cfg = {
            k: v
            for k, v in text_cfg.items()
            if k in tiny_text_config(0) or k in ("hidden_act", "layer_norm_eps", "projection_dim")
        }
        text_cfg["vocab_size"] = self.text_encoder.config.vocab_size
        sched_cfg = {k: _plain(v) for k, v in dict(self.scheduler.config).items() if not k.startswith("_")}
        cfg = {
            "unet": unet_cfg,
            "text_encoder": text_cfg,
            "scheduler": sched_cfg,
            "image_size": self.image_size,
            "channels": self.channels,
            "max_tokens": self.tokenizer.model_max_length,
            "sampling": self.defaults,
            **(extra or {}),
        }
        atomic_write_text(path.with_suffix(".json"), json.dumps(cfg, indent=1) + "\n")
        tok_path = embedded_tokenizer_path(path)
        atomic_write_text(tok_path, self.tokenizer.backend_tokenizer.to_str())

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | Path, dtype: torch.dtype = torch.float32, local_files_only: bool = True
    ) -> Generator:
        """A diffusers Stable Diffusion folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
        ``scheduler/``; SD 2.x and 1.x). ``"embedded"`` and ``"embedded-rgb"`` give the shipped grey and
        colour models (:meth:`embedded`), and a ``.safetensors`` file one written by
        :meth:`save_embedded`. The sampling scheduler is
        always DDIM built from the folder's scheduler config with the corrections
        ``StableDiffusionPipeline`` applies to the scheduler it is given (:func:`pipeline_scheduler`);
        the folder's own config is kept for :meth:`save_pretrained`. Pickle weights are refused
        (:func:`refuse_pickle`).
        """
        weights = embedded_weights(str(path_or_id))
        if weights is not None:
            return cls.embedded(weights)
        refuse_pickle(path_or_id, "generator")

        src = local_model(str(path_or_id), "generator")  # a hub id: its cached snapshot, never a download
        root = Path(src)
        if not (root / "unet").is_dir():
            raise UserError(f"{root} is not a diffusers Stable Diffusion folder (no unet/ inside)")
        kw: dict[str, Any] = {"local_files_only": local_files_only}
        try:
            unet = UNet2DConditionModel.from_pretrained(src, subfolder="unet", torch_dtype=dtype, **kw)
            text_encoder = CLIPTextModel.from_pretrained(src, subfolder="text_encoder", dtype=dtype, **kw)
            tokenizer = AutoTokenizer.from_pretrained(src, subfolder="tokenizer", **kw)
            source = DDIMScheduler.load_config(src, subfolder="scheduler", **kw)
            vae = None
            if (root / "vae").is_dir():
                vae = AutoencoderKL.from_pretrained(src, subfolder="vae", torch_dtype=dtype, **kw)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load generator '{src}': {str(e).splitlines()[0]}") from None
        scheduler = DDIMScheduler.from_config(pipeline_scheduler(source, latent=vae is not None))
        size, channels = _geometry(unet.config, None if vae is None else vae.config)
        gen = cls(
            unet, vae, text_encoder, tokenizer, scheduler, size, channels, scheduler_source=dict(source)
        )
        return gen.eval()

    @staticmethod
    def load_tokenizer(path_or_id: str | Path) -> Any:
        """Only the tokenizer of what :meth:`from_pretrained` loads (no weights read)."""
        src = str(path_or_id)
        if (weights := embedded_weights(src)) is not None:
            _, cfg_path, tok_path = _embedded_files(weights)
            if not (cfg_path.is_file() and tok_path.is_file()):
                raise UserError(f"embedded generator file missing: {cfg_path} or {tok_path}")
            max_tokens = json.loads(cfg_path.read_text()).get("max_tokens", MAX_TOKENS)
            return _wrap_tokenizer(Tokenizer.from_file(str(tok_path)), max_tokens)

        src = local_model(src, "generator")
        try:
            return AutoTokenizer.from_pretrained(src, subfolder="tokenizer", local_files_only=True)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load the tokenizer of '{src}': {str(e).splitlines()[0]}") from None

    @staticmethod
    def geometry(path_or_id: str | Path) -> tuple[int, int]:
        """``(image_size, channels)`` of the generator :meth:`from_pretrained` would load, read from
        its config files without loading weights."""
        src = str(path_or_id)
        if (weights := embedded_weights(src)) is not None:
            _, cfg_path, _ = _embedded_files(weights)
            if not cfg_path.is_file():
                raise UserError(f"embedded generator config missing: {cfg_path}")
            cfg = json.loads(cfg_path.read_text())
            return int(cfg["image_size"]), int(cfg["channels"])
        root = Path(local_model(src, "generator"))  # a hub id: its cached snapshot
        try:
            unet = json.loads((root / "unet" / "config.json").read_text())
            vae = json.loads((root / "vae" / "config.json").read_text()) if (root / "vae").is_dir() else None
        except (OSError, ValueError):
            gen = Generator.from_pretrained(root)  # let diffusers read what we could not
            return gen.image_size, gen.channels
        return _geometry(unet, vae)

    def save_pretrained(self, path: str | Path) -> None:
        """Write a diffusers folder readable by :meth:`from_pretrained` (and ``StableDiffusionPipeline``)."""
        path = Path(path)
        self.unet.save_pretrained(path / "unet")
        self.text_encoder.save_pretrained(path / "text_encoder")
        self.tokenizer.save_pretrained(path / "tokenizer")
        sched_class = "DDIMScheduler"
        if self.scheduler_source is not None:  # the loaded folder's scheduler, entries unchanged
            sched_class = self.scheduler_source.get("_class_name", sched_class)
            (path / "scheduler").mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.scheduler_source, indent=2, sort_keys=True)
            (path / "scheduler" / "scheduler_config.json").write_text(text + "\n")
        else:
            self.scheduler.save_pretrained(path / "scheduler")
        index = {
            "_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", type(self.tokenizer).__name__],
            "scheduler": ["diffusers", sched_class],
            "vae": [None, None],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
        }
        if self.vae is not None:
            self.vae.save_pretrained(path / "vae")
            index["vae"] = ["diffusers", "AutoencoderKL"]
        (path / "model_index.json").write_text(json.dumps(index, indent=2))

    def configure(self, options: GeneratorOptions) -> Generator:
        """Apply a command's :class:`GeneratorOptions` (call after moving to the device)."""
        dtype = check_dtype(options.dtype)
        self.to(dtype=dtype)
        self.compute_dtype = dtype
        self.sampler = options.sampler
        if options.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            self.text_encoder.gradient_checkpointing_enable()
        if options.vae_slicing and self.vae is not None:
            self.vae.enable_slicing()
        return self

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`compute_dtype` on the generator's device (nothing for float32)."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    # modules ---------------------------------------------------------------------------------
    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.unet, self.vae, self.text_encoder) if m is not None]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Generator:
        kw = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for m in self.modules():
            if kw and any(
                p.device != torch.device(kw.get("device", p.device)) or p.dtype != kw.get("dtype", p.dtype)
                for p in m.parameters()
            ):
                m.to(**kw)
        return self

    def eval(self) -> Generator:
        for m in self.modules():
            m.eval()
        return self

    def requires_grad_(self, flag: bool) -> Generator:
        for m in self.modules():
            m.requires_grad_(flag)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the diffusion state (latents for SD, pixels for the embedded model)."""
        c = self.unet.config.in_channels
        s = self.unet.config.sample_size
        s = s if isinstance(s, int) else s[0]
        return (c, s, s)

    # encoding --------------------------------------------------------------------------------
    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Token ids ``(B, L)``, padded/truncated to the tokenizer's ``model_max_length``."""
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return ids.to(self.device)

    def encode_prompt(self, prompts: list[str], input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Text states ``(B, L, D)`` the UNet cross-attends to (last hidden state, as in SD 2.x)."""
        ids = input_ids if input_ids is not None else self.tokenize(prompts)
        return self.text_encoder(ids)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Diffusion state ``(B, c, h, w)`` -> images ``(B, C, H, W)`` in [0, 1] (differentiable)."""
        if self.vae is not None:
            sf = self.vae.config.scaling_factor
            latents = self.vae.decode(latents.to(self.vae.dtype) / sf).sample
        return ((latents.float() + 1) / 2).clamp(0, 1)

    def encode_images(self, images: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] -> diffusion state ``(B, c, h, w)`` (latent mean for SD)."""
        x = images.to(self.device, self.dtype) * 2 - 1
        if self.vae is None:
            return x
        if x.shape[-1] != self.image_size:
            x = torch.nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear")
        if x.shape[1] == 1 and self.vae.config.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        dist = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        z = dist.sample() if sample else dist.mean
        return z * self.vae.config.scaling_factor

    def num_parameters(self) -> dict[str, int]:
        return {
            name: sum(p.numel() for p in m.parameters())
            for name, m in (("unet", self.unet), ("vae", self.vae), ("text_encoder", self.text_encoder))
            if m is not None
        }


def open_generator(
    path_or_id: str | Path, options: GeneratorOptions, device: torch.device | str
) -> Generator:
    """:meth:`Generator.from_pretrained` loaded in ``options.dtype``, on ``device``, configured."""
    gen = Generator.from_pretrained(path_or_id, dtype=check_dtype(options.dtype))
    return gen.to(device).configure(options)


def pipeline_scheduler(config: Mapping[str, Any], latent: bool) -> dict:
    """The DDIM sampling config for a folder's scheduler ``config``, corrected as
    ``StableDiffusionPipeline.__init__`` corrects the scheduler it is built with: ``steps_offset``
    becomes 1, and ``clip_sample`` becomes False for latent models (a DDIM config without the entry
    defaults to True, which would clamp the latent ``x0_hat`` to [-1, 1]). Pixel-space models keep
    the entry their config asks for (the embedded model clamps its pixels)."""
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    if cfg.get("steps_offset", 0) != 1:
        cfg["steps_offset"] = 1
    if latent:
        cfg["clip_sample"] = False
    return cfg


def _embedded_files(weights: str | Path | None) -> tuple[Path, Path, Path]:
    """``(weights, config, tokenizer)`` paths of an embedded-format generator (None: the shipped one)."""
    if weights is None:
        return EMBEDDED_WEIGHTS, EMBEDDED_CONFIG, EMBEDDED_TOKENIZER
    path = Path(weights)
    return path, path.with_suffix(".json"), embedded_tokenizer_path(path)


def embedded_weights(source: str) -> Path | None:
    """The weights file of an embedded-format generator ``source``: a shipped model's name
    (:data:`EMBEDDED_NAMES`) or a ``.safetensors`` file; None for a diffusers folder or hub id."""
    for channels, name in EMBEDDED_NAMES.items():
        if source == name:
            return ASSETS / EMBEDDED_FILES[channels]
    return Path(source) if source.endswith(".safetensors") else None


def embedded_for(source: str, data_channels: int) -> str:
    """``source`` with ``"embedded"`` resolved to the shipped model that makes ``data_channels``-channel
    images (``"embedded-rgb"`` for colour data); any other source is the user's choice, unchanged."""
    return EMBEDDED_NAMES.get(data_channels, source) if source == "embedded" else source


def _geometry(unet: Mapping[str, Any], vae: Mapping[str, Any] | None) -> tuple[int, int]:
    """``(image_size, channels)`` from a UNet config and an optional VAE config (diffusers keys):
    the VAE decodes at ``2 ** (blocks - 1)`` times the latent size."""
    size = unet["sample_size"] if isinstance(unet["sample_size"], int) else unet["sample_size"][0]
    if vae is None:
        return int(size), int(unet["in_channels"])
    return int(size) * 2 ** (len(vae["block_out_channels"]) - 1), int(vae["in_channels"])


def check_serves(
    channels: int, data_channels: int, source: str = "embedded", flag: str = "--generator"
) -> None:
    """A one-line UserError where a generator that makes ``channels``-channel images would have to be
    fine-tuned on ``data_channels``-channel ones it cannot make: RGB images on a grey generator would
    be averaged to grey, and whatever is learned from them (a TCKR student, a FineXtract success
    rate) would describe other data. Grey images on an RGB generator are served: their three equal
    channels lose nothing. ``source`` names the generator, ``flag`` the option that replaces it."""
    if data_channels > channels:
        which = "the embedded generator" if source == "embedded" else f"the generator {source}"
        raise UserError(
            f"{which} makes {channels}-channel images and this data is RGB; pass {flag} with an RGB model "
            "(e.g. a Stable Diffusion folder), or convert the images to grey"
        )


def note_grey_for_colour(channels: int, data_channels: int, what: str, source: str = "embedded") -> bool:
    """One note on stderr where a ``channels``-channel generator feeds a ``data_channels``-channel
    classifier (its grey images are repeated to RGB): a data-free method can go on, but not silently.
    Returns whether it noted."""
    if data_channels <= channels:
        return False
    which = "the embedded generator" if source == "embedded" else f"the generator {source}"
    print(
        f"modelmine: note: {which} makes {channels}-channel images and {what} takes RGB; its grey images are"
        " repeated to three channels (pass --generator with an RGB model for colour images)",
        file=sys.stderr,
    )
    return True


# ------------------------------------------------------------------------------------------------
# checkpoints from elsewhere: safetensors only
# ------------------------------------------------------------------------------------------------
def refuse_pickle(path: str | Path, what: str = "checkpoint") -> None:
    """A one-line UserError for a pickle file, or a folder (or its ``unet/``, ``text_encoder/``,
    ``vae/``) that holds pickle weights but no safetensors: pickles can run code when loaded."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            f"{what} {p} is a pickle file; only safetensors are loaded (convert it, e.g. with "
            "safetensors.torch.save_file)"
        )
    if not p.is_dir():
        return
    for sub in (p, p / "unet", p / "text_encoder", p / "vae"):
        if not sub.is_dir():
            continue
        pickles = [f for f in sub.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES]
        if pickles and not any(f.suffix == ".safetensors" for f in sub.iterdir()):
            raise UserError(
                f"{what} {sub} holds only pickle weights ({pickles[0].name}); only safetensors are loaded"
            )


def checkpoint_kind(path: str | Path) -> Literal["lora", "full"]:
    """``"lora"`` for a diffusers LoRA (a folder with :data:`LORA_WEIGHTS` or a ``.safetensors`` of
    LoRA weights), ``"full"`` for a diffusers folder or an embedded ``.safetensors`` generator.
    Pickles are refused; the weights are not loaded (only the safetensors header is read)."""
    p = Path(path)
    refuse_pickle(p, "fine-tuned checkpoint")
    if not p.exists():
        raise UserError(f"fine-tuned checkpoint not found: {p}")
    if p.is_dir():
        if (p / LORA_WEIGHTS).is_file():
            return "lora"
        if (p / "unet").is_dir():
            return "full"
        raise UserError(f"{p} is neither a LoRA folder ({LORA_WEIGHTS}) nor a diffusers folder (unet/)")
    if p.suffix != ".safetensors":
        raise UserError(f"fine-tuned checkpoint {p} must be .safetensors or a diffusers folder")

    try:
        with safe_open(str(p), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # safetensors raises several types for bad headers
        raise UserError(f"cannot read safetensors file {p}: {e}") from None
    return "lora" if any("lora" in k for k in keys) else "full"


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v
