"""LyCORIS network types (LoHa, LoKr, (IA)³, BOFT, GLoRA, DoRA): config, metadata and real round trips.

Each slow test trains a few steps in a child process, then loads the saved file twice into fresh
tiny models: (a) the way the trainer builds the network, (b) through an outside loader —
lycoris' own ``create_network_from_weights`` (what sd-scripts-style tools use), or for (IA)³,
which that loader cannot read, a plain weight merge as A1111 and ComfyUI do it. Both must give
the same UNet and text-encoder outputs, and differ from the base model's.
"""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from tests.trainer.helpers import train
from trainer.contract.config.schema import Config, NetworkConfig, from_dict, validate

SUFFIXES = {
    "loha": {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "alpha"},
    "lokr": {"lokr_w1", "alpha"},
    "ia3": {"weight", "on_input"},
    "boft": {"oft_blocks", "alpha"},
    "glora": {"a1.weight", "a2.weight", "b1.weight", "b2.weight", "alpha"},
    "lora": {"lora_down.weight", "lora_up.weight", "alpha"},
    "locon": {"lora_down.weight", "lora_up.weight", "alpha"},
}


def _problems(**network) -> list[str]:
    config, problems = from_dict({"model": {"base": "x"}, "dataset": {"path": "y"}, "network": network})
    return [str(p) for p in problems + validate(config)]


def test_unknown_types_and_dora_on_the_wrong_type_are_config_errors():
    assert any("network.type" in p and "loha" in p for p in _problems(type="lohaa"))
    for kind in ("ia3", "boft", "glora"):
        assert any(p.startswith("network.dora") for p in _problems(type=kind, dora=True)), kind
    for kind in ("lora", "locon", "loha", "lokr", "ia3", "boft", "glora"):
        assert _problems(type=kind) == [], kind
    assert _problems(type="lokr", dora=True) == []


def test_lycoris_files_carry_the_lycoris_module_and_its_arguments():
    from trainer.checkpoint import _network_module_and_args

    def meta(**network):
        return _network_module_and_args(Config(network=NetworkConfig(**network)))

    assert meta(type="lora") == ("networks.lora", {})
    assert meta(type="locon", conv_dim=4, conv_alpha=2.0) == ("networks.lora", {"conv_dim": "4", "conv_alpha": "2.0"})
    assert meta(type="loha", conv_dim=4, conv_alpha=2.0) == (
        "lycoris.kohya", {"algo": "loha", "conv_dim": "4", "conv_alpha": "2.0"})
    assert meta(type="ia3") == ("lycoris.kohya", {"algo": "ia3"})
    assert meta(type="lora", dora=True) == ("lycoris.kohya", {"algo": "lora", "dora_wd": "True"})


def _inputs(model, arch: str):
    import torch
    generator = torch.Generator().manual_seed(0)
    config = model.unet.config
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    ids = torch.randint(0, 500, (1, 77), generator=generator)
    context = torch.randn(1, 77, config.cross_attention_dim, generator=generator)
    if arch == "sd15":
        return latents, ids, context, None
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    added = {"text_embeds": torch.randn(1, pooled, generator=generator),
             "time_ids": torch.tensor([[64., 64, 0, 0, 64, 64]])}
    return latents, ids, context, added


def _outputs(model, arch: str) -> list:
    """The UNet's noise prediction and every text encoder's hidden states on fixed inputs."""
    import torch
    latents, ids, context, added = _inputs(model, arch)
    with torch.no_grad():
        unet = model.unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
        return [unet] + [encoder(ids)[0] for encoder in model.text_encoders]


def _fresh(base, arch: str):
    import torch

    from trainer.models import load_base_model
    return load_base_model(str(base), arch, torch.float32, torch.device("cpu"))


def _to_lycoris_names(tensors: dict, model, arch: str) -> dict:
    """The file's names as lycoris' loader looks them up: diffusers UNet paths, no ``text_model_``."""
    from trainer.networks.naming import text_encoder_lora_name
    from trainer.networks.lora import unet_layers
    renames = {}
    if arch == "sdxl":
        ours, theirs = unet_layers(model.unet, "sdxl", True), unet_layers(model.unet, "sd15", True)
        renames = {a.name: b.name for a, b in zip(ours, theirs)}
    count = len(model.text_encoders)
    for index, encoder in enumerate(model.text_encoders):
        # lycoris names a layer by its module path as it is (with or without ``text_model.``).
        prefix = "lora_te_" if count == 1 else f"lora_te{index + 1}_"
        for path, _ in encoder.named_modules():
            renames[text_encoder_lora_name(path, index, count)] = prefix + path.replace(".", "_")
    renamed = {}
    for key, value in tensors.items():
        name, rest = key.split(".", 1)
        renamed[f"{renames.get(name, name)}.{rest}"] = value
    return renamed


def _load_with_lycoris(model, tensors: dict, arch: str) -> int:
    """Apply the file through ``lycoris.kohya.create_network_from_weights``; return the modules it made."""
    from lycoris.kohya import LycorisNetworkKohya, create_network_from_weights
    # Its constructor builds (then discards) default modules, which fail on a diffusers UNet unless
    # the target blocks are narrowed; class attributes, so they are put back afterwards.
    saved = {k: getattr(LycorisNetworkKohya, k) for k in ("UNET_TARGET_REPLACE_MODULE", "UNET_TARGET_REPLACE_NAME")}
    LycorisNetworkKohya.apply_preset({"unet_target_module": ["Transformer2DModel"], "unet_target_name": []})
    try:
        encoders = model.text_encoders if arch == "sdxl" else model.text_encoders[0]
        network, _ = create_network_from_weights(1.0, None, None, encoders, model.unet,
                                                 weights_sd=_to_lycoris_names(tensors, model, arch))
    finally:
        for key, value in saved.items():
            setattr(LycorisNetworkKohya, key, value)
    network.apply_to(encoders, model.unet, True, True)
    return len(network.unet_loras) + len(network.text_encoder_loras)


def _merge_ia3(model, tensors: dict, arch: str) -> int:
    """(IA)³ as A1111 and ComfyUI apply it: each weight scaled by (1 + w) along its output (or input) axis."""
    import torch

    from trainer.networks.lora import text_encoder_layers, unet_layers
    layers = {layer.name: layer.module for layer in unet_layers(model.unet, arch, True)}
    for index, encoder in enumerate(model.text_encoders):
        layers.update({layer.name: layer.module for layer in text_encoder_layers(encoder, index, len(model.text_encoders))})
    merged = 0
    with torch.no_grad():
        for key, value in tensors.items():
            name, rest = key.split(".", 1)
            if rest != "weight":
                continue
            weight = layers[name].weight
            scale = 1 + value.float().reshape(-1)
            if int(tensors[f"{name}.on_input"]):
                weight.mul_(scale.view(1, -1, *[1] * (weight.dim() - 2)))
            else:
                weight.mul_(scale.view(-1, *[1] * (weight.dim() - 1)))
            merged += 1
    return merged


CASES = [("sd15", "loha", False), ("sd15", "lokr", False), ("sd15", "lora", True), ("sd15", "ia3", False),
         ("sd15", "boft", False), ("sd15", "glora", False), ("sd15", "loha", True), ("sd15", "locon", True),
         ("sdxl", "loha", False), ("sdxl", "lokr", False), ("sdxl", "lora", True), ("sdxl", "ia3", False),
         ("sdxl", "boft", False), ("sdxl", "glora", False), ("sdxl", "lokr", True)]


@pytest.mark.slow
@pytest.mark.parametrize("arch,kind,dora", CASES, ids=[f"{a}-{k}{'-dora' if d else ''}" for a, k, d in CASES])
def test_trained_file_reloads_exactly_through_an_outside_loader(request, dataset, make_config, arch, kind, dora):
    import torch
    from safetensors.torch import load_file

    from trainer.contract.config.toml_io import load_config
    from trainer.networks import build_network

    base = request.getfixturevalue(f"tiny_{arch}")
    config_path = make_config(base, dataset, network={"type": kind, "dora": dora, "dim": 8 if kind == "boft" else 4, "alpha": 2.0,
                                                      "conv_dim": 4, "conv_alpha": 2.0},
                              optimizer={"name": "adamw", "unet_lr": 1e-2, "text_encoder_lr": 1e-2})
    run, events, status = train(config_path)
    assert status == 0, run.log.read_text()[-3000:]
    path = run.final_lora("test")

    # The file: kohya prefixes, the type's tensors, the LyCORIS metadata.
    tensors = load_file(str(path))
    prefixes = {"lora_unet_", "lora_te_"} if arch == "sd15" else {"lora_unet_", "lora_te1_", "lora_te2_"}
    assert {p for p in prefixes if any(k.startswith(p) for k in tensors)} == prefixes
    assert all(any(k.startswith(p) for p in prefixes) for k in tensors)
    suffixes = {k.split(".", 1)[1] for k in tensors}
    assert SUFFIXES[kind] <= suffixes
    assert ("dora_scale" in suffixes) == dora
    if arch == "sdxl":  # SGM names, as sd-scripts-trained LyCORIS files for SDXL have
        assert any(k.startswith("lora_unet_input_blocks_") for k in tensors)
        assert not any(k.startswith("lora_unet_down_blocks_") for k in tensors)
    assert all(k.startswith(("lora_te_text_model_", "lora_te1_text_model_", "lora_te2_text_model_", "lora_unet_"))
               for k in tensors)
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_module"] == "lycoris.kohya"
    args = json.loads(meta["ss_network_args"])
    assert args["algo"] == kind and (args.get("dora_wd") == "True") == dora

    fp32 = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    base_out = _outputs(_fresh(base, arch), arch)

    # (a) The trainer's own network, loaded from the file.
    config, problems = load_config(config_path)
    assert not problems
    model = _fresh(base, arch)
    network = build_network(config.network, model.unet, model.text_encoders, arch, True)
    network.load_kohya_state_dict(fp32)
    network.attach()
    ours = _outputs(model, arch)

    # (b) An outside loader on another fresh model.
    model = _fresh(base, arch)
    modules = _merge_ia3(model, fp32, arch) if kind == "ia3" else _load_with_lycoris(model, fp32, arch)
    assert modules == len(network.all_loras())
    theirs = _outputs(model, arch)

    for a, b, plain in zip(ours, theirs, base_out):
        scale = plain.abs().max().item()
        assert torch.allclose(a, b, atol=1e-4 * scale, rtol=1e-4), (a - b).abs().max()
        assert (a - plain).abs().max() > 1e-3 * scale  # the network really changes the model
