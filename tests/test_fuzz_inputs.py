"""Property-based fuzzing of what auditors feed modelmine (issue 21): mutated safetensors metadata and
headers, truncated and corrupted image bytes, random config overrides. Every case must end with exit
status 0 or 2 and, for 2, exactly one line on stderr; never a traceback, and never a run that keeps
going on nonsense (an accepted input is checked to make sense).

Examples are fixed (``derandomize=True``, no example database), commands tiny, and each command stops
right after validation or trains one epoch on eight 8x8 images, so the file takes well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import struct
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from _hostile import png_claiming, relabel
from modelmine import teacher as teacher_module
from modelmine.classifiers import ClassifierInfo, build_classifier, load_classifier, save_classifier
from modelmine.cli import main
from modelmine.data import load_image_folder
from modelmine.errors import UserError

NAMES = [str(i) for i in range(10)]
FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``cli.main(argv)`` with a fresh ``--out``; returns the exit status and stderr. An exception
    escaping ``main`` fails the test: that is the traceback a user would see."""
    err = io.StringIO()
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        n = 2 if argv[0] == "audit" else 1
        rc = main([*argv[:n], "--out", str(Path(tmp) / "run"), *argv[n:]])
        metrics = Path(tmp) / "run" / "metrics.json"
        run_metrics = json.loads(metrics.read_text()) if rc == 0 and metrics.exists() else None
        run_config = yaml.safe_load((Path(tmp) / "run" / "config.yaml").read_text()) if rc == 0 else None
    text = err.getvalue().strip()
    assert rc in (0, 2), (rc, text)
    if rc == 2:
        assert len(text.splitlines()) == 1 and ": error: " in text, text
    run_cli.last = (run_metrics, run_config)  # type: ignore[attr-defined]
    return rc, text


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    f = {"root": root}
    f["model8"] = root / "model8.safetensors"
    save_classifier(
        f["model8"],
        build_classifier("cnn_small", 10, 1, 8, seed=0),
        ClassifierInfo("cnn_small", 10, 1, 8, NAMES),
    )
    f["mlp2"] = root / "mlp2.safetensors"
    save_classifier(
        f["mlp2"], build_classifier("mlp", 2, 1, 8, seed=0), ClassifierInfo("mlp", 2, 1, 8, ["a", "b"])
    )
    f["population"] = root / "population"
    for c in NAMES:
        (f["population"] / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 20 * i + 9 * int(c)).save(f["population"] / c / f"{i}.png")
    f["members"] = root / "members.txt"
    f["members"].write_text("".join(f"{c}/0.png\n" for c in NAMES))
    f["two"] = root / "two"
    for c in ("a", "b"):
        (f["two"] / c).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 30 * i + (120 if c == "a" else 0)).save(f["two"] / c / f"{i}.png")
    f["empty"] = root / "empty"
    f["empty"].mkdir()
    f["bomb"] = root / "bomb"
    (f["bomb"] / "a").mkdir(parents=True)
    (f["bomb"] / "b").mkdir(parents=True)
    (f["bomb"] / "a" / "x.png").write_bytes(png_claiming(20000, 20000))
    Image.new("L", (8, 8)).save(f["bomb"] / "b" / "x.png")
    f["pickle"] = root / "model.pt"
    f["pickle"].write_bytes(pickle.dumps({"w": 1}))
    f["lie"] = root / "lie.safetensors"
    relabel(f["mlp2"], f["lie"], num_classes=1_000_000_000)
    return f


def lira_argv(files, target: Path) -> list[str]:
    """``audit lira`` stopped right after validation: 0 shadows is refused only once the target is
    loaded and checked against the population."""
    return ["audit", "lira", "--target", str(target), "--population", str(files["population"]),
            "--members", str(files["members"]), "--shadows", "0", "--set", "teacher.image_size=8",
            "--set", "device=cpu"]  # fmt: skip


ACCEPTED = "at least 2 shadow models"


def check_loader_agrees(path: Path, err: str) -> None:
    """The loader refuses the file with a one-line UserError, or returns what the file says: a model
    whose outputs match its class names, on the image shape it declares, with finite weights. The
    command got past loading exactly when the loader accepts the file."""
    try:
        model, info = load_classifier(path)
    except UserError as e:
        assert ACCEPTED not in err and "\n" not in str(e)
        return
    assert len(info.class_names) == info.num_classes >= 2
    out = model(torch.rand(2, info.in_channels, info.image_size, info.image_size))
    assert out.shape == (2, info.num_classes) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------
# safetensors metadata and headers
# ------------------------------------------------------------------------------------------------
INTS = st.one_of(
    st.sampled_from(
        ["0", "1", "2", "3", "8", "10", "11", "-5", " 8", "8.0", "1e3", "", "nan", "1000000000", "9" * 5000]
    ),  # fmt: skip
    st.integers(-(2**40), 2**40).map(str),
)
META_VALUES = {
    "preset": st.one_of(
        st.sampled_from(["cnn", "cnn_small", "mlp", "resnet", "", "torchvision:", "timm:", "CNN", "vgg"]),
        st.text(max_size=8),
    ),
    "num_classes": INTS,
    "in_channels": INTS,
    "image_size": INTS,
    "class_names": st.one_of(
        st.lists(st.sampled_from(NAMES + ["", "..", "a/b", ".x", "0", " "]), max_size=12).map(json.dumps),
        st.lists(st.text(max_size=4), min_size=10, max_size=10).map(json.dumps),
        st.text(max_size=10),
        st.just(json.dumps(NAMES)),
    ),
}
METADATA = st.dictionaries(st.sampled_from(sorted(META_VALUES)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.one_of(st.none(), META_VALUES[k]) for k in keys})
)  # None: the key is deleted


@FUZZ
@given(meta=METADATA, base=st.sampled_from(["model8", "mlp2"]))
def test_fuzz_classifier_metadata(files, meta, base):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.safetensors"
        with safe_open(str(files[base]), framework="pt") as f:
            old = dict(f.metadata())
        new = {k: v for k, v in {**old, **meta}.items() if v is not None}
        save_file(load_file(str(files[base])), str(path), metadata=new)
        _, err = run_cli(lira_argv(files, path))
        check_loader_agrees(path, err)


def _mutate(data: bytes, how: tuple) -> bytes:
    kind, a, b = how
    header_len = struct.unpack("<Q", data[:8])[0]
    if kind == "truncate":
        return data[: a % (len(data) + 1)]
    if kind == "length":
        return struct.pack("<Q", b) + data[8:]
    if kind == "flip":  # one byte of the JSON header changed
        i = 8 + a % header_len
        return data[:i] + bytes([b % 256]) + data[i + 1 :]
    if kind == "json":  # a plausible header edit: a shape, dtype or offset replaced
        header = data[8 : 8 + header_len].decode()
        swaps = [('"F32"', '"I64"'), ('"F32"', '"F16"'), ("[10,", "[11,"), ("[10,", "[1000000000,"),
                 ('"data_offsets":[0,', '"data_offsets":[4,'), ("[64]", "[65]"), ("[2,", "[0,")]  # fmt: skip
        old, new = swaps[a % len(swaps)]
        header = header.replace(old, new, 1 + b % 3)
        body = header.encode()
        return struct.pack("<Q", len(body)) + body + data[8 + header_len :]
    return data[: a % len(data)] + bytes([b % 256]) * (b % 7 + 1) + data[a % len(data) :]  # insert


@FUZZ
@given(
    how=st.tuples(
        st.sampled_from(["truncate", "length", "flip", "json", "insert"]),
        st.integers(0, 10**6),
        st.integers(0, 2**64 - 1),
    ),
    base=st.sampled_from(["model8", "mlp2"]),
)
def test_fuzz_safetensors_header(files, how, base):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.safetensors"
        path.write_bytes(_mutate(files[base].read_bytes(), how))
        _, err = run_cli(lira_argv(files, path))
        check_loader_agrees(path, err)


# ------------------------------------------------------------------------------------------------
# image bytes
# ------------------------------------------------------------------------------------------------
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".gif": "GIF", ".tif": "TIFF", ".bmp": "BMP", ".webp": "WEBP"}
MODES = ["L", "RGB", "RGBA", "P", "LA", "I;16", "CMYK", "1"]


def _encoded(mode: str, suffix: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
    im = im.convert("L").convert("I;16") if mode == "I;16" else im.convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, FORMATS[suffix])
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode: store a PNG instead
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


@FUZZ
@given(
    mode=st.sampled_from(MODES),
    suffix=st.sampled_from(sorted(FORMATS)),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
)
def test_fuzz_image_bytes(files, mode, suffix, cut, flips):
    data = bytearray(_encoded(mode, suffix, len(flips)))
    for i, v in flips:
        data[i % len(data)] = v
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.dict(os.environ, {"MODELMINE_MAX_IMAGE_PIXELS": "65536"}),
    ):
        root = Path(tmp) / "data"
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (8, 8), 40 * i + (100 if c == "a" else 0)).save(root / c / f"{i}.png")
        (root / "a" / f"fuzz{suffix}").write_bytes(bytes(data))
        try:
            x = load_image_folder(root, size=8).images
        except UserError as e:
            assert "\n" not in str(e)
        else:  # whatever decoded is an image in range, never NaN
            assert x.shape[0] == 7 and torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
        rc, _ = run_cli(["teacher", "--data", str(root), "--test-data", str(root), "--set", "teacher.preset=mlp",
                         "--set", "teacher.image_size=8", "--set", "teacher.epochs=1", "--set", "device=cpu"])  # fmt: skip
        if rc == 0:
            metrics, _ = run_cli.last  # type: ignore[attr-defined]
            assert 0 <= metrics["teacher_acc"] <= 1 and metrics["num_train"] == 7


# ------------------------------------------------------------------------------------------------
# config overrides
# ------------------------------------------------------------------------------------------------
def _values(files) -> dict:
    paths = st.sampled_from([str(files[k]) for k in ("two", "empty", "bomb", "model8", "pickle", "lie")]
                            + ["null", "", "/nonexistent", "[1, 2]", "{a: 1}"])  # fmt: skip
    numbers = st.one_of(
        st.sampled_from(
            ["0", "1", "2", "-1", "1e-3", ".nan", ".inf", "-.inf", "1e999", "true", "x", "[]", "null"]
        ),
        st.integers(-3, 12).map(str),
        st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    )
    return {
        "teacher.preset": st.sampled_from(
            ["cnn", "cnn_small", "mlp", "resnet", "bogus", "torchvision:", "timm:x", "", "1"]
        ),
        "teacher.path": st.sampled_from(
            [
                "null",
                str(files["model8"]),
                str(files["mlp2"]),
                str(files["lie"]),
                str(files["pickle"]),
                "/nonexistent.safetensors",
                "",
            ]
        ),  # fmt: skip
        "teacher.epochs": numbers,
        "teacher.lr": numbers,
        "teacher.batch_size": numbers,
        "teacher.weight_decay": numbers,
        "teacher.augment": numbers,
        "teacher.image_size": st.sampled_from(
            ["-1", "0", "1", "3", "4", "8", "9", "2049", "1000000000", "8.5", "x"]
        ),
        "teacher.seed": numbers,
        "test_data": paths,
        "data": paths.filter(lambda p: p != "null"),  # null means the digits: fine, but not tiny
        "device": st.sampled_from(["cpu", "auto", "cuda", "meta", "gpu", "cpu:0", ""]),
        "teacher.epoch": numbers,  # a typo
        "teacher": numbers,  # a section given a value
    }


@pytest.fixture(scope="module")
def config_values(files):
    return _values(files)


def _capped_train(real):
    """``train_classifier`` with at most one epoch: a valid config trains for real, just briefly."""

    def train(model, images, labels, **kw):
        kw["epochs"] = min(kw.get("epochs", 1), 1)
        return real(model, images, labels, **kw)

    return train


@FUZZ
@given(data=st.data())
def test_fuzz_config_overrides(files, config_values, data):
    keys = data.draw(st.lists(st.sampled_from(sorted(config_values)), min_size=1, max_size=4, unique=True))
    sets = [f"{k}={data.draw(config_values[k])}" for k in keys]
    base = {"data": str(files["two"]), "teacher.preset": "mlp", "teacher.image_size": "8", "device": "cpu"}
    argv = ["teacher"] + [a for k, v in base.items() if k not in keys for a in ("--set", f"{k}={v}")]
    argv += [a for s in sets for a in ("--set", s)]
    with mock.patch.object(
        teacher_module, "train_classifier", _capped_train(teacher_module.train_classifier)
    ):
        rc, _ = run_cli(argv)
    if rc == 0:  # accepted: every number it ran on makes sense
        metrics, cfg = run_cli.last  # type: ignore[attr-defined]
        assert 0 <= metrics["teacher_acc"] <= 1 and metrics["num_train"] >= 1
        t = cfg["teacher"]
        if t["path"] is None:
            assert t["epochs"] >= 1 and t["batch_size"] >= 1 and 4 <= t["image_size"] <= 2048
            assert all(math.isfinite(t[k]) for k in ("lr", "weight_decay", "augment")) and t["lr"] > 0
