"""Captioners: turn images into short text for text-to-image fine-tuning (TCKR's captioning step).

TCKR (Text-Conditioned Knowledge Recycling) captions every training image with BLIP-2 and prompts
the generator with ``"<class>: <caption>"``. A captioner here is any callable
``captioner(images (B, C, H, W) in [0, 1], labels (B,), class_names) -> list[str]``.

- :class:`AttributeCaptioner` (the embedded default): measures four per-image properties with
  batched tensor maths and names each with a word from a fixed small vocabulary
  (:data:`ATTRIBUTE_WORDS`) that the embedded tiny text encoder knows:

  * stroke thickness: ``2 * ink mass / total gradient magnitude`` (a stroke of width ``w`` and
    length ``L`` has mass ``w L`` and two edges of length ``L``), -> thin / regular / thick;
  * slant from second moments of the ink distribution: ``-cov(x, y) / var(y)`` (image y points
    down), -> leaning left / upright / leaning right;
  * size from the bounding box of pixels above 0.3, -> small / medium / large;
  * position from the centre of mass, -> centered / left / right / high / low.

  Thresholds are fixed numbers (roughly the terciles on the public glyph corpus), so a caption
  means the same thing for every dataset.
- :func:`class_name_captions`: the ablation captioner, the class name only.
- :class:`Blip2Captioner`: the real captioner (transformers' BLIP-2); it is built only when a user
  asks for it and needs locally available weights.

Deviation from TCKR: the embedded default describes measurable attributes instead of running a
vision-language model, because no such model fits the offline, CPU-only default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import UserError

THICKNESS_WORDS = ("thin", "regular", "thick")
SLANT_WORDS = ("leaning left", "upright", "leaning right")
SIZE_WORDS = ("small", "medium", "large")
POSITION_WORDS = ("centered", "left", "right", "high", "low")
ATTRIBUTE_WORDS: tuple[str, ...] = THICKNESS_WORDS + SLANT_WORDS + SIZE_WORDS + POSITION_WORDS

# Cut points (low, high) between the three words of each graded attribute; see module docstring.
THICKNESS_CUTS = (1.7, 2.45)  # pixels
SLANT_CUTS = (-0.06, 0.12)  # dx/dy shear of the ink
SIZE_CUTS = (0.65, 0.72)  # bbox max side / image side
POSITION_CUT = 0.045  # centre-of-mass offset / image side beyond which the digit is off-centre


def measure_attributes(images: torch.Tensor, threshold: float = 0.3) -> dict[str, torch.Tensor]:
    """Per-image attributes of greyscale-ish images ``(B, C, H, W)`` in [0, 1] (bright ink).

    Returns a dict of ``(B,)`` float tensors: ``thickness`` (pixels), ``slant`` (dx/dy), ``size``
    (bbox max side / image side), ``cx`` and ``cy`` (centre-of-mass offset from the image centre,
    as a fraction of the side; positive = right / down).
    """
    x = images.float().mean(1)  # (B, H, W)
    b, h, w = x.shape
    mass = x.sum((1, 2)).clamp_min(1e-6)
    ys = torch.arange(h, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, dtype=x.dtype).view(1, 1, w)
    my = (x * ys).sum((1, 2)) / mass
    mx = (x * xs).sum((1, 2)) / mass
    dy, dx = ys - my.view(b, 1, 1), xs - mx.view(b, 1, 1)
    var_y = (x * dy**2).sum((1, 2)) / mass
    cov = (x * dx * dy).sum((1, 2)) / mass
    slant = -cov / var_y.clamp_min(1e-6)
    grad = (x[:, 1:, :] - x[:, :-1, :]).abs().sum((1, 2)) + (x[:, :, 1:] - x[:, :, :-1]).abs().sum((1, 2))
    thickness = 2 * mass / grad.clamp_min(1e-6)
    ink = x > threshold
    rows, cols = ink.any(2), ink.any(1)  # (B, H), (B, W)

    def extent(m: torch.Tensor) -> torch.Tensor:
        n = m.shape[1]
        idx = torch.arange(n).expand_as(m)
        first = torch.where(m, idx, n).amin(1)
        last = torch.where(m, idx, -1).amax(1)
        return (last - first + 1).clamp_min(0).float() / n

    size = torch.maximum(extent(rows), extent(cols))
    return {
        "thickness": thickness,
        "slant": slant,
        "size": size,
        "cx": (mx - (w - 1) / 2) / w,
        "cy": (my - (h - 1) / 2) / h,
    }


def _grade(v: torch.Tensor, cuts: tuple[float, float]) -> torch.Tensor:
    return (v > cuts[0]).long() + (v > cuts[1]).long()


def attribute_words(images: torch.Tensor) -> list[tuple[str, str, str, str]]:
    """(thickness, slant, size, position) words for each image ``(B, C, H, W)``."""
    a = measure_attributes(images)
    t = _grade(a["thickness"], THICKNESS_CUTS).tolist()
    s = _grade(a["slant"], SLANT_CUTS).tolist()
    z = _grade(a["size"], SIZE_CUTS).tolist()
    cx, cy = a["cx"], a["cy"]
    horiz = cx.abs() >= cy.abs()
    pos = torch.zeros_like(cx, dtype=torch.long)  # centered
    off = torch.maximum(cx.abs(), cy.abs()) > POSITION_CUT
    pos = torch.where(off & horiz & (cx < 0), 1, pos)
    pos = torch.where(off & horiz & (cx >= 0), 2, pos)
    pos = torch.where(off & ~horiz & (cy < 0), 3, pos)
    pos = torch.where(off & ~horiz & (cy >= 0), 4, pos)
    return [
        (THICKNESS_WORDS[i], SLANT_WORDS[j], SIZE_WORDS[k], POSITION_WORDS[p])
        for i, j, k, p in zip(t, s, z, pos.tolist(), strict=True)
    ]


class AttributeCaptioner:
    """The embedded captioner: ``"thick leaning right small centered"`` style captions.

    Call it as ``captioner(images (B, C, H, W), labels=None, class_names=None) -> list[str]``;
    labels are ignored (the caption describes the image, the class word is added by the prompt).
    """

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
    ) -> list[str]:
        return [" ".join(words) for words in attribute_words(images)]


def class_name_captions(images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> list[str]:
    """Ablation captioner: the class name of each image, ``labels`` ``(B,)`` -> ``["three", ...]``."""
    return [class_names[i] for i in torch.as_tensor(labels).tolist()]


def tckr_prompts(class_names: Sequence[str], labels: torch.Tensor, captions: Sequence[str]) -> list[str]:
    """TCKR prompts ``"<class>: <caption>"`` (the class word first, then the image's caption)."""
    return [
        f"{class_names[y]}: {c}" if c and c != class_names[y] else class_names[y]
        for y, c in zip(torch.as_tensor(labels).tolist(), captions, strict=True)
    ]


class Blip2Captioner:
    """BLIP-2 captions via transformers (``Blip2ForConditionalGeneration``), for real datasets.

    ``model`` is a local folder (or a hub id already in the local cache; nothing is downloaded
    when the machine is offline). Built lazily: importing this module never loads BLIP-2.
    """

    def __init__(
        self,
        model: str = "Salesforce/blip2-opt-2.7b",
        device: str | torch.device = "cpu",
        max_new_tokens: int = 20,
        batch_size: int = 16,
    ):
        try:
            from transformers import Blip2ForConditionalGeneration, Blip2Processor
        except ImportError:  # pragma: no cover - transformers is a dependency
            raise UserError("the BLIP-2 captioner needs transformers: pip install transformers") from None
        try:
            self.processor = Blip2Processor.from_pretrained(model)
            dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
            self.model = Blip2ForConditionalGeneration.from_pretrained(model, dtype=dtype).to(device).eval()
        except OSError as e:
            raise UserError(f"cannot load BLIP-2 captioner '{model}': {str(e).splitlines()[0]}") from None
        self.device = torch.device(device)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
    ) -> list[str]:
        from .data import to_uint8

        out: list[str] = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i : i + self.batch_size]
            if chunk.shape[1] == 1:
                chunk = chunk.expand(-1, 3, -1, -1)
            pil = list(to_uint8(chunk))
            inputs = self.processor(images=pil, return_tensors="pt").to(self.device, self.model.dtype)
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            out += [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out


def build_captioner(name: str, **kw):
    """``"attributes"`` (default), ``"class_name"`` or ``"blip2"`` (or ``"blip2:<model path>"``)."""
    if name == "attributes":
        return AttributeCaptioner()
    if name == "class_name":
        return class_name_captions
    if name == "blip2" or name.startswith("blip2:"):
        model = name.split(":", 1)[1] if ":" in name else "Salesforce/blip2-opt-2.7b"
        return Blip2Captioner(model, **kw)
    raise UserError(f"unknown captioner '{name}' (use attributes, class_name, blip2 or blip2:<model>)")


def captions_for(data, captioner: str, chunk: int = 256) -> list[str]:
    """One caption per image of an ImageSet ``data``: its own (``metadata.jsonl``), else made by the
    named ``captioner`` (:func:`build_captioner`) in chunks of ``chunk`` images."""
    if data.captions is not None:
        return list(data.captions)
    fn = build_captioner(captioner)
    captions: list[str] = []
    for i in range(0, len(data), chunk):
        captions += fn(data.images[i : i + chunk], data.labels[i : i + chunk], data.class_names)
    return captions
