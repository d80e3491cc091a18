"""DDIS: targets and prompts, the BatchNorm requirement of DAG, CAT early stop, the command end to end."""

import json

import pytest
import torch

from _tiny import SMALL_UNET
from modelmine.classifiers import ClassifierInfo, build_classifier, save_classifier
from modelmine.cli import main
from modelmine.diffusion.generator import BASE_WORDS, Generator
from modelmine.diffusion.sampler import ddim_timesteps, sample
from modelmine.errors import UserError
from modelmine.methods.ddis import (
    PLAIN_PROMPT,
    DdisConfig,
    balanced_targets,
    cat_prompts,
    cat_tokens,
    dag_guidance,
    dag_guides,
    dag_step_sizes,
    plain_prompts,
    token_set,
    train_class_tokens,
)


def test_targets_and_prompts():
    t = balanced_targets(25, 10)
    assert torch.bincount(t[:20]).tolist() == [2] * 10 and t[20:].tolist() == [0, 1, 2, 3, 4]
    assert cat_prompts(torch.tensor([2, 0]), ["a0", "b1", "c2"]) == ["a <cat-2> c2", "a <cat-0> a0"]
    # the plain ablation's default prompt is CAT's without the token
    assert plain_prompts(torch.tensor([2]), ["a0", "b1", "c2"], PLAIN_PROMPT) == ["a c2"]


def test_quality_metrics_compare_with_real_images_the_feature_classifier_did_not_fit():
    from modelmine.methods.ddis import DdisConfig, reference_images

    fit, reference = reference_images(DdisConfig(), 8, 1, [str(i) for i in range(10)])
    assert abs(len(fit) - len(reference)) <= 1 and len(fit) + len(reference) == 1077
    assert not set(map(tuple, fit.images.flatten(1).tolist())) & set(
        map(tuple, reference.images.flatten(1).tolist())
    )


def test_dag_refuses_a_teacher_without_batchnorm():
    with pytest.raises(UserError, match="BatchNorm") as e:
        dag_guidance(build_classifier("mlp", 10, 1, 8), steps=2)
    assert "dag=false" in str(e.value) and "\n" not in str(e.value)
    dag_guidance(build_classifier("cnn_small", 10, 1, 8), steps=2)  # with BatchNorm: no error


def _bn_teacher(num_classes: int = 3):
    """A cnn_small with running statistics far from those of the tiny generator's images."""
    clf = build_classifier("cnn_small", num_classes, 1, 8, seed=0).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in clf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return clf


def test_dag_forms_guide_the_samples():
    from modelmine.diffusion.guidance import LossGradient

    clf = _bn_teacher()
    gen = _tiny_gen()
    assert DdisConfig().dag_input == "x_t"  # the paper's form is the default
    assert isinstance(dag_guidance(clf, "x0_hat", scale=1.0), LossGradient)  # after the prediction
    with pytest.raises(ValueError, match="steps"):
        dag_guidance(clf, "x_t")  # its step sizes follow the DDIM schedule
    plain = sample(gen, ["a one"] * 4, steps=3, seed=0)
    for guide in (dag_guidance(clf, "x0_hat", scale=50.0), dag_guidance(clf, "x_t", steps=3, step=50.0)):
        guided = sample(gen, ["a one"] * 4, steps=3, seed=0, guidance=[guide])
        assert guided.shape == plain.shape and not torch.allclose(guided, plain)


def test_dag_on_x_t_moves_the_sample_before_the_unet_and_not_on_the_last_step():
    """Through DDIS's own guides for a config: a spy inside DAG sees the state the UNet predicts at,
    a spy outside it the loop's state. They differ by the correction, of RMS ``dag_step_sizes(t)``,
    on every step but the last, where the UNet sees the loop's state unchanged."""
    clf = _bn_teacher()
    gen = _tiny_gen()
    steps = 4
    cfg = DdisConfig(dag_step=3.0)
    inner, outer = [], []

    def spy(seen):
        def guide(eps_fn, gen, c):
            def eps(x_t, t):
                seen.append((t, x_t.detach().clone()))
                return eps_fn(x_t, t)

            return eps

        return guide

    guides = [spy(inner), *dag_guides(clf, cfg, steps), spy(outer)]  # each wraps the one before it
    sample(gen, ["a one"] * 4, steps=steps, seed=0, guidance=guides)
    sizes = dag_step_sizes(gen, steps, cfg.dag_step)
    ts, _ = ddim_timesteps(gen, steps)
    assert [t for t, _ in inner] == [t for t, _ in outer] == ts and sorted(sizes) == sorted(ts[:-1])
    for (t, x_in), (_, x_out) in zip(inner[:-1], outer[:-1], strict=True):
        rms = (x_out - x_in).pow(2).mean().sqrt().item()
        assert rms == pytest.approx(sizes[t], rel=1e-4) and sizes[t] > 0
    assert torch.equal(inner[-1][1], outer[-1][1])  # the last step is not corrected (official code)


def test_dag_step_sizes_follow_the_training_schedule():
    gen = _tiny_gen()
    a = gen.scheduler.alphas_cumprod.double()
    ts, _ = ddim_timesteps(gen, 5)
    sizes = dag_step_sizes(gen, 5, 2.0)
    assert list(sizes) == ts[:-1]  # every DDIM step but the last
    for t, s in sizes.items():
        assert s == pytest.approx(2.0 * float(a[t - 1] - a[t]) ** 0.5)
    assert dag_step_sizes(gen, 1) == {}  # one step: it is the last, no DAG


# today's DAG (the gradient on x0_hat added to the prediction, every step) before dag_input existed:
# sample(gen, ["a one"] * 4, steps=3, seed=0, guidance=[dag_guidance(clf, 50.0)]) at commit b02b09e
PINNED_X0_HAT = (116.74592453241348, 102.8055105805397, [0.00035128, 0.00115597, 0.23654303, 0.00090384])


def test_dag_on_x0_hat_reproduces_the_previous_default_form():
    from modelmine.bn_statistics import BNStatistics
    from modelmine.diffusion.guidance import LossGradient

    clf = _bn_teacher()
    gen = _tiny_gen()
    cfg = DdisConfig(dag_input="x0_hat", dag_scale=50.0)
    x = sample(gen, ["a one"] * 4, steps=3, seed=0, guidance=dag_guides(clf, cfg, 3))
    total, spread, first = PINNED_X0_HAT
    assert x.double().sum().item() == pytest.approx(total, rel=1e-6)
    assert x.double().sub(0.5).abs().sum().item() == pytest.approx(spread, rel=1e-6)
    assert x.flatten()[:4].tolist() == pytest.approx(first, abs=1e-6)
    stats = BNStatistics(clf, "DAG", deferred=True)

    def bn_loss(images, t):
        with stats:
            clf(images)
        return stats.loss()

    by_hand = sample(gen, ["a one"] * 4, steps=3, seed=0, guidance=[LossGradient(bn_loss, 50.0)])
    assert torch.equal(x, by_hand)


# the vocabulary before the broader prior added words: the pinned numbers above depend on the
# tiny text encoder's (seeded) initialisation, hence on its vocabulary size
PINNED_WORDS = BASE_WORDS[:93]


def _tiny_gen():
    return Generator.build_tiny(
        image_size=8, seed=0, unet_overrides=SMALL_UNET, text_width=32, words=PINNED_WORDS
    )


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
    # with a threshold of 0 every class stops at once and keeps its starting embedding: the word "a"'s
    # (the official initializer_token)
    gen = _tiny_gen()
    summary = train_class_tokens(
        gen, clf, names, DdisConfig(cat_iters=3, cat_per_class=2, cat_steps=2, cat_stop_acc=0.0)
    )
    w = gen.text_encoder.get_input_embeddings().weight.detach()
    (a,) = gen.tokenizer("a", add_special_tokens=False).input_ids
    assert summary["cat_iters"] == 2 and summary["cat_classes_stopped"] == 3  # the 2nd iteration finds none
    assert torch.equal(w[gen.tokenizer.convert_tokens_to_ids(cat_tokens(3))], w[[a] * 3])
    with pytest.raises(UserError, match="cat_init"):
        train_class_tokens(_tiny_gen(), clf, names, DdisConfig(cat_init="two words"))


def test_a_class_the_classifier_never_accepts_falls_back_to_its_start_or_keeps_its_lowest_loss_token():
    """A classifier that never predicts class 2: its token never stops; "start" (default) gives it
    back its starting embedding, "best" (official) the one of its lowest cross-entropy, "last" the
    final update's."""

    class Never(torch.nn.Module):
        def forward(self, x):
            s = x.mean((1, 2, 3))
            return torch.stack([10 * s, -10 * s, torch.full_like(s, -50.0)], 1)

    names = ["zero", "one", "two"]
    tokens = {}
    for keep in ("start", "best", "last"):
        gen = _tiny_gen()
        cfg = DdisConfig(cat_iters=4, cat_per_class=2, cat_steps=2, cat_lr=0.5, cat_keep=keep)
        summary = train_class_tokens(gen, Never(), names, cfg)
        ids = gen.tokenizer.convert_tokens_to_ids(cat_tokens(3))
        tokens[keep] = gen.text_encoder.get_input_embeddings().weight.detach()[ids].clone()
        losses = [h["loss"] for h in summary["cat_history"]]
    assert summary["cat_iters"] == 4 and not torch.equal(tokens["best"][2], tokens["last"][2])
    (a,) = gen.tokenizer("a", add_special_tokens=False).input_ids
    start = gen.text_encoder.get_input_embeddings().weight.detach()[a]
    assert torch.equal(tokens["start"][2], start) and not torch.equal(tokens["last"][2], start)
    assert summary["cat_best_loss"][2] > 40 and len(losses) == 4  # class 2's logit sits 50 below


def test_cat_trains_on_dag_guided_samples_and_the_ablation_gets_its_own_tokens():
    names = ["zero", "one", "two"]
    clf = build_classifier("cnn_small", 3, 1, 8).eval().requires_grad_(False)
    # one update, kept ("best" would keep the embedding the only loss was measured at: the start)
    cfg = DdisConfig(cat_iters=1, cat_per_class=2, cat_steps=2, cat_lr=0.1, cat_stop_acc=2.0, cat_keep="last")
    rows = []
    for guidance in ([], dag_guides(clf, DdisConfig(dag_step=50.0), cfg.cat_steps)):
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
        for k in ("fid", "precision", "recall", "inception_score", "teacher_acc_on_synthetic", "student_acc"):
            assert f"{p}{k}" in m, p + k
        assert 1 <= m[f"{p}inception_score"] <= 10  # exp(KL) over 10 classes
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


def test_dag_follows_the_sampler_and_ddis_runs_with_dpmpp_2m(tmp_path, tiny_generator):
    """DAG corrects every step but the last of whichever loop samples; the command takes
    ``--set sampler=dpmpp_2m`` and records it."""
    from modelmine.diffusion.sampler import dpm_schedule

    gen = _tiny_gen()
    gen.sampler = "dpmpp_2m"
    assert sorted(dag_step_sizes(gen, 4), reverse=True) == dpm_schedule(gen, 4).timesteps[:-1]
    out = tmp_path / "run"
    assert main(["ddis", "--out", str(out), *tiny_args(tiny_generator), "--set", "sampler=dpmpp_2m"]) == 0
    assert "sampler: dpmpp_2m" in (out / "config.yaml").read_text()
