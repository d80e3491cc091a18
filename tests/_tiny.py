"""A tiny random text-to-image generator for tests (the diffusers-tests way: small widths, seeded)."""

from modelmine.diffusion.generator import Generator

SMALL_UNET = dict(block_out_channels=[8, 16, 16], norm_num_groups=4)


def tiny(seed: int = 0) -> Generator:
    return Generator.build_tiny(seed=seed, unet_overrides=SMALL_UNET, text_width=32)
