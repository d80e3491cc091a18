"""`--prompt auto`: the greedy prompt search on the prediction shift (batched = looped), recovery of a
planted word with the embedded word tokenizer and with a small CLIP BPE tokenizer, and `extract`."""

import json

import pytest
import torch

from _tiny import SMALL_UNET
from modelmine.audit.prompt import (
    PromptSearchConfig,
    candidate_words,
    prompt_scores,
    prompt_token_accuracy,
    recover_prompt,
    search_inputs,
)
from modelmine.cli import main
from modelmine.diffusion.finetune import add_lora
from modelmine.diffusion.generator import MAX_TOKENS, Generator, tiny_text_config
from modelmine.diffusion.guidance import Conditioning, lora_disabled, predict_eps
from modelmine.errors import UserError

CROSS_ATTENTION = ["attn2.to_k", "attn2.to_v"]  # text-dependent paths only


def _tiny(seed=0):
    return Generator.build_tiny(image_size=8, seed=seed, unet_overrides=SMALL_UNET, text_width=32)


@torch.no_grad()
def _plant(base: Generator, word: str, scale: float = 3.0) -> Generator:
    """A "fine-tuned" copy of ``base`` whose text encoder embeds ``word`` ``scale`` times longer: its
    predictions differ from the base model's exactly for prompts with ``word``, and respond more
    strongly to it (as a fine-tune binding the word to its images does)."""
    import copy

    ft = copy.deepcopy(base)
    emb = ft.text_encoder.get_input_embeddings().weight
    (i,) = ft.tokenizer.convert_tokens_to_ids(ft.tokenizer.tokenize(word))
    emb[i] *= scale
    return ft


def _lora(gen: Generator) -> Generator:
    """``gen`` with a random (non-zero) cross-attention LoRA."""
    add_lora(gen.unet, rank=2, alpha=2.0, target_modules=CROSS_ATTENTION, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in gen.unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return gen.requires_grad_(False)


def test_batched_shift_equals_a_looped_reference():
    ft = _lora(_tiny())
    prompts = ["seven", "a photo of digit three", "", "thin"]
    x = search_inputs(ft.latent_shape, 3, 2, seed=1)
    ts = [250, 750]
    batched = prompt_scores(ft, None, prompts, x, ts, "shift", batch_size=4)  # chunks of one prompt
    assert torch.allclose(
        batched, prompt_scores(ft, None, prompts, x, ts, "shift", batch_size=100), atol=1e-6
    )
    ref = torch.zeros(len(prompts))
    with torch.no_grad():
        for p, prompt in enumerate(prompts):
            for i, t in enumerate(ts):
                for j in range(x.shape[1]):
                    xs = x[i, j : j + 1]
                    e_ft = predict_eps(ft, xs, t, Conditioning(ft.encode_prompt([prompt])))
                    with lora_disabled(ft.unet):
                        e_pre = predict_eps(ft, xs, t, Conditioning(ft.encode_prompt([prompt])))
                    ref[p] += (e_ft - e_pre).pow(2).mean() / (len(ts) * x.shape[1])
    assert torch.allclose(batched, ref, rtol=1e-4, atol=1e-7)
    # full fine-tuning: a separate pretrained generator, each with its own text encoder
    base, other = _tiny(seed=0), _tiny(seed=1)
    two = prompt_scores(other, base, prompts[:2], x, ts, "shift")
    with torch.no_grad():
        e = [
            predict_eps(g, x[0], 250, Conditioning(g.encode_prompt([prompts[0]]).expand(3, -1, -1)))
            for g in (other, base)
        ]
    assert two.shape == (2,) and (two > 0).all()
    assert float((e[0] - e[1]).pow(2).mean()) > 0


def test_response_gain_equals_a_looped_reference():
    """G(p) = R_ft(p) - R_pre(p): each model's mean squared response to p over the empty prompt."""
    ft = _lora(_tiny())
    prompts = ["seven", "", "a photo of digit three"]
    x = search_inputs(ft.latent_shape, 2, 2, seed=2)
    ts = [300, 700]
    got = prompt_scores(ft, None, prompts, x, ts, "response", batch_size=2)
    assert torch.allclose(got, prompt_scores(ft, None, prompts, x, ts, "response", batch_size=64), atol=1e-6)
    ref = torch.zeros(len(prompts))
    with torch.no_grad():

        def eps(prompt, xs, t):
            return predict_eps(ft, xs, t, Conditioning(ft.encode_prompt([prompt])))

        for p, prompt in enumerate(prompts):
            for i, t in enumerate(ts):
                for j in range(x.shape[1]):
                    xs = x[i, j : j + 1]
                    r_ft = (eps(prompt, xs, t) - eps("", xs, t)).pow(2).mean()
                    with lora_disabled(ft.unet):
                        r_pre = (eps(prompt, xs, t) - eps("", xs, t)).pow(2).mean()
                    ref[p] += (r_ft - r_pre) / (len(ts) * x.shape[1])
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-7)
    assert float(got[1]) == pytest.approx(0.0, abs=1e-9)  # the empty prompt is its own reference
    with pytest.raises(UserError, match="prompt_search.score"):
        prompt_scores(ft, None, prompts, x, ts, "loss")


def test_greedy_search_recovers_the_planted_word_with_the_word_tokenizer():
    ft = _tiny()
    words = candidate_words(ft.tokenizer)
    assert "seven" in words and "<pad>" not in words and "<|endoftext|>" not in words
    assert candidate_words(ft.tokenizer, 5) == words[:5]
    ft = _plant(ft, "seven")
    for score in ("response", "shift"):
        cfg = PromptSearchConfig(max_words=3, num_noise=2, timesteps=[0.5], score=score)
        prompt, history = recover_prompt(ft, _tiny(), cfg)
        assert prompt.split()[0] == "seven", score
        assert len(history) == len(prompt.split()) + 1 and history[1] > history[0]
    assert prompt_token_accuracy(prompt, "seven") == pytest.approx(1 / len(prompt.split()))
    assert prompt_token_accuracy("digit three", "a photo of digit three") == pytest.approx(2 / 5)
    assert prompt_token_accuracy("Three, digit", "digit three ,") == 1.0
    only = PromptSearchConfig(max_words=1, candidates=["thin", "seven", "zero"], num_noise=1, timesteps=[0.5])
    assert recover_prompt(ft, _tiny(), only)[0] == "seven"


def _bpe_generator(tmp_path) -> Generator:
    """A tiny generator with a CLIP BPE tokenizer built offline from a small vocab and merges file."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = sorted(set("catdogredbluesevenhouse"))
    merges = ["c a", "ca t</w>", "d o", "do g</w>", "r e", "re d</w>", "b l", "bl u", "blu e</w>"]
    vocab = ["<|startoftext|>", "<|endoftext|>", "!", *chars, *(c + "</w>" for c in chars)]
    vocab += ["ca", "cat</w>", "do", "dog</w>", "re", "red</w>", "bl", "blu", "blue</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(vocab))}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(str(tmp_path), model_max_length=MAX_TOKENS)
    gen = _tiny()
    torch.manual_seed(0)
    cfg = tiny_text_config(len(tok), 32) | {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    gen.tokenizer, gen.text_encoder = tok, CLIPTextModel(CLIPTextConfig(**cfg)).eval()
    return gen


def test_greedy_search_with_a_small_bpe_tokenizer(tmp_path):
    gen = _bpe_generator(tmp_path)
    words = candidate_words(gen.tokenizer)
    # whole alphabetic words in id order: single letters first, then the merged words
    assert words[-4:] == ["cat", "dog", "red", "blue"] and "!" not in words and "ca" not in words
    assert candidate_words(gen.tokenizer, 3) == words[:3]
    assert gen.tokenizer.tokenize("red cat") == ["red</w>", "cat</w>"]
    ft = _plant(gen, "dog")
    for score in ("response", "shift"):
        cfg = PromptSearchConfig(max_words=2, num_noise=2, timesteps=[0.5], score=score)
        prompt, _ = recover_prompt(ft, gen, cfg)
        assert prompt.split()[0] == "dog", score


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny_generator.safetensors"
    _tiny().save_embedded(path)
    return path


SEARCH = [
    "--prompt", "auto", "--set", "sample_steps=2", "--set", "workers=1", "--set", "device=cpu",
    "--set", "prompt_search.max_words=2", "--set", "prompt_search.num_noise=1",
    "--set", "prompt_search.timesteps=[0.5]",
]  # fmt: skip
TINY_AUTO = [
    *SEARCH, "--set", "num_train_images=4", "--set", "num_generations=10", "--set", "gen_batch_size=10",
    "--set", "lora.steps=2", "--set", "modes=[lora]",
]  # fmt: skip


def test_extract_prompt_auto_end_to_end(tmp_path, tiny_generator, tiny_folder):
    out = tmp_path / "run"
    assert main(["extract", "--out", str(out), "--base", str(tiny_generator), *TINY_AUTO]) == 0
    m = json.loads((out / "metrics.json").read_text())
    recovered = (out / "recovered_prompt.txt").read_text().strip()
    assert 1 <= len(recovered.split()) <= 2 and (out / "lora" / "prompt_search.json").is_file()
    info = json.loads((out / "prompt.json").read_text())
    assert info == {"recovered": {"lora": recovered}, "true": "a photo of digit three"}
    assert m["prompt_token_accuracy"] == pytest.approx(
        prompt_token_accuracy(recovered, "a photo of digit three")
    )
    for key in ("success_rate", "calibrated_success_rate", "recovered_success_rate",
                "recovered_calibrated_success_rate", "lora_recovered_avg_similarity", "baseline_success_rate"):  # fmt: skip
        assert key in m, key
    assert (out / "lora" / "finextract_recovered" / "batch_00000.safetensors").is_file()
    # a given pair, true prompt unknown: the attack runs with the recovered prompt, no accuracy
    root, _ = tiny_folder
    finetuned = tmp_path / "ft" / "tiny_generator.safetensors"
    _plant(Generator.embedded(tiny_generator), "seven").save_embedded(finetuned)
    out2 = tmp_path / "run2"
    args = ["extract", "--out", str(out2), "--base", str(tiny_generator), "--finetuned", str(finetuned),
            "--data", str(root), "--set", "num_generations=13", *SEARCH]  # fmt: skip
    assert main(args) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert (out2 / "recovered_prompt.txt").read_text().split()[0] == "seven"
    assert "prompt_token_accuracy" not in m2 and m2["recovered_success_rate"] == m2["success_rate"]
    assert not (out2 / "full" / "finextract_recovered").exists()
    # fine-tuning here on a folder needs the real prompt
    bad = ["extract", "--out", str(tmp_path / "r3"), "--base", str(tiny_generator), "--data", str(root)]
    assert main([*bad, "--prompt", "auto"]) == 2
    unknown_score = ["--set", "true_prompt=seven", "--set", "prompt_search.score=loss"]
    assert main([*bad, "--prompt", "auto", *unknown_score]) == 2
