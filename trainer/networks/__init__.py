"""Networks trained on top of the base model: LoRA and LoCon in the kohya layout."""
