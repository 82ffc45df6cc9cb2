"""The WD14 tagger: booru-style tags for anime and art, from an ONNX model through onnxruntime.

SmilingWolf's taggers (``wd-v1-4-*`` and the ``*-tagger-v3`` family) ship ``model.onnx`` and
``selected_tags.csv`` (``tag_id,name,category,count``; category 0 general, 4 character,
9 rating). They were trained on pictures prepared in one particular way, and they only give good
tags when fed the same way (see :func:`preprocess`).

Thresholds: a tag is kept when its confidence is above the threshold of its category. The
defaults below are starting points per model family, matched against the model's name:

==========================  =======  =========  ============================================
model name contains          general  character  why
==========================  =======  =========  ============================================
``eva02-large``              0.50     0.85       its balanced threshold (precision = recall) is
                                                 about 0.53, well above the other models'
anything else (v3, v1-4)     0.35     0.85       the taggers' own demo defaults; v3 ViT's
                                                 balanced value is about 0.26, so 0.35 keeps
                                                 the surer tags
==========================  =======  =========  ============================================

Both are overridable per job. Rating tags (``general``, ``sensitive``…) are always dropped: they
describe the dataset's content rating, not the picture, and would teach the LoRA nothing useful.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.contract.tagging_jobs import TaggingError, download_failed, local_model_folder

GENERAL, CHARACTER, RATING = 0, 4, 9
"""``selected_tags.csv`` categories."""
DEFAULT_SIZE = 448
"""The input side of every published WD14 tagger; used when the ONNX file leaves it open."""
THRESHOLD_DEFAULTS = (("eva02-large", 0.50, 0.85),)
"""(substring of the model name, general, character) for families that need other defaults."""
FALLBACK_THRESHOLDS = (0.35, 0.85)
KAOMOJI = frozenset({"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
                     ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"})
"""Tags whose underscores are part of the face they draw: never turned into spaces."""


def default_thresholds(model: str) -> tuple[float, float]:
    """The (general, character) thresholds for a model, by its name (see the module notes)."""
    name = model.lower()
    for part, general, character in THRESHOLD_DEFAULTS:
        if part in name:
            return general, character
    return FALLBACK_THRESHOLDS


def on_white(image: Image.Image) -> Image.Image:
    """An RGB picture with its transparent parts composited on white (transparent black would
    otherwise read as black, which both taggers would describe)."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """A picture as the WD14 taggers expect it: a (1, size, size, 3) float32 BGR array, 0–255.

    Transparent parts are composited on white, the picture is padded to a centred white square
    (so it is never stretched) and resized to ``size`` with bicubic filtering; the channels are
    in BGR order and the values are not normalised, as in the taggers' training pipeline.
    """
    rgb = on_white(image)
    width, height = rgb.size
    side = max(width, height)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(rgb, ((side - width) // 2, (side - height) // 2))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    bgr = np.asarray(square, dtype=np.float32)[:, :, ::-1]
    return np.ascontiguousarray(bgr)[np.newaxis]


@dataclass
class Wd14Tagger:
    """A loaded tagger: the ONNX session, its tag list and its default thresholds."""

    session: object
    """The onnxruntime InferenceSession."""
    names: list[str]
    categories: np.ndarray
    """One category per output, as in ``selected_tags.csv``."""
    size: int
    input_name: str
    general_threshold: float
    character_threshold: float
    device: str
    """``cuda`` when onnxruntime runs it on the GPU, else ``cpu``."""

    def scores(self, image: Image.Image) -> np.ndarray:
        """The confidence of every tag for one picture (in ``names`` order)."""
        output = self.session.run(None, {self.input_name: preprocess(image, self.size)})[0]
        return np.asarray(output, dtype=np.float32).reshape(-1)[: len(self.names)]


def read_tag_list(path: Path) -> tuple[list[str], np.ndarray]:
    """The tag names and categories of a ``selected_tags.csv`` (TaggingError when it is not one)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        names = [row["name"] for row in rows]
        categories = np.array([int(row["category"]) for row in rows], dtype=np.int64)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise TaggingError(f"{path} is not a WD14 tag list ({type(exc).__name__}: {exc})",
                           advice="It needs the columns tag_id,name,category,count.") from None
    if not names:
        raise TaggingError(f"{path} lists no tags", advice="Use the selected_tags.csv that came with the model.")
    return names, categories


def _fetch(model: str) -> tuple[Path, Path]:
    """model.onnx and selected_tags.csv, from a local folder or downloaded from the hub."""
    folder = local_model_folder(model, "wd14")
    if folder is not None:
        return folder / "model.onnx", folder / "selected_tags.csv"
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, "model.onnx")), Path(hf_hub_download(model, "selected_tags.csv"))
    except Exception as exc:  # offline, unknown repository, missing file, network errors
        raise download_failed(model, "wd14", exc) from exc


def _providers() -> list[str]:
    import onnxruntime

    # The CUDA provider only exists in the onnxruntime-gpu build; the plain wheel runs on the CPU.
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_wd14(model: str, general_threshold: float | None = None,
              character_threshold: float | None = None) -> Wd14Tagger:
    """Load a WD14 tagger from a local folder (``model.onnx`` + ``selected_tags.csv``) or a hub id.

    Thresholds left as None take the family defaults (:func:`default_thresholds`). Raises
    TaggingError (code ``model``) with advice when the model cannot be found, fetched or read.
    """
    onnx_path, tags_path = _fetch(model)
    names, categories = read_tag_list(tags_path)
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(onnx_path), providers=_providers())
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise TaggingError(f"{onnx_path} cannot be loaded by onnxruntime ({str(exc).splitlines()[0]})",
                           advice="Download the model again; the file may be incomplete.") from None
    # onnxruntime falls back to the CPU when CUDA cannot start (a missing cuDNN, for one).
    device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    model_input = session.get_inputs()[0]
    shape = list(model_input.shape)
    if len(shape) != 4 or shape[3] != 3:
        raise TaggingError(f"{onnx_path} takes input of shape {shape}, not pictures as (batch, height, width, 3)",
                           advice="This is not a WD14 tagger; use one of SmilingWolf's wd-* taggers.")
    size = shape[1] if isinstance(shape[1], int) and shape[1] > 0 else DEFAULT_SIZE
    outputs = session.get_outputs()[0].shape
    if outputs and isinstance(outputs[-1], int) and outputs[-1] != len(names):
        raise TaggingError(f"{onnx_path} scores {outputs[-1]} tags but {tags_path} lists {len(names)}",
                           advice="Use the model and the tag list from the same download.")
    general, character = default_thresholds(model)
    return Wd14Tagger(session=session, names=names, categories=categories, size=size,
                      input_name=model_input.name,
                      general_threshold=general if general_threshold is None else general_threshold,
                      character_threshold=character if character_threshold is None else character_threshold,
                      device=device)


def readable_tag(name: str, underscores_to_spaces: bool = True) -> str:
    """A tag as written into captions: underscores to spaces unless asked not to, kaomoji verbatim."""
    if not underscores_to_spaces or name in KAOMOJI:
        return name
    return name.replace("_", " ")


def tag_image(tagger: Wd14Tagger, image: Image.Image, general_threshold: float | None = None,
              character_threshold: float | None = None, underscores_to_spaces: bool = True) -> list[str]:
    """The tags of one picture, surest first: general and character tags above their thresholds.

    Rating tags are never returned. Thresholds left as None use the tagger's.
    """
    general = tagger.general_threshold if general_threshold is None else general_threshold
    character = tagger.character_threshold if character_threshold is None else character_threshold
    scores = tagger.scores(image)
    wanted = np.zeros(len(scores), dtype=bool)
    wanted |= (tagger.categories[: len(scores)] == GENERAL) & (scores > general)
    wanted |= (tagger.categories[: len(scores)] == CHARACTER) & (scores > character)
    # A stable sort keeps the tag list's order between equal scores, so results are reproducible.
    order = [int(i) for i in np.argsort(-scores, kind="stable") if wanted[i]]
    return [readable_tag(tagger.names[i], underscores_to_spaces) for i in order]
