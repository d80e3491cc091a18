"""Captioners: turn images into short text for text-to-image fine-tuning (TCKR's captioning step).

TCKR (Text-Conditioned Knowledge Recycling) captions every training image with BLIP-2 and prompts
the generator with ``"<class>: <caption>"``. A captioner here is any callable
``captioner(images (B, C, H, W) in [0, 1], labels (B,), class_names) -> list[str]``.

- :class:`AttributeCaptioner` (the embedded default): measures per-image properties with batched
  tensor maths and names each with a word from a fixed small vocabulary (:data:`ATTRIBUTE_WORDS`)
  that the embedded tiny text encoder knows. Images that look like strokes (a dark background
  covering most of the image, as digits and letters) get four stroke words:

  * stroke thickness: ``2 * ink mass / total gradient magnitude`` (a stroke of width ``w`` and
    length ``L`` has mass ``w L`` and two edges of length ``L``), -> thin / regular / thick;
  * slant from second moments of the ink distribution: ``-cov(x, y) / var(y)`` (image y points
    down), -> leaning left / upright / leaning right;
  * size from the bounding box of pixels above 0.3, -> small / medium / large;
  * position from the centre of mass, -> centered / left / right / high / low.

  Any other image (textures, objects, photographs, colour) gets six general words:

  * brightness (mean intensity) -> dark / grey / bright;
  * contrast (intensity standard deviation) -> faint / moderate / strong;
  * edge density (mean absolute finite difference) -> smooth / detailed / busy;
  * dominant orientation from the structure tensor (coherence below 0.3 -> mixed) -> horizontal /
    vertical / diagonal / mixed (the direction the edges run);
  * size and position of the foreground: pixels far from the background level (the median of the
    border), as above;

  Colour images, strokes or not, end with two colour words when their saturation (value-weighted,
  ``sum(max - min) / sum(max)`` over pixels and channels, so a dark background does not dilute a
  vivid shape) passes a cut: saturation -> light / bold, then the mean hue (a circular mean,
  weighted by each pixel's chroma) -> red / yellow / green / cyan / blue / magenta.

  Thresholds are fixed numbers (roughly the terciles on the public corpus of glyphs and procedural
  images), so a caption means the same thing for every dataset.
- :func:`class_name_captions`: the ablation captioner, the class name only.
- :class:`Blip2Captioner`: the real captioner (transformers' BLIP-2); it is built only when a user
  asks for it and needs locally available weights.

Deviation from TCKR: the embedded default describes measurable attributes instead of running a
vision-language model, because no such model fits the offline, CPU-only default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from .data import to_uint8
from .errors import UserError
from .hub import local_model

THICKNESS_WORDS = ("thin", "regular", "thick")
SLANT_WORDS = ("leaning left", "upright", "leaning right")
SIZE_WORDS = ("small", "medium", "large")
POSITION_WORDS = ("centered", "left", "right", "high", "low")
BRIGHTNESS_WORDS = ("dark", "grey", "bright")
CONTRAST_WORDS = ("faint", "moderate", "strong")
EDGE_WORDS = ("smooth", "detailed", "busy")
ORIENTATION_WORDS = ("horizontal", "vertical", "diagonal", "mixed")
HUE_WORDS = ("red", "yellow", "green", "cyan", "blue", "magenta")
SATURATION_WORDS = ("light", "bold")  # words the embedded tokenizer knows
STROKE_WORDS: tuple[str, ...] = THICKNESS_WORDS + SLANT_WORDS + SIZE_WORDS + POSITION_WORDS
ATTRIBUTE_WORDS: tuple[str, ...] = (
    STROKE_WORDS
    + BRIGHTNESS_WORDS
    + CONTRAST_WORDS
    + EDGE_WORDS
    + ORIENTATION_WORDS
    + SATURATION_WORDS
    + HUE_WORDS
)

# Cut points (low, high) between the three words of each graded attribute; see module docstring.
THICKNESS_CUTS = (1.7, 2.45)  # pixels
SLANT_CUTS = (-0.06, 0.12)  # dx/dy shear of the ink
SIZE_CUTS = (0.65, 0.72)  # bbox max side / image side
POSITION_CUT = 0.045  # centre-of-mass offset / image side beyond which the digit is off-centre
BRIGHTNESS_CUTS = (0.3, 0.5)  # mean intensity
CONTRAST_CUTS = (0.14, 0.2)  # intensity standard deviation
EDGE_CUTS = (0.045, 0.08)  # mean absolute difference between neighbouring pixels
COHERENCE_CUT = 0.3  # structure-tensor coherence below which no orientation dominates
STROKE_BACKGROUND = 0.25  # border median below which (with little ink) an image is strokes
STROKE_INK = 0.6  # largest fraction of pixels above 0.3 in a stroke image
SATURATION_CUTS = (0.15, 0.5)  # value-weighted saturation: below the first no colour words, then light / bold


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

    size = torch.maximum(_extent(rows), _extent(cols))
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
    pos = _position_index(a["cx"], a["cy"])
    return [
        (THICKNESS_WORDS[i], SLANT_WORDS[j], SIZE_WORDS[k], POSITION_WORDS[p])
        for i, j, k, p in zip(t, s, z, pos.tolist(), strict=True)
    ]


def _position_index(cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    """Index into :data:`POSITION_WORDS` from centre offsets ``(B,)`` (fractions of the side)."""
    horiz = cx.abs() >= cy.abs()
    pos = torch.zeros_like(cx, dtype=torch.long)  # centered
    off = torch.maximum(cx.abs(), cy.abs()) > POSITION_CUT
    pos = torch.where(off & horiz & (cx < 0), 1, pos)
    pos = torch.where(off & horiz & (cx >= 0), 2, pos)
    pos = torch.where(off & ~horiz & (cy < 0), 3, pos)
    return torch.where(off & ~horiz & (cy >= 0), 4, pos)


def _extent(m: torch.Tensor) -> torch.Tensor:
    """Bounding-box extent of the True entries of each row of ``m`` ``(B, N)``, as a fraction of N."""
    n = m.shape[1]
    idx = torch.arange(n).expand_as(m)
    first = torch.where(m, idx, n).amin(1)
    last = torch.where(m, idx, -1).amax(1)
    return (last - first + 1).clamp_min(0).float() / n


def measure_general(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """General attributes of images ``(B, C, H, W)`` in [0, 1]; a dict of ``(B,)`` tensors:
    ``brightness``, ``contrast``, ``edges``, ``coherence``, ``orientation`` (radians of the edge
    direction, 0 = horizontal), ``size``, ``cx``, ``cy`` (foreground), ``saturation``, ``hue``
    (in [0, 1)), ``stroke`` (bool: dark background, little ink)."""
    rgb = images.float()
    x = rgb.mean(1)  # (B, H, W)
    b, h, w = x.shape
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], 1)  # (B, 2H + 2W)
    bg = border.median(1).values
    gy, gx = x[:, 1:, :-1] - x[:, :-1, :-1], x[:, :-1, 1:] - x[:, :-1, :-1]
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    coherence = ((jxx - jyy) ** 2 + 4 * jxy**2).sqrt() / (jxx + jyy).clamp_min(1e-8)
    # dominant gradient angle; edges run perpendicular to it
    grad_angle = 0.5 * torch.atan2(2 * jxy, jxx - jyy)
    dev = (x - bg.view(b, 1, 1)).abs()
    fg = dev > torch.maximum(dev.amax((1, 2)) * 0.5, torch.full_like(bg, 0.1)).view(b, 1, 1)
    wts = dev * fg
    mass = wts.sum((1, 2)).clamp_min(1e-6)
    ys = torch.arange(h, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, dtype=x.dtype).view(1, 1, w)
    mx, my = (wts * xs).sum((1, 2)) / mass, (wts * ys).sum((1, 2)) / mass
    mx_, mn_ = rgb.amax(1), rgb.amin(1)  # (B, H, W)
    sat = (mx_ - mn_).sum((1, 2)) / mx_.sum((1, 2)).clamp_min(1e-6)  # value-weighted saturation
    # mean hue as a circular mean over pixels, weighted by their saturation
    r, g_, bl = rgb[:, 0], rgb[:, min(1, rgb.shape[1] - 1)], rgb[:, -1]
    hx = (2 * r - g_ - bl) / 2
    hy = (g_ - bl) * (3**0.5) / 2
    hue = (torch.atan2(hy.sum((1, 2)), hx.sum((1, 2))) / (2 * torch.pi)) % 1.0
    return {
        "brightness": x.mean((1, 2)),
        "contrast": x.std((1, 2)),
        "edges": 0.5 * (gx.abs().mean((1, 2)) + gy.abs().mean((1, 2))),
        "coherence": coherence,
        "orientation": grad_angle + torch.pi / 2,
        "size": torch.maximum(_extent(fg.any(2)), _extent(fg.any(1))),
        "cx": (mx - (w - 1) / 2) / w,
        "cy": (my - (h - 1) / 2) / h,
        "saturation": sat if rgb.shape[1] == 3 else torch.zeros(b),
        "hue": hue,
        "stroke": (bg < STROKE_BACKGROUND) & ((x > 0.3).float().mean((1, 2)) < STROKE_INK),
    }


def general_words(images: torch.Tensor) -> list[tuple[str, ...]]:
    """(brightness, contrast, edges, orientation, size, position[, saturation, hue]) words per image
    ``(B, C, H, W)``."""
    return _general_words(measure_general(images))


def _general_words(a: dict[str, torch.Tensor]) -> list[tuple[str, ...]]:
    """:func:`general_words` from the attributes :func:`measure_general` returned."""
    br = _grade(a["brightness"], BRIGHTNESS_CUTS).tolist()
    co = _grade(a["contrast"], CONTRAST_CUTS).tolist()
    ed = _grade(a["edges"], EDGE_CUTS).tolist()
    # edge direction folded to [0, pi): within 22.5 deg of 0/pi horizontal, of pi/2 vertical
    ang = a["orientation"] % torch.pi
    near_h = (ang < torch.pi / 8) | (ang > 7 * torch.pi / 8)
    near_v = (ang - torch.pi / 2).abs() < torch.pi / 8
    ori = torch.where(near_h, 0, torch.where(near_v, 1, 2))
    ori = torch.where(a["coherence"] < COHERENCE_CUT, 3, ori).tolist()
    sz = _grade(a["size"], SIZE_CUTS).tolist()
    pos = _position_index(a["cx"], a["cy"]).tolist()
    colour = colour_words(a)
    out = []
    for i in range(len(br)):
        words = (
            BRIGHTNESS_WORDS[br[i]],
            CONTRAST_WORDS[co[i]],
            EDGE_WORDS[ed[i]],
            ORIENTATION_WORDS[ori[i]],
            SIZE_WORDS[sz[i]],
            POSITION_WORDS[pos[i]],
        )
        out.append(words + colour[i])
    return out


def colour_words(a: dict[str, torch.Tensor]) -> list[tuple[str, ...]]:
    """``(saturation, hue)`` words per image from :func:`measure_general`'s attributes, ``()`` for an
    image below the first saturation cut (grey images, one-channel images)."""
    hue = ((a["hue"] * 6 + 0.5).long() % 6).tolist()
    grade = _grade(a["saturation"], (SATURATION_CUTS[0], SATURATION_CUTS[1])).tolist()
    return [
        () if g == 0 else (SATURATION_WORDS[g - 1], HUE_WORDS[h]) for g, h in zip(grade, hue, strict=True)
    ]


class AttributeCaptioner:
    """The embedded captioner: ``"thick leaning right small centered"`` for stroke images,
    ``"bright strong busy horizontal large centered"`` for others, both followed by saturation and hue
    words (``"bold red"``) on colour images.

    Call it as ``captioner(images (B, C, H, W), labels=None, class_names=None) -> list[str]``;
    labels are ignored (the caption describes the image, the class word is added by the prompt).
    """

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
    ) -> list[str]:
        a = measure_general(images)  # once: its stroke flag and, for the other images, their words
        out = [" ".join(words) for words in _general_words(a)]
        idx_s = [i for i, s in enumerate(a["stroke"].tolist()) if s]
        if idx_s:
            colour = colour_words(a)  # strokes in colour keep their colour
            for i, words in zip(idx_s, attribute_words(images[idx_s]), strict=True):
                out[i] = " ".join(words + colour[i])
        return out


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

    ``model`` is a local folder or a hub id already in the local cache (``local_files_only``: nothing
    is downloaded, and a missing model is a one-line error at once). It runs on ``device`` in
    ``dtype`` (None: float16 on CUDA, else float32), as the run's generator does. Built lazily:
    importing this module never loads BLIP-2.
    """

    def __init__(
        self,
        model: str = "Salesforce/blip2-opt-2.7b",
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        max_new_tokens: int = 20,
        batch_size: int = 16,
    ):
        try:
            folder = local_model(model, "BLIP-2 captioner")
            self.processor = Blip2Processor.from_pretrained(folder, local_files_only=True)
            if dtype is None:
                dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
            self.model = Blip2ForConditionalGeneration.from_pretrained(
                folder, dtype=dtype, local_files_only=True
            )
            self.model = self.model.to(device).eval()
        except (OSError, ValueError) as e:
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
    """``"attributes"`` (default), ``"class_name"`` or ``"blip2"`` (or ``"blip2:<model path>"``);
    ``kw`` (``device``, ``dtype``, ...) go to a model captioner."""
    if name == "attributes":
        return AttributeCaptioner()
    if name == "class_name":
        return class_name_captions
    if name == "blip2" or name.startswith("blip2:"):
        model = name.split(":", 1)[1] if ":" in name else "Salesforce/blip2-opt-2.7b"
        return Blip2Captioner(model, **kw)
    raise UserError(f"unknown captioner '{name}' (use attributes, class_name, blip2 or blip2:<model>)")


def captions_for(
    data,
    captioner: str,
    chunk: int = 256,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> list[str]:
    """One caption per image of an ImageSet ``data``: its own (``metadata.jsonl``), else made by the
    named ``captioner`` (:func:`build_captioner`; a model runs on ``device`` in ``dtype``) in chunks
    of ``chunk`` images."""
    if data.captions is not None:
        return list(data.captions)
    fn = build_captioner(captioner, device=device, dtype=dtype)
    captions: list[str] = []
    for i in range(0, len(data), chunk):
        captions += fn(data.images[i : i + chunk], data.labels[i : i + chunk], data.class_names)
    return captions
