"""Textual-inversion tokens: only the new row trains; learned_embeds.safetensors round trip."""

import pytest
import torch

from _tiny import tiny
from modelmine.diffusion.tokens import (
    add_placeholder_tokens,
    load_learned_embeds,
    save_learned_embeds,
    train_textual_inversion,
)
from modelmine.errors import UserError


def test_add_token_initialised_from_word():
    gen = tiny()
    (tid,) = add_placeholder_tokens(gen, ["<t1>"], init_word="digit")
    emb = gen.text_encoder.get_input_embeddings().weight
    did = gen.tokenizer.convert_tokens_to_ids("digit")
    assert torch.equal(emb[tid], emb[did]) and emb.shape[0] == len(gen.tokenizer)
    with pytest.raises(UserError):
        add_placeholder_tokens(gen, ["<t1>"])
    with pytest.raises(UserError):
        add_placeholder_tokens(gen, ["<t2>"], init_word="no such words")


def test_textual_inversion_trains_only_its_row_and_round_trips(tmp_path):
    gen = tiny()
    before_unet = {k: v.clone() for k, v in gen.unet.state_dict().items()}
    before_emb = gen.text_encoder.get_input_embeddings().weight.detach().clone()
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    vec = train_textual_inversion(gen, images, "<tok>", templates=("a {t} three",), steps=3, batch_size=4)
    tid = gen.tokenizer.convert_tokens_to_ids("<tok>")
    after = gen.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(after[: before_emb.shape[0]], before_emb)  # old rows untouched
    assert torch.equal(after[tid], vec)
    assert all(torch.equal(v, gen.unet.state_dict()[k]) for k, v in before_unet.items())

    path = save_learned_embeds(gen, ["<tok>"], tmp_path)
    assert path.name == "learned_embeds.safetensors"
    fresh = tiny()
    assert load_learned_embeds(fresh, path) == ["<tok>"]
    with torch.no_grad():
        a = gen.encode_prompt(["A <tok> three"])
        b = fresh.encode_prompt(["A <tok> three"])
    assert torch.allclose(a, b, atol=1e-6)
