"""The teacher: the classifier every method distils from or audits, and the `teacher` command.

A method takes a user's classifier file (``teacher.path``, safetensors) or trains the default one
(``TeacherConfig``: the ``cnn`` preset on the private training data) once and caches it in its run
folder as ``teacher.safetensors``; :func:`obtain_teacher` is that one path. ``modelmine teacher``
trains and tests it on its own (:func:`run_teacher`).

The default recipe: AdamW, one-cycle, about ``TEACHER_STEPS`` steps, random shifts of up to
``augment`` pixels, and faint uniform pixel noise (amplitude up to ``noise``) added to half of each
batch. The noise is there because every generative method labels *generated* images with this
teacher: a teacher trained only on exactly black backgrounds reads the faint background a small
pixel-space generator leaves as a cue for one class, and then disagrees with most generated images;
``benchmarks/background_noise.py`` measures it. ``--set teacher.noise=0`` is the plain recipe.
LiRA's shadow models take the same recipe.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .classifiers import (
    ClassifierInfo,
    build_classifier,
    check_compatible,
    evaluate,
    load_classifier,
    save_classifier,
    train_classifier,
)
from .config import Runtime
from .data import (
    dataset_channels,
    dataset_num_classes,
    dataset_size,
    dataset_train_size,
    load_image_folder,
    resolve,
)
from .distributed import processes, resolve_device
from .errors import UserError
from .runs import Run


# --------------------------------------------------------------------------------------------
@dataclass
class TeacherConfig:
    """How the default teacher is trained (or which file to load instead)."""

    path: str | None = None  # a classifier .safetensors; None trains the default on the private data
    preset: str = "cnn"
    # None: about TEACHER_STEPS optimiser steps whatever the data size (resolved before config.yaml)
    epochs: int | None = None
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 5e-4
    augment: float = 1.0  # max random shift in pixels
    # max amplitude of faint uniform pixel noise on half of each batch: generated images have faint
    # backgrounds that a teacher trained only on black ones reads as one class (background_noise.py)
    noise: float = 0.1
    image_size: int | None = None  # None: derived from the data (resolved before config.yaml is written)
    seed: int = 0


# The default teacher's budget in optimiser steps, so its cost grows with the image size and not with
# the number of images: 512 steps of batch 64 are 30 epochs on the 1,077 private digits.
TEACHER_STEPS = 512


@dataclass
class TeacherRunConfig(Runtime):
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: str = "digits"  # built-in dataset (digits, mnist5k) or ImageFolder to train on
    test_data: str | None = None  # ImageFolder to test on; none: the test split of `data`


def data_num_classes(cfg: TeacherConfig, data: str) -> int:
    """How many classes the teacher has: a given teacher file's, else the data's."""
    if cfg.path is not None:
        return load_classifier(cfg.path, cfg.preset)[1].num_classes
    return dataset_num_classes(data)


def resolve_teacher(cfg, data: str, test_data: str | None = None):
    """``cfg`` (any config with a ``teacher`` section) with the teacher settings that depend on the
    data filled in, before ``config.yaml`` is written: ``image_size`` (a given teacher file's own,
    else the size of the data the default teacher trains on) and ``epochs`` (about
    :data:`TEACHER_STEPS` optimiser steps on that data)."""

    t = cfg.teacher
    if t.image_size is None:
        size = load_classifier(t.path, t.preset)[1].image_size if t.path is not None else dataset_size(data)
        t = dataclasses.replace(t, image_size=size)
    if t.epochs is None:
        steps_per_epoch = max(1, math.ceil(max(1, dataset_train_size(data, test_data)) / t.batch_size))
        t = dataclasses.replace(t, epochs=max(1, round(TEACHER_STEPS / steps_per_epoch)))
    return dataclasses.replace(cfg, teacher=t)


def teacher_channels(t: TeacherConfig, data: str) -> int:
    """The image channels the teacher ``t`` reads: a given file's own, else those of the data the
    default teacher trains on."""
    return load_classifier(t.path, t.preset)[1].in_channels if t.path is not None else dataset_channels(data)


def load_train_test(data: str, test_data: str | None, image_size: int, seed: int = 0):
    """``(train, test)`` of :func:`modelmine.data.resolve`: what a teacher trains and is scored on."""
    splits = resolve(data, image_size, test_data=test_data, seed=seed)
    return splits.train, splits.test


def load_test_set(
    test_data: str | None, info: ClassifierInfo, user_teacher: bool = False, data: str = "digits"
):
    """The real test set a distilled student is scored on: an ImageFolder, or the test split of the
    built-in dataset ``data``.

    It must fit the classifier ``info`` (one-line ``UserError`` otherwise, pointing a user-supplied
    teacher to ``--test-data``).
    """

    if test_data is not None:
        test = load_image_folder(
            test_data, size=info.image_size, channels=info.in_channels, class_names=info.class_names
        )
    else:  # the test split of the private data
        test = resolve(data, info.image_size).test
        try:
            check_compatible(info, test.image_shape, test.num_classes, f"the default {data} test set")
        except UserError as e:
            if user_teacher:
                raise UserError(
                    f"{e}; pass --test-data with an ImageFolder test set for this teacher"
                ) from None
            raise
    check_compatible(info, test.image_shape, test.num_classes, "test data")
    return test


def teacher_file(cfg: TeacherConfig, out_dir: str | Path) -> Path:
    """Where a run's teacher is: ``cfg.path`` when given, else ``out_dir/teacher.safetensors``."""
    return Path(cfg.path) if cfg.path is not None else Path(out_dir) / "teacher.safetensors"


def load_teacher(cfg: TeacherConfig, out_dir: str | Path) -> tuple[nn.Module, ClassifierInfo]:
    """The teacher :func:`obtain_teacher` provided for a run in ``out_dir`` (in worker processes)."""
    return load_classifier(teacher_file(cfg, out_dir), cfg.preset if cfg.path is not None else None)


def obtain_teacher(
    cfg: TeacherConfig,
    out_dir: Path,
    train_set=None,
    device: str | torch.device = "cpu",
    data: str = "digits",
):
    """The teacher a method uses: ``cfg.path`` if given, else trained (once; cached in ``out_dir``).

    Returns ``(model, info)``. Training uses ``train_set``, else the train split of ``data`` (a
    built-in dataset or a folder, less its held-out 20%).
    """
    cached = teacher_file(cfg, out_dir)
    if cfg.path is not None or cached.exists():
        return load_teacher(cfg, out_dir)
    train = train_set if train_set is not None else load_train_test(data, None, cfg.image_size, cfg.seed)[0]
    c = train.images.shape[1]
    model = build_classifier(cfg.preset, train.num_classes, c, cfg.image_size, seed=cfg.seed)
    train_classifier(
        model, train.images, train.labels, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        weight_decay=cfg.weight_decay, augment=cfg.augment, noise=cfg.noise, seed=cfg.seed,
        device=device,
        progress=True, desc="teacher",
    )  # fmt: skip
    info = ClassifierInfo(cfg.preset, train.num_classes, c, cfg.image_size, list(train.class_names))
    save_classifier(cached, model, info)
    return model.cpu(), info


def obtain_frozen_teacher(
    cfg: TeacherConfig, out_dir: Path, device: str | torch.device = "cpu", data: str = "digits"
) -> tuple[nn.Module, ClassifierInfo]:
    """:func:`obtain_teacher` (the default trained on the train split of ``data``), on ``device``, in
    eval mode, with gradients off for its parameters: what synthesis differentiates."""
    teacher, info = obtain_teacher(cfg, out_dir, None, device, data)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, info


def open_data_free_run(
    cfg, out: Path, check: Callable[[nn.Module], None] | None = None, derive: Callable | None = None
):
    """What a data-free method (CAKE, DeepInversion, DDIS) starts from, for a config with ``teacher``,
    ``data``, ``test_data`` and ``device``: returns ``(cfg, run, device, teacher, info, test)``.

    ``cfg`` comes back with the teacher settings derived from the data (:func:`resolve_teacher`) and
    is written to ``run``'s ``config.yaml``; ``teacher`` is frozen (:func:`obtain_frozen_teacher`,
    trained once on ``data`` on the main process of a launch, the others load it); ``check(teacher)``
    runs before the test set is read (e.g. the method's BatchNorm requirement), so an error about the
    teacher itself comes first; ``derive(cfg) -> cfg`` resolves the method's own data-dependent
    settings once the teacher's are known, before ``config.yaml`` is written; ``test`` is the real test
    set the student is scored on (:func:`load_test_set`).
    """

    cfg = resolve_teacher(cfg, cfg.data, cfg.test_data)
    if derive is not None:
        cfg = derive(cfg)
    run = Run(out, cfg)
    device = resolve_device(cfg.device)
    with processes().main_first():
        teacher, info = obtain_frozen_teacher(cfg.teacher, run.dir, device, cfg.data)
    if check is not None:
        check(teacher)
    test = load_test_set(cfg.test_data, info, user_teacher=cfg.teacher.path is not None, data=cfg.data)
    return cfg, run, device, teacher, info, test


def run_teacher(cfg: TeacherRunConfig, out: Path) -> dict:
    """`modelmine teacher`: train the default teacher; metrics ``teacher_acc``, ``train_seconds``."""

    cfg = resolve_teacher(cfg, cfg.data, cfg.test_data)
    run = Run(out, cfg)
    device = resolve_device(cfg.device)
    train, test = load_train_test(cfg.data, cfg.test_data, cfg.teacher.image_size, cfg.teacher.seed)
    t0 = time.time()
    model, info = obtain_teacher(cfg.teacher, run.dir, train, device)
    check_compatible(info, tuple(test.images.shape[1:]), test.num_classes, "test data")
    seconds = time.time() - t0
    acc = evaluate(model, test.images, test.labels, device=device)
    prev = run.metrics().get("train_seconds")
    return run.log_metrics(
        teacher_acc=acc, train_seconds=prev if prev is not None else seconds, num_train=len(train)
    )
