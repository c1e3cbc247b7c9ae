"""The command-line runner's options (``python -m rlhf_nb.run``, :mod:`rlhf_nb.run`),
generated from the config dataclasses (chapter 08).

``transformers.HfArgumentParser`` builds them from two dataclasses: the runner's own,
:class:`RunnerArgs` (which preset, which method, where to write, resume), and the method's
config, :class:`~rlhf_nb.methods.online_config.OnlineConfig` for ``maxent``/``kl``/``rloo`` or
:class:`~rlhf_nb.methods.offline.OfflineConfig` for ``dpo``/``simpo``: one option per config
field, the config's default its default, the field's doc its help
(:func:`rlhf_nb.core.field_docs`). So there is one set of defaults, the configs' (the book's toy
runs': on a TL;DR preset pass ``--lr``; chapter 08 uses 1e-5 with LoRA). The config fields that
:class:`RunnerArgs` also has are the runner's to set (:func:`make_config`): ``method``
(offline), ``device`` (``auto``; under ``accelerate launch`` the launcher places each process)
and ``checkpoint_interval`` (10, so that ``--resume`` has something to resume; the book's cached
runs keep none, and checkpoints do not change a run's results, tested).

``--method`` picks the config and, online, the default of ``--regularizer``: ``maxent`` is
``entropy`` (and needs ``--alpha`` > 0), ``kl`` is ``kl`` (needs ``--beta`` > 0), ``rloo`` is
``none``. Options may also come from ``--config FILE`` (.json or .toml, keys as the long
option names); the command line wins. Every option is checked, and the config and preset
built, before any model loads: a bad value fails at once, naming its option.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rlhf_nb.core import field_docs
from rlhf_nb.testbed.presets import PRESETS as TOY_PRESETS
from rlhf_nb.testbed.tldr import TLDR_PRESETS

ONLINE = {"maxent": "entropy", "kl": "kl", "rloo": "none"}  # method -> default regularizer
OFFLINE = ("dpo", "simpo")
METHODS = (*ONLINE, *OFFLINE)
TOY = tuple(TOY_PRESETS)  # the book's toy testbed presets (tiny, smoke and the scale ladder's)
OVERRIDES = ("policy", "proxy_rm", "gold_rm", "prompts", "preferences", "lora_r", "dtype")
Preset = Literal[(*TLDR_PRESETS, "standin", *TOY)]
Method = Literal[METHODS]
DESCRIPTION = (
    "One RLHF run (online MaxEnt/KL/RLOO or offline DPO/SimPO) on a preset, written to --out; "
    "resumable; data-parallel under `accelerate launch`. The config options below are the "
    "config dataclasses' fields with their defaults (the book's toy runs; on a TL;DR preset "
    "pass --lr, e.g. 1e-5 with LoRA). Options may also come from --config FILE."
)


def presets() -> list[str]:
    """Every preset name the runner accepts: TL;DR presets, ``standin`` and the toy ones."""
    return list(typing.get_args(Preset))


@field_docs
@dataclass
class RunnerArgs:
    """The runner's own options (module docstring); the config's fields follow them.

    Attributes:
        preset: required. ``pythia-*-tldr``: real checkpoints (Hub names, see
            :mod:`rlhf_nb.testbed.tldr`); ``standin``: tiny random local models; ``tiny`` /
            ``smoke``: the toy testbed (``micro`` / ``mini`` / ``small``: scale-ladder rungs).
        method: required. ``maxent``: RLOO + entropy bonus α, no anchor (``--regularizer
            entropy``, or ``entropy_token``: TRL's per-token form); ``kl``: RLOO + β·KL to the
            SFT policy in the reward (``--regularizer kl``); ``rloo``: plain RLOO (or any
            ``--regularizer``); ``dpo`` / ``simpo``: offline on the preset's preference pairs.
        out: required. The output folder (history, checkpoints, samples).
        config: a .json or .toml file of options, keys as the long option names (``_`` or
            ``-``); the command line wins.
        resume: continue the run in ``--out`` from its last checkpoint.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``: the config's ``device``.
        checkpoint_interval: a resumable checkpoint every this many steps (0: never); online the
            config's ``checkpoint_interval``, offline TRL's ``save_steps``.
        save_policy: save the final policy in ``--out``/run/policy.
        no_progress: hide the progress bar.
        policy, proxy_rm, gold_rm, prompts, preferences: TL;DR presets: replace the preset's
            model or data set (a Hub name or a local folder).
        lora_r: TL;DR presets: replace the preset's LoRA rank (0: full fine-tuning).
        dtype: TL;DR presets: replace the preset's weights dtype on a GPU (``auto``,
            ``bfloat16``, ``float16``, ``float32``).
    """

    _argument_group_name = "runner options"

    preset: Preset | None = None
    method: Method | None = None
    out: str | None = None
    config: str | None = None
    resume: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_interval: int = 10
    save_policy: bool = False
    no_progress: bool = False
    policy: str | None = None
    proxy_rm: str | None = None
    gold_rm: str | None = None
    prompts: str | None = None
    preferences: str | None = None
    lora_r: int | None = None
    dtype: str | None = None


RUNNER_FIELDS = tuple(f.name for f in dataclasses.fields(RunnerArgs))


def config_class(method: str) -> type:
    """The config dataclass of ``method``."""
    if method in ONLINE:
        from rlhf_nb.methods.online_config import OnlineConfig

        return OnlineConfig
    from rlhf_nb.methods.offline import OfflineConfig

    return OfflineConfig


def config_options(config_cls: type) -> type:
    """The command-line options of a config: a dataclass of ``config_cls``'s fields (but those
    the runner sets, :data:`RUNNER_FIELDS`) with their types, defaults and help; only the help
    of their metadata, since ``HfArgumentParser`` passes metadata on to ``argparse``."""
    hints = typing.get_type_hints(config_cls)
    specs = [
        (f.name, hints[f.name], field(default=f.default, metadata={"help": f.metadata["help"]}))
        for f in dataclasses.fields(config_cls)
        if f.name not in RUNNER_FIELDS
    ]
    options = dataclasses.make_dataclass(f"{config_cls.__name__}Options", specs)
    methods = [m for m in METHODS if config_class(m) is config_cls]
    options._argument_group_name = (f"{config_cls.__name__} fields (--method "
                                    f"{' / '.join(methods)}; {config_cls.__module__})")  # fmt: skip
    return options


def parser(method: str | None = None):
    """The parser of the runner's options and, given ``method``, its config's fields."""
    from transformers import HfArgumentParser

    types = [RunnerArgs] if method is None else [RunnerArgs, config_options(config_class(method))]
    ap = HfArgumentParser(types, prog="python -m rlhf_nb.run", description=DESCRIPTION,
                          add_help=False, allow_abbrev=False)  # fmt: skip
    if method in ONLINE:
        ap.set_defaults(regularizer=ONLINE[method])
    return ap


def help_text() -> str:
    """``--help``: the runner's options, then each config's fields with their defaults."""
    from transformers import HfArgumentParser

    parts = [parser().format_help()]
    for method in ("maxent", "dpo"):
        options = config_options(config_class(method))
        ap = HfArgumentParser([options], usage=argparse.SUPPRESS, add_help=False)
        parts.append(ap.format_help().strip("\n") + "\n")
    return "\n".join(parts)


def parse(argv: list[str] | None = None) -> tuple[RunnerArgs, typing.Any]:
    """``(runner options, config options)`` from ``--config FILE`` and then the command line,
    which wins; ``--help`` prints every option and exits. The config options are a dataclass of
    the config's fields (:func:`config_options`); :func:`make_config` builds the config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        print(help_text())
        raise SystemExit(0)
    ap = parser()
    first, _ = ap.parse_known_args(argv)  # the runner's options: which method, which file
    if first.config:
        argv = [*_file_argv(ap, Path(first.config), first.method), *argv]
        first, _ = ap.parse_known_args(argv)
    if first.preset is None:
        ap.error(f"--preset is required (choices: {', '.join(presets())})")
    if first.method is None:
        ap.error(f"--method is required (choices: {', '.join(METHODS)})")
    if first.out is None:
        ap.error("--out is required (the output folder)")
    ap = parser(first.method)
    given = vars(ap.parse_args(argv))
    args = RunnerArgs(**{k: given[k] for k in RUNNER_FIELDS})
    options_cls = config_options(config_class(args.method))
    options = options_cls(**{f.name: given[f.name] for f in dataclasses.fields(options_cls)})
    if args.preset in TOY and any(getattr(args, n) is not None for n in OVERRIDES):
        ap.error(f"--preset {args.preset} is the toy testbed; --policy/--proxy-rm/... apply to "
                 "TL;DR presets only")  # fmt: skip
    return args, options


def _file_argv(ap, path: Path, method: str | None) -> list[str]:
    """The options of a .json/.toml file as command-line arguments (placed before the real
    ones, so that those win); unknown keys fail naming the file."""
    if not path.exists():
        ap.error(f"--config: no such file {path}")
    text = path.read_text()
    raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    method = method or raw.get("method")
    classes = {config_class(m) for m in ([method] if method in METHODS else METHODS)}
    known = set(RUNNER_FIELDS) - {"config"}
    for cls in classes:
        known |= {f.name for f in dataclasses.fields(config_options(cls))}
    argv = []
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            ap.error(f"--config {path}: unknown option {key!r}")
        if value is not None:
            argv += [f"--{name}", str(value)]
    return argv


def make_config(args: RunnerArgs, options, device: str):
    """The run's config: ``options`` (the config's fields as parsed) and the fields the runner
    sets (``method``, ``device``, ``checkpoint_interval``). Raises ``ValueError`` naming a
    field: the config's own checks (``__post_init__``), then the method's."""
    cls = config_class(args.method)
    runner = {"method": args.method, "device": device.split(":")[0],
              "checkpoint_interval": args.checkpoint_interval}  # fmt: skip
    names = {f.name for f in dataclasses.fields(cls)}
    config = cls(**dataclasses.asdict(options), **{k: v for k, v in runner.items() if k in names})
    regs = set(getattr(config, "regularizers", ()))
    if args.method == "maxent" and not (config.alpha > 0 and {"entropy", "entropy_token",
                                                               "entropy_norm"} & regs):  # fmt: skip
        raise ValueError("--method maxent needs --alpha > 0 (alpha=0, the config's default, is "
                         "plain RLOO: --method rloo) and an entropy --regularizer")  # fmt: skip
    if args.method == "kl" and not (config.beta > 0 and {"kl", "kl_loss"} & regs):
        raise ValueError("--method kl needs --beta > 0 (beta=0, the config's default, is plain "
                         "RLOO: --method rloo) and a kl --regularizer")  # fmt: skip
    return config


def make_preset(args: RunnerArgs):
    """The TL;DR preset of ``args`` (``None`` for the toy presets), overrides applied."""
    from rlhf_nb.testbed import standin
    from rlhf_nb.testbed.tldr import resolve_tldr_preset

    if args.preset in TOY:
        return None
    over = {n: getattr(args, n) for n in OVERRIDES if getattr(args, n) is not None}
    if args.preset == "standin":
        return standin.preset(**over)
    return resolve_tldr_preset(args.preset, **over)


def name_the_option(exc: Exception, method: str) -> str:
    """A config's error message led by the option it names: ``beta must be in ...`` becomes
    ``--beta: beta must be in ...``."""
    names = {f.name for f in dataclasses.fields(config_class(method))} | set(RUNNER_FIELDS)
    first = re.match(r"[A-Za-z_]\w*", str(exc))
    if first and first.group() in names:
        return f"--{first.group().replace('_', '-')}: {exc}"
    return str(exc)
