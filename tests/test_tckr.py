"""TCKR: balanced prompt cycling, image fitting, the command end to end (tiny), resume, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny import SMALL_UNET
from modelmine.cli import main
from modelmine.data import fit_to, load_digits
from modelmine.diffusion.generator import Generator
from modelmine.methods.tckr import aop, balanced_challenge, cycle_prompts, num_synthetic, paper_auc


def test_paper_auc_is_the_best_variant_on_a_balanced_challenge_set():
    is_member = torch.tensor([True] * 6 + [False] * 3)
    index = balanced_challenge(is_member, seed=1)
    assert is_member[index].sum() == 3 and (~is_member[index]).sum() == 3  # every non-member, 3 members
    assert torch.equal(index, balanced_challenge(is_member, seed=1))
    perfect = is_member.float()  # members score higher: AUC 1 on any subset
    assert paper_auc({"a": -perfect, "b": perfect}, is_member) == 1.0
    assert paper_auc({"a": -perfect}, is_member) == 0.0
    # the official tables: CIFAR-10 student, accuracy 97.33%, AUC 52.81% -> AOP 87.25
    assert aop(0.9733, 0.5281) == pytest.approx(0.8725, abs=1e-4) and aop(0.9, 0.5) == 0.9


def test_cycle_prompts_balanced_prefixes_and_seeded():
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 9)
    prompts = [f"p{i}" for i in range(len(labels))]
    out, out_labels = cycle_prompts(prompts, labels, 30, seed=3)
    for n in (3, 12, 30):  # every prefix of a multiple of K is exactly balanced
        assert torch.bincount(out_labels[:n], minlength=3).tolist() == [n // 3] * 3
    assert all(labels[int(p[1:])] == y for p, y in zip(out, out_labels.tolist(), strict=True))
    assert (out, out_labels.tolist()) == (lambda r: (r[0], r[1].tolist()))(
        cycle_prompts(prompts, labels, 30, 3)
    )
    assert (
        len({p for p, y in zip(out, out_labels.tolist(), strict=True) if y == 1}) == 2
    )  # a small class is cycled


def test_fit_to_and_cardinality():
    x = torch.rand(2, 3, 16, 16)
    assert fit_to(x, 8, 1).shape == (2, 1, 8, 8)
    assert fit_to(x[:, :1], 16, 3).shape == (2, 3, 16, 16)
    assert num_synthetic(0.5, 101) == 50 and num_synthetic(1e-6, 10) == 1


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny_generator.safetensors"
    Generator.build_tiny(image_size=8, seed=0, unet_overrides=SMALL_UNET, text_width=32).save_embedded(path)
    return path


def tiny_args(gen_path):
    return [
        "--generator", str(gen_path), "--set", "teacher.image_size=8", "--set", "teacher.epochs=1",
        "--set", "lora.steps=2", "--set", "sample_steps=2", "--set", "student.epochs=1",
        "--set", "num_shadows=2", "--set", "workers=1", "--set", "device=cpu",
    ]  # fmt: skip


def test_tckr_command_end_to_end_and_resume(tmp_path, tiny_generator):
    out = tmp_path / "run"
    args = ["tckr", "--out", str(out), "--cardinality", "0.05", "0.1", *tiny_args(tiny_generator)]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("teacher_acc", "student_acc", "student_hard_acc", "student_fixed_prompt_acc", "teacher_auc",
                "student_auc", "teacher_tpr_at_1pct_fpr", "student_tpr_at_1pct_fpr", "cardinality",
                "student_x0.05_auc", "student_x0.1_acc", "teacher_rmia_auc", "student_rmia_auc",
                "student_rmia_tpr_at_1pct_fpr", "student_x0.05_rmia_auc", "student_hard_rmia_auc",
                "teacher_auc_paper", "student_auc_paper", "teacher_aop", "student_aop"):  # fmt: skip
        assert key in m, key
    assert not [k for k in m if "0.1pct" in k]  # 360 held-out non-members: too few for 0.1% FPR
    n = num_synthetic(0.1, 1077)
    assert m["cardinality"] == 0.1 and m["num_synthetic"] == n
    assert m["student_acc"] == m["student_x0.1_acc"]
    for f in (
        "config.yaml",
        "samples.png",
        "tradeoff.png",
        "roc.png",
        "lora_caption/pytorch_lora_weights.safetensors",
        "split.json",
    ):
        assert (out / f).is_file(), f
    # the member split the audit of this run reads: the private train split, the held-out digits
    split = json.loads((out / "split.json").read_text())
    assert split["members"]["files"] == load_digits("train", 8).files
    assert split["nonmembers"]["files"] == load_digits("heldout", 8).files
    # the synthetic dataset holds exactly the generated images, with the teacher's soft labels
    files = sorted((out / "synthetic").rglob("*.png"))
    assert len(files) == n
    probs = json.loads((out / "synthetic" / "soft_labels_files.json").read_text())
    assert len(probs) == n
    synth = torch.tensor(np.stack([np.asarray(Image.open(f), dtype=np.float32) / 255 for f in files]))
    private = load_digits("train", 8).images.flatten(1)
    d = torch.cdist(synth.flatten(1), private).min(1).values
    assert d.min() > 0  # no private image copied into the synthetic folder
    # a second start resumes: nothing is retrained, the metrics are the same
    student = out / "students" / "soft_x0.1.safetensors"
    before = student.stat().st_mtime_ns
    assert main(args) == 0
    assert student.stat().st_mtime_ns == before
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["student_acc"] == m["student_acc"] and m2["teacher_auc"] == m["teacher_auc"]
    # `audit run`: the run's teacher, students and LoRA in one report
    audit = tmp_path / "audit"
    audit_args = ["audit", "run", "--out", str(audit), "--run", str(out), "--set", "num_generations=6",
                  "--set", "sample_steps=2", "--set", "device=cpu"]  # fmt: skip
    assert main(audit_args) == 0
    a = json.loads((audit / "metrics.json").read_text())
    assert a["teacher_auc"] == pytest.approx(m["teacher_auc"])  # the run's own scores, read back
    for key in ("teacher_eps_lower_bound", "student_x0.1_eps_lower_bound", "student_hard_auc", "lora_mia_pia_auc",
                "lora_leaked_images"):  # fmt: skip
        assert key in a, key
    md, page = (audit / "report.md").read_text(), (audit / "report.html").read_text()
    assert "## teacher" in md and "## student_hard" in md and "## The LoRA generator" in md
    assert page.count('src="data:image/png;base64,') >= 5  # four ROC figures and the leaks, inline


def test_tckr_bad_input(tmp_path, tiny_generator, capsys):
    out = tmp_path / "bad"
    assert main(["tckr", "--out", str(out), "--set", "cardinality=[0]", *tiny_args(tiny_generator)]) == 2
    err = capsys.readouterr().err
    assert "cardinality" in err and len(err.strip().splitlines()) == 1
    assert main(["tckr", "--out", str(tmp_path / "b2"), "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_tckr_on_class_names_the_tokenizer_does_not_know(tmp_path, tiny_generator, capsys):
    """Three digit classes renamed apple / bus / cat: the run names the words it adds, trains their
    rows with the LoRA and saves them beside it (the measured agreement: benchmarks/renamed_classes.py)."""
    from modelmine.data import ImageSet, save_image_folder
    from modelmine.diffusion.tokens import LEARNED_EMBEDS
    from modelmine.runs import load_tensors

    d = load_digits("train", 8)
    keep = d.labels < 3
    save_image_folder(
        tmp_path / "data", ImageSet(d.images[keep][:60], d.labels[keep][:60], ["apple", "bus", "cat"])
    )
    out = tmp_path / "run"
    assert main(["tckr", "--out", str(out), "--data", str(tmp_path / "data"), "--cardinality", "0.2",
                 *tiny_args(tiny_generator), "--set", "ablations=false"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "does not know 'apple', 'bus', 'cat'" in err
    rows = load_tensors(out / "lora_caption" / LEARNED_EMBEDS)
    assert sorted(rows) == ["apple", "bus", "cat"]
    init = Generator.embedded(tiny_generator)
    a = init.text_encoder.get_input_embeddings().weight[init.tokenizer.convert_tokens_to_ids("a")]
    assert all(not torch.allclose(v.flatten(), a.detach()) for v in rows.values())  # trained away from "a"
    assert json.loads((out / "metrics.json").read_text())["synthetic_teacher_agreement"] == pytest.approx(0.3)


def test_tckr_student_learns_at_the_generators_resolution(tmp_path, tiny_generator):
    """An 8-pixel generator and a 12-pixel teacher: the student is derived at 8 pixels (config.yaml),
    trained on the generated images as they are, and tested on the 12-pixel test images."""
    import yaml

    from modelmine.classifiers import read_classifier_info
    from modelmine.data import ImageSet, save_image_folder

    d = load_digits("train", 12)
    keep = d.labels < 2
    save_image_folder(tmp_path / "data", ImageSet(d.images[keep][:40], d.labels[keep][:40], ["zero", "one"]))
    out = tmp_path / "run"
    assert main(["tckr", "--out", str(out), "--data", str(tmp_path / "data"), "--cardinality", "0.5",
                 *tiny_args(tiny_generator), "--set", "teacher.image_size=12", "--set", "ablations=false"]) == 0  # fmt: skip
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["teacher"]["image_size"] == 12 and cfg["student"]["image_size"] == 8
    assert read_classifier_info(out / "students" / "soft_x0.5.safetensors").image_size == 8
    assert json.loads((out / "metrics.json").read_text())["student_acc"] == pytest.approx(0.625)  # seeded
