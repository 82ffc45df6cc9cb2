"""Continuing a LoRA file (``network.weights``, ``network.dim_from_weights``) on tiny real models.

In process, each network type is saved the way the loop saves it and a fresh network is started
from the file the way the loop starts it (``network_shape`` → ``build_network`` →
``load_start_weights``): before any update, every one of its tensors must equal the file's, and
the torch-free preflight must read the real file as the type, architecture and dims it is. Then
the real trainer: a run started from an earlier run's LoRA moves no weight further from that
file than Adam's steps can, and a resumed run ignores the file in favour of its saved state.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.trainer.helpers import finish_trainer, of_type, start_trainer, train
from trainer.checkpoint import save_lora
from trainer.contract.config.schema import Config, ModelConfig, NetworkConfig
from trainer.contract.config.toml_io import dumps, load_config
from trainer.contract.errors import TrainerError
from trainer.contract.events import EventWriter, read_events
from trainer.contract.lora_weights import check_network_weights, read_start_file
from trainer.contract.rundir import RunPaths
from trainer.models import load_base_model
from trainer.networks import build_network
from trainer.start_weights import load_start_weights, network_shape

TYPES = [("lora", False), ("locon", False), ("loha", False), ("lokr", False), ("ia3", False), ("boft", False),
         ("glora", False), ("lora", True)]


def _model(base, arch: str):
    return load_base_model(str(base), arch, torch.float32, torch.device("cpu"))


def _saved_network(base, arch: str, network: NetworkConfig, path, seed: int, ranks=None) -> dict:
    """A network with every weight moved off its start, saved as the loop saves (fp16); its tensors in fp32."""
    model = _model(base, arch)
    torch.manual_seed(seed)
    built = build_network(network, model.unet, model.text_encoders, arch, True, ranks)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in built.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    save_lora(path, built, {}, epoch=1, step=1, precision="fp16")
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def _started(base, arch: str, config: Config, events: EventWriter):
    """The network as the loop builds it for ``config`` before the first update."""
    model = _model(base, arch)
    torch.manual_seed(123)  # another random start than the file's: only loading can make them equal
    config, ranks = network_shape(config)
    network = build_network(config.network, model.unet, model.text_encoders, arch, True, ranks)
    load_start_weights(network, config.network.weights, events)
    return config, network


@pytest.mark.parametrize("kind,dora", TYPES, ids=[f"{k}{'-dora' if d else ''}" for k, d in TYPES])
def test_every_type_starts_from_exactly_the_file(tiny_sd15, tmp_path, kind, dora):
    network = NetworkConfig(type=kind, dim=4, alpha=2.0, conv_dim=2, conv_alpha=1.0, dora=dora)
    path = tmp_path / "start.safetensors"
    saved = _saved_network(tiny_sd15, "sd15", network, path, seed=7)
    config = Config(model=ModelConfig(base=str(tiny_sd15)), network=dataclasses.replace(network, weights=str(path)))
    assert check_network_weights(config) == []  # the torch-free reader agrees with the real file
    assert read_start_file(path).network_type == kind and read_start_file(path).arch == "sd15"
    events = EventWriter(tmp_path / "events.jsonl")
    _, started = _started(tiny_sd15, "sd15", config, events)
    now = started.kohya_state_dict(torch.float32)
    assert now.keys() == saved.keys()
    assert all(torch.equal(now[k].to(saved[k].dtype), saved[k]) for k in saved), kind
    assert of_type(read_events(tmp_path / "events.jsonl"), "warning") == []


def test_an_sdxl_file_is_read_as_sdxl_and_refused_for_another_dim(tiny_sdxl, tmp_path):
    network = NetworkConfig(type="locon", dim=4, alpha=2.0, conv_dim=2, conv_alpha=1.0)
    path = tmp_path / "xl.safetensors"
    saved = _saved_network(tiny_sdxl, "sdxl", network, path, seed=3)
    config = Config(model=ModelConfig(base=str(tiny_sdxl)), network=dataclasses.replace(network, weights=str(path)))
    assert read_start_file(path).arch == "sdxl" and check_network_weights(config) == []
    other = dataclasses.replace(config, network=dataclasses.replace(config.network, conv_dim=4))
    assert ["network.weights"] == [p.field for p in check_network_weights(other)]
    _, started = _started(tiny_sdxl, "sdxl", config, EventWriter(tmp_path / "events.jsonl"))
    now = started.kohya_state_dict(torch.float32)
    assert all(torch.equal(now[k], saved[k]) for k in saved)
    # LoHa and LoKr flatten the kernel into their shapes: their 3×3 convolutions are told by name.
    for kind in ("loha", "lokr"):
        path = tmp_path / f"{kind}.safetensors"
        _saved_network(tiny_sdxl, "sdxl", dataclasses.replace(network, type=kind), path, seed=4)
        config = Config(model=ModelConfig(base=str(tiny_sdxl)),
                        network=dataclasses.replace(network, type=kind, weights=str(path)))
        assert check_network_weights(config) == [], kind
        by_name = {n for n, m in read_start_file(path).modules.items() if m.spatial}
        assert by_name and by_name == {n for n, m in read_start_file(tmp_path / "xl.safetensors").modules.items()
                                       if m.spatial}  # the LoCon's, told by its kernels' shapes


def test_dim_from_weights_builds_every_layer_at_the_files_rank(tiny_sd15, tmp_path):
    network = NetworkConfig(type="lora", dim=4, alpha=2.0)
    model = _model(tiny_sd15, "sd15")
    probe = build_network(network, model.unet, model.text_encoders, "sd15", True)
    # A resized file: every third layer at rank 2 (alpha 1), the rest at rank 4.
    names = [m.lora_name for m in probe.all_loras()]
    ranks = {name: (2, 1.0) for name in names[::3]}
    path = tmp_path / "resized.safetensors"
    saved = _saved_network(tiny_sd15, "sd15", network, path, seed=5, ranks=ranks)
    config = Config(model=ModelConfig(base=str(tiny_sd15)),
                    network=NetworkConfig(type="lora", dim=16, alpha=8.0, weights=str(path), dim_from_weights=True))
    shaped, started = _started(tiny_sd15, "sd15", config, EventWriter(tmp_path / "events.jsonl"))
    assert (shaped.network.dim, shaped.network.alpha) == (4, 2.0)  # what most layers have: the metadata's dim
    for lora in started.all_loras():
        assert (lora.dim, float(lora.alpha)) == ranks.get(lora.lora_name, (4, 2.0)), lora.lora_name
    now = started.kohya_state_dict(torch.float32)
    assert now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)


def test_a_unet_only_file_starts_the_text_encoder_fresh_with_a_warning(tiny_sd15, tmp_path):
    network = NetworkConfig(type="lora", dim=4, alpha=2.0)
    path = tmp_path / "full.safetensors"
    saved = _saved_network(tiny_sd15, "sd15", network, path, seed=9)
    unet_only = {k: v.half() for k, v in saved.items() if k.startswith("lora_unet_")}
    save_file(unet_only, str(tmp_path / "unet.safetensors"))
    config = Config(model=ModelConfig(base=str(tiny_sd15)),
                    network=dataclasses.replace(network, weights=str(tmp_path / "unet.safetensors")))
    _, started = _started(tiny_sd15, "sd15", config, EventWriter(tmp_path / "events.jsonl"))
    now = started.kohya_state_dict(torch.float32)
    assert all(torch.equal(now[k], saved[k]) for k in unet_only)
    te_ups = [v for k, v in now.items() if k.startswith("lora_te_") and k.endswith("lora_up.weight")]
    assert te_ups and all(not v.any() for v in te_ups)  # a fresh start: no effect until trained
    warnings = of_type(read_events(tmp_path / "events.jsonl"), "warning")
    assert [w["code"] for w in warnings] == ["weights_text_encoder_fresh"]
    # A text-encoder layer missing while others are present is no fresh start: it is another network.
    partial = dict(unet_only, **{k: v.half() for k, v in saved.items() if k.startswith("lora_te_text_model_"
                                                                                        "encoder_layers_0_")})
    save_file(partial, str(tmp_path / "partial.safetensors"))
    config = dataclasses.replace(config, network=dataclasses.replace(network, weights=str(tmp_path / "partial.safetensors")))
    with pytest.raises(TrainerError, match="network.weights: partial.safetensors lacks"):
        _started(tiny_sd15, "sd15", config, EventWriter(tmp_path / "events2.jsonl"))


@pytest.mark.slow
def test_a_run_continues_an_earlier_runs_lora(trained_sd15, tiny_sd15, dataset, make_config):
    start_path = trained_sd15.run.final_lora("test")
    start = {k: v.float() for k, v in load_file(str(start_path)).items()}
    lr, epochs = 1e-6, 1
    config = make_config(tiny_sd15, dataset,
                         network={"type": "lora", "dim": 16, "alpha": 8.0, "weights": str(start_path),
                                  "dim_from_weights": True},
                         optimizer={"name": "adamw", "unet_lr": lr, "text_encoder_lr": lr},
                         training={"epochs": epochs}, output={"save_precision": "fp32"})
    run, events, status = train(config)
    assert status == 0, events[-1]
    steps = of_type(events, "step")[-1]["step"]
    result = load_file(str(run.final_lora("test")))
    assert result.keys() == start.keys()
    # Adam moves a weight by at most a few times the learning rate per step: every weight of the
    # result lies that close to the file's, so the run began exactly there (a fresh start would not:
    # its lora_up is zero where the file's is not).
    bound = 4 * lr * steps + 1e-7
    assert max((result[k].float() - start[k]).abs().max().item() for k in start) <= bound
    assert any(start[k].abs().max() > 100 * bound for k in start if k.endswith("lora_up.weight"))
    assert any(not torch.equal(result[k].float(), start[k]) for k in start)  # and it did train
    assert all(v.shape[0] == 4 for k, v in result.items() if k.endswith("lora_down.weight"))  # the file's dim
    with safe_open(str(run.final_lora("test")), "pt") as handle:
        meta = handle.metadata()
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "2.0")
    assert meta["loratui_network_weights"] == start_path.name


@pytest.mark.slow
def test_resume_takes_the_saved_state_not_the_file(trained_sd15, tmp_path):
    copy = RunPaths(tmp_path / trained_sd15.run.root.name)
    shutil.copytree(trained_sd15.run.root, copy.root)
    reference = load_file(str(copy.final_lora("test")))
    copy.final_lora("test").unlink()
    # Point the run at a file of the same network but other weights, then take the file away: a resumed
    # run must neither need it nor read it.
    config, problems = load_config(copy.config)
    assert not problems
    elsewhere = tmp_path / "gone.safetensors"
    shutil.copy(trained_sd15.run.final_lora("test"), elsewhere)
    copy.config.write_text(dumps(dataclasses.replace(config, network=dataclasses.replace(
        config.network, weights=str(elsewhere)))))
    elsewhere.unlink()
    assert finish_trainer(start_trainer(copy, "--resume")) == 0, read_events(copy.events)[-1]
    final = load_file(str(copy.final_lora("test")))
    assert final.keys() == reference.keys() and all(torch.equal(final[k], reference[k]) for k in final)
    assert of_type(read_events(copy.events), "start")[-1]["resumed_from_step"] > 0


def test_loading_refuses_another_shape_or_alpha_even_without_the_preflight(tiny_sd15, tmp_path):
    # The preflight names these first; the loader must not load them partly if it is ever skipped.
    path = tmp_path / "dim4.safetensors"
    _saved_network(tiny_sd15, "sd15", NetworkConfig(type="lora", dim=4, alpha=2.0), path, seed=1)
    events = EventWriter(tmp_path / "events.jsonl")
    wider = Config(model=ModelConfig(base=str(tiny_sd15)),
                   network=NetworkConfig(type="lora", dim=8, alpha=2.0, weights=str(path)))
    with pytest.raises(TrainerError, match=r"network.weights: dim4.safetensors holds .* as \(4, "):
        _started(tiny_sd15, "sd15", wider, events)
    louder = dataclasses.replace(wider, network=dataclasses.replace(wider.network, dim=4, alpha=4.0))
    with pytest.raises(TrainerError, match="network.weights: dim4.safetensors has alpha 2 .* built with 4"):
        _started(tiny_sd15, "sd15", louder, events)
