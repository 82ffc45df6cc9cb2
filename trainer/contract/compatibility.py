"""Where a LoRA file of each network type applies as it was trained: the compatibility truth table.

One table, read by the docs (``docs/contract.md``), the inspector's report on a file and the
advice on the settings screen, so the three can never disagree. Each cell was established by
running our saved files through the loader, or through its merge rules written from reading its
code (see ``docs/contract.md`` and the field notes, section g):

- diffusers ``load_lora_weights`` (0.42): plain LoRA/LoCon exactly; it refuses every LyCORIS
  algorithm with an error, and loads DoRA after dropping the magnitudes (a printed warning, then a
  different output).
- ComfyUI and Forge (Forge ships a copy of ComfyUI's LoRA code, and skips a whole file when it
  cannot match its keys): no (IA)³ adapter, so an (IA)³ file does nothing in either; Forge's copy
  has no OFT/BOFT either.
- AUTOMATIC1111 1.10's built-in Lora extension: every type we save.
- sd-scripts-style tools load LyCORIS files through ``lycoris.kohya.create_network_from_weights``,
  which fails on (IA)³ and expects DoRA magnitudes along the output axis.

DoRA's magnitude can run along a layer's output axis (LyCORIS' default, ``dora_scale`` shaped
(out, 1)) or its input axis ((1, in)). The UIs reproduce training exactly only for the input axis,
so the trainer saves that; files with the output axis (older ones, other trainers) are rated by
their own row.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.contract.config.schema import DORA_NETWORKS

LOADERS = ("diffusers", "ComfyUI", "AUTOMATIC1111", "Forge", "sd-scripts")
"""The programs people load LoRA files into, in the order the table lists them."""

WORKS, REFUSED, IGNORED, WRONG = "works", "refused", "ignored", "wrong"
"""How a loader treats a file: applies it as trained; stops with an error; loads without an error
but applies nothing; applies something other than what was trained."""


@dataclass(frozen=True)
class Support:
    """How one loader treats one kind of file."""

    status: str
    """``WORKS``, ``REFUSED``, ``IGNORED`` or ``WRONG``."""
    why: str = ""
    """What happens, in a few words, when it does not work."""

    @property
    def works(self) -> bool:
        return self.status == WORKS


_OK = Support(WORKS)
_DIFFUSERS_NO_LYCORIS = Support(REFUSED, "load_lora_weights stops with an error: it reads only LoRA/LoCon")
_ROWS: dict[str, dict[str, Support]] = {
    "lora": dict.fromkeys(LOADERS, _OK),
    "locon": dict.fromkeys(LOADERS, _OK),
    "loha": {**dict.fromkeys(LOADERS, _OK), "diffusers": _DIFFUSERS_NO_LYCORIS},
    "lokr": {**dict.fromkeys(LOADERS, _OK), "diffusers": _DIFFUSERS_NO_LYCORIS},
    "glora": {**dict.fromkeys(LOADERS, _OK), "diffusers": _DIFFUSERS_NO_LYCORIS},
    "boft": {**dict.fromkeys(LOADERS, _OK), "diffusers": _DIFFUSERS_NO_LYCORIS,
             "Forge": Support(IGNORED, "skips the whole file: its LoRA code has no OFT/BOFT")},
    "ia3": {"diffusers": _DIFFUSERS_NO_LYCORIS,
            "ComfyUI": Support(IGNORED, "has no (IA)³ support: every key is reported as not loaded"),
            "AUTOMATIC1111": _OK,
            "Forge": Support(IGNORED, "skips the whole file: its LoRA code has no (IA)³ support"),
            "sd-scripts": Support(REFUSED, "LyCORIS' file loader fails on (IA)³ files")},
}
_DORA_DIFFUSERS = Support(WRONG, "drops the DoRA magnitudes (with a warning) and applies the rest")
_DORA_INPUT = {"diffusers": _DORA_DIFFUSERS, "ComfyUI": _OK, "AUTOMATIC1111": _OK, "Forge": _OK,
               "sd-scripts": Support(REFUSED, "LyCORIS' file loader expects output-axis DoRA magnitudes")}
_DORA_OUTPUT = {"diffusers": _DORA_DIFFUSERS,
                "ComfyUI": Support(WRONG, "normalises by the base weight's norm instead of the updated one's: "
                                          "slightly off, more the further training moved"),
                "AUTOMATIC1111": Support(WRONG, "normalises along the input axis whatever the file says: far off"),
                "Forge": Support(WRONG, "its copy of ComfyUI's code: slightly off, as ComfyUI"),
                "sd-scripts": _OK}

def support(network_type: str, dora: bool = False, dora_axis: str = "input") -> dict[str, Support]:
    """How each loader in ``LOADERS`` treats a file of this type (``dora_axis``: input or output)."""
    if network_type not in _ROWS:
        raise ValueError(f"unknown network type {network_type!r}")
    if not dora:
        return dict(_ROWS[network_type])
    if network_type not in DORA_NETWORKS:
        raise ValueError(f"DoRA cannot be combined with {network_type}")
    return dict(_DORA_INPUT if dora_axis == "input" else _DORA_OUTPUT)


def loaders_that_work(network_type: str, dora: bool = False, dora_axis: str = "input") -> list[str]:
    """The loaders that apply such a file as trained."""
    return [name for name, cell in support(network_type, dora, dora_axis).items() if cell.works]


def loaders_that_fail(network_type: str, dora: bool = False, dora_axis: str = "input") -> dict[str, Support]:
    """The loaders that do not, with what they do instead."""
    return {name: cell for name, cell in support(network_type, dora, dora_axis).items() if not cell.works}


ROW_LABELS = {"lora": "LoRA", "locon": "LoCon", "loha": "LoHa", "lokr": "LoKr", "ia3": "(IA)³", "boft": "BOFT",
              "glora": "GLoRA"}
_MARKS = {WORKS: "✓", REFUSED: "✗ error", IGNORED: "✗ ignored", WRONG: "✗ wrong"}
START = "<!-- compatibility table: generated by trainer.contract.compatibility.markdown_table -->"
END = "<!-- end of compatibility table -->"


def markdown_table() -> str:
    """The truth table as Markdown, with a footnote for every failing cell."""
    rows = [(ROW_LABELS[kind], support(kind)) for kind in _ROWS]
    rows += [("DoRA (input axis: what loratui saves)", support("lora", True, "input")),
             ("DoRA (output axis: LyCORIS' default, older files)", support("lora", True, "output"))]
    lines = ["| file | " + " | ".join(LOADERS) + " |", "|---|" + "---|" * len(LOADERS)]
    notes: list[str] = []
    for label, cells in rows:
        marks = []
        for loader in LOADERS:
            cell = cells[loader]
            mark = _MARKS[cell.status]
            if not cell.works:
                note = f"{loader}: {cell.why}."
                if note not in notes:
                    notes.append(note)
                mark += f" ({notes.index(note) + 1})"
            marks.append(mark)
        lines.append(f"| {label} | " + " | ".join(marks) + " |")
    lines.append("")
    lines += [f"{number}. {note}" for number, note in enumerate(notes, 1)]
    return "\n".join(lines)
