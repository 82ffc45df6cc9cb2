"""Every network type (LoRA, LoCon, LoHa, LoKr, (IA)³, BOFT, GLoRA, DoRA): config, metadata, round trips.

Each type, on both architectures, gets random non-zero weights (a stronger test than a few
training steps, which leave many weights near their start), is saved the way the loop saves, and
is loaded twice into fresh tiny models: (a) the way the trainer builds the network, (b) through an
outside judge — lycoris' own ``create_network_from_weights`` (what sd-scripts-style tools use);
for DoRA, the weight merges of A1111 and ComfyUI (``tests/trainer/ui_merge.py``); for (IA)³, which
lycoris' loader cannot read and ComfyUI ignores, A1111's merge. All must give the same UNet and
text-encoder outputs as the network had in memory, and differ from the base model's. One real
training per architecture proves the loop writes files that pass the same checks.
"""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from tests.trainer.helpers import train
from tests.trainer.ui_merge import merge_file
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
    assert meta(type="lora", dora=True) == ("lycoris.kohya",
                                            {"algo": "lora", "dora_wd": "True", "wd_on_output": "False"})


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


def _randomized(network, seed: int) -> None:
    """Move every weight of the network away from its initial value (``lora_up`` starts at zero)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def _check_file(path, arch: str, kind: str, dora: bool) -> dict:
    """The file's layout and metadata as sd-scripts-style tools expect them; its tensors in fp32."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    prefixes = {"lora_unet_", "lora_te_"} if arch == "sd15" else {"lora_unet_", "lora_te1_", "lora_te2_"}
    assert {p for p in prefixes if any(k.startswith(p) for k in tensors)} == prefixes
    assert all(any(k.startswith(p) for p in prefixes) for k in tensors)
    suffixes = {k.split(".", 1)[1] for k in tensors}
    assert SUFFIXES[kind] <= suffixes
    assert ("dora_scale" in suffixes) == dora
    # DoRA magnitudes along the input axis, (1, in[, 1, 1]): the form A1111 and ComfyUI apply exactly.
    assert all(v.shape[0] == 1 and v.shape[1] > 1 for k, v in tensors.items() if k.endswith(".dora_scale"))
    if arch == "sdxl":  # SGM names, as sd-scripts-trained LyCORIS files for SDXL have
        assert any(k.startswith("lora_unet_input_blocks_") for k in tensors)
        assert not any(k.startswith("lora_unet_down_blocks_") for k in tensors)
    assert all(k.startswith(("lora_te_text_model_", "lora_te1_text_model_", "lora_te2_text_model_", "lora_unet_"))
               for k in tensors)
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    if kind in ("lora", "locon") and not dora:
        assert meta["ss_network_module"] == "networks.lora"
    else:
        assert meta["ss_network_module"] == "lycoris.kohya"
        args = json.loads(meta["ss_network_args"])
        assert args["algo"] == kind and (args.get("dora_wd") == "True") == dora
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def _reload_both_ways(tensors: dict, config, base, arch: str) -> tuple[list, list[list], list]:
    """The outputs of (a) our network loaded from the file, (b) each outside judge, and the base model's.

    The judges: lycoris' own loader for most types; for DoRA, the merges of A1111 and of ComfyUI (the
    file is saved in the form both apply exactly, which lycoris' loader refuses); for (IA)³, which
    neither lycoris' loader nor ComfyUI reads, A1111's merge.
    """
    from trainer.networks import build_network

    base_out = _outputs(_fresh(base, arch), arch)
    model = _fresh(base, arch)
    network = build_network(config.network, model.unet, model.text_encoders, arch, True)
    network.load_kohya_state_dict(tensors)
    network.attach()
    ours = _outputs(model, arch)

    suffixes = {k.split(".", 1)[1] for k in tensors}
    judges = ["a1111", "comfyui"] if "dora_scale" in suffixes else ["a1111"] if "on_input" in suffixes \
        else ["lycoris"]
    theirs = []
    for judge in judges:
        model = _fresh(base, arch)
        modules = _load_with_lycoris(model, tensors, arch) if judge == "lycoris" \
            else merge_file(model, tensors, arch, judge)
        assert modules == len(network.all_loras())
        theirs.append(_outputs(model, arch))
    return ours, theirs, base_out


def _assert_same_and_changed(ours: list, theirs: list[list], base_out: list) -> None:
    import torch

    for judge in theirs:
        assert len(ours) == len(judge) == len(base_out) >= 2
        for a, b, plain in zip(ours, judge, base_out):
            scale = plain.abs().max().item()
            assert torch.allclose(a, b, atol=1e-4 * scale, rtol=1e-4), (a - b).abs().max()
            assert (a - plain).abs().max() > 1e-3 * scale  # the network really changes each model


KINDS = [("lora", False), ("locon", False), ("loha", False), ("lokr", False), ("ia3", False), ("boft", False),
         ("glora", False), ("lora", True), ("locon", True), ("loha", True), ("lokr", True)]
CASES = [(arch, kind, dora) for arch in ("sd15", "sdxl") for kind, dora in KINDS]


@pytest.mark.parametrize("arch,kind,dora", CASES, ids=[f"{a}-{k}{'-dora' if d else ''}" for a, k, d in CASES])
def test_every_type_saves_a_file_that_reloads_exactly_through_an_outside_loader(request, tmp_path, arch, kind, dora):
    """Random non-zero weights, saved as the loop saves them, reloaded two ways into fresh models."""
    import torch

    from trainer.checkpoint import save_lora, training_metadata
    from trainer.networks import build_network

    base = request.getfixturevalue(f"tiny_{arch}")
    config, problems = from_dict({
        "model": {"base": str(base)}, "dataset": {"path": str(tmp_path)},
        "network": {"type": kind, "dora": dora, "dim": 8 if kind == "boft" else 4, "alpha": 2.0, "conv_dim": 4,
                    "conv_alpha": 2.0},
        "output": {"save_precision": "fp32"}})
    assert not problems + validate(config)
    model = _fresh(base, arch)
    network = build_network(config.network, model.unet, model.text_encoders, arch, True)
    _randomized(network, seed=len(request.node.name))
    network.attach()
    in_memory = _outputs(model, arch)
    metadata = training_metadata(config, arch, resolution=128, images=12, total_steps=1, batches_per_epoch=1,
                                 tag_frequency={}, started_at=0.0, session_id="1")
    path = save_lora(tmp_path / "lora.safetensors", network, metadata, epoch=1, step=1, precision="fp32")

    tensors = _check_file(path, arch, kind, dora)
    weights = {k: v for k, v in tensors.items() if k.split(".", 1)[1] not in ("alpha", "on_input")}
    assert [k for k, v in weights.items() if not v.abs().max() > 0] == []  # every saved weight is non-zero
    ours, theirs, base_out = _reload_both_ways(tensors, config, base, arch)
    _assert_same_and_changed(ours, theirs, base_out)
    for saved, kept in zip(ours, in_memory):  # the file holds exactly the network that was in memory
        assert torch.allclose(saved, kept, atol=1e-5 * kept.abs().max().item(), rtol=1e-5)


TRAINED = [("sd15", "loha", False), ("sdxl", "lokr", True)]


@pytest.mark.slow
@pytest.mark.parametrize("arch,kind,dora", TRAINED, ids=[f"{a}-{k}{'-dora' if d else ''}" for a, k, d in TRAINED])
def test_a_trained_file_passes_the_same_checks(request, dataset, make_config, arch, kind, dora):
    """The loop, in its own process, writes the file the round trips above check (fp16, as it saves by default)."""
    from trainer.contract.config.toml_io import load_config

    base = request.getfixturevalue(f"tiny_{arch}")
    config_path = make_config(base, dataset, network={"type": kind, "dora": dora, "dim": 4, "alpha": 2.0,
                                                      "conv_dim": 4, "conv_alpha": 2.0},
                              optimizer={"name": "adamw", "unet_lr": 1e-2, "text_encoder_lr": 1e-2})
    run, events, status = train(config_path)
    assert status == 0, run.log.read_text()[-3000:]
    config, problems = load_config(config_path)
    assert not problems
    tensors = _check_file(run.final_lora("test"), arch, kind, dora)
    _assert_same_and_changed(*_reload_both_ways(tensors, config, base, arch))


def test_the_boft_rank_check_agrees_with_lycoris_on_every_width_and_rank():
    from lycoris.functional.general import power2factorization

    from trainer.contract.boft_rank import rank_fits
    for width in range(1, 1300):
        for rank in range(1, 40):
            assert (power2factorization(width, rank)[1] != 0) == rank_fits(rank, width), (width, rank)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_the_widths_read_from_a_model_folder_are_those_boft_adapts(request, arch):
    from trainer.contract.boft_rank import model_widths
    from trainer.networks import build_network

    base = request.getfixturevalue(f"tiny_{arch}")
    config, _ = from_dict({"model": {"base": str(base)}, "dataset": {"path": "d"}, "network": {"type": "boft"}})
    model = _fresh(base, arch)
    network = build_network(config.network, model.unet, model.text_encoders, arch, True)
    adapted = {module.dim for module in network.all_loras()}  # lycoris' output width of each adapted layer
    assert set(model_widths(str(base), arch, True)) == adapted
