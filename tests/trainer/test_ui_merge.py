"""The UI merge rules of ``ui_merge`` against LyCORIS' own DoRA, on one layer of SD1.5's shape.

A DoRA file is only right if the UIs rebuild the weight the network trained with. LyCORIS can keep
the magnitude along the output axis (its default) or the input axis; A1111 and ComfyUI agree with
training only for the input axis, which is why the trainer saves that form. The output-axis cases
show the judges can tell the difference.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
lycoris_modules = pytest.importorskip("lycoris.modules")

from tests.trainer.ui_merge import a1111_weight, comfyui_weight  # noqa: E402


def _trained_dora(layer, on_output: bool, seed: int):
    """A LyCORIS DoRA module on ``layer`` with weights moved as a real training would move them."""
    module = lycoris_modules.LoConModule("layer", layer, 1.0, 8, 4.0, weight_decompose=True, wd_on_out=on_output)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.lora_up.weight.normal_(0, 0.02, generator=generator)
        module.lora_down.weight.normal_(0, 0.3, generator=generator)
        module.dora_scale.mul_(1 + 0.05 * torch.randn(module.dora_scale.shape, generator=generator))
    return module


def _parts(module) -> dict:
    return {k: v.detach().float() for k, v in module.state_dict().items()}


def _relative_error(weight: torch.Tensor, layer, module) -> float:
    x = torch.randn(16, layer.in_features, generator=torch.Generator().manual_seed(7))
    module.apply_to()
    try:
        trained = layer(x)
    finally:
        module.restore()
    merged = torch.nn.functional.linear(x, weight, layer.bias)
    return ((merged - trained).norm() / (trained - layer(x)).norm()).item()


def _layer(seed: int):
    torch.manual_seed(seed)
    return torch.nn.Linear(320, 640)  # an SD1.5 attention projection's shape


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_input_axis_dora_merges_in_a1111_and_comfyui_exactly_as_trained(seed):
    layer = _layer(seed)
    module = _trained_dora(layer, on_output=False, seed=seed)
    assert module.dora_scale.shape == (1, 320)
    with torch.no_grad():
        for weight in (a1111_weight(layer.weight, _parts(module)), comfyui_weight(layer.weight, _parts(module))):
            # Relative to the change DoRA makes, not to the whole output: a 1e-4 slip would still show.
            assert _relative_error(weight, layer, module) < 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_output_axis_dora_is_far_off_in_a1111_and_off_in_comfyui(seed):
    # LyCORIS' default form: A1111 normalises along the wrong axis; ComfyUI divides by the norm of the
    # weight before the update. Both load the file without a word.
    layer = _layer(seed)
    module = _trained_dora(layer, on_output=True, seed=seed)
    assert module.dora_scale.shape == (640, 1)
    with torch.no_grad():
        assert _relative_error(a1111_weight(layer.weight, _parts(module)), layer, module) > 0.1
        assert _relative_error(comfyui_weight(layer.weight, _parts(module)), layer, module) > 1e-3
