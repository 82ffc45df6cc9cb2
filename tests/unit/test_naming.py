"""The kohya/A1111 names of LoRA weights."""

from __future__ import annotations

import pytest

from trainer.networks.naming import diffusers_to_sgm, is_text_encoder_block, text_encoder_lora_name, unet_lora_name

# Real SDXL: layers_per_block 2; up blocks 0 and 1 have attention, block 2 does not.
SDXL = dict(layers_per_block=2, up_blocks_with_attention=[True, True, False])


@pytest.mark.parametrize("diffusers,sgm", [
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "input_blocks.4.1.transformer_blocks.0.attn1.to_q"),
    ("down_blocks.2.attentions.1.proj_in", "input_blocks.8.1.proj_in"),
    ("down_blocks.0.resnets.1.conv1", "input_blocks.2.0.in_layers.2"),
    ("down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"),
    ("down_blocks.1.resnets.0.conv_shortcut", "input_blocks.4.0.skip_connection"),
    ("mid_block.attentions.0.proj_out", "middle_block.1.proj_out"),
    ("mid_block.resnets.1.time_emb_proj", "middle_block.2.emb_layers.1"),
    ("up_blocks.0.attentions.2.transformer_blocks.9.ff.net.2", "output_blocks.2.1.transformer_blocks.9.ff.net.2"),
    ("up_blocks.0.upsamplers.0.conv", "output_blocks.2.2.conv"),
    ("up_blocks.1.resnets.0.conv2", "output_blocks.3.0.out_layers.3"),
    ("up_blocks.2.resnets.2.conv1", "output_blocks.8.0.in_layers.2"),
    ("conv_in", "input_blocks.0.0"),
])
def test_sdxl_modules_get_the_sgm_names_sd_scripts_writes(diffusers, sgm):
    assert diffusers_to_sgm(diffusers, **SDXL) == sgm


def test_sd15_keeps_diffusers_paths():
    assert unet_lora_name("down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0", "sd15") == \
        "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_out_0"


def test_sdxl_unet_name():
    assert unet_lora_name("down_blocks.1.attentions.0.proj_in", "sdxl", **SDXL) == "lora_unet_input_blocks_4_1_proj_in"


def test_text_encoder_names_have_the_text_model_level():
    # transformers 5's CLIPTextModel has no `text_model.` level; CLIPTextModelWithProjection does.
    assert text_encoder_lora_name("encoder.layers.0.self_attn.q_proj", 0, 1) == \
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    assert text_encoder_lora_name("text_model.encoder.layers.3.mlp.fc1", 1, 2) == \
        "lora_te2_text_model_encoder_layers_3_mlp_fc1"
    assert text_encoder_lora_name("encoder.layers.0.mlp.fc2", 0, 2).startswith("lora_te1_text_model_")


def test_text_encoder_blocks():
    assert is_text_encoder_block("CLIPAttention") and is_text_encoder_block("CLIPSdpaAttention")
    assert is_text_encoder_block("CLIPMLP") and not is_text_encoder_block("CLIPEncoderLayer")


def test_unknown_module_is_an_error():
    with pytest.raises(ValueError):
        diffusers_to_sgm("some_new_block.0.conv", **SDXL)
