"""The dataset half of an sd-scripts import: subsets → one loratui dataset folder (no torch).

loratui trains one folder: the images in it repeat ``dataset.repeats`` times, those in an ``N_name``
sub-folder N times. sd-scripts lists folders as subsets, each with its own ``num_repeats`` and
caption options. A subset list that is that shape (a folder and its direct sub-folders) maps
exactly; anything else maps as closely as it can, and the report says what differs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loratui.interop.report import show
from loratui.interop.sdscripts import bucket_range
from loratui.interop.sdscripts_masks import import_masks
from loratui.interop.sdscripts_reg import RegImport
from loratui.interop.sdscripts_source import DATASET_DEFAULTS, as_float, as_int
from trainer.contract.config.schema import native_resolution
from trainer.contract.dataset_scan import parse_repeat_folder


class DatasetMapping(RegImport):
    """The dataset methods of ``Importer`` (which provides ``src``, ``report``, ``values``, ``set`` and ``arch``)."""

    # ---- dataset ----------------------------------------------------------------------------------
    def _dataset(self) -> None:
        datasets = [d for d in self.src.datasets if isinstance(d, dict)]
        if not datasets:
            self._dreambooth_folder()
            return
        for extra in datasets[1:]:
            dirs = [s.get("image_dir") for s in extra.get("subsets", []) if isinstance(s, dict)]
            self.report.drop("datasets[1:]", dirs, "loratui trains one dataset; only the first is imported")
            for subset in extra.get("subsets", []):
                if isinstance(subset, dict):
                    for key in subset:
                        self.src.use(subset, key)
            for key in extra:
                self.src.use(extra, key)
        dataset = datasets[0]
        levels = [dataset, self.src.general]
        subsets = [s for s in dataset.get("subsets", []) or [] if isinstance(s, dict)]
        train, reg = [], []
        for subset in subsets:
            is_reg, _ = self.src.lookup("is_reg", [subset] + levels)
            (reg if is_reg else train).append(subset)
        for subset in reg:
            for key in subset:  # the reg subsets' caption options are the dataset's (loratui holds them once)
                self.src.use(subset, key)
        self._dataset_level(levels)
        if not train:
            self.report.default("dataset.path", "", "the dataset config lists no training images")
            for key, ours in SUBSET_FIELDS:
                self.src.lookup(key, levels)
            self._reg_subsets(reg, levels, "")
            return
        self._subset_fields(train, levels)
        self._folders(train, levels)
        import_masks(self, train, levels)
        self._reg_subsets(reg, levels, str(self.values.get("dataset", {}).get("path", "")))

    def _dataset_level(self, levels: list[dict]) -> None:
        resolution, found = self.src.lookup("resolution", levels)
        self._resolution(resolution, found)
        batch, found = self.src.lookup("batch_size", levels)
        self._set_dataset_value("batch_size", "training.batch_size", as_int(batch), found)
        buckets, found = self.src.lookup("enable_bucket", levels)
        self._set_dataset_value("enable_bucket", "dataset.buckets", bool(buckets), found)
        no_upscale, found = self.src.lookup("bucket_no_upscale", levels)
        if found:
            self.mapped("bucket_no_upscale", no_upscale, "dataset.bucket_upscale", not no_upscale)
        elif buckets:
            self._set_dataset_value("bucket_no_upscale", "dataset.bucket_upscale", not no_upscale, found)
        low, _ = self.src.lookup("min_bucket_reso", levels)
        high, _ = self.src.lookup("max_bucket_reso", levels)
        step, _ = self.src.lookup("bucket_reso_steps", levels)
        if buckets:
            size = self.values.get("dataset", {}).get("resolution") or native_resolution(self.arch or "sd15")
            if (low, high, step) != (*bucket_range(size), 64):
                self.report.approx("min/max_bucket_reso, bucket_reso_steps", "dataset.buckets", [low, high, step],
                                   f"loratui derives its buckets from the resolution (sides {bucket_range(size)[0]} "
                                   f"to {bucket_range(size)[1]} in steps of 64)")

    def _resolution(self, value: Any, found: bool) -> None:
        if not found or value is None:
            self.set("dataset.resolution", 0)
            self.report.default("dataset.resolution", 0, "not given: loratui's size for the architecture")
            return
        sides = [as_int(v) for v in (value.split(",") if isinstance(value, str) else
                                      value if isinstance(value, (list, tuple)) else [value])]
        if not sides or not all(isinstance(v, int) and v > 0 for v in sides):
            self.set("dataset.resolution", 0)
            self.report.drop("resolution", value, "not a size in pixels; loratui's size for the architecture used")
            return
        width, height = sides[0], sides[-1]
        side = round(math.sqrt(width * height) / 64) * 64
        self.set("dataset.resolution", side)
        if width != height or side != width:
            self.report.approx("resolution", "dataset.resolution", value, f"{side}: loratui trains at one size "
                               "(a square of the same area, a multiple of 64), with buckets for other shapes")
        else:
            self.report.map("resolution", "dataset.resolution", side)

    def _set_dataset_value(self, key: str, dotted: str, value: Any, found: bool, note: str = "") -> None:
        self.set(dotted, value)
        if found:
            self.report.map(key, dotted, value, note)
        else:
            self.report.default(dotted, value, f"sd-scripts' default ({key} = {show(DATASET_DEFAULTS[key])})")

    def _subset_fields(self, subsets: list[dict], levels: list[dict]) -> None:
        for key, dotted in SUBSET_FIELDS:
            per_subset = [self.src.lookup(key, [subset] + levels) for subset in subsets]
            value, found = per_subset[0]
            if len({show(v) for v, _ in per_subset}) > 1:
                self.report.approx(key, dotted, [v for v, _ in per_subset], "the subsets differ; loratui uses one "
                                   "value for the whole dataset (the first subset's)")
            if key == "class_tokens":
                self._trigger(value, found, subsets, levels)
                continue
            converted = {"caption_dropout_rate": as_float, "keep_tokens": as_int}.get(key, lambda v: v)(value)
            self._set_dataset_value(key, dotted, converted, found)

    def _trigger(self, tokens: Any, found: bool, subsets: list[dict], levels: list[dict]) -> None:
        prefix, prefix_found = self.src.lookup("caption_prefix", [subsets[0]] + levels)
        for subset in subsets[1:]:
            self.src.lookup("caption_prefix", [subset] + levels)
        note = ("loratui also puts it first in every caption that lacks it; sd-scripts used it only for images "
                "without a caption file")
        if found and tokens:
            self.set("dataset.trigger_word", str(tokens))
            self.report.approx("class_tokens", "dataset.trigger_word", tokens, note)
            if prefix_found and prefix:
                self.report.drop("caption_prefix", prefix, "loratui has no caption prefix; the trigger word comes from "
                                 "class_tokens")
        elif prefix_found and prefix:
            word = str(prefix).strip().strip(",").strip()
            self.set("dataset.trigger_word", word)
            self.report.approx("caption_prefix", "dataset.trigger_word", prefix, f"{word!r}: loratui puts it first in "
                               "captions that lack it, where sd-scripts prefixed every caption")

    def _folders(self, subsets: list[dict], levels: list[dict]) -> None:
        """The subsets' folders as one loratui dataset folder plus its ``N_name`` sub-folders."""
        entries = []
        for subset in subsets:
            repeats, _ = self.src.lookup("num_repeats", [subset] + levels)
            self.src.use(subset, "image_dir")
            entries.append((str(subset.get("image_dir") or ""), as_int(repeats)))
        paths = [Path(d) for d, _ in entries]
        root = _common_root(paths)
        if root is None:
            root_dir, repeats = entries[0]
            self.set("dataset.path", root_dir)
            self.set("dataset.repeats", repeats)
            self.report.approx("datasets.subsets", "dataset.path", [d for d, _ in entries],
                               f"the folders do not share one parent; loratui trains one folder tree, so {root_dir!r} "
                               "is used and the others are left out")
            return
        self.set("dataset.path", str(root))
        self.report.map("datasets.subsets image_dir", "dataset.path", str(root))
        plain = [r for d, r in entries if Path(d) == root or parse_repeat_folder(Path(d).name) is None]
        disagree = [(folder, repeats, parsed[0]) for folder, repeats in entries
                    if Path(folder) != root and (parsed := parse_repeat_folder(Path(folder).name))
                    and parsed[0] != repeats]
        if disagree and len({repeats for _, repeats in entries}) == 1:
            # Every subset repeats the same number of times, whatever its folder's name says: loratui's
            # dataset.folder_name_repeats off says exactly that.
            self.set("dataset.folder_name_repeats", False)
            self.set("dataset.repeats", entries[0][1])
            self.report.map("datasets.subsets num_repeats", "dataset.repeats", entries[0][1])
            self._unlisted_folders(root, {Path(d) for d, _ in entries})
            return
        for folder, repeats, named in disagree:
            self.report.approx("num_repeats", "dataset.path", f"{folder}: {repeats}",
                               f"loratui repeats an N_name folder N times: {named}, not {repeats} (unless every "
                               "folder repeats the same number of times: dataset.folder_name_repeats off)")
        if plain:
            self.set("dataset.repeats", plain[0])
            self.report.map("datasets.subsets num_repeats", "dataset.repeats", plain[0])
            if len(set(plain)) > 1:
                self.report.approx("num_repeats", "dataset.repeats", plain, "loratui repeats all folders without an "
                                   "N_ prefix the same number of times; the first is used")
        else:
            self.set("dataset.repeats", 1)
            self.report.default("dataset.repeats", 1, "every folder names its own repeats (N_name)")
        self._unlisted_folders(root, {Path(d) for d, _ in entries})

    def _unlisted_folders(self, root: Path, listed: set[Path]) -> None:
        """Tell about images loratui would train that the subsets leave out (only when the folder is here)."""
        if not root.is_dir():
            return
        from trainer.contract.dataset_scan import IMAGE_EXTENSIONS

        try:
            folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            extra = [f for f in folders if f not in listed
                     and any(c.suffix.lower() in IMAGE_EXTENSIONS for c in f.iterdir() if c.is_file())]
        except OSError:
            return
        if extra:
            self.report.approx("datasets.subsets", "dataset.path", [str(f) for f in extra],
                               "loratui trains every image in the dataset folder and its sub-folders, including "
                               "these, which the subsets leave out")

    def _dreambooth_folder(self) -> None:
        """No dataset config: sd-scripts' ``train_data_dir`` with ``N_name`` sub-folders."""
        folder = self.src.get("train_data_dir")
        if folder:
            self.set("dataset.path", str(folder))
            self.report.approx("train_data_dir", "dataset.path", folder, "loratui also trains images directly in "
                               "this folder and in sub-folders without an N_ prefix (dataset.repeats times), which "
                               "sd-scripts skips")
        else:
            self.report.default("dataset.path", "", "neither a dataset config nor train_data_dir; set dataset.path")
        self._reg_data_dir()
        if self.src.has("in_json"):
            self.report.drop("in_json", self.src.get("in_json"), "loratui has no metadata-file datasets")
        self._dataset_level([])
        self._subset_fields([{}], [])
        import_masks(self, [{}], [])


SUBSET_FIELDS = [("caption_extension", "dataset.caption_extension"), ("shuffle_caption", "dataset.shuffle_captions"),
                 ("keep_tokens", "dataset.keep_tokens"), ("flip_aug", "dataset.flip"),
                 ("caption_dropout_rate", "dataset.caption_dropout"), ("class_tokens", "dataset.trigger_word")]
"""Subset settings loratui holds once for the whole dataset."""


def _common_root(paths: list[Path]) -> Path | None:
    """The folder every subset is, or sits directly in; None when there is none."""
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0]
    for candidate in [paths[0], paths[0].parent]:
        if all(p == candidate or p.parent == candidate for p in paths):
            return candidate
    return None
