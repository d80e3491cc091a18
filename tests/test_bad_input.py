"""Bad-input sweep: every command, each broken input -> exit status 2 and exactly one line on stderr.

The errors happen before any heavy work, so the whole sweep takes seconds.
"""

import pickle

import pytest
import torch
from PIL import Image

from modelmine.classifiers import ClassifierInfo, build_classifier, save_classifier
from modelmine.cli import main

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of broken inputs, one per kind; returns name -> path."""
    root = tmp_path_factory.mktemp("bad")
    p = {}
    p["empty"] = root / "empty"
    p["empty"].mkdir()
    p["no_images"] = root / "no_images"
    (p["no_images"] / "cat").mkdir(parents=True)
    (p["no_images"] / "cat" / "notes.txt").write_text("not an image")
    p["truncated"] = root / "truncated"
    (p["truncated"] / "cat").mkdir(parents=True)
    Image.new("L", (8, 8), 128).save(p["truncated"] / "cat" / "ok.png")
    data = (p["truncated"] / "cat" / "ok.png").read_bytes()
    (p["truncated"] / "cat" / "bad.png").write_bytes(data[: len(data) // 2])
    p["three_classes"] = root / "three_classes"
    for c in ("a", "b", "c"):
        (p["three_classes"] / c).mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(p["three_classes"] / c / "x.png")
    p["ten_classes"] = root / "ten_classes"
    for c in DIGITS:
        (p["ten_classes"] / c).mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(p["ten_classes"] / c / "x.png")
    p["members"] = root / "members.txt"
    p["members"].write_text("0/x.png\n1/x.png\n")
    for name, text in {
        "members_empty": "\n",
        "members_outside": "0/x.png\n7/nope.png\n",
        "members_all": "".join(f"{c}/x.png\n" for c in DIGITS),
        "members_dup": "0/x.png\n1/x.png\n0/x.png\n",
    }.items():
        p[name] = root / f"{name}.txt"
        p[name].write_text(text)
    model = build_classifier("cnn_small", 10, 1, 8)
    p["model8"] = root / "model8.safetensors"
    save_classifier(p["model8"], model, ClassifierInfo("cnn_small", 10, 1, 8, DIGITS))
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    p["nan"] = root / "nan.safetensors"
    save_classifier(p["nan"], model, ClassifierInfo("cnn_small", 10, 1, 8, DIGITS))
    p["pickle"] = root / "model.pt"
    p["pickle"].write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    p["mlp"] = root / "mlp.safetensors"
    save_classifier(p["mlp"], build_classifier("mlp", 10, 1, 8), ClassifierInfo("mlp", 10, 1, 8, DIGITS))
    return p


OWN = ["--target", "{model8}", "--population"]  # auditing a user's 8x8 ten-class classifier
OWN8 = [*OWN, "{ten_classes}", "--set", "teacher.image_size=8", "--members"]
CASES = [  # (id, argv with {name} placeholders, a word the message must contain)
    ("teacher-empty-folder", ["teacher", "--data", "{empty}"], "class"),
    ("teacher-non-image-files", ["teacher", "--data", "{no_images}"], "no images"),
    ("teacher-truncated-png", ["teacher", "--data", "{truncated}"], "corrupt"),
    ("teacher-unknown-key", ["teacher", "--set", "teacher.epoch=3"], "unknown config key"),
    ("teacher-negative-epochs", ["teacher", "--set", "teacher.epochs=-1"], ">= 0"),
    ("cake-nan-weights", ["cake", "--teacher", "{nan}"], "NaN"),
    ("cake-pickle", ["cake", "--teacher", "{pickle}"], "safetensors"),
    ("cake-class-count", ["cake", "--teacher", "{model8}", "--test-data", "{three_classes}"], "classes"),
    ("cake-negative-batches", ["cake", "--set", "num_batches=-2"], ">= 0"),
    (
        "deepinversion-no-batchnorm",
        ["deepinversion", "--teacher", "{mlp}", "--test-data", "{three_classes}"],
        "BatchNorm",
    ),
    ("tckr-empty-folder", ["tckr", "--data", "{empty}"], "class"),
    ("tckr-truncated-png", ["tckr", "--data", "{truncated}"], "corrupt"),
    ("tckr-negative-cardinality", ["tckr", "--cardinality", "-1"], "cardinality"),
    ("tckr-pickle-teacher", ["tckr", "--teacher", "{pickle}"], "safetensors"),
    ("ddis-pickle", ["ddis", "--teacher", "{pickle}"], "safetensors"),
    ("ddis-no-batchnorm", ["ddis", "--teacher", "{mlp}", "--test-data", "{three_classes}"], "BatchNorm"),
    ("ddis-negative-images", ["ddis", "--set", "num_images=-5"], ">= 0"),
    (
        "lira-pickle-target",
        ["audit", "lira", "--target", "{pickle}", "--population", "{ten_classes}", "--members", "{members}"],
        "safetensors",
    ),
    (
        "lira-wrong-image-size",
        ["audit", "lira", "--target", "{model8}", "--population", "{ten_classes}", "--members", "{members}"],
        "expects 8x8",
    ),
    (
        "lira-members-not-text",
        ["audit", "lira", "--target", "{model8}", "--population", "{ten_classes}", "--members", "{pickle}"],
        "not a text file",
    ),
    ("lira-negative-shadows", ["audit", "lira", "--shadows", "-4"], ">= 0"),
    ("lira-one-shadow", ["audit", "lira", "--shadows", "1"], "at least 2"),
    ("lira-members-empty", ["audit", "lira", *OWN8, "{members_empty}"], "empty"),
    (
        "membership-class-count",
        ["audit", "membership", *OWN, "{three_classes}", "--members", "{members}"],
        "classes",
    ),
    (
        "membership-wrong-image-size",
        ["audit", "membership", *OWN, "{ten_classes}", "--members", "{members}"],
        "8x8",
    ),
    (
        "membership-members-outside",
        ["audit", "membership", *OWN8, "{members_outside}"],
        "not in the population",
    ),
    ("membership-members-empty", ["audit", "membership", *OWN8, "{members_empty}"], "empty"),
    ("membership-no-nonmembers", ["audit", "membership", *OWN8, "{members_all}"], "non-members"),
    ("membership-duplicate-members", ["audit", "membership", *OWN8, "{members_dup}"], "more than once"),
    (
        "membership-rmia-no-model",
        ["audit", "membership", "--shadows", "0", "--attacks", "rmia"],
        "at least 1",
    ),
    ("membership-lira-one-model", ["audit", "membership", "--shadows", "1"], "at least 2"),
    ("membership-unknown-attack", ["audit", "membership", "--attacks", "lira", "mia"], "unknown attack"),
    ("membership-bad-gamma", ["audit", "membership", "--set", "rmia.gamma=0"], "gamma"),
    ("finetune-truncated-png", ["finetune", "--data", "{truncated}"], "corrupt"),
    ("finetune-negative-steps", ["finetune", "--set", "steps=-1"], ">= 0"),
    ("pretrain-unknown-key", ["pretrain", "--set", "stepz=3"], "unknown config key"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, inputs, tmp_path, capsys):
    _, argv, word = case
    argv = [a.format(**{k: str(v) for k, v in inputs.items()}) for a in argv]
    out = tmp_path / "run"
    assert main([*argv[: 2 if argv[0] == "audit" else 1], "--out", str(out), *argv[2 if argv[0] == "audit" else 1 :],
                 "--set", "device=cpu"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert word.lower() in err.lower(), err
