"""Tiny random-weight SD1.5 and SDXL models in the diffusers folder layout, built offline.

They have the real architectures' structure (cross-attention UNet, CLIP text encoder(s), VAE,
DDPM schedule, SDXL's size conditioning) at a size that trains in milliseconds per step on a
CPU. The demo and the tests use them; nothing here downloads anything.

    python -m trainer.tools.tiny OUT_DIR [--arch sd15|sdxl] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
# A few merges so common caption words become single tokens, as in the real CLIP vocabulary.
MERGES = [("t", "h"), ("e", "r"), ("i", "n"), ("a", "n"), ("o", "n"), ("r", "e"), ("h", "a"),
          ("a", "i"), ("ha", "i"), ("hai", "r</w>"), ("e", "d</w>"), ("in", "g</w>"),
          ("th", "e</w>"), ("o", "r"), ("a", "r"), ("e", "n"), ("a", "t")]


def _byte_alphabet() -> list[str]:
    # CLIP's byte-level BPE maps each byte to a printable character; rebuilt here so the
    # tokenizer needs no vocabulary file from the hub.
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def build_tokenizer():
    """A working CLIP tokenizer with a byte-level vocabulary (any caption tokenizes)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for char in _byte_alphabet():
        vocab[char] = len(vocab)
    for char in _byte_alphabet():
        vocab[char + "</w>"] = len(vocab)
    for left, right in MERGES:
        vocab.setdefault(left + right, len(vocab))
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    try:
        return CLIPTokenizer(vocab=vocab, merges=list(MERGES), model_max_length=77)
    except TypeError:  # transformers 4.x builds it from files only
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            vocab_file, merges_file = Path(folder) / "vocab.json", Path(folder) / "merges.txt"
            vocab_file.write_text(json.dumps(vocab))
            merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
            return CLIPTokenizer(vocab_file=str(vocab_file), merges_file=str(merges_file), model_max_length=77)


def _text_config(tokenizer, hidden_size: int = 32, projection_dim: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                          projection_dim=projection_dim, hidden_act="quick_gelu",
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)


def tiny_vae(**changes):
    """The tiny models' VAE (random weights from torch's current seed); ``changes`` override its config."""
    from diffusers import AutoencoderKL

    config = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4, sample_size=64)
    return AutoencoderKL(**(config | changes))


def ddpm_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False, steps_offset=1)


def build_sd15(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny SD1.5-architecture pipeline folder and return its path."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                block_out_channels=(32, 64), layers_per_block=1,
                                cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    pipe = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=CLIPTextModel(_text_config(tokenizer)),
                                   tokenizer=tokenizer, unet=unet, scheduler=ddpm_scheduler(),
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


def build_sdxl(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny SDXL-architecture pipeline folder and return its path."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                block_out_channels=(32, 64), layers_per_block=1,
                                transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4),
                                use_linear_projection=True, cross_attention_dim=32 + 48,
                                addition_embed_type="text_time", addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=8)
    pipe = StableDiffusionXLPipeline(vae=tiny_vae(), text_encoder=CLIPTextModel(_text_config(tokenizer)),
                                     # The second encoder is wider than the first, as in the real SDXL
                                     # (768 and 1280): tools tell the two apart by their width.
                                     text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer, 48)),
                                     tokenizer=tokenizer, tokenizer_2=build_tokenizer(), unet=unet,
                                     scheduler=ddpm_scheduler(), force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


def build(out_dir: Path | str, arch: str = "sd15", seed: int = 0) -> Path:
    """Build the tiny model of ``arch`` ("sd15" or "sdxl") into ``out_dir``."""
    builders = {"sd15": build_sd15, "sdxl": build_sdxl}
    if arch not in builders:
        raise ValueError(f"arch must be sd15 or sdxl, not {arch!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builders[arch](out, seed)
    (out / "loratui-tiny.json").write_text(json.dumps({"arch": arch, "seed": seed}) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.tools.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--arch", choices=("sd15", "sdxl"), default="sd15")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from trainer.quiet import quiet_libraries

    quiet_libraries()
    print(build(args.out_dir, args.arch, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
