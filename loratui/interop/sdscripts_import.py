"""sd-scripts settings → a loratui config, with a report of every setting (no torch).

The input is what sd-scripts itself would see: the flat argument namespace of ``--config_file``
(tables already merged) and the ``--dataset_config`` tables; ``sdscripts_source`` holds sd-scripts'
defaults and the lookups, ``sdscripts_dataset`` the dataset half. Every setting ends up in the
report: mapped, approximate, without equivalent, or defaulted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loratui.interop.report import MappingReport, show
from loratui.interop.sdscripts import (CONV_TYPES, LYCORIS_ALGOS, LYCORIS_ATTENTION_PRESET,
                                      LYCORIS_FULL_EXTRAS, SAVE_PRECISIONS, STEP_OPTION_NAMES,
                                      batches_per_epoch)
from loratui.interop.sdscripts_dataset import DatasetMapping
from loratui.interop.sdscripts_samples import import_samples, import_step_saves
from loratui.interop.sdscripts_source import (OPTIMIZER_DEFAULT_DECAY, SD_SCRIPTS_DEFAULTS, Hints, Source, as_float,
                                              as_int, is_noop, optimizer_name, parse_args_list, reason_for)
from loratui.interop.sdscripts_validation import import_validation
from loratui.interop.sdscripts_reg import reg_images_here
from trainer.contract.config.schema import DORA_NETWORKS, Config, Problem, from_dict, validate


class Importer(DatasetMapping):
    """Builds the loratui config section by section; ``run`` returns it with the report."""

    def __init__(self, source: Source, hints: Hints, report: MappingReport | None = None) -> None:
        self.src = source
        self.hints = hints
        self.report = report if report is not None else MappingReport()
        self.values: dict[str, dict[str, Any]] = {}
        self.arch = hints.arch

    def set(self, dotted: str, value: Any) -> None:
        """Set a field of the config being built (checked by ``from_dict`` at the end)."""
        section, name = dotted.split(".", 1)
        self.values.setdefault(section, {})[name] = value

    def mapped(self, source: str, source_value: Any, dotted: str, value: Any, note: str = "") -> None:
        """Set a field and report where it came from (with our value too when it reads differently)."""
        self.set(dotted, value)
        target = dotted if show(source_value) == show(value) else f"{dotted} = {show(value)}"
        self.report.map(source, target, source_value, note)

    def take(self, key: str, dotted: str, convert=lambda v: v, *, default: Any = None, default_note: str = "") -> Any:
        """Map one training-config key to one field; an absent key takes ``default`` (reported) when given."""
        if self.src.has(key):
            raw = self.src.get(key)
            value = convert(raw)
            self.mapped(key, raw, dotted, value)
            return value
        self.src.get(key)
        if default is not None:
            self.set(dotted, default)
            self.report.default(dotted, default, default_note or "sd-scripts' default")
        return default

    def run(self) -> tuple[Config, list[Problem]]:
        """Map everything; the config (after loratui's validation) and its problems."""
        self._model()
        self._network()
        self._optimizer()
        self._dataset()
        self._training()
        self._scheduler()
        self._output()
        for key, value in self.src.unused():
            name = key.rsplit(".", 1)[-1]
            if not is_noop(value, name):
                self.report.drop(key, value, reason_for(name))
        config, problems = from_dict(self.values)
        for problem in problems:
            self.report.drop(problem.field, None, f"not usable: {problem.message}; loratui's default kept")
        return config, validate(config)

    # ---- model ------------------------------------------------------------------------------------
    def _model(self) -> None:
        self.take("pretrained_model_name_or_path", "model.base")
        if not self.src.has("pretrained_model_name_or_path"):
            self.report.default("model.base", "", "the file names no model; set model.base before training")
        if self.arch is None and self.src.has("cache_text_encoder_outputs"):
            self.arch = "sdxl"
            self.hints.arch_source = "cache_text_encoder_outputs (only sdxl_train_network.py has it)"
        if self.arch:
            self.mapped(self.hints.arch_source or "script", None, "model.arch", self.arch)
        else:
            self.set("model.arch", "auto")
            self.report.default("model.arch", "auto", "the file does not say which script runs it; loratui reads "
                                "the architecture from the model")
        if self.src.has("clip_skip") and self.arch == "sdxl":
            self.src.get("clip_skip")
            self.report.drop("clip_skip", self.src.args["clip_skip"], "SDXL always uses its penultimate layer "
                             "(sd-scripts ignores clip_skip for SDXL too)")
        elif self.arch == "sdxl":
            self.src.get("clip_skip")
        else:
            self.take("clip_skip", "model.clip_skip", default=1, default_note="sd-scripts' default (the last layer)")
        if self.src.has("v_parameterization") and self.src.get("v_parameterization"):
            self.mapped("v_parameterization", True, "model.prediction", "v_prediction")
        else:
            self.src.get("v_parameterization")
            self.set("model.prediction", "auto")
            self.report.default("model.prediction", "auto", "sd-scripts trains noise prediction unless told; "
                                "loratui reads what the model predicts (a v-pred file's marker, a folder's config)")
        self.take("zero_terminal_snr", "model.zero_terminal_snr", bool)
        self.take("vae", "model.vae")

    # ---- network ----------------------------------------------------------------------------------
    def _network(self) -> None:
        module = self.src.get("network_module")
        args = parse_args_list(self.src.get("network_args"))
        used_args: set[str] = set()
        kind = self._network_type(module, args, used_args)
        dim = self.take("network_dim", "network.dim", default=SD_SCRIPTS_DEFAULTS["network_dim"],
                        default_note="sd-scripts' default for networks.lora")
        alpha = self.take("network_alpha", "network.alpha", as_float, default=SD_SCRIPTS_DEFAULTS["network_alpha"])
        if kind in CONV_TYPES:
            for key in ("conv_dim", "conv_alpha"):
                used_args.add(key)
                if key in args:
                    value = as_int(args[key]) if key == "conv_dim" else as_float(args[key])
                    self.mapped(f"network_args {key}", args[key], f"network.{key}", value)
                elif key == "conv_alpha" and "conv_dim" in args:
                    self.set("network.conv_alpha", 1.0)
                    self.report.default("network.conv_alpha", 1.0, "sd-scripts' default when conv_dim is given")
                else:
                    value = dim if key == "conv_dim" else alpha
                    self.set(f"network.{key}", value)
                    self.report.default(f"network.{key}", value, f"not given; the linear layers' {key[5:]} used")
        self.take("network_weights", "network.weights")
        self.take("dim_from_weights", "network.dim_from_weights", bool)
        if module == "lycoris.kohya":
            self._lycoris_preset(kind, args, used_args)
        for key, value in args.items():
            if key not in used_args:
                self.report.drop(f"network_args {key}", value, "no such network option in loratui")

    def _lycoris_preset(self, kind: str, args: dict[str, Any], used: set[str]) -> None:
        """LyCORIS picks layers by preset; loratui by network type. Say where they differ."""
        used.add("preset")
        preset = str(args.get("preset", "full"))
        if kind in CONV_TYPES and preset == "full":
            self.report.approx("network_args preset", "network.type", preset, f"LyCORIS's 'full' preset also "
                               f"adapts {LYCORIS_FULL_EXTRAS}, which loratui's {kind} leaves alone")
        elif kind not in CONV_TYPES and preset != LYCORIS_ATTENTION_PRESET:
            self.report.approx("network_args preset", "network.type", preset, f"loratui's {kind} adapts the "
                               "attention blocks only (LyCORIS's attn-mlp preset)")
        elif kind in CONV_TYPES:
            self.report.approx("network_args preset", "network.type", preset, f"loratui's {kind} adapts the "
                               "attention, ResNet and resampling blocks, whatever the preset")

    def _network_type(self, module: Any, args: dict[str, Any], used: set[str]) -> str:
        module = str(module or "")
        used.update(("dora_wd", "algo", "wd_on_output") if module == "lycoris.kohya" else ("dora_wd",))
        # As LyCORIS reads it: present and anything but "false" turns DoRA on ("dora_wd=False" stays off).
        dora = "dora_wd" in args and str(args["dora_wd"]).lower() != "false"
        algo = str(args.get("algo", "lora")).lower()
        ours = next((mine for mine, theirs in LYCORIS_ALGOS.items() if theirs == algo), "")
        if not module:
            kind = "locon" if "conv_dim" in args else "lora"
            self.set("network.type", kind)
            self.report.default("network.type", kind, "the file names no network_module")
        elif module == "networks.lora":
            kind = "locon" if "conv_dim" in args else "lora"
            self.mapped("network_module", module, "network.type", kind)
        elif module == "lycoris.kohya" and ours:
            kind = ours
            if kind in ("lora", "locon") and not dora:
                self.set("network.type", kind)
                self.report.approx("network_module", "network.type", f"lycoris.kohya algo={algo}",
                                   f"loratui trains {kind} with its own modules (the same maths) and saves it in "
                                   "the networks.lora layout")
            else:
                self.mapped("network_module", f"{module} algo={algo}", "network.type", kind)
        else:
            kind = "lora"
            self.set("network.type", kind)
            what = f"{module} algo={algo}" if module == "lycoris.kohya" else module
            self.report.drop("network_module", what, f"loratui trains networks.lora and the LyCORIS algorithms "
                             f"{', '.join(LYCORIS_ALGOS)}; loratui's default network (lora) used")
        if dora and kind in DORA_NETWORKS:
            self.mapped("network_args dora_wd", args["dora_wd"], "network.dora", True)
            if str(args.get("wd_on_output", "True")).lower() != "false":
                self.report.approx("network_args wd_on_output", "network.dora", args.get("wd_on_output", True),
                                   "loratui keeps DoRA magnitudes along the input axis, the form A1111 and "
                                   "ComfyUI apply exactly (LyCORIS' default, the output axis, is off in both)")
        elif dora:
            self.report.drop("network_args dora_wd", True, f"DoRA cannot be combined with {kind}")
        return kind

    # ---- optimizer --------------------------------------------------------------------------------
    def _optimizer(self) -> None:
        raw = str(self.src.get("optimizer_type") or "")
        if not raw and self.src.get("use_8bit_adam"):
            raw = "AdamW8bit"
        name, note = optimizer_name(raw)
        if name is None:
            name = "adamw8bit"
            self.report.drop("optimizer_type", raw, f"loratui has no such optimizer; loratui's default {name} used")
        elif not raw:
            self.report.default("optimizer.name", name, "sd-scripts' default (AdamW)")
        elif note:
            self.report.approx("optimizer_type", "optimizer.name", raw, note)
        else:
            self.mapped("optimizer_type", raw, "optimizer.name", name)
        self.set("optimizer.name", name)
        opt_args = parse_args_list(self.src.get("optimizer_args"))
        decay = opt_args.pop("weight_decay", None)
        if isinstance(decay, (int, float)) and not isinstance(decay, bool):
            self.mapped("optimizer_args weight_decay", decay, "optimizer.weight_decay", float(decay))
        else:
            self.set("optimizer.weight_decay", OPTIMIZER_DEFAULT_DECAY[name])
            self.report.default("optimizer.weight_decay", OPTIMIZER_DEFAULT_DECAY[name], "the optimizer's own default")
        self._optimizer_args(name, opt_args)
        base = self.src.get("learning_rate")
        unet = self.src.get("unet_lr")
        if unet is not None:
            self.mapped("unet_lr", unet, "optimizer.unet_lr", as_float(unet))
        elif base is not None:
            self.mapped("learning_rate", base, "optimizer.unet_lr", as_float(base))
        else:
            self.set("optimizer.unet_lr", SD_SCRIPTS_DEFAULTS["learning_rate"])
            self.report.default("optimizer.unet_lr", SD_SCRIPTS_DEFAULTS["learning_rate"], "sd-scripts' default")
        self._text_encoder_lr(base)
        self.take("max_grad_norm", "optimizer.max_grad_norm", as_float, default=SD_SCRIPTS_DEFAULTS["max_grad_norm"])

    def _optimizer_args(self, name: str, opt_args: dict[str, Any]) -> None:
        if name == "adafactor":
            relative = opt_args.pop("relative_step", True)
            for key in ("scale_parameter", "warmup_init"):
                if not opt_args.get(key, True):
                    opt_args.pop(key)
            if relative:
                self.report.approx("optimizer_args relative_step", "optimizer.name", True,
                                   "sd-scripts' Adafactor finds its own step size unless relative_step=False; "
                                   "loratui runs Adafactor at the configured rate")
        if name == "came" and tuple(opt_args.get("betas", (0.9, 0.999, 0.9999))) == (0.9, 0.999, 0.9999):
            opt_args.pop("betas", None)
        for key, value in opt_args.items():
            self.report.drop(f"optimizer_args {key}", value, "loratui sets this optimizer's other arguments itself")

    def _text_encoder_lr(self, base: Any) -> None:
        if self.src.get("network_train_unet_only"):
            self.mapped("network_train_unet_only", True, "optimizer.text_encoder_lr", 0.0)
            if self.src.has("text_encoder_lr"):
                self.src.get("text_encoder_lr")
            return
        value = self.src.get("text_encoder_lr")
        if isinstance(value, list):
            rates = [as_float(v) for v in value]
            if len(set(rates)) > 1:
                self.report.approx("text_encoder_lr", "optimizer.text_encoder_lr", value,
                                   "loratui trains both SDXL text encoders at one rate; the first is used")
            value = rates[0] if rates else None
        if value is not None:
            self.mapped("text_encoder_lr", value, "optimizer.text_encoder_lr", as_float(value))
        else:
            rate = as_float(base) if base is not None else SD_SCRIPTS_DEFAULTS["learning_rate"]
            self.set("optimizer.text_encoder_lr", rate)
            self.report.default("optimizer.text_encoder_lr", rate, "sd-scripts uses learning_rate for the text "
                                "encoder when text_encoder_lr is not given")

    # ---- scheduler --------------------------------------------------------------------------------
    def _scheduler(self) -> None:
        custom = str(self.src.get("lr_scheduler_type") or "")
        name = str(self.src.get("lr_scheduler") or "")
        sched_args = parse_args_list(self.src.get("lr_scheduler_args"))
        restarts = self.src.get("lr_scheduler_num_cycles")
        chosen = ""
        if custom:
            tail = custom.rsplit(".", 1)[-1].lower()
            if "rex" in tail:
                chosen = "rex"
                self.report.approx("lr_scheduler_type", "scheduler.name", custom, "loratui's REX curve (rex); "
                                   "its own min_lr, restarts and decay are not used" if sched_args or restarts else
                                   "loratui's REX curve (rex)")
            elif "cosineannealingwarmuprestarts" in tail:
                chosen = "cosine_with_restarts"
                self.report.approx("lr_scheduler_type", "scheduler.name", custom, "cosine with restarts; its min_lr "
                                   "and per-restart decay are not used")
            else:
                self.report.drop("lr_scheduler_type", custom, "loratui has no such schedule")
            sched_args.clear()
        if not chosen:
            chosen = self._builtin_scheduler(name)
        for key, value in sched_args.items():
            self.report.drop(f"lr_scheduler_args {key}", value, "no such schedule option in loratui")
        self.set("scheduler.name", chosen)
        if chosen == "cosine_with_restarts":
            value = as_int(restarts) if restarts is not None else SD_SCRIPTS_DEFAULTS["lr_scheduler_num_cycles"]
            self.set("scheduler.restarts", value)
            if restarts is None:
                self.report.default("scheduler.restarts", value, "sd-scripts' default")
            else:
                self.report.map("lr_scheduler_num_cycles", "scheduler.restarts", value)
        elif restarts is not None:
            self.mapped("lr_scheduler_num_cycles", restarts, "scheduler.restarts", as_int(restarts),
                        f"unused by {chosen}")
        self._warmup(chosen)

    def _builtin_scheduler(self, name: str) -> str:
        if not name:
            self.report.default("scheduler.name", "constant", "sd-scripts' default")
            return "constant"
        simple = {"constant": "constant", "constant_with_warmup": "constant", "linear": "linear", "cosine": "cosine",
                  "cosine_with_restarts": "cosine_with_restarts"}
        if name in simple:
            self.mapped("lr_scheduler", name, "scheduler.name", simple[name])
            return simple[name]
        if name == "polynomial":
            power = self.src.get("lr_scheduler_power", 1.0)
            self.report.approx("lr_scheduler", "scheduler.name", f"polynomial (power {power})",
                               "linear: loratui's linear decay is the polynomial schedule of power 1")
            return "linear"
        self.report.drop("lr_scheduler", name, "loratui has no such schedule; loratui's default used")
        return "cosine_with_restarts"

    def _warmup(self, scheduler: str) -> None:
        steps = self.src.get("lr_warmup_steps")
        ratio = self.src.get("warmup_ratio")
        if isinstance(steps, float) and steps < 1:
            ratio, steps = steps, None
        if steps is not None:
            self.mapped("lr_warmup_steps", steps, "scheduler.warmup_steps", as_int(steps))
            return
        if ratio:
            total = self._total_steps()
            if total is None or _number(ratio) is None:
                self.report.drop("warmup_ratio", ratio, "a share of the run's steps, which needs the dataset to count; "
                                 "set scheduler.warmup_steps by hand")
            else:
                warmup = int(_number(ratio) * total)
                self.set("scheduler.warmup_steps", warmup)
                self.report.approx("warmup_ratio", "scheduler.warmup_steps", ratio,
                                   f"{warmup} steps: that share of the {total} steps loratui counts for this run")
            return
        self.set("scheduler.warmup_steps", 0)

    # ---- training and output ----------------------------------------------------------------------
    def _training(self) -> None:
        self.take("mixed_precision", "training.mixed_precision",
                  default=SD_SCRIPTS_DEFAULTS["mixed_precision"])
        self.take("gradient_checkpointing", "training.gradient_checkpointing", bool)
        self.take("seed", "training.seed", as_int, default=42,
                  default_note="sd-scripts picks a random seed when none is given; loratui's default")
        self.take("min_snr_gamma", "training.min_snr_gamma", as_float)
        self.take("noise_offset", "training.noise_offset", as_float)
        self._prior_loss_weight()
        self._step_options()
        self.take("max_token_length", "dataset.max_token_length", as_int)
        if self.src.has("fused_backward_pass"):
            self.report.drop("fused_backward_pass", self.src.get("fused_backward_pass"), "sd-scripts' LoRA scripts "
                             "do not use it (it is for full fine-tuning), so it is not turned on here")
        if self.src.has("torch_compile"):
            compiled = bool(self.src.get("torch_compile"))
            self.set("training.compile", compiled)
            self.report.approx("torch_compile", "training.compile", compiled, "loratui compiles each UNet "
                               "transformer block on its own, with torch.compile's default backend")
        self._caching()
        import_validation(self)  # validation_split, validation_seed, validate_every_n_*, max_validation_steps
        if self.src.get("sdpa"):
            self.report.map("sdpa", "(always on in loratui)", True)
        if self.hints.num_processes:
            self.set("training.num_processes", self.hints.num_processes)
            self.report.map("accelerate launch --num_processes", "training.num_processes", self.hints.num_processes)
        if self.src.has("max_train_epochs"):
            self.take("max_train_epochs", "training.epochs", as_int)
            self.src.get("max_train_steps")
            return
        raw_steps = self.src.get("max_train_steps", SD_SCRIPTS_DEFAULTS["max_train_steps"])
        steps = _number(raw_steps)
        per_epoch = self._steps_per_epoch()
        source = "max_train_steps" if self.src.has("max_train_steps") else "max_train_steps (sd-scripts' default)"
        if per_epoch and steps is not None:
            epochs = max(1, math.ceil(steps / per_epoch))
            self.set("training.epochs", epochs)
            self.report.approx(source, "training.epochs", raw_steps, f"{epochs} epochs of {per_epoch} steps "
                               "(loratui counts epochs)")
        else:
            self.report.drop(source, raw_steps, "loratui counts epochs, and turning steps into epochs needs the "
                             "dataset; loratui's default epochs kept")

    def _step_options(self) -> None:
        """Gradient accumulation and the noise, timestep and loss options, which mean the same in both."""
        for key, name in STEP_OPTION_NAMES:
            if key == "loss_type" and self.src.get(name) == "l1":
                self.report.drop(name, "l1", "loratui has no plain L1 loss; it trains with l2 (smooth_l1 with a "
                                 "small huber_c is close to L1)")
                continue
            convert = {"debiased_estimation": bool, "loss_type": str, "huber_schedule": str}.get(key)
            if convert is None:
                convert = as_float if key in ("multires_noise_discount", "ip_noise_gamma", "huber_c") else as_int
            self.take(name, f"training.{key}", convert)

    def _caching(self) -> None:
        disk = self.src.get("cache_latents_to_disk")
        memory = self.src.get("cache_latents")
        if disk is not None:
            self.mapped("cache_latents_to_disk", disk, "dataset.cache_latents_to_disk", bool(disk))
        else:
            self.set("dataset.cache_latents_to_disk", False)
            self.report.default("dataset.cache_latents_to_disk", False, "sd-scripts' default (no cache on disk)")
        if not memory and not disk:
            self.report.approx("cache_latents", "dataset.cache_latents_to_disk", bool(memory),
                               "loratui always encodes each image once and keeps it; sd-scripts without "
                               "cache_latents encodes every image at every step")

    def _steps_per_epoch(self) -> int | None:
        """Steps per epoch as loratui will train the dataset (None when the folder cannot be read here)."""
        from trainer.contract.dataset_scan import scan_dataset

        data = self.values.get("dataset", {})
        folder = Path(str(data.get("path", "")))
        if not data.get("path") or not folder.is_dir():
            return None
        config, _ = from_dict(self.values)
        try:
            scan = scan_dataset(folder, config.dataset.repeats, config.dataset.caption_extension,
                                config.dataset.folder_name_repeats)
        except OSError:
            return None
        if not scan.images:
            return None
        batches = batches_per_epoch(config, scan, self.arch or "sd15", reg_images_here(config))
        per_process = math.ceil(batches / max(1, config.training.num_processes))
        return math.ceil(per_process / max(1, config.training.gradient_accumulation_steps))

    def _total_steps(self) -> int | None:
        per_epoch = self._steps_per_epoch()
        epochs = self.values.get("training", {}).get("epochs", Config().training.epochs)
        return per_epoch * epochs if per_epoch and isinstance(epochs, int) else None

    def _output(self) -> None:
        self.take("output_dir", "output.dir", default="runs",
                  default_note="loratui's default (run folders beside the config)")
        self.take("output_name", "output.name", default=SD_SCRIPTS_DEFAULTS["output_name"])
        self.take("save_every_n_epochs", "output.save_every_n_epochs", as_int, default=0,
                  default_note="sd-scripts saves only the final LoRA unless told")
        import_step_saves(self)
        precision = self.src.get("save_precision")
        if precision is None:
            self.set("output.save_precision", "fp32")
            self.report.default("output.save_precision", "fp32", "sd-scripts saves the LoRA's own (fp32) weights "
                                "unless told")
        else:
            ours = {theirs: mine for mine, theirs in SAVE_PRECISIONS.items()}.get(str(precision))
            if ours:
                self.mapped("save_precision", precision, "output.save_precision", ours)
            else:
                self.report.drop("save_precision", precision, "not one of float, fp16, bf16")
        save_as = self.src.get("save_model_as")
        if save_as not in (None, "safetensors"):
            self.report.drop("save_model_as", save_as, "loratui always writes .safetensors")
        self._samples()

    def _samples(self) -> None:
        self.take("sample_every_n_epochs", "output.sample_every_n_epochs", as_int)
        import_samples(self)


def _number(text: Any) -> float | None:
    """A prompt option's number, or None when it is missing or not a number."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
