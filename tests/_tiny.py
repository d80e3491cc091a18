"""Tiny shared test settings: a random text-to-image generator (the diffusers-tests way: small widths,
seeded) and the smallest data-free distillation run."""

from modelmine.diffusion.generator import Generator

SMALL_UNET = dict(block_out_channels=[8, 16, 16], norm_num_groups=4)


def tiny(seed: int = 0, **scheduler) -> Generator:
    """``scheduler``: entries that replace the embedded scheduler config's (``prediction_type``, ...)."""
    return Generator.build_tiny(
        seed=seed, unet_overrides=SMALL_UNET, text_width=32, scheduler_overrides=scheduler
    )


# CAKE / DeepInversion through the CLI in seconds: 2 batches of 20 samples, 3 steps, 8x8 images.
TINY_DATA_FREE_ARGS = [
    "--set", "num_batches=2", "--set", "batch_size=20", "--set", "num_steps=3",
    "--set", "student.epochs=1", "--set", "student.preset=mlp", "--set", "teacher.epochs=1",
    "--set", "teacher.image_size=8", "--set", "device=cpu",
]  # fmt: skip
