"""DDIS: targets and prompts, the BatchNorm requirement of DAG, CAT early stop, the command end to end."""

import json

import pytest
import torch

from _tiny import SMALL_UNET
from modelmine.classifiers import ClassifierInfo, build_classifier, save_classifier
from modelmine.cli import main
from modelmine.diffusion.generator import Generator
from modelmine.errors import UserError
from modelmine.methods.ddis import (
    DdisConfig,
    balanced_targets,
    cat_prompts,
    cat_tokens,
    dag_guidance,
    token_set,
    train_class_tokens,
)


def test_targets_and_prompts():
    t = balanced_targets(25, 10)
    assert torch.bincount(t[:20]).tolist() == [2] * 10 and t[20:].tolist() == [0, 1, 2, 3, 4]
    assert cat_prompts(torch.tensor([2, 0]), ["a0", "b1", "c2"]) == ["a <cat-2> c2", "a <cat-0> a0"]


def test_dag_refuses_a_teacher_without_batchnorm():
    with pytest.raises(UserError, match="BatchNorm") as e:
        dag_guidance(build_classifier("mlp", 10, 1, 8), 1.0)
    assert "dag=false" in str(e.value) and "\n" not in str(e.value)
    assert dag_guidance(build_classifier("cnn_small", 10, 1, 8), 1.0) is not None


def test_dag_forms_guide_the_samples():
    from modelmine.diffusion.guidance import CorrectXt, LossGradient
    from modelmine.diffusion.sampler import sample

    clf = build_classifier("cnn_small", 3, 1, 8).eval().requires_grad_(False)
    gen = _tiny_gen()
    assert isinstance(dag_guidance(clf, 1.0), LossGradient)  # the default form: after the prediction
    assert isinstance(dag_guidance(clf, 1.0, "x_t"), CorrectXt)  # the paper's: x_t before it
    plain = sample(gen, ["a one"] * 4, steps=2, seed=0)
    for form in ("eps", "x_t"):
        guided = sample(gen, ["a one"] * 4, steps=2, seed=0, guidance=[dag_guidance(clf, 50.0, form)])
        assert guided.shape == plain.shape and not torch.allclose(guided, plain)


def _tiny_gen():
    return Generator.build_tiny(image_size=8, seed=0, unet_overrides=SMALL_UNET, text_width=32)


def test_cat_trains_only_its_tokens_and_stops_early():
    names = ["zero", "one", "two"]
    clf = build_classifier("cnn_small", 3, 1, 8).eval().requires_grad_(False)
    cfg = DdisConfig(cat_iters=2, cat_per_class=2, cat_steps=2, cat_lr=0.1)
    gen = _tiny_gen()
    before = gen.text_encoder.get_input_embeddings().weight.detach().clone()
    summary = train_class_tokens(gen, clf, names, cfg)
    after = gen.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(after[: before.shape[0]], before)  # the vocabulary is untouched
    assert after.shape[0] == before.shape[0] + 3 and summary["cat_iters"] >= 1
    # with a threshold of 0 every class stops at once and keeps its starting embedding (its class word)
    gen = _tiny_gen()
    summary = train_class_tokens(
        gen, clf, names, DdisConfig(cat_iters=3, cat_per_class=2, cat_steps=2, cat_stop_acc=0.0)
    )
    w = gen.text_encoder.get_input_embeddings().weight.detach()
    words = [gen.tokenizer(n, add_special_tokens=False).input_ids[0] for n in names]
    assert summary["cat_iters"] == 2 and summary["cat_classes_stopped"] == 3  # the 2nd iteration finds none
    assert torch.equal(w[gen.tokenizer.convert_tokens_to_ids(cat_tokens(3))], w[words])


def test_cat_trains_on_dag_guided_samples_and_the_ablation_gets_its_own_tokens():
    names = ["zero", "one", "two"]
    clf = build_classifier("cnn_small", 3, 1, 8).eval().requires_grad_(False)
    cfg = DdisConfig(cat_iters=1, cat_per_class=2, cat_steps=2, cat_lr=0.1, cat_stop_acc=2.0)
    rows = []
    for guidance in ([], [dag_guidance(clf, 50.0)]):
        gen = _tiny_gen()
        train_class_tokens(gen, clf, names, cfg, guidance=guidance)
        rows.append(gen.text_encoder.get_input_embeddings().weight[-3:].detach().clone())
    assert not torch.allclose(rows[0], rows[1])  # DAG changes the samples the CE gradient comes from
    assert token_set(cfg, "ddis") == ("cat", True)
    assert token_set(cfg, "cat_only") == ("cat_only_tokens", False)
    off = DdisConfig(cat_with_dag=False)
    assert token_set(off, "ddis") == token_set(off, "cat_only") == ("cat", False)
    assert token_set(DdisConfig(dag=False), "cat_only") == ("cat", False)


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny_generator.safetensors"
    _tiny_gen().save_embedded(path)
    return path


def tiny_args(gen_path):
    return [
        "--generator", str(gen_path), "--set", "teacher.image_size=8", "--set", "teacher.epochs=1",
        "--set", "num_images=20", "--set", "batch_size=10", "--set", "sample_steps=2",
        "--set", "cat_iters=2", "--set", "cat_steps=2", "--set", "cat_per_class=1",
        "--set", "student.epochs=1", "--set", "workers=1", "--set", "device=cpu",
    ]  # fmt: skip


def test_ddis_command_end_to_end_and_resume(tmp_path, tiny_generator):
    out = tmp_path / "run"
    assert main(["ddis", "--out", str(out), *tiny_args(tiny_generator)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for p in ("", "plain_", "dag_only_", "cat_only_"):
        for k in ("fid", "precision", "recall", "teacher_acc_on_synthetic", "student_acc"):
            assert f"{p}{k}" in m, p + k
    assert (out / "cat" / "learned_embeds.safetensors").is_file()
    assert (out / "cat_only_tokens" / "learned_embeds.safetensors").is_file()  # trained without DAG
    assert len(list((out / "synthetic").rglob("*.png"))) == 20
    assert (out / "grid_ddis.png").is_file() and (out / "config.yaml").is_file()
    student = out / "students" / "ddis.safetensors"
    before = student.stat().st_mtime_ns
    assert main(["ddis", "--out", str(out), *tiny_args(tiny_generator)]) == 0
    assert student.stat().st_mtime_ns == before
    assert json.loads((out / "metrics.json").read_text())["student_acc"] == m["student_acc"]


def test_ddis_teacher_without_batchnorm(tmp_path, tiny_generator, capsys):
    path = tmp_path / "mlp.safetensors"
    save_classifier(
        path, build_classifier("mlp", 10, 1, 8), ClassifierInfo("mlp", 10, 1, 8, [str(i) for i in range(10)])
    )
    args = ["ddis", "--out", str(tmp_path / "r"), "--teacher", str(path), *tiny_args(tiny_generator)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "BatchNorm" in err and len(err.strip().splitlines()) == 1
