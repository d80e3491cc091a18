"""Procedural public images: geometric shapes and textures drawn by our own code (no photographs).

Part of the public corpus the embedded generator is pretrained on (:mod:`modelmine.diffusion.pretrain`),
beside font glyphs (:func:`modelmine.data.render_glyphs`). Everything is batched torch on a coordinate
grid at twice the target size, average-pooled down (anti-aliasing), and seeded: the same seed gives
the same images.

Kinds (:data:`SHAPES` + :data:`TEXTURES`):

- shapes, one per image at a random centre, size and rotation: circle, square, triangle, ring,
  cross, line; light on dark or (a third of the time) dark on light;
- textures filling the image: stripes (a sine grating, horizontal / vertical / diagonal, sharp or
  smooth), checkerboard, dots, noise (white noise smoothed at a random scale) and leaves (the
  dead-leaves model: discs of random grey level and power-law radii painted over each other, a
  classic model of natural-image statistics).

Colour (:func:`colourise`): any of these grey images, glyphs included, becomes RGB through a random
three-stop colour ramp per image, ``rgb = ramp(grey)``: a dark stop at grey 0, a mid stop at 0.5 and
a bright stop at 1, each a random saturation at a value drawn from its third of [0, 1] (a third of
the ramps run bright to dark). The three hues lie within ``hue_spread`` of one random base hue
(default: one hue word's width, :data:`modelmine.captioning.HUE_WORDS`), so every colour image has a
dominant hue that the attribute captioner's hue word names and a text-to-image model trained on the
captions can learn what colour words mean (three unrelated hues average to a mean hue that no word
describes). A grey image's structure and contrast survive (its luminance order is kept), and a share
of the ramps is left grey so a colour model keeps serving grey data. The colour draws use their own
generator, so the grey images of a seed do not move.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHAPES = ("circle", "square", "triangle", "ring", "cross", "line")
TEXTURES = ("stripes", "checkerboard", "dots", "noise", "leaves")
KINDS = SHAPES + TEXTURES
ORIENTATIONS = ("horizontal", "diagonal", "vertical")  # stripe orientation words (0, 45/135, 90 deg)


def _grid(n: int, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1]: ``x`` and ``y`` of shape ``(n, res, res)`` (y down)."""
    t = (torch.arange(res, dtype=torch.float32) + 0.5) / res * 2 - 1
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x.expand(n, res, res), y.expand(n, res, res)


def _shape_masks(kind: torch.Tensor, x, y, g: torch.Generator) -> torch.Tensor:
    """Soft-edged masks ``(n, res, res)`` in [0, 1] of shape ``kind`` (indices into :data:`SHAPES`)."""
    n = kind.shape[0]

    def u(lo, hi):
        return (lo + (hi - lo) * torch.rand(n, generator=g)).view(n, 1, 1)

    cx, cy, r, th = u(-0.3, 0.3), u(-0.3, 0.3), u(0.3, 0.65), u(0, math.pi)
    a = torch.cos(th) * (x - cx) + torch.sin(th) * (y - cy)  # rotated coordinates
    b = -torch.sin(th) * (x - cx) + torch.cos(th) * (y - cy)
    rad = (a**2 + b**2).sqrt()
    s3 = math.sqrt(3)
    # signed distances (negative inside), one per kind, stacked (6, n, res, res)
    d = torch.stack(
        [
            rad - r,
            torch.maximum(a.abs(), b.abs()) - 0.8 * r,
            torch.maximum(
                torch.maximum(b - 0.5 * r, (s3 * a - b) / 2 - 0.5 * r), (-s3 * a - b) / 2 - 0.5 * r
            ),
            (rad - 0.75 * r).abs() - 0.18 * r,
            torch.minimum(
                torch.maximum(a.abs() - 0.22 * r, b.abs() - r), torch.maximum(b.abs() - 0.22 * r, a.abs() - r)
            ),
            torch.maximum(b.abs() - 0.08, a.abs() - 1.2 * r),
        ]
    )
    d = d.gather(0, kind.view(1, n, 1, 1).expand(1, *d.shape[1:]))[0]
    return torch.sigmoid(-d * 40)


def _textures(kind: torch.Tensor, x, y, g: torch.Generator, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture images ``(n, res, res)`` in [0, 1] of ``kind`` (indices into :data:`TEXTURES`) and
    each image's orientation index into :data:`ORIENTATIONS` (stripes only; -1 otherwise)."""
    n = kind.shape[0]

    def u(lo, hi):
        return (lo + (hi - lo) * torch.rand(n, generator=g)).view(n, 1, 1)

    orient = torch.randint(4, (n,), generator=g)  # 0, 45, 90, 135 degrees
    th = orient.float().view(n, 1, 1) * math.pi / 4 + u(-0.12, 0.12)
    freq = u(1.5, 4.5) * math.pi
    phase = u(0, 2 * math.pi)
    # stripes run along direction th: intensity varies across it
    across = -torch.sin(th) * x + torch.cos(th) * y
    sharp = (torch.rand(n, generator=g) < 0.5).view(n, 1, 1)
    wave = torch.sin(freq * across + phase)
    stripes = torch.where(sharp, torch.sigmoid(wave * 12), 0.5 + 0.5 * wave)
    along = torch.cos(th) * x + torch.sin(th) * y
    checker = torch.sigmoid(12 * torch.sin(freq * along + phase) * torch.sin(freq * across + phase))
    dots = torch.sigmoid(30 * ((torch.cos(freq * along + phase) * torch.cos(freq * across)) - 0.6))
    # smooth noise: white noise at a random coarse resolution, upsampled bilinearly
    coarse = torch.randint(3, 9, (1,), generator=g).item()
    noise = torch.rand(n, 1, coarse, coarse, generator=g)
    noise = F.interpolate(noise, size=(res, res), mode="bicubic", align_corners=False)[:, 0]
    noise = (noise - noise.amin((1, 2), keepdim=True)) / (
        noise.amax((1, 2), keepdim=True) - noise.amin((1, 2), keepdim=True)
    ).clamp_min(1e-6)
    # dead leaves: 24 discs, later ones on top; radii ~ r^-3 between 0.1 and 0.7
    k = 24
    cx, cy = torch.rand(n, k, 1, 1, generator=g) * 2.4 - 1.2, torch.rand(n, k, 1, 1, generator=g) * 2.4 - 1.2
    lo, hi = 0.1, 0.7
    r = 1 / (1 / lo**2 - torch.rand(n, k, 1, 1, generator=g) * (1 / lo**2 - 1 / hi**2)).sqrt()
    cover = ((x[:, None] - cx) ** 2 + (y[:, None] - cy) ** 2) < r**2  # (n, k, res, res)
    top = (cover * torch.arange(1, k + 1).view(1, k, 1, 1)).argmax(1, keepdim=True)  # last disc, 0 if none
    grey = torch.rand(n, k, 1, 1, generator=g).expand(n, k, res, res)
    leaves = torch.where(cover.any(1), grey.gather(1, top)[:, 0], torch.rand(n, 1, 1, generator=g))
    out = torch.stack([stripes, checker, dots, noise, leaves]).gather(
        0, kind.view(1, n, 1, 1).expand(1, n, res, res)
    )[0]
    o = torch.tensor([0, 1, 2, 1])[orient]  # 45 and 135 degrees are both "diagonal"
    return out, torch.where(kind == 0, o, -1)


def render_procedural(
    n: int, size: int = 16, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` procedural images ``(n, 1, size, size)`` in [0, 1], their kinds ``(n,)`` (indices into
    :data:`KINDS`, balanced) and orientations ``(n,)`` (index into :data:`ORIENTATIONS`, -1 if none)."""
    g = torch.Generator().manual_seed(seed)
    kinds = (torch.arange(n) % len(KINDS))[torch.randperm(n, generator=g)]
    res = 2 * size
    x, y = _grid(n, res)
    is_shape = kinds < len(SHAPES)
    mask = _shape_masks(kinds.clamp_max(len(SHAPES) - 1), x, y, g)
    bg = torch.rand(n, 1, 1, generator=g) * 0.3
    fg = 0.6 + torch.rand(n, 1, 1, generator=g) * 0.4
    invert = (torch.rand(n, generator=g) < 1 / 3).view(n, 1, 1)
    bg, fg = torch.where(invert, fg, bg), torch.where(invert, bg, fg)
    shapes = bg + (fg - bg) * mask
    tex, orient = _textures((kinds - len(SHAPES)).clamp_min(0), x, y, g, res)
    lo = torch.rand(n, 1, 1, generator=g) * 0.3  # textures span a random part of the range
    hi = 1 - torch.rand(n, 1, 1, generator=g) * 0.3
    tex = lo + (hi - lo) * tex
    img = torch.where(is_shape.view(n, 1, 1), shapes, tex)
    img = F.avg_pool2d(img[:, None], 2)
    return img.clamp(0, 1), kinds, torch.where(is_shape, -1, orient)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Colours ``(..., 3)`` from hue, saturation and value tensors of one shape, all in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h.unsqueeze(-1) * 6) % 6
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * (torch.minimum(k, 4 - k).clamp(0, 1))


def colourise(
    images: torch.Tensor, seed: int, grey_share: float = 0.25, hue_spread: float = 1 / 6
) -> torch.Tensor:
    """RGB versions ``(n, 3, h, w)`` of grey images ``(n, 1, h, w)`` in [0, 1] through a random
    three-stop ramp per image (module docstring); ``grey_share`` of the ramps have no saturation,
    the stops' hues lie within ``hue_spread`` (a fraction of the colour wheel) of the ramp's base hue."""
    n = images.shape[0]
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, generator=g)
    hue = (base + (torch.rand(n, 3, generator=g) - 0.5) * hue_spread) % 1.0
    sat = torch.rand(n, 3, generator=g).sqrt()  # leans to vivid: most data users bring is
    sat = sat * (torch.rand(n, 1, generator=g) >= grey_share)
    val = (torch.arange(3).float() + torch.rand(n, 3, generator=g)) / 3  # one third of [0, 1] each
    flip = torch.rand(n, generator=g) < 1 / 3
    val = torch.where(flip.view(n, 1), val.flip(1), val)
    stops = hsv_to_rgb(hue, sat, val)  # (n, 3 stops, 3 channels)
    x = images[:, 0].clamp(0, 1) * 2  # position along the ramp: [0, 1] first segment, [1, 2] second
    lo = torch.where((x < 1).unsqueeze(1), stops[:, 0, :, None, None], stops[:, 1, :, None, None])
    hi = torch.where((x < 1).unsqueeze(1), stops[:, 1, :, None, None], stops[:, 2, :, None, None])
    t = (x - (x >= 1).float()).unsqueeze(1)
    return (lo + (hi - lo) * t).clamp(0, 1)
