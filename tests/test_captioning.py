"""Attribute captioner: thickness, slant, size and position words on synthetic images."""

import torch

from modelmine.captioning import (
    ATTRIBUTE_WORDS,
    AttributeCaptioner,
    attribute_words,
    build_captioner,
    class_name_captions,
    measure_attributes,
    tckr_prompts,
)


def _bar(width: int, size: int = 16, shear: float = 0.0, height: int = 11, dx: int = 0, dy: int = 0):
    x = torch.zeros(1, 1, size, size)
    top = (size - height) // 2 + dy
    for r in range(height):
        c = size // 2 - width // 2 + dx + round(shear * ((height - 1) / 2 - r))
        x[0, 0, top + r, c : c + width] = 1.0
    return x


def test_thickness_slant_size_position():
    thin, thick = _bar(1), _bar(4)
    a = measure_attributes(torch.cat([thin, thick]))
    assert a["thickness"][0] < a["thickness"][1]
    words = attribute_words(torch.cat([thin, thick]))
    assert words[0][0] == "thin" and words[1][0] == "thick"
    right, left = _bar(2, shear=0.4), _bar(2, shear=-0.4)
    w = attribute_words(torch.cat([right, left, _bar(2)]))
    assert [x[1] for x in w] == ["leaning right", "leaning left", "upright"]
    small, large = _bar(2, height=6), _bar(2, height=14)
    w = attribute_words(torch.cat([small, large]))
    assert w[0][2] == "small" and w[1][2] == "large"
    w = attribute_words(torch.cat([_bar(2, dx=-4), _bar(2, dx=4), _bar(2, height=6, dy=-4), _bar(2)]))
    assert [x[3] for x in w] == ["left", "right", "high", "centered"]


def test_captioners_and_prompts():
    images = torch.cat([_bar(1), _bar(4, shear=0.4)])
    caps = AttributeCaptioner()(images)
    assert len(caps) == 2 and all(any(word in c for word in ATTRIBUTE_WORDS) for c in caps)
    assert build_captioner("attributes")(images) == caps
    names = ["zero", "one"]
    labels = torch.tensor([1, 0])
    assert class_name_captions(images, labels, names) == ["one", "zero"]
    assert tckr_prompts(names, labels, caps)[0] == f"one: {caps[0]}"
    assert tckr_prompts(names, labels, ["one", "zero"]) == ["one", "zero"]
