"""Issue 21: inputs someone else made, that lie or are odd. Checkpoint metadata is checked against the
tensors before anything is built, LoRA and token files before they touch the generator; images of odd
modes are converted (or refused) the same way every time; size limits and links leaving a data folder
are refused; and a refused input never changes a run folder that already exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from _hostile import png_claiming, relabel
from _tiny import tiny
from modelmine import classifiers
from modelmine.classifiers import ClassifierInfo, build_classifier, load_classifier, save_classifier
from modelmine.cli import main
from modelmine.config import load_config
from modelmine.data import load_image_folder
from modelmine.errors import UserError
from modelmine.teacher import TeacherRunConfig

NAMES = [str(i) for i in range(10)]


# ------------------------------------------------------------------------------------------------
# classifier checkpoints
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model8(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "model8.safetensors"
    save_classifier(
        path, build_classifier("cnn_small", 10, 1, 8, seed=0), ClassifierInfo("cnn_small", 10, 1, 8, NAMES)
    )
    return path


LIES = [  # (metadata replaced, a word the one-line error must hold)
    ({"num_classes": 1_000_000_000}, "classes"),
    ({"num_classes": 1, "class_names": '["0"]'}, "classes"),
    ({"num_classes": "ten"}, "not an integer"),
    ({"image_size": -5}, "image size"),
    ({"image_size": 10**6}, "image size"),
    ({"in_channels": 2}, "channels"),
    ({"in_channels": 3}, "tensor"),
    ({"preset": "mlp"}, "tensor"),
    ({"preset": "torchvision:"}, "preset"),
    ({"class_names": "not json"}, "JSON"),
    ({"class_names": json.dumps(["a"] * 10)}, "twice"),
    ({"class_names": json.dumps([".hidden"] + NAMES[1:])}, "folder name"),
    ({"class_names": json.dumps(NAMES[:9])}, "class names for 10"),
    ({"class_names": json.dumps({"a": 1})}, "list of strings"),
]


@pytest.mark.parametrize(
    "meta,word", LIES, ids=[f"{next(iter(m))}={next(iter(m.values()))!s:.12}" for m, _ in LIES]
)
def test_lying_metadata_is_refused_before_any_tensor_is_loaded(meta, word, model8, tmp_path, monkeypatch):
    path = tmp_path / "lie.safetensors"
    relabel(model8, path, **meta)

    def no_load(*_a, **_k):
        raise AssertionError("tensors loaded before the metadata was checked")

    monkeypatch.setattr(classifiers, "load_tensors", no_load)
    with pytest.raises(UserError, match=word) as e:
        load_classifier(path)
    assert "\n" not in str(e.value)


def test_missing_metadata_key_and_int_weights_are_refused(model8, tmp_path):
    with safe_open(str(model8), framework="pt") as f:
        meta = dict(f.metadata())
    state = load_file(str(model8))
    del meta["image_size"]
    save_file(state, str(tmp_path / "a.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="no 'image_size'"):
        load_classifier(tmp_path / "a.safetensors")
    with safe_open(str(model8), framework="pt") as f:
        meta = dict(f.metadata())
    state["head.weight"] = state["head.weight"].round().to(torch.int32)
    save_file(state, str(tmp_path / "b.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="not floating point"):
        load_classifier(tmp_path / "b.safetensors")


def test_honest_metadata_still_loads(model8):
    model, info = load_classifier(model8)
    assert info == ClassifierInfo("cnn_small", 10, 1, 8, NAMES)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


# ------------------------------------------------------------------------------------------------
# images: modes, sizes, links
# ------------------------------------------------------------------------------------------------
def _folder(root: Path, images: dict[str, Image.Image], suffix: str = ".png") -> Path:
    """``root/a/<name><suffix>`` for each image plus a plain grey ``root/b/x.png``."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    for name, im in images.items():
        im.save(root / "a" / f"{name}{suffix}")
    Image.new("L", (4, 4), 0).save(root / "b" / "x.png")
    return root


def _first(root: Path, channels: int) -> np.ndarray:
    return load_image_folder(root, channels=channels).images[0].numpy()


def test_palette_images_are_read_as_their_colours(tmp_path):
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    root = _folder(tmp_path, {"x": im})
    np.testing.assert_allclose(_first(root, 3)[:, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(_first(root, 1)[0, 0, 0], 76 / 255)  # PIL's luma of pure red


def test_alpha_is_composited_onto_black(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 0))
    rgba.putpixel((1, 1), (200, 100, 50, 255))
    root = _folder(tmp_path / "rgba", {"x": rgba})
    x = _first(root, 3)
    np.testing.assert_allclose(x[:, 0, 0], 0)  # hidden colour under alpha 0 never shows
    np.testing.assert_allclose(x[:, 1, 1], np.array([200, 100, 50]) / 255, atol=1e-6)
    la = Image.new("LA", (4, 4), (200, 128))
    g = _first(_folder(tmp_path / "la", {"x": la}), 1)
    np.testing.assert_allclose(g[0, 0, 0], 200 / 255 * 128 / 255, atol=1e-6)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.info["transparency"] = 1
    pal.save(tmp_path / "t.png", transparency=1)
    np.testing.assert_allclose(_first(_folder(tmp_path / "p", {"x": Image.open(tmp_path / "t.png")}), 1), 0)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    a = np.full((4, 4), 32768, dtype=np.uint16)
    a[0, 0] = 65535
    root = _folder(tmp_path, {"x": Image.fromarray(a)})
    x = _first(root, 1)
    assert x[0, 0, 0] == pytest.approx(1.0) and x[0, 1, 1] == pytest.approx(32768 / 65535, abs=1e-3)
    assert _first(root, 3).shape == (3, 4, 4)


def test_float_and_32_bit_images_out_of_range_are_refused(tmp_path):
    good = Image.fromarray(np.full((4, 4), 0.25, dtype=np.float32))
    assert _first(_folder(tmp_path / "f", {"x": good}, ".tif"), 1)[0, 0, 0] == pytest.approx(0.25)
    bad = Image.fromarray(np.full((4, 4), 3.0, dtype=np.float32))
    with pytest.raises(UserError, match="outside"):
        load_image_folder(_folder(tmp_path / "g", {"x": bad}, ".tif"))
    wide = Image.fromarray(np.full((4, 4), 70000, dtype=np.int32))
    with pytest.raises(UserError, match="outside 0..65535"):
        load_image_folder(_folder(tmp_path / "i", {"x": wide}, ".tif"))


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_images_are_converted_to_rgb(tmp_path, suffix):
    root = _folder(tmp_path, {"x": Image.new("CMYK", (4, 4), (0, 255, 255, 0))}, suffix)
    np.testing.assert_allclose(_first(root, 3)[:, 2, 2], [1, 0, 0], atol=0.02)


def test_unsupported_mode_is_refused(tmp_path):
    root = _folder(tmp_path, {"x": Image.new("LAB", (4, 4))}, ".tif")
    with pytest.raises(UserError, match="unsupported mode LAB"):
        load_image_folder(root)


def test_pixel_limit_and_its_setting(tmp_path, monkeypatch):
    root = _folder(tmp_path / "ok", {"x": Image.new("L", (16, 16), 9)})
    monkeypatch.setenv("MODELMINE_MAX_IMAGE_PIXELS", "200")
    with pytest.raises(UserError, match="16x16 .*MODELMINE_MAX_IMAGE_PIXELS"):
        load_image_folder(root, size=8)
    monkeypatch.setenv("MODELMINE_MAX_IMAGE_PIXELS", "256")
    assert len(load_image_folder(root, size=8)) == 2
    monkeypatch.setenv("MODELMINE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UserError, match="positive number"):
        load_image_folder(root, size=8)
    # above PIL's own bomb limit (2 x 89M pixels) the setting still decides, not PIL
    bomb = tmp_path / "bomb"
    (bomb / "a").mkdir(parents=True)
    (bomb / "a" / "x.png").write_bytes(png_claiming(20000, 20000))
    monkeypatch.setenv("MODELMINE_MAX_IMAGE_PIXELS", str(10**9))
    with pytest.raises(UserError, match="corrupt"):  # allowed now; its data is missing
        load_image_folder(bomb)


def test_links_inside_are_followed_and_links_out_refused(tmp_path):
    root = _folder(tmp_path / "data", {"x": Image.new("L", (4, 4), 7)})
    (root / "a" / "alias.png").symlink_to(root / "b" / "x.png")
    assert len(load_image_folder(root)) == 3
    (root / "a" / "gone.png").symlink_to(root / "nowhere.png")
    with pytest.raises(UserError, match="broken link"):
        load_image_folder(root)
    (root / "a" / "gone.png").unlink()
    outside = _folder(tmp_path / "elsewhere", {"y": Image.new("L", (4, 4), 7)})
    (root / "c").symlink_to(outside / "a", target_is_directory=True)
    with pytest.raises(UserError, match="outside the data folder"):
        load_image_folder(root)


def test_caption_file_must_be_one_string_per_image(tmp_path):
    root = _folder(tmp_path, {"x": Image.new("L", (4, 4), 7)})
    (root / "metadata.jsonl").write_text('{"file_name": "a/x.png", "text": ["a", "list"]}\n')
    with pytest.raises(UserError, match="must be strings"):
        load_image_folder(root)
    (root / "metadata.jsonl").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UserError, match="UTF-8"):
        load_image_folder(root)


# ------------------------------------------------------------------------------------------------
# LoRA and textual-inversion files
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    from modelmine.diffusion.finetune import add_lora, save_lora

    gen = tiny()
    add_lora(gen.unet, rank=2, alpha=2.0)
    return save_lora(gen.unet, tmp_path_factory.mktemp("lora"))


def _lora_variant(src: Path, dst: Path, edit) -> Path:
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    state = load_file(str(src))
    edit(state, meta)
    save_file(state, str(dst), metadata=meta)
    return dst


def _first_key(state: dict) -> str:
    return next(k for k in sorted(state) if k.endswith("lora_A.weight"))


LORA_EDITS = {
    "unexpected key": lambda s, m: s.__setitem__("text_encoder.x.lora_A.weight", torch.zeros(2, 2)),
    "has no module": lambda s, m: s.update(
        {"unet.nope.lora_A.weight": torch.zeros(2, 4), "unet.nope.lora_B.weight": torch.zeros(4, 2)}
    ),  # fmt: skip
    "do not fit": lambda s, m: s.__setitem__(_first_key(s), torch.zeros(2, 5)),
    "NaN/inf": lambda s, m: s[_first_key(s)].fill_(float("inf")),
    "has only": lambda s, m: s.pop(_first_key(s)),
    "metadata says rank": lambda s, m: m.__setitem__(
        "lora_adapter_metadata", m["lora_adapter_metadata"].replace('"unet.r": 2', '"unet.r": 3')
    ),
}


@pytest.mark.parametrize("word", list(LORA_EDITS))
def test_lora_that_does_not_fit_is_refused_before_loading(word, lora_file, tmp_path):
    from modelmine.diffusion.finetune import load_lora

    path = _lora_variant(lora_file, tmp_path / "bad.safetensors", LORA_EDITS[word])
    gen = tiny()
    with pytest.raises(UserError, match=word):
        load_lora(gen, path)
    assert not any("lora_" in n for n, _ in gen.unet.named_parameters())  # nothing added


def test_truncated_lora_is_one_line(lora_file, tmp_path):
    from modelmine.diffusion.finetune import load_lora

    (tmp_path / "t.safetensors").write_bytes(lora_file.read_bytes()[:300])
    with pytest.raises(UserError, match="cannot read safetensors"):
        load_lora(tiny(), tmp_path / "t.safetensors")


@pytest.mark.parametrize(
    "tensors,word",
    [
        ({"<t>": torch.zeros(31)}, "needs"),
        ({"<t>": torch.zeros(2, 32)}, "needs"),
        ({"<t>": torch.full((32,), float("nan"))}, "NaN"),
        ({"<t>": torch.zeros(32, dtype=torch.int64)}, "not floating point"),
        ({"two words": torch.zeros(32)}, "spaces"),
        ({}, "no embeddings"),
    ],
    ids=["width", "two-rows", "nan", "int", "space", "empty"],
)
def test_token_file_that_does_not_fit_is_refused(tensors, word, tmp_path):
    from modelmine.diffusion.tokens import load_learned_embeds

    save_file(tensors, str(tmp_path / "learned_embeds.safetensors"))
    gen = tiny()
    vocab = len(gen.tokenizer)
    with pytest.raises(UserError, match=word):
        load_learned_embeds(gen, tmp_path)
    assert len(gen.tokenizer) == vocab


# ------------------------------------------------------------------------------------------------
# config values, devices, and what a refusal leaves behind
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e999", str(10**400)])
def test_non_finite_config_numbers_are_refused(value):
    from modelmine.config import parse_set

    with pytest.raises(UserError, match="finite"):
        load_config(TeacherRunConfig, None, parse_set([f"teacher.lr={value}"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "device,word", [("cuda", "no CUDA"), ("meta", "not one of"), ("gpu0", "unknown device")]
)
def test_unusable_device_is_one_line(device, word, tmp_path, capsys):
    assert main(["teacher", "--out", str(tmp_path / "r"), "--set", f"device={device}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_refused_resume_leaves_the_run_folder_unchanged(tmp_path, capsys):
    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i + (100 if c == "a" else 0)).save(data / c / f"{i}.png")
    out = tmp_path / "run"
    argv = ["teacher", "--out", str(out), "--data", str(data), "--set", "teacher.image_size=8",
            "--set", "teacher.epochs=1", "--set", "teacher.preset=mlp", "--set", "device=cpu"]  # fmt: skip
    assert main(argv) == 0
    before = _snapshot(out)
    assert {"config.yaml", "metrics.json", "teacher.safetensors"} <= set(before)
    (data / "a" / "huge.png").write_bytes(png_claiming(20000, 20000))  # the data changed under the run
    capsys.readouterr()
    assert main(argv) == 2
    assert "MODELMINE_MAX_IMAGE_PIXELS" in capsys.readouterr().err
    assert _snapshot(out) == before
    # and a teacher file that started to lie is refused when the run resumes from it
    (data / "a" / "huge.png").unlink()
    relabel(out / "teacher.safetensors", tmp_path / "lie.safetensors", num_classes=7)
    (tmp_path / "lie.safetensors").replace(out / "teacher.safetensors")
    before = _snapshot(out)
    assert main(argv) == 2
    assert "classes" in capsys.readouterr().err
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    "text", ["not json", '{"a": 1}', '["ok", 3]', "\udcff"], ids=["text", "dict", "int", "binary"]
)
def test_caption_list_of_a_run_must_be_strings(text, tmp_path):
    from modelmine.data import read_caption_list

    path = tmp_path / "captions.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(UserError, match="JSON list of caption strings"):
        read_caption_list(path)
    path.write_text('["a", "b"]')
    assert read_caption_list(path) == ["a", "b"]
