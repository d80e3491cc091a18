"""Generator: offline tokenizer, save/load round trips, encode/decode shapes."""

import pytest
import torch

from _tiny import tiny
from modelmine.diffusion.generator import EMBEDDED_WEIGHTS, Generator
from modelmine.errors import UserError


def test_tokenizer_known_unknown_and_added_words():
    gen = tiny()
    tok = gen.tokenizer
    ids = tok(["a photo of digit three", "three: thick leaning right", "a xyzzy three"]).input_ids
    assert ids[0][0] == tok.bos_token_id and ids[0][-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids[0] + ids[1]
    assert tok.unk_token_id in ids[2]  # unknown words map to <unk>, no crash
    assert tok.add_tokens(["<tok>"]) == 1
    tid = tok.convert_tokens_to_ids("<tok>")
    assert tid in tok("A <tok> three").input_ids
    assert gen.tokenize(["x"] * 2).shape == (2, tok.model_max_length)


def test_encode_prompt_and_decode_shapes():
    gen = tiny()
    with torch.no_grad():
        e = gen.encode_prompt(["a photo of digit one", "two"])
    assert e.shape == (2, gen.tokenizer.model_max_length, 32)
    x = torch.rand(3, 1, 16, 16)
    z = gen.encode_images(x)
    assert z.shape == (3, *gen.latent_shape)
    assert torch.allclose(gen.decode(z), x, atol=1e-6)


def _outputs(gen):
    torch.manual_seed(0)
    x = torch.randn(2, *gen.latent_shape)
    with torch.no_grad():
        e = gen.encode_prompt(["a photo of digit one", "seven: thin upright"])
        return gen.unet(x, torch.tensor([10, 500]), e).sample


def test_save_embedded_round_trip(tmp_path):
    gen = tiny(seed=3)
    gen.defaults = {"steps": 7, "cfg": 2.0}
    path = tmp_path / "embedded_generator.safetensors"
    gen.save_embedded(path)
    back = Generator.embedded(path)
    assert back.defaults == {"steps": 7, "cfg": 2.0}
    assert torch.equal(_outputs(gen), _outputs(back))


def test_from_pretrained_diffusers_folder(tmp_path):
    gen = tiny(seed=4)
    gen.save_pretrained(tmp_path / "sd")
    back = Generator.from_pretrained(tmp_path / "sd")
    assert back.vae is None and not (tmp_path / "sd" / "vae").exists()  # a pixel-space model: no VAE
    assert (back.image_size, back.channels) == (gen.image_size, gen.channels)
    assert torch.allclose(_outputs(gen), _outputs(back), atol=1e-6)
    with pytest.raises(UserError):
        Generator.from_pretrained(tmp_path)  # not an SD folder


def test_from_pretrained_latent_model_with_vae(tmp_path):
    from diffusers import AutoencoderKL

    gen = tiny(seed=5)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 8], latent_channels=1,
        norm_num_groups=4, sample_size=32,
    )  # fmt: skip
    gen.vae = vae
    gen.save_pretrained(tmp_path / "sd")
    back = Generator.from_pretrained(tmp_path / "sd")
    assert back.vae is not None and back.image_size == 32 and back.channels == 3
    with torch.no_grad():
        z = back.encode_images(torch.rand(2, 3, 32, 32))
        assert z.shape == (2, 1, 16, 16)
        img = back.decode(z)
    assert img.shape == (2, 3, 32, 32) and img.min() >= 0 and img.max() <= 1


@pytest.mark.skipif(not EMBEDDED_WEIGHTS.exists(), reason="embedded weights not shipped yet")
def test_shipped_embedded_generator_loads():
    gen = Generator.embedded()
    assert gen.vae is None and gen.image_size == 16 and gen.channels == 1
    assert sum(gen.num_parameters().values()) < 3_000_000
