"""LoRA files for the inspect tests: saved by the trainer's own saver, or written by hand as other tools do.

    python -m tests.unit.lora_files SPEC.json

SPEC is ``{"out": DIR, "dataset": DIR, "files": [{"name", "model", "arch", "network": {...},
"save_precision", "text_encoder_lr"}, ...]}``. Each file's network is built on the tiny model the
way the trainer builds it (``trainer.networks.build_network``) with the metadata the trainer
writes (``trainer.checkpoint.training_metadata``, tag counts from the dataset's captions), and
saved by ``trainer.checkpoint.save_lora``. Beside each, ``NAME.layers.json`` records what the
trainer adapted — every module's name, model part, diffusers path (SGM path for SDXL) and
whether it is a 3×3 convolution — so the tests can check the inspector against the trainer's
own account rather than against hard-coded numbers.

Run in a child process so the test process itself never imports torch. ``write_safetensors`` and
``write_foreign_lora`` need no torch at all: they write the format byte by byte, as a file from
another trainer would arrive.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "I64": 8}


def _pack(dtype: str, value: float) -> bytes:
    if dtype == "BF16":
        return struct.pack("<f", value)[2:]  # the top half of a float32
    return struct.pack({"F16": "<e", "F32": "<f", "I64": "<q"}[dtype], value)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], float | None]],
                      metadata: dict[str, str] | None = None) -> Path:
    """Write a .safetensors file: name → (dtype, shape, value of a scalar or None for zeros)."""
    header: dict = {"__metadata__": metadata} if metadata is not None else {}
    chunks, offset = [], 0
    for name, (dtype, shape, value) in tensors.items():
        count = 1
        for size in shape:
            count *= size
        data = _pack(dtype, value) if value is not None else bytes(count * DTYPE_BYTES[dtype])
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(chunks))
    return path


FOREIGN_LAYERS = {
    # module: (in, out, kernel, dim, alpha, alpha dtype), with real SD1.5 widths; dims vary by block as a
    # resized or block-weighted file's do.
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (768, 320, 0, 16, 8.0, "F16"),
    "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_v": (768, 320, 0, 16, 8.0, "F16"),
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q": (640, 640, 0, 16, 8.0, "F16"),
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v": (768, 1280, 0, 8, 4.0, "F16"),
    "lora_unet_up_blocks_3_attentions_2_proj_out": (320, 320, 1, 8, 4.0, "F16"),
    "lora_unet_up_blocks_1_resnets_0_conv1": (2560, 1280, 3, 4, 1.0, "F16"),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (768, 768, 0, 4, 1.0, "BF16"),
    "lora_te_text_model_encoder_layers_11_mlp_fc1": (768, 3072, 0, 4, 1.0, "F32"),
}
"""The hand-written file's layers (kernel 0: a linear layer; 1: a 1×1 convolution)."""
FOREIGN_TAGS = {"10_mychar": {"mychar": 20, " red hair": 18, "smile": 7},
                "5_mychar outfit": {"mychar": 10, "red hair": 9, "armor": 10}}
"""Tag counts per dataset folder, as sd-scripts writes them (it keeps a caption's leading space)."""


def temporary_lora(metadata: dict[str, str]) -> str:
    """A small LoRA file with this metadata, in a folder removed when the process ends (what the advice reads of
    a ``network.weights`` file is its header)."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="loratui-weights-"))
    atexit.register(shutil.rmtree, folder, True)
    tensors = {"lora_unet_x.lora_down.weight": ("F16", [2, 2], None),
               "lora_unet_x.lora_up.weight": ("F16", [2, 2], None)}
    return str(write_safetensors(folder / "continued.safetensors", tensors, metadata))


def write_foreign_lora(path: Path) -> Path:
    """An SD1.5 LoCon as sd-scripts' ``networks.lora`` saves one, with its ``ss_*`` metadata."""
    tensors = {}
    for name, (width_in, width_out, kernel, dim, alpha, alpha_dtype) in FOREIGN_LAYERS.items():
        conv = [kernel, kernel] if kernel else []
        tensors[f"{name}.alpha"] = (alpha_dtype, [], alpha)
        tensors[f"{name}.lora_down.weight"] = ("F16", [dim, width_in] + conv, None)
        tensors[f"{name}.lora_up.weight"] = ("F16", [width_out, dim] + ([1, 1] if kernel else []), None)
    metadata = {
        "ss_session_id": "1977123", "ss_training_started_at": "1700000000.5", "ss_output_name": "mychar",
        "ss_learning_rate": "0.0001", "ss_unet_lr": "0.0001", "ss_text_encoder_lr": "5e-05",
        "ss_num_train_images": "250", "ss_num_reg_images": "0", "ss_num_batches_per_epoch": "125",
        "ss_num_epochs": "12", "ss_gradient_checkpointing": "True", "ss_gradient_accumulation_steps": "1",
        "ss_max_train_steps": "1500", "ss_lr_warmup_steps": "0", "ss_lr_scheduler": "cosine_with_restarts",
        "ss_network_module": "networks.lora", "ss_network_dim": "16", "ss_network_alpha": "8.0",
        "ss_network_args": json.dumps({"conv_dim": "4", "conv_alpha": "1"}), "ss_network_dropout": "None",
        "ss_mixed_precision": "fp16", "ss_full_fp16": "False", "ss_v2": "False", "ss_base_model_version": "sd_v1",
        "ss_clip_skip": "2", "ss_max_token_length": "225", "ss_cache_latents": "True", "ss_seed": "42",
        "ss_noise_offset": "0.05", "ss_min_snr_gamma": "5.0", "ss_multires_noise_iterations": "None",
        "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit(weight_decay=0.1)", "ss_max_grad_norm": "1.0",
        "ss_batch_size_per_device": "2", "ss_total_batch_size": "2", "ss_resolution": "(512, 512)",
        "ss_enable_bucket": "True", "ss_keep_tokens": "1", "ss_shuffle_caption": "True",
        "ss_dataset_dirs": json.dumps({"10_mychar": {"n_repeats": 10, "img_count": 20},
                                       "5_mychar outfit": {"n_repeats": 5, "img_count": 10}}),
        "ss_tag_frequency": json.dumps(FOREIGN_TAGS),
        "ss_sd_model_name": "v1-5-pruned-emaonly.safetensors",
        "ss_new_sd_model_hash": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        "ss_training_finished_at": "1700003600.5", "ss_steps": "1500", "ss_epoch": "12",
        "sshs_model_hash": "0123456789abcdef", "modelspec.architecture": "stable-diffusion-v1/lora",
    }
    return write_safetensors(path, tensors, metadata)


def _layers(model, arch: str) -> dict[str, dict]:
    from trainer.networks.lora import text_encoder_layers, unet_layers
    from trainer.networks.naming import diffusers_to_sgm

    unet = model.unet
    paths = {id(module): path for path, module in unet.named_modules()}
    with_attention = [t.startswith("CrossAttn") for t in unet.config.up_block_types]
    found = {}
    for layer in unet_layers(unet, arch, with_conv_blocks=True):
        path = paths[id(layer.module)]
        if arch == "sdxl":
            path = diffusers_to_sgm(path, unet.config.layers_per_block, with_attention)
        found[layer.name] = {"part": "unet", "path": path, "spatial": layer.is_spatial_conv}
    count = len(model.text_encoders)
    for index, encoder in enumerate(model.text_encoders):
        part = "te" if count == 1 else f"te{index + 1}"
        for layer in text_encoder_layers(encoder, index, count):
            found[layer.name] = {"part": part, "path": "", "spatial": False}
    return found


def main(spec_path: str) -> int:
    import torch

    from trainer.checkpoint import new_session_id, save_lora, training_metadata
    from trainer.contract.captions import read_caption, tag_frequency, with_trigger
    from trainer.contract.config.schema import from_dict, validate
    from trainer.models import load_base_model
    from trainer.networks import build_network

    spec = json.loads(Path(spec_path).read_text())
    out, dataset = Path(spec["out"]), Path(spec["dataset"])
    models = {}
    for item in spec["files"]:
        config, problems = from_dict({
            "model": {"base": item["model"], "arch": item["arch"]},
            "dataset": {"path": str(dataset), "trigger_word": "zkmascot", "repeats": 3, "resolution": 128},
            "network": item["network"],
            "optimizer": {"name": "adamw", "unet_lr": 4e-4, "text_encoder_lr": item.get("text_encoder_lr", 1e-4)},
            "scheduler": {"name": "cosine", "warmup_steps": 5},
            "training": {"epochs": 6, "batch_size": 2, "seed": 1234},
            "output": {"name": item["name"], "save_precision": item.get("save_precision", "fp16")}})
        problems += validate(config)
        assert not problems, problems
        arch = item["arch"]
        if item["model"] not in models:
            models[item["model"]] = load_base_model(item["model"], arch, torch.float32, torch.device("cpu"))
        model = models[item["model"]]
        train_te = config.optimizer.text_encoder_lr > 0
        network = build_network(config.network, model.unet, model.text_encoders, arch, train_te)
        captions = [with_trigger(read_caption(p), config.dataset.trigger_word) for p in sorted(dataset.glob("*.txt"))]
        metadata = training_metadata(config, arch, resolution=128, images=len(captions), total_steps=36,
                                     batches_per_epoch=6, tag_frequency=tag_frequency(captions),
                                     started_at=1_700_000_000.0, session_id=new_session_id())
        path = save_lora(out / f"{item['name']}.safetensors", network, metadata, epoch=6, step=36,
                         precision=config.output.save_precision)
        layers = _layers(model, arch)
        adapted = {m.lora_name: layers[m.lora_name] for m in network.all_loras()}
        path.with_suffix(".layers.json").write_text(json.dumps(adapted))
    return 0


if __name__ == "__main__":
    from trainer.quiet import quiet_libraries

    quiet_libraries()
    sys.exit(main(sys.argv[1]))
