"""Any dataset (issue 17): every command on a 3-class RGB 20x20 folder and a 2-class grey 12x12 one,
with its defaults except tiny budgets. Each finishes with the data-derived settings in config.yaml,
or, where the generator cannot serve the data (RGB images on the grey generator), stops with one
line that says what to pass instead."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from _tiny import SMALL_UNET
from modelmine.cli import main
from modelmine.data import load_image_folder, split_holdout
from modelmine.diffusion.generator import Generator


def _write_folder(root, classes: list[str], per_class: int, size: int, mode: str, seed: int):
    """Blobs of a class-dependent colour and place on noise, so the classes can be learned."""
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = rng.uniform(0, 0.3, (size, size, channels))
            lo = (k * size) // (len(classes) + 1)
            a[lo : lo + size // 3, lo : lo + size // 3, k % channels] += 0.7
            a = (a.clip(0, 1) * 255).astype(np.uint8)
            Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("anydata")
    rgb = _write_folder(root / "rgb3", ["cat", "dog", "owl"], 6, 20, "RGB", seed=0)
    grey = _write_folder(root / "grey2", ["left", "right"], 6, 12, "L", seed=1)
    return {"rgb": rgb, "grey": grey}


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    """Tiny 8x8 generators: a grey one (like the embedded default) and an RGB one."""
    root = tmp_path_factory.mktemp("gens")
    paths = {}
    for name, channels in (("grey", 1), ("rgb", 3)):
        paths[name] = root / f"{name}.safetensors"
        gen = Generator.build_tiny(channels, 8, seed=0, unet_overrides=SMALL_UNET, text_width=32)
        gen.save_embedded(paths[name])
    return paths


@pytest.fixture(scope="module")
def teachers(folders, tmp_path_factory):
    """`modelmine teacher` on each folder (image size and classes derived); its run folder."""
    runs = {}
    for name, folder in folders.items():
        out = tmp_path_factory.mktemp("teacher") / name
        args = ["teacher", "--out", str(out), "--data", str(folder), *TINY_TEACHER]
        assert main(args) == 0
        runs[name] = out
    return runs


TINY_TEACHER = ["--set", "teacher.epochs=1", "--set", "device=cpu"]
SIZES = {"rgb": (20, 3, 3), "grey": (12, 1, 2)}  # image size, channels, classes
RGB_ON_GREY = "1-channel images and this data is RGB"


def _config(out) -> dict:
    return yaml.safe_load((out / "config.yaml").read_text())


def _metrics(out) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _members(folder) -> list[str]:
    """The files `modelmine teacher` trains on when given a folder without --test-data."""
    return split_holdout(load_image_folder(folder), seed=0)[0].files


def _stops(args, capsys, *words) -> str:
    """The command exits with status 2 and one line on stderr naming each of ``words``."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("name", ["rgb", "grey"])
def test_teacher(name, teachers):
    from modelmine.classifiers import load_classifier

    out = teachers[name]
    size, channels, k = SIZES[name]
    assert _config(out)["teacher"]["image_size"] == size
    assert "teacher_acc" in _metrics(out)
    _, info = load_classifier(out / "teacher.safetensors")
    assert (info.image_size, info.in_channels, info.num_classes) == (size, channels, k)


def test_teacher_epochs_derive_from_the_folder(folders):
    from modelmine.teacher import TeacherRunConfig, resolve_teacher

    cfg = resolve_teacher(TeacherRunConfig(data=str(folders["rgb"])), str(folders["rgb"]))
    # 18 images, 3 held out as the test split: 15 per epoch, one batch; about 512 steps
    assert (cfg.teacher.image_size, cfg.teacher.epochs) == (20, 512)


@pytest.mark.parametrize("name", ["rgb", "grey"])
def test_cake(name, folders, tmp_path):
    out = tmp_path / "cake"
    args = ["cake", "--out", str(out), "--data", str(folders[name]), *TINY_TEACHER,
            "--set", "num_batches=1", "--set", "num_steps=2", "--set", "student.epochs=1"]  # fmt: skip
    assert main(args) == 0
    size, _, k = SIZES[name]
    cfg = _config(out)
    assert cfg["num_groups"] == k and cfg["batch_size"] == round(100 / k) * k
    assert cfg["teacher"]["image_size"] == size
    assert {"teacher_acc", "student_acc", "num_samples"} <= set(_metrics(out))


@pytest.mark.parametrize("name", ["rgb", "grey"])
def test_deepinversion(name, folders, tmp_path):
    out = tmp_path / "di"
    args = ["deepinversion", "--out", str(out), "--data", str(folders[name]), *TINY_TEACHER,
            "--set", "num_batches=1", "--set", "num_steps=2", "--set", "batch_size=12",
            "--set", "student.epochs=1"]  # fmt: skip
    assert main(args) == 0
    assert _config(out)["teacher"]["image_size"] == SIZES[name][0]
    assert {"teacher_acc", "student_acc", "num_samples"} <= set(_metrics(out))
    assert (out / "samples_grid.png").is_file()


TINY_DDIS = [
    "--set", "num_images=6", "--set", "batch_size=6", "--set", "sample_steps=2", "--set", "cat_iters=1",
    "--set", "cat_steps=2", "--set", "cat_per_class=1", "--set", "ablations=false",
    "--set", "student.epochs=1", "--set", "workers=1",
]  # fmt: skip


@pytest.mark.parametrize("name", ["rgb", "grey"])
def test_ddis_grey_generator_serves_any_teacher(name, folders, generators, tmp_path, capsys):
    """DDIS is data-free: the grey 8x8 generator's images are fitted to the teacher's input, and a
    colour teacher fed grey images is told so."""
    out = tmp_path / "ddis"
    args = ["ddis", "--out", str(out), "--data", str(folders[name]), "--generator", str(generators["grey"]),
            *TINY_TEACHER, *TINY_DDIS]  # fmt: skip
    assert main(args) == 0
    assert ("the teacher takes RGB" in capsys.readouterr().err) == (name == "rgb")
    assert _config(out)["teacher"]["image_size"] == SIZES[name][0]
    assert {"fid", "student_acc", "teacher_acc_on_synthetic"} <= set(_metrics(out))
    size, channels, _ = SIZES[name]
    with Image.open(next((out / "synthetic").glob("*/*.png"))) as im:  # at the teacher's input
        assert im.size == (size, size) and len(im.getbands()) == channels


TINY_TCKR = [
    "--set", "lora.steps=2", "--set", "sample_steps=2", "--set", "student.epochs=1", "--set", "num_shadows=2",
    "--set", "ablations=false", "--set", "workers=1", *TINY_TEACHER,
]  # fmt: skip


def test_tckr_rgb_data_on_the_grey_generator_stops(folders, generators, tmp_path, capsys):
    out = tmp_path / "tckr"
    args = ["tckr", "--out", str(out), "--data", str(folders["rgb"]), "--generator", str(generators["grey"])]
    _stops([*args, *TINY_TCKR], capsys, RGB_ON_GREY, "--generator")
    assert not out.exists()  # stopped before any work


@pytest.mark.parametrize("name, gen", [("grey", "grey"), ("rgb", "rgb")])
def test_tckr(name, gen, folders, generators, tmp_path):
    out = tmp_path / "tckr"
    args = ["tckr", "--out", str(out), "--data", str(folders[name]), "--generator", str(generators[gen]),
            *TINY_TCKR]  # fmt: skip
    assert main(args) == 0
    assert _config(out)["teacher"]["image_size"] == SIZES[name][0]
    m = _metrics(out)
    assert {"teacher_acc", "student_acc", "teacher_auc", "student_auc"} <= set(m)
    assert m["num_private"] == len(_members(folders[name]))  # the folder less its held-out 20%


def _extract(out, folder, base, *extra):
    return ["extract", "--out", str(out), "--data", str(folder), "--base", str(base),
            "--prompt", "a photo of sks", "--set", "num_generations=18", "--set", "gen_batch_size=18",
            "--set", "sample_steps=2", "--set", "lora.steps=2", "--set", "full.steps=2", "--set", "workers=1",
            "--set", "device=cpu", *extra]  # fmt: skip


def test_extract(folders, generators, tmp_path, capsys):
    """FineXtract fine-tunes on the folder's images: RGB ones need an RGB --base."""
    _stops(_extract(tmp_path / "rgb", folders["rgb"], generators["grey"]), capsys, RGB_ON_GREY, "--base")
    for name in ("grey", "rgb"):
        # user images alone: the paper's fixed-threshold rate; no non-members, so no calibrated rate
        out = tmp_path / f"{name}_on_{name}"
        assert main(_extract(out, folders[name], generators[name], "--set", "similarity_threshold=0.9")) == 0
        m = _metrics(out)
        assert {"success_rate", "baseline_success_rate"} <= set(m) and m["similarity_threshold"] == 0.9
        assert "calibrated_success_rate" not in m
        assert m["num_train_images"] == len(load_image_folder(folders[name]))


@pytest.mark.parametrize("name", ["rgb", "grey"])
@pytest.mark.parametrize("command", ["lira", "membership"])
def test_audit(command, name, folders, teachers, tmp_path):
    """A teacher trained by `modelmine teacher` on the folder, audited on the folder with its members."""
    folder = folders[name]
    members = tmp_path / "members.txt"
    members.write_text("".join(f"{f}\n" for f in _members(folder)))
    out = tmp_path / command
    args = ["audit", command, "--out", str(out), "--target", str(teachers[name] / "teacher.safetensors"),
            "--population", str(folder), "--members", str(members), "--shadows", "2",
            *TINY_TEACHER]  # fmt: skip
    assert main(args) == 0
    assert _config(out)["teacher"]["image_size"] == SIZES[name][0]
    m = _metrics(out)
    assert ("auc" if command == "lira" else "lira_auc") in m
    assert m["num_members"] == len(_members(folder))
    assert m["num_members"] + m["num_nonmembers"] == len(load_image_folder(folder))


def test_audit_of_a_target_at_another_size(folders, tmp_path, capsys):
    """A target trained at another size than its folder's: the audit says how to resize the population."""
    folder, target = folders["grey"], tmp_path / "teacher"
    assert main(["teacher", "--out", str(target), "--data", str(folder), "--set", "teacher.image_size=16",
                 *TINY_TEACHER]) == 0  # fmt: skip
    members = tmp_path / "members.txt"
    members.write_text("".join(f"{f}\n" for f in _members(folder)))
    args = ["audit", "lira", "--target", str(target / "teacher.safetensors"), "--population", str(folder),
            "--members", str(members), "--shadows", "2", *TINY_TEACHER]  # fmt: skip
    _stops([*args, "--out", str(tmp_path / "stop")], capsys, "12x12", "--set teacher.image_size=16")
    out = tmp_path / "lira"
    assert main([*args, "--out", str(out), "--set", "teacher.image_size=16"]) == 0
    assert _config(out)["teacher"]["image_size"] == 16 and "auc" in _metrics(out)


def test_finetune(folders, generators, tmp_path, capsys):
    tiny = ["--set", "lora.steps=2", "--set", "lora.batch_size=4", "--set", "device=cpu"]
    rgb = ["finetune", "--out", str(tmp_path / "rgb"), "--data", str(folders["rgb"]), *tiny]
    _stops([*rgb, "--generator", str(generators["grey"])], capsys, RGB_ON_GREY, "--generator")
    # the default "embedded" is the shipped model that makes the data's channels, named in config.yaml
    for name, resolved in (("rgb", "embedded-rgb"), ("grey", "embedded")):
        out = tmp_path / f"{name}_default"
        assert main(["finetune", "--out", str(out), "--data", str(folders[name]), *tiny]) == 0
        assert _config(out)["generator"] == resolved
    for name, gen in (("rgb", "rgb"), ("grey", "grey"), ("grey", "rgb")):
        out = tmp_path / f"{name}_on_{gen}"
        args = ["finetune", "--out", str(out), "--data", str(folders[name]), "--generator",
                str(generators[gen]), *tiny]  # fmt: skip
        assert main(args) == 0, (name, gen)
        assert _metrics(out)["num_images"] == len(load_image_folder(folders[name]))
        assert (out / "samples.png").is_file()
        assert _config(out)["class_prompt"] == "a photo of {c}"  # the tiny generator stores no prompt


def test_fine_tuning_data_must_fit_the_generator():
    from modelmine.diffusion.generator import check_serves
    from modelmine.errors import UserError

    check_serves(1, 1)
    check_serves(3, 1)  # grey images are RGB images with equal channels: nothing is lost
    with pytest.raises(UserError, match=RGB_ON_GREY) as e:
        check_serves(1, 3, "grey.safetensors", "--base")
    assert "generator grey.safetensors" in str(e.value) and "pass --base with an RGB model" in str(e.value)


def test_class_grids_follow_the_classes():
    """One column per class that occurs, as many rows as the rarest allows: uneven and many classes."""
    from modelmine.report import GRID_MAX_CLASSES, class_grid_index

    index, columns = class_grid_index(torch.tensor([2, 0, 1, 0, 2, 0, 2]))  # 3 classes, counts 3, 1, 3
    assert columns == 3 and index.tolist() == [1, 2, 0]
    index, columns = class_grid_index(torch.tensor([0, 1, 0, 1, 0, 1]))
    assert columns == 2 and index.tolist() == [0, 1, 2, 3, 4, 5]
    many = torch.arange(10 * (GRID_MAX_CLASSES + 5)) % (GRID_MAX_CLASSES + 5)
    index, columns = class_grid_index(many, rows=2)
    assert columns == GRID_MAX_CLASSES and many[index].tolist() == list(range(GRID_MAX_CLASSES)) * 2
