"""Open vocabulary (issue 18): prompt words the tokenizer does not know become new tokens whose rows
train with the fine-tuning, are saved beside the LoRA and load back (ours and diffusers')."""

from __future__ import annotations

import pytest
import torch

from _tiny import tiny
from modelmine.diffusion.finetune import TrainSettings, finetune_or_load, new_word_rows
from modelmine.diffusion.tokens import LEARNED_EMBEDS, NEW_WORD_INIT, unknown_words

PROMPTS = ["brick: a thin brick", "Grass: a thick stroke", "brick: leaning left", "grass: the three"]
KNOWN = ["a photo of digit three", "seven: thin leaning left, on the right", "the", "9: bold italic ink"]


def _embeds(gen) -> torch.Tensor:
    return gen.text_encoder.get_input_embeddings().weight.detach().clone()


def _train(gen, folder, prompts=PROMPTS, steps=3):
    images = torch.rand(
        len(prompts), gen.channels, gen.image_size, gen.image_size, generator=torch.Generator().manual_seed(1)
    )
    settings = TrainSettings(steps=steps, batch_size=4, lr=1e-2, seed=0, rank=2, alpha=2.0)
    return finetune_or_load(gen, folder, "lora", images, prompts, settings, checkpoint=folder / "ck.pt")


def test_unknown_words_get_new_ids_and_one_note(capsys):
    gen = tiny()
    unk = gen.tokenizer.unk_token_id
    assert unknown_words(gen.tokenizer, PROMPTS + KNOWN) == ["brick", "grass"]  # normalised, sorted
    assert unknown_words(gen.tokenizer, KNOWN) == []
    words, rows = new_word_rows(gen, PROMPTS)
    assert words == ["brick", "grass"] and unk not in rows and len(set(rows)) == 2
    ids = gen.tokenize(["Brick grass bricks"])[0].tolist()
    assert ids[1:4] == [*rows, unk]  # whole words only: "bricks" is still unknown
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'brick', 'grass'" in err[0] and f"'{NEW_WORD_INIT}'" in err[0]
    init = gen.tokenizer.convert_tokens_to_ids(NEW_WORD_INIT)
    assert torch.equal(_embeds(gen)[rows[0]], _embeds(gen)[init])
    assert unknown_words(gen.tokenizer, PROMPTS) == []


def test_known_words_tokenize_as_before():
    """Digit prompts are untouched, even with new words that are parts of known ones ("he" in "the")."""
    gen = tiny()
    before = gen.tokenize(KNOWN)
    new_word_rows(gen, ["he in", "igit zz"])  # "in" is known; "he", "igit", "zz" are not
    assert torch.equal(gen.tokenize(KNOWN), before)


def test_byte_level_bpe_has_no_unknown_words():
    """A tokenizer that spells every word (CLIP's byte-level BPE) never gets new tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]
    )
    bpe.train_from_iterator(["a photo of digit three"], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<|endoftext|>")
    assert unknown_words(tok, PROMPTS + ["über Ziegel 🧱"]) == []


def test_finetune_trains_only_new_rows_and_round_trips(tmp_path, capsys):
    gen = tiny()
    before = _embeds(gen)
    folder = tmp_path / "lora"
    gen, info = _train(gen, folder)
    assert info["new_words"] == ["brick", "grass"]
    assert "'brick', 'grass'" in capsys.readouterr().err
    after = _embeds(gen)
    rows = gen.tokenizer.convert_tokens_to_ids(["brick", "grass"])
    assert after.shape[0] == before.shape[0] + 2 and rows == [before.shape[0], before.shape[0] + 1]
    assert torch.equal(after[: before.shape[0]], before)  # every other row identical
    init = before[gen.tokenizer.convert_tokens_to_ids(NEW_WORD_INIT)]
    assert all(not torch.allclose(after[r], init) for r in rows)  # the new rows trained
    assert (folder / LEARNED_EMBEDS).is_file()
    with torch.no_grad():
        expected = gen.encode_prompt(PROMPTS)

    fresh, info2 = _train(tiny(), folder)  # the resume path: loads the LoRA and the words
    assert info2 == info and capsys.readouterr().err == ""
    with torch.no_grad():
        assert torch.equal(fresh.encode_prompt(PROMPTS), expected)
        x = torch.rand(
            4, gen.channels, gen.image_size, gen.image_size, generator=torch.Generator().manual_seed(2)
        )
        t = torch.full((4,), 500)
        assert torch.allclose(fresh.unet(x, t, expected).sample, gen.unet(x, t, expected).sample, atol=1e-6)


def test_digit_prompts_add_nothing(tmp_path):
    gen = tiny()
    before = _embeds(gen)
    gen, info = _train(gen, tmp_path / "lora", prompts=KNOWN)
    assert "new_words" not in info and not (tmp_path / "lora" / LEARNED_EMBEDS).exists()
    assert torch.equal(_embeds(gen), before)


def test_learned_embeds_in_diffusers_textual_inversion_format(tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open
    from safetensors.torch import load_file

    gen, _ = _train(tiny(), tmp_path / "lora")
    path = tmp_path / "lora" / LEARNED_EMBEDS
    dim = gen.text_encoder.config.hidden_size
    with safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["brick", "grass"]
        assert all(tuple(f.get_slice(k).get_shape()) == (dim,) for k in f.keys())

    fresh = tiny()
    pipe = StableDiffusionPipeline(
        vae=None, text_encoder=fresh.text_encoder, tokenizer=fresh.tokenizer, unet=fresh.unet,
        scheduler=fresh.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.load_textual_inversion([{w: v} for w, v in load_file(path).items()])  # diffusers' own loader
    pipe.load_lora_weights(str(tmp_path / "lora"))
    with torch.no_grad():
        assert torch.equal(fresh.encode_prompt(PROMPTS), gen.encode_prompt(PROMPTS))


@pytest.mark.parametrize("whole_encoder", [False, True])
def test_full_mode_keeps_new_words_in_the_saved_generator(tmp_path, whole_encoder):
    from modelmine.diffusion.generator import Generator

    gen = tiny()
    images = torch.rand(
        4, gen.channels, gen.image_size, gen.image_size, generator=torch.Generator().manual_seed(1)
    )
    settings = TrainSettings(steps=2, batch_size=4, lr=1e-3, train_text_encoder=whole_encoder)
    gen, info = finetune_or_load(
        gen, tmp_path, "full", images, PROMPTS, settings, checkpoint=tmp_path / "ck.pt"
    )
    assert info["new_words"] == ["brick", "grass"]
    saved = Generator.from_pretrained(str(tmp_path / "embedded_generator.safetensors"))
    with torch.no_grad():
        assert torch.allclose(saved.encode_prompt(PROMPTS), gen.encode_prompt(PROMPTS), atol=1e-6)


def test_ddis_names_unknown_class_words(tmp_path, capsys):
    from modelmine.diffusion.generator import Generator
    from modelmine.methods.ddis import DdisConfig, note_unknown_class_words

    path = tmp_path / "embedded_generator.safetensors"
    tiny().save_embedded(path)
    assert Generator.load_tokenizer(str(path))(KNOWN).input_ids == tiny().tokenizer(KNOWN).input_ids
    assert note_unknown_class_words(DdisConfig(generator=str(path)), ["three", "seven"]) == []
    assert capsys.readouterr().err == ""
    cfg = DdisConfig(generator=str(path), plain_prompt="a {c} on grass")
    assert note_unknown_class_words(cfg, ["brick", "three"]) == ["brick", "grass"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'brick', 'grass'" in err[0]
    assert note_unknown_class_words(DdisConfig(generator=str(tmp_path / "missing")), ["brick"]) == []


def test_extract_names_the_prompt_words_it_adds(tmp_path, capsys):
    """FineXtract on a folder whose prompt the tokenizer does not know: one line names the words,
    which train with the fine-tuning as in tckr."""
    import json

    from modelmine.cli import main
    from modelmine.data import ImageSet, save_image_folder

    gen_path = tmp_path / "tiny_generator.safetensors"
    tiny().save_embedded(gen_path)
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    save_image_folder(tmp_path / "apples", ImageSet(images, torch.zeros(4, dtype=torch.long), ["apple"]))
    args = ["extract", "--out", str(tmp_path / "run"), "--base", str(gen_path), "--data", str(tmp_path / "apples"),
            "--prompt", "a photo of apple", "--set", "modes=[lora]", "--set", "num_generations=6",
            "--set", "gen_batch_size=6", "--set", "sample_steps=2", "--set", "lora.steps=2",
            "--set", "workers=1", "--set", "device=cpu"]  # fmt: skip
    assert main(args) == 0
    assert "does not know 'apple'" in capsys.readouterr().err
    assert 0 <= json.loads((tmp_path / "run" / "metrics.json").read_text())["success_rate"] <= 1
