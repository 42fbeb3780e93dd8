from __future__ import annotations

import itertools

import pytest
import torch
from conftest import tiny_config
from torch import nn
from vqa_ref.layers import AttentionPool, LayerNorm, MultiHeadAttention, masked_softmax
from vqa_ref.model import UNFINISHED, VQAModel, answer_text, spec_state_dict
from vqa_ref.resnet import ResNetTrunk

VOCAB, ANSWERS = 20, 7


def make_inputs(cfg: dict, batch: int = 4, lengths: list[int] | None = None) -> dict[str, torch.Tensor]:
    steps = cfg["text"]["tokenizer"]["max_length"]
    inputs = {"ids": torch.randint(0, VOCAB, (batch, steps)),
              "lengths": torch.tensor(lengths or [steps, 1, 3, steps][:batch])}
    image = cfg["image"]
    if image["encoder"] == "regions":
        reg = image["regions"]
        regions = torch.randn(batch, reg["max_regions"], reg["feature_dim"])
        regions[0, 1] = 0
        regions[-1] = 0  # every image token of the last sample masked
        inputs["regions"] = regions
        inputs["boxes5"] = torch.rand(batch, reg["max_regions"], 5)
    else:
        inputs["images"] = torch.randn(batch, 3, image["input"]["height"], image["input"]["width"])
    return inputs


VARIANTS = list(itertools.product(["cnn", "resnet", "regions"], ["lstm", "transformer"], ["mcan", "simple"],
                                  ["classifier", "generate"]))


@pytest.mark.parametrize("masked_row", ["zero", "uniform"])
@pytest.mark.parametrize("image,text,fusion,head", VARIANTS)
def test_every_variant_runs_finite(image: str, text: str, fusion: str, head: str, masked_row: str) -> None:
    cfg = tiny_config(image, text, fusion, head, fusion__masked_row=masked_row)
    model = VQAModel(cfg, VOCAB, ANSWERS)
    with torch.no_grad():
        acts = model(**make_inputs(cfg, lengths=[6, 1, 0, 6]), return_activations=True)
    for name, value in acts.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), name
    assert acts["fused"].shape == (4, cfg["pool"]["out_dim"])
    if head == "classifier":
        assert acts["logits"].shape == (4, ANSWERS)
    else:
        assert acts["generated"].shape == (4, cfg["head"]["max_length"])


def test_masked_softmax_rules() -> None:
    scores = torch.randn(3, 5)
    masked = torch.tensor([[False, True, False, True, True], [True] * 5, [False] * 5])
    zero = masked_softmax(scores, masked, "zero")
    uniform = masked_softmax(scores, masked, "uniform")
    for probs in (zero, uniform):
        assert torch.isfinite(probs).all()
        assert (probs[0, 1] == 0) and (probs[0, 3:] == 0).all()
        torch.testing.assert_close(probs[0], uniform[0])
        torch.testing.assert_close(probs[2], torch.softmax(scores[2], -1))
    assert (zero[1] == 0).all()
    torch.testing.assert_close(uniform[1], torch.full((5,), 0.2))
    # openvqa's -1e9 fill gives exactly the "uniform" rule
    torch.testing.assert_close(uniform, torch.softmax(scores.masked_fill(masked, -1e9), -1), rtol=0, atol=0)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_mha_matches_torch(heads: int) -> None:
    dim = 16
    ours = MultiHeadAttention(dim, heads, "zero")
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
        ref.out_proj.weight.copy_(ours.o.weight)
        ref.out_proj.bias.copy_(ours.o.bias)
    xq, xkv = torch.randn(3, 4, dim), torch.randn(3, 7, dim)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 5:] = True
    mask[1, ::2] = True
    expected, _ = ref(xq, xkv, xkv, key_padding_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(xq, xkv, mask), expected, rtol=1e-5, atol=1e-6)


def test_fully_masked_attention_rows() -> None:
    xq, xkv = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[True] * 4, [False, True, False, True]])
    zero = MultiHeadAttention(8, 2, "zero")
    out = zero(xq, xkv, mask)
    torch.testing.assert_close(out[0], zero.o.bias.expand(3, 8))  # P = 0 -> O = 0 -> only the bias
    uniform = MultiHeadAttention(8, 2, "uniform")
    uniform.load_state_dict(zero.state_dict())
    out_uniform = uniform(xq, xkv, mask)
    expected = uniform.o(uniform.v(xkv[0]).mean(0))  # P = 1/Lk over all keys, in every head
    torch.testing.assert_close(out_uniform[0], expected.expand(3, 8))
    torch.testing.assert_close(out_uniform[1], out[1])  # rows with a valid key: the rules agree
    assert torch.isfinite(out).all() and torch.isfinite(out_uniform).all()


def test_attention_pool_masked() -> None:
    pool = AttentionPool(8, 6, 2, 5, "zero")
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[False, False, True, True], [True] * 4])
    out = pool(x, mask)
    torch.testing.assert_close(out[1], pool.merge.bias)
    torch.testing.assert_close(out[0:1], pool(x[0:1, :2], mask[0:1, :2]))
    pool.masked_row = "uniform"
    expected = pool.merge(x[1].mean(0).repeat(2))
    torch.testing.assert_close(pool(x, mask)[1], expected)


def test_layer_norm_variants() -> None:
    x = torch.randn(3, 5, 16)
    std = LayerNorm(16, "standard", 1e-5)
    torch.nn.init.normal_(std.weight)
    ref = nn.LayerNorm(16, eps=1e-5)
    ref.load_state_dict(std.state_dict())
    torch.testing.assert_close(std(x), ref(x))
    unb = LayerNorm(16, "unbiased_std", 1e-6)
    mean = x.mean(-1, keepdim=True)
    sd = ((x - mean) ** 2).sum(-1, keepdim=True).div(15).sqrt()
    torch.testing.assert_close(unb(x), (x - mean) / (sd + 1e-6))


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_resnet_names_match_torchvision(depth: int) -> None:
    import torchvision
    tv = getattr(torchvision.models, f"resnet{depth}")()
    expected = {k: tuple(v.shape) for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    ours = {k: tuple(v.shape) for k, v in ResNetTrunk(depth, 64, 1e-5).state_dict().items()}
    assert ours == expected
    cfg = tiny_config("resnet", image__resnet={"depth": depth, "base_width": 64})
    names = set(spec_state_dict(VQAModel(cfg, VOCAB, ANSWERS)))
    assert {f"image.resnet.{k}" for k in expected if not k.endswith("num_batches_tracked")} <= names


def test_resnet18_matches_torchvision_forward() -> None:
    import torchvision
    tv = torchvision.models.resnet18().eval()
    for module in tv.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.running_var, 0.5, 1.5)
            nn.init.normal_(module.running_mean, 0, 0.1)
    ours = ResNetTrunk(18, 64, 1e-5).eval()
    ours.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        trunk = nn.Sequential(*list(tv.children())[:-2])
        torch.testing.assert_close(ours(x), trunk(x))


def test_state_dict_names() -> None:
    cfg = tiny_config("regions", "lstm", "mcan", "classifier")
    names = spec_state_dict(VQAModel(cfg, VOCAB, ANSWERS))
    d, out, glimpses = 16, 12, 2
    assert names["text.lstm.weight_ih"].shape == (4 * d, 8)
    assert names["text.lstm.bias_hh"].shape == (4 * d,)
    assert names["image.box.weight"].shape == (3, 5)
    assert names["image.adapter.weight"].shape == (d, 6 + 3)
    assert names["fusion.image.0.cross_att.q.weight"].shape == (d, d)
    assert names["fusion.text.0.norm2.bias"].shape == (d,)
    assert names["pool.image.merge.weight"].shape == (out, glimpses * d)
    assert names["head.norm.weight"].shape == (out,)
    assert names["head.classifier.weight"].shape == (ANSWERS, out)
    assert not any("num_batches_tracked" in n or "_l0" in n for n in names)
    gen = spec_state_dict(VQAModel(tiny_config("cnn", "transformer", "simple", "generate"), VOCAB, ANSWERS))
    assert gen["text.position.weight"].shape == (6, d)
    assert gen["head.cell.weight_ih"].shape == (3 * 8, 6) and gen["head.out.weight"].shape == (ANSWERS, 8)
    assert gen["image.cnn.1.bn.running_var"].shape == (8,)


@pytest.mark.parametrize("text", ["lstm", "transformer"])
def test_padding_does_not_matter_and_images_are_shared(text: str) -> None:
    cfg = tiny_config("cnn", text, "mcan", "classifier")
    model = VQAModel(cfg, VOCAB, ANSWERS)
    inputs = make_inputs(cfg, lengths=[2, 4, 6, 1])
    images = inputs.pop("images")
    index = torch.tensor([1, 0, 1, 0])
    with torch.no_grad():
        shared = model(**inputs, images=images[:2], image_index=index)
        repeated = model(**inputs, images=images[:2][index])
        ids = inputs["ids"].clone()
        ids[0, 2:] = 0
        ids[3, 1:] = 5
        repadded = model(ids, inputs["lengths"], images=images[:2], image_index=index)
    torch.testing.assert_close(shared, repeated)
    torch.testing.assert_close(shared, repadded)


def test_zero_region_masked_even_with_a_box() -> None:
    cfg = tiny_config("regions", "lstm", "simple", "classifier")
    model = VQAModel(cfg, VOCAB, ANSWERS)
    inputs = make_inputs(cfg, batch=2)
    with torch.no_grad():
        acts = model(**inputs, return_activations=True)
        inputs["boxes5"][0, 1] = 7.0  # the box of the zero region changes, nothing else may
        again = model(**inputs, return_activations=True)
    assert acts["image_mask"][0].tolist() == [False, True, False, False]
    assert acts["image_mask"][1].all()
    torch.testing.assert_close(acts["logits"], again["logits"])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_greedy_decoding_matches_teacher_forcing(cell: str) -> None:
    cfg = tiny_config("cnn", "lstm", "simple", "generate", head__cell=cell, head__max_length=6)
    model = VQAModel(cfg, VOCAB, ANSWERS)
    with torch.no_grad():
        model.head.out.bias[1] += 1.0  # eos (id 1) likely somewhere
        acts = model(**make_inputs(cfg, batch=4), return_activations=True)
        tokens, scores, step_logits = acts["generated"], acts["scores"], acts["step_logits"]
        inputs = torch.cat([torch.zeros(4, 1, dtype=torch.long), tokens.clamp(min=0)[:, :-1]], dim=1)
        forced = model.decoder_logits(acts["fused"], inputs)
    for b in range(4):
        steps = int((tokens[b] != UNFINISHED).sum())
        torch.testing.assert_close(step_logits[b, :steps], forced[b, :steps])
        assert (step_logits[b, steps:] == 0).all()
        chosen = tokens[b, :steps]
        assert torch.equal(chosen, forced[b, :steps].argmax(-1))
        probs = torch.softmax(forced[b, :steps], -1).gather(1, chosen[:, None]).prod()
        torch.testing.assert_close(scores[b], probs)
        if steps < 6:
            assert chosen[-1] == 1


def test_answer_text() -> None:
    answers = ["<bos>", "<eos>", "red", "circle"]
    assert answer_text([2, 0, 3, 1, UNFINISHED], answers, 0, 1) == "red circle"
    assert answer_text([3, 3, 3], answers, 0, 1) == "circle circle circle"
    assert answer_text([1, 2], answers, 0, 1) == ""


def test_missing_inputs_are_clear() -> None:
    model = VQAModel(tiny_config("regions"), VOCAB, ANSWERS)
    inputs = make_inputs(tiny_config("regions"), batch=2)
    with pytest.raises(ValueError, match="boxes5"):
        model(inputs["ids"], inputs["lengths"], regions=inputs["regions"])
    with pytest.raises(ValueError, match="image_index"):
        model(inputs["ids"], inputs["lengths"], regions=inputs["regions"][:1], boxes5=inputs["boxes5"][:1])
