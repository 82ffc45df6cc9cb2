"""The fused LoRA forward against the plain one, and the compiled transformer blocks of ``training.compile``.

``LoRAModule`` computes ``original(x) + up(down(x)) · multiplier · scale`` either as written
(``plain``) or with the scale folded into the up weight and, for a Linear layer, the up projection
accumulated into the original's output by one in-place GEMM (``fused``, the default). The tests
below hold the fused path to the plain one's numbers: outputs and the gradients of the input and
of both LoRA weights, for Linear (2-D and 3-D input) and Conv2d (1×1 and 3×3) layers, at LoRA
strengths 0, 0.7 and 1, in fp32 and under bf16 autocast; then the same through a whole UNet, with
``set_multiplier`` and saving; then compiled.

CPU compile tests use torch.compile's ``aot_eager`` backend: the same tracing (dynamo) and
autograd capture (AOTAutograd) as the default ``inductor``, without code generation, which takes
a minute or more per graph on a 2-core CPU. The inductor test runs on a GPU, or on a CPU with
``LORATUI_TEST_INDUCTOR=1``.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.trainer.helpers import of_type, train
from trainer.networks import lora as lora_module
from trainer.networks.lora import LoRAModule, LoRANetwork, NetworkSpec

DIM, ALPHA = 4, 3.0  # scale 0.75, and with multiplier 0.7 a factor bf16 cannot hold exactly
LAYERS = {
    "linear-2d": (lambda: nn.Linear(64, 48), (10, 64)),
    "linear-3d": (lambda: nn.Linear(64, 48), (3, 7, 64)),
    "conv-1x1": (lambda: nn.Conv2d(16, 24, 1), (2, 16, 5, 6)),
    "conv-3x3": (lambda: nn.Conv2d(16, 24, 3, padding=1), (2, 16, 5, 6)),
}
MULTIPLIERS = [0.0, 0.7, 1.0]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@contextlib.contextmanager
def forward_mode(mode: str):
    """Every LoRAModule computes its forward the ``mode`` way inside the block."""
    before = lora_module.FORWARD
    lora_module.FORWARD = mode
    try:
        yield
    finally:
        lora_module.FORWARD = before


def _run(kind: str, mode: str, multiplier: float, *, autocast: bool = False, dtype=torch.float32,
         device: str = "cpu", train_base: bool = False) -> dict[str, torch.Tensor]:
    """One adapted layer's output and gradients (input, lora_down, lora_up; base too if ``train_base``).

    The same weights and data on every call: only ``mode``, precision and device change.
    """
    make, shape = LAYERS[kind]
    torch.manual_seed(0)
    base = make()
    adapter = LoRAModule("layer", base, DIM, ALPHA)
    nn.init.normal_(adapter.lora_up.weight, std=0.5)  # trained-looking, not the zero start
    # Under autocast the frozen base weights are half precision, as the trainer loads them.
    base.to(device, torch.bfloat16 if autocast else dtype).requires_grad_(train_base)
    adapter.to(device, dtype)
    adapter.multiplier = multiplier
    adapter.attach()
    data = torch.Generator().manual_seed(1)
    leaf = torch.randn(shape, generator=data).to(device, dtype).requires_grad_(True)
    x = leaf * 1  # a non-leaf input, as every layer in a model but the first gets
    with forward_mode(mode), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        out = base(x)
    out.backward(torch.randn(out.shape, generator=data).to(device, out.dtype))
    result = {"output": out.detach(), "input grad": leaf.grad, "lora_down grad": adapter.lora_down.weight.grad,
              "lora_up grad": adapter.lora_up.weight.grad}
    if train_base:
        result.update({"base weight grad": base.weight.grad, "base bias grad": base.bias.grad})
    return result


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    reference = reference.double().cpu()
    scale = reference.abs().max().item()
    error = (value.double().cpu() - reference).abs().max().item()
    return error / scale if scale else error


# ---- one layer ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("multiplier", MULTIPLIERS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_fused_forward_matches_the_plain_one_in_fp32(kind, multiplier):
    plain, fused = _run(kind, "plain", multiplier), _run(kind, "fused", multiplier)
    for name, expected in plain.items():
        tolerance = 1e-5 * max(expected.abs().max().item(), 1e-30)
        torch.testing.assert_close(fused[name], expected, rtol=1e-5, atol=tolerance, msg=name)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])])
@pytest.mark.parametrize("multiplier", MULTIPLIERS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_fused_forward_under_bf16_autocast_is_as_close_to_fp64_as_the_plain_one(kind, multiplier, device):
    plain = _run(kind, "plain", multiplier, autocast=True, device=device)
    fused = _run(kind, "fused", multiplier, autocast=True, device=device)
    exact = _run(kind, "plain", multiplier, dtype=torch.float64)
    assert fused["output"].dtype == plain["output"].dtype == torch.bfloat16
    for name, reference in exact.items():
        assert fused[name].dtype == plain[name].dtype, name
        plain_error, fused_error = _relative_error(plain[name], reference), _relative_error(fused[name], reference)
        assert fused_error <= 2 * plain_error + 1e-7, f"{name}: fused {fused_error:.2e}, plain {plain_error:.2e}"
        assert fused_error < 2e-2, f"{name}: {fused_error:.2e} is more than bf16 rounding"


@pytest.mark.parametrize("kind", list(LAYERS))
def test_writing_into_the_original_output_leaves_a_trained_base_layer_correct(kind):
    # The fused path adds into the original layer's output in place; autograd would refuse if that
    # layer's backward needed its output. With the base weights trainable too, their gradients show it didn't.
    plain = _run(kind, "plain", 0.7, train_base=True)
    fused = _run(kind, "fused", 0.7, train_base=True)
    for name, expected in plain.items():
        torch.testing.assert_close(fused[name], expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item(),
                                   msg=name)


def test_the_fused_forward_launches_fewer_full_size_passes():
    """The point of the fused path, counted as bench/bench_lora_forward.py counts it."""
    from bench.bench_lora_forward import count_ops

    for autocast in (False, True):
        plain, fused = count_ops("plain", autocast), count_ops("fused", autocast)
        assert fused["forward GEMMs"] == plain["forward GEMMs"] == 3
        assert fused["forward full-size passes"] <= plain["forward full-size passes"] - 2
        assert fused["backward full-size passes"] <= plain["backward full-size passes"] - 1
        assert fused["autograd nodes"] < plain["autograd nodes"]


def test_the_forward_is_chosen_by_environment_variable():
    code = "import trainer.networks.lora as m; print(m.FORWARD)"
    for value, expected in (("plain", "plain"), ("", "fused"), (" Fused ", "fused")):
        env = dict(os.environ, LORATUI_LORA_FORWARD=value)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == expected
    env = dict(os.environ, LORATUI_LORA_FORWARD="fast")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "LORATUI_LORA_FORWARD must be one of plain, fused" in done.stderr


# ---- a whole UNet -----------------------------------------------------------------------------------------

def _unet_with_lora(model_dir, arch: str = "sd15", conv_dim: int = 4):
    """A tiny UNet with an attached LoCon whose up weights are random (so every adapter changes the output)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet").requires_grad_(False)
    network = LoRANetwork(unet, [], arch, NetworkSpec(DIM, ALPHA, conv_dim, 2.0), train_text_encoders=False)
    for adapter in network.all_loras():
        nn.init.normal_(adapter.lora_up.weight, std=0.05)
    network.attach()
    return unet, network


def _unet_inputs(unet, side: int = 16, batch: int = 2, seed: int = 0) -> dict:
    data = torch.Generator().manual_seed(seed)
    inputs = {"sample": torch.randn(batch, 4, side, side, generator=data), "timestep": torch.tensor([500] * batch),
              "encoder_hidden_states": torch.randn(batch, 77, unet.config.cross_attention_dim, generator=data)}
    if unet.config.addition_embed_type == "text_time":
        extra = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, extra, generator=data),
                                       "time_ids": torch.randn(batch, 6, generator=data)}
    return inputs


def test_a_unet_gives_the_same_output_at_every_strength_and_saves_the_unscaled_weights(tiny_sd15):
    unet, network = _unet_with_lora(tiny_sd15)
    inputs = _unet_inputs(unet)
    saved_before = network.kohya_state_dict(torch.float32)
    with torch.no_grad():
        network.detach()
        bare = unet(**inputs).sample
        network.attach()
        for multiplier in (0.0, 0.7, 1.0):
            network.set_multiplier(multiplier)
            with forward_mode("plain"):
                plain = unet(**inputs).sample
            with forward_mode("fused"):
                fused = unet(**inputs).sample
            torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5 * plain.abs().max().item())
            if multiplier == 0.0:
                torch.testing.assert_close(fused, bare, rtol=1e-5, atol=1e-6)
            else:
                assert not torch.allclose(fused, bare, atol=1e-4)  # the LoRA really acts
    network.set_multiplier(1.0)
    with forward_mode("fused"):
        unet(**inputs).sample.pow(2).mean().backward()
    # Nothing was scaled in place: the file holds the weights as trained, and alpha says how to scale them.
    saved_after = network.kohya_state_dict(torch.float32)
    assert saved_after.keys() == saved_before.keys()
    for key, tensor in saved_after.items():
        assert torch.equal(tensor, saved_before[key]), key
    for adapter in network.all_loras():
        assert torch.equal(saved_after[f"{adapter.lora_name}.lora_up.weight"], adapter.lora_up.weight)
        assert saved_after[f"{adapter.lora_name}.alpha"].item() == adapter.alpha.item()
        assert adapter.lora_up.weight.grad is not None and adapter.lora_down.weight.grad is not None


# ---- compiled transformer blocks ----------------------------------------------------------------------

def _compile_blocks(unet, backend: str) -> int:
    """Compile the transformer blocks as trainer.loop does for training.compile; return how many."""
    blocks = [m for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock"]
    for block in blocks:
        block.compile(backend=backend, dynamic=None)
    return len(blocks)


def _train_steps(unet, network, sides, device="cpu", autocast=False) -> tuple[list[float], list[torch.Tensor]]:
    """A loss and backward pass per latent size; the losses and the summed LoRA gradients."""
    losses = []
    for index, side in enumerate(sides):
        inputs = _unet_inputs(unet, side, seed=index)
        inputs = {k: (v.to(device) if torch.is_tensor(v) else {n: t.to(device) for n, t in v.items()})
                  for k, v in inputs.items()}
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = unet(**inputs).sample.float().pow(2).mean()
        loss.backward()
        losses.append(loss.item())
    return losses, [p.grad.clone() for p in network.parameters()]


@pytest.fixture
def dynamo_counters():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


@pytest.mark.parametrize(("mode", "autocast"), [("fused", False), ("plain", False), ("fused", True)],
                         ids=["fused", "plain", "fused-bf16-autocast"])
def test_compiled_blocks_trace_through_the_lora_and_train_like_eager(tiny_sdxl, dynamo_counters, mode, autocast):
    # Two latent sizes, so the blocks recompile once with symbolic sizes as they do for a second bucket.
    with forward_mode(mode):
        unet, network = _unet_with_lora(tiny_sdxl, "sdxl", conv_dim=0)
        eager_losses, eager_grads = _train_steps(unet, network, (16, 12), autocast=autocast)
        unet, network = _unet_with_lora(tiny_sdxl, "sdxl", conv_dim=0)
        assert _compile_blocks(unet, "aot_eager") > 0
        losses, grads = _train_steps(unet, network, (16, 12), autocast=autocast)
    assert dynamo_counters["stats"]["unique_graphs"] > 0  # the blocks really ran compiled
    assert dict(dynamo_counters["graph_break"]) == {}  # and whole: the LoRA's forward did not split them
    assert all(g.abs().sum() > 0 for g in grads)  # every LoRA weight got a gradient
    assert losses == pytest.approx(eager_losses, rel=1e-6)
    for got, expected in zip(grads, eager_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_compiled_blocks_follow_the_multiplier_when_sampling(tiny_sdxl, dynamo_counters):
    # Sampling changes the LoRA strength between images: a compiled block must not keep the old one.
    unet, network = _unet_with_lora(tiny_sdxl, "sdxl", conv_dim=0)
    inputs = _unet_inputs(unet, 12)
    unet.eval()
    with torch.no_grad():
        expected = {}
        for multiplier in (0.7, 1.0, 0.0):
            network.set_multiplier(multiplier)
            expected[multiplier] = unet(**inputs).sample
        _compile_blocks(unet, "aot_eager")
        for multiplier in (0.7, 1.0, 0.0):
            network.set_multiplier(multiplier)
            torch.testing.assert_close(unet(**inputs).sample, expected[multiplier], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_training_with_compile_on_gives_the_same_losses_and_samples(tiny_sd15, dataset, make_config, monkeypatch):
    monkeypatch.setenv("LORATUI_COMPILE_BACKEND", "aot_eager")
    monkeypatch.setenv("TORCH_LOGS", "recompiles,graph_breaks")  # into trainer.log: proof the blocks were compiled
    settings = dict(training={"epochs": 1, "batch_size": 2}, optimizer={"name": "adamw", "text_encoder_lr": 0.0},
                    output={"sample_every_n_epochs": 1, "sample_steps": 2, "sample_prompts": ["zkmascot"]})
    plain_run, plain_events, status = train(make_config(tiny_sd15, dataset, **settings))
    assert status == 0, plain_run.log.read_text()[-3000:]
    settings["training"]["compile"] = True
    run, events, status = train(make_config(tiny_sd15, dataset, **settings))
    assert status == 0, run.log.read_text()[-3000:]
    assert events[-1]["type"] == "done"
    losses = [e["loss"] for e in of_type(events, "step")]
    assert losses == pytest.approx([e["loss"] for e in of_type(plain_events, "step")], rel=1e-5)
    assert all(math.isfinite(v) for v in losses)
    assert [e["strength"] for e in of_type(events, "sample")] == [0.7, 1.0]
    log = run.log.read_text()
    # Sampling (no gradients) recompiles the blocks: they ran compiled, and whole (no graph breaks).
    assert "Recompiling function forward" in log and "attention.py" in log
    assert "Graph break" not in log and "Recompiling" not in plain_run.log.read_text()


@pytest.mark.skipif(not torch.cuda.is_available() and os.environ.get("LORATUI_TEST_INDUCTOR") != "1",
                    reason="inductor takes minutes to compile on a 2-core CPU; runs on a GPU, or with "
                           "LORATUI_TEST_INDUCTOR=1")
def test_inductor_compiles_the_blocks_and_trains_like_eager(tiny_sdxl, dynamo_counters):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    autocast = device == "cuda"  # bf16 as training runs on a GPU; the CPU checks fp32 code generation
    unet, network = _unet_with_lora(tiny_sdxl, "sdxl", conv_dim=0)
    unet.to(torch.bfloat16 if autocast else torch.float32)
    unet.to(device), network.to(device)
    eager_losses, eager_grads = _train_steps(unet, network, (16, 12), device, autocast)
    unet, network = _unet_with_lora(tiny_sdxl, "sdxl", conv_dim=0)
    unet.to(torch.bfloat16 if autocast else torch.float32)
    unet.to(device), network.to(device)
    _compile_blocks(unet, "inductor")
    losses, grads = _train_steps(unet, network, (16, 12), device, autocast)
    assert dict(dynamo_counters["graph_break"]) == {}
    tolerance = 3e-2 if autocast else 1e-4
    assert losses == pytest.approx(eager_losses, rel=tolerance)
    for got, expected in zip(grads, eager_grads):
        assert _relative_error(got, expected) < tolerance


# ---- the setting itself ------------------------------------------------------------------------------------

def test_training_compile_is_in_the_form_and_crosses_to_sd_scripts_and_back(tmp_path):
    from loratui.form_layout import BASIC, group_of
    from loratui.interop import export_sdscripts, import_file
    from tests.unit.test_interop_sdscripts import base_config
    from trainer.contract.config.schema import Config, with_value

    assert Config().training.compile is False
    assert group_of("training.compile") and "training.compile" not in BASIC  # an advanced setting
    config = with_value(base_config(tmp_path), "training.compile", True)
    export = export_sdscripts(config, tmp_path / "out")
    dropped = {e.source: e.note for e in export.report.not_mapped}
    assert "not compiled" in dropped["training.compile"]
    folder = tmp_path / "out"
    folder.mkdir()
    for name, text in export.files.items():
        (folder / name).write_text(text)
    assert import_file(folder / "config.toml").config.training.compile is False  # the export leaves it off
    text = (folder / "config.toml").read_text()
    (folder / "config.toml").write_text("torch_compile = true\n" + text)
    result = import_file(folder / "config.toml")
    assert result.config.training.compile is True
    assert [e.target for e in result.report.approximate if e.source == "torch_compile"] == ["training.compile"]
