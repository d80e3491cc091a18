"""modelmine: move knowledge between models and data, and audit what leaks.

Public API: datasets (:mod:`modelmine.data`), classifiers, distillation, configs and run folders.
Methods live in :mod:`modelmine.methods` and run through ``modelmine <command>``.
"""

import importlib

# name -> submodule; read on first access (PEP 562), so `modelmine --help` does not import torch
_PUBLIC = {
    "ImageSet": "data", "load_digits": "data", "load_image_folder": "data", "render_glyphs": "data",
    "save_image_folder": "data", "build_classifier": "classifiers", "evaluate": "classifiers",
    "load_classifier": "classifiers", "save_classifier": "classifiers", "train_classifier": "classifiers",
    "kd_loss": "distill", "train_student": "distill", "UserError": "errors",
}  # fmt: skip
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'modelmine' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)


__version__ = "0.1.0"
