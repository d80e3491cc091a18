"""Bad-input sweep: every command, each broken input -> exit status 2 and exactly one line on stderr.

The errors happen before any heavy work, so the whole sweep takes seconds.
"""

import pickle

import pytest
import torch
from PIL import Image

from _hostile import png_claiming, relabel
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
    p["ten_classes16"] = root / "ten_classes16"  # the right classes at another image size
    for c in DIGITS:
        (p["ten_classes16"] / c).mkdir(parents=True)
        Image.new("L", (16, 16), 100).save(p["ten_classes16"] / c / "x.png")
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
    for name, meta in {
        "billion_classes": {"num_classes": 1_000_000_000},
        "negative_size": {"image_size": -5},
        "eleven_classes": {"num_classes": 11, "class_names": '["' + '", "'.join(DIGITS + ["x"]) + '"]'},
        "bad_preset": {"preset": "vgg"},
        "escaping_names": {"class_names": '["../../x"' + ', "a"' * 9 + "]"},
        "rgb_claim": {"in_channels": 3},
    }.items():
        p[name] = root / f"{name}.safetensors"
        relabel(p["model8"], p[name], **meta)
    p["bomb"] = root / "bomb"
    for c in ("a", "b"):
        (p["bomb"] / c).mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(p["bomb"] / c / "x.png")
    (p["bomb"] / "a" / "y.png").write_bytes(png_claiming(20000, 20000))
    outside = root / "outside.png"
    Image.new("L", (8, 8), 50).save(outside)
    p["link_out"] = root / "link_out"
    for c in ("a", "b"):
        (p["link_out"] / c).mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(p["link_out"] / c / "x.png")
    (p["link_out"] / "a" / "y.png").symlink_to(outside)
    for name, text in {
        "members_empty": "",
        "members_twice": "0/x.png\n1/x.png\n0/x.png\n",
        "members_all": "".join(f"{c}/x.png\n" for c in DIGITS),
    }.items():
        p[name] = root / f"{name}.txt"
        p[name].write_text(text)
    p["captions_twice"] = root / "captions_twice"
    for c in ("a", "b"):
        (p["captions_twice"] / c).mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(p["captions_twice"] / c / "x.png")
    (p["captions_twice"] / "metadata.jsonl").write_text(
        '{"file_name": "a/x.png", "text": "a"}\n{"file_name": "b/x.png", "text": "b"}\n'
        '{"file_name": "a/x.png", "text": "another"}\n'
    )
    from modelmine.diffusion.finetune import add_lora, save_lora
    from modelmine.diffusion.generator import Generator

    gen = Generator.embedded()
    add_lora(gen.unet, rank=2, alpha=2.0)
    with torch.no_grad():
        next(w for n, w in gen.unet.named_parameters() if "lora_A" in n).fill_(float("nan"))
    p["lora_nan"] = save_lora(gen.unet, root / "lora_nan")
    return p


def lira(members: str, target: str = "{model8}") -> list[str]:
    return ["audit", "lira", "--target", target, "--population", "{ten_classes}", "--members", members]


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
        [
            "audit",
            "lira",
            "--target",
            "{model8}",
            "--population",
            "{ten_classes16}",
            "--members",
            "{members}",
        ],
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
        ["audit", "membership", *OWN, "{ten_classes16}", "--members", "{members}"],
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
    ("finetune-negative-steps", ["finetune", "--set", "lora.steps=-1"], ">= 0"),
    ("pretrain-unknown-key", ["pretrain", "--set", "stepz=3"], "unknown config key"),
    # issue 21: files that lie, and lists that make a result meaningless
    ("cake-metadata-billion-classes", ["cake", "--teacher", "{billion_classes}"], "classes"),
    ("cake-metadata-negative-image-size", ["cake", "--teacher", "{negative_size}"], "image size"),
    ("cake-metadata-disagrees-with-tensors", ["cake", "--teacher", "{eleven_classes}"], "head.weight"),
    ("cake-metadata-unknown-preset", ["cake", "--teacher", "{bad_preset}"], "preset"),
    ("cake-metadata-class-name-escapes", ["cake", "--teacher", "{escaping_names}"], "folder name"),
    ("cake-metadata-wrong-channels", ["ddis", "--teacher", "{rgb_claim}"], "tensor"),
    ("teacher-decompression-bomb", ["teacher", "--data", "{bomb}"], "MODELMINE_MAX_IMAGE_PIXELS"),
    ("teacher-symlink-leaves-folder", ["teacher", "--data", "{link_out}"], "outside the data folder"),
    ("finetune-caption-twice", ["finetune", "--data", "{captions_twice}"], "caption already"),
    ("lira-members-empty", lira("{members_empty}"), "lists no files"),
    ("lira-members-twice", lira("{members_twice}"), "twice"),
    ("lira-members-everything", lira("{members_all}"), "non-members"),
    ("lira-target-lies", lira("{members}", "{billion_classes}"), "classes"),
    ("extract-empty-prompt", ["extract", "--data", "{ten_classes}", "--prompt", ""], "prompt is empty"),
    ("extract-similarity-threshold", ["extract", "--set", "similarity_threshold=2"], "similarity_threshold"),
    (
        "extract-lora-nan",
        [
            "extract",
            "--finetuned",
            "{lora_nan}",
            "--data",
            "{ten_classes}",
            "--prompt",
            "a digit",
            "--set",
            "calibrated_threshold=0.5",
            "--set",
            "num_generations=10",
        ],
        "NaN",
    ),  # fmt: skip
    ("teacher-lr-nan", ["teacher", "--set", "teacher.lr=.nan"], "finite"),
    (
        "teacher-zero-epochs",
        ["teacher", "--data", "{ten_classes}", "--set", "teacher.epochs=0", "--set", "teacher.image_size=8"],
        "epochs",
    ),  # fmt: skip
    (
        "teacher-image-size-too-small",
        ["teacher", "--data", "{ten_classes}", "--set", "teacher.image_size=2"],
        "image size",
    ),  # fmt: skip
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
