"""BLIP captions: one plain sentence per picture, for photos (transformers).

Booru tags describe anime and art well but say little about a photo; BLIP writes a short
sentence instead ("a woman sitting on a bench in a park"). Generation is deterministic (beam
search, no sampling), so tagging a dataset twice gives the same captions.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from trainer.contract.tagging_jobs import TaggingError, download_failed, local_model_folder
from trainer.tagging.wd14 import on_white

NUM_BEAMS = 3
"""A few beams give noticeably better sentences than greedy decoding at little cost."""
MAX_NEW_TOKENS = 40
"""Enough for the one-sentence captions BLIP was trained on; longer runs only ramble."""


@dataclass
class BlipCaptioner:
    """A loaded BLIP model and its processor, on the device it runs on."""

    model: object
    processor: object
    device: str
    """``cuda`` or ``cpu``."""
    dtype: object
    """The torch dtype of the weights (float16 on a GPU, float32 on a CPU)."""

    def caption(self, image: Image.Image) -> str:
        """One sentence for one picture (empty when the model writes nothing)."""
        import torch

        inputs = self.processor(images=on_white(image), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            output = self.model.generate(pixel_values=pixels, num_beams=NUM_BEAMS, max_new_tokens=MAX_NEW_TOKENS,
                                         do_sample=False)
        text = self.processor.decode(output[0], skip_special_tokens=True)
        return " ".join(text.split())


def load_blip(model: str) -> BlipCaptioner:
    """Load a BLIP captioning model from a local folder or a hub id (downloaded when possible).

    Runs on CUDA in half precision when a GPU is present, else on the CPU. Raises TaggingError
    (code ``model``) with advice when the model cannot be found, fetched or loaded.
    """
    folder = local_model_folder(model, "blip")
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    source = str(folder) if folder is not None else model
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    try:
        processor = BlipProcessor.from_pretrained(source)
        network = BlipForConditionalGeneration.from_pretrained(source)
    except (OSError, ValueError) as exc:
        # transformers reports a model that is neither cached nor downloadable as an OSError.
        if folder is None:
            raise download_failed(model, "blip", exc) from exc
        raise TaggingError(f"The BLIP captioner in {folder} cannot be loaded ({str(exc).splitlines()[0]})",
                           advice="Point --model at a complete BLIP captioning folder (model, processor, "
                                  "tokenizer), or at a hub id such as Salesforce/blip-image-captioning-base.") from exc
    # Cast after loading: the keyword for a load-time dtype differs between transformers 4 and 5.
    network = network.to(device=device, dtype=dtype).eval()
    return BlipCaptioner(model=network, processor=processor, device=device, dtype=dtype)
