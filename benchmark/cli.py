"""The command line: ``python -m benchmark {run,list,leaderboard,export}``.

Logs and progress bars go to stderr; results (a table, or ``--json`` lines) to stdout. Any
failure is one line on stderr, never a traceback (``--debug`` prints it): exit status 2 for bad
input, 1 for a file system error or an internal error. An interrupted run is resumed by running
the same command again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from benchmark.errors import BenchmarkError
from benchmark.plugin import parse_key_values

log = logging.getLogger("benchmark")

TABLE_COLUMNS = [
    ("model", "model"), ("attack", "attack"), ("defense", "defense"), ("poison_rate", "poison"),
    ("seed", "seed"), ("clean_miou", "clean mIoU"), ("asr", "ASR"), ("baseline_asr", "baseline ASR"),
    ("pba", "PBA"), ("post_clean_miou", "post mIoU"), ("post_asr", "post ASR"), ("post_pba", "post PBA"),
    ("der", "DER"), ("detection_auroc", "AUROC"),
]


def add_run_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="train, attack, defend and evaluate (a grid when given lists)",
        description="Train (or reuse) a poisoned model and its clean baseline, apply a defense and "
                    "report clean mIoU, ASR, baseline ASR, PBA and post-defense numbers. Model, "
                    "attack, defense, poison rate and seed take comma-separated lists or 'all'.")
    run.add_argument("--config", metavar="FILE.toml", help="read the grid and settings from a TOML file (flags override it)")
    run.add_argument("--attack", help="attack name(s) (default fine_grained)")
    run.add_argument("--defense", help="defense name(s) (default none)")
    run.add_argument("--model", help="zoo model name(s) (default unet)")
    run.add_argument("--dataset", help="dataset name (default synthetic)")
    run.add_argument("--data-root", metavar="DIR", help="folder of a dataset read from disk")
    run.add_argument("--image-size", metavar="SIDE|HxW", help="image side, or HEIGHTxWIDTH, in pixels (default 64)")
    run.add_argument("--resize", choices=("stretch", "crop"),
                     help="how images from disk reach --image-size: stretch (default) or crop (scale to cover it, keep the centre)")
    run.add_argument("--loading", choices=("auto", "memory", "stream"),
                     help="hold splits in memory, or stream them from a memory-mapped cache with a DataLoader "
                          "(default auto: stream when the decoded set exceeds half the free memory)")
    run.add_argument("--workers", type=int, help="DataLoader worker processes for decoding and streaming (default min(4, CPUs - 1))")
    run.add_argument("--train-size", type=int, help="training images (synthetic: generated, default 2000; disk: at most)")
    run.add_argument("--test-size", type=int, help="test images (synthetic: generated, default 300; disk: at most)")
    run.add_argument("--poison-rate", help="fraction of the training set poisoned (default 0.1); a list makes a grid")
    run.add_argument("--epochs", type=int, help="training epochs (default 7)")
    run.add_argument("--batch-size", type=int, help="training batch size (default 32)")
    run.add_argument("--lr", type=float, help="peak (adamw) or initial (sgd) learning rate (default 5e-3)")
    run.add_argument("--init-weights", metavar="FILE", help="start training from a local .safetensors (or weights-only .pt) file")
    add_model_flags(run)
    run.add_argument("--clean-fraction", type=float, help="defender's clean budget, fraction of the training split (default 0.05)")
    run.add_argument("--seed", help="seed(s) (default 0)")
    run.add_argument("--device", help="auto (default: CUDA when present), cpu or cuda")
    run.add_argument("--workdir", metavar="DIR", help="where models and results are cached (default ./runs)")
    run.add_argument("--results", metavar="DIR", help="where finished cells' JSON files go (default WORKDIR/results)")
    run.add_argument("--attack-param", action="append", metavar="KEY=VALUE", help="attack parameter (repeatable; see `list`)")
    run.add_argument("--defense-param", action="append", metavar="KEY=VALUE", help="defense parameter (repeatable; see `list`)")
    run.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="import a plugin module or .py file first (repeatable)")
    run.add_argument("--executor", choices=("local", "ray"),
                     help="local (default): cells one after another in this process; ray: trainings and cells as Ray tasks")
    run.add_argument("--ray-address", metavar="HOST:PORT", help="join this running Ray cluster (default: start a local one)")
    run.add_argument("--gpus-per-task", type=float, metavar="N",
                     help="GPUs each Ray task asks for on CUDA; a fraction shares a GPU (default 1)")
    run.add_argument("--cpus-per-task", type=int, metavar="N",
                     help="CPUs (and PyTorch threads) each Ray task asks for (default: this machine's thread count "
                          "on the CPU, which gives the local executor's numbers; 1 on CUDA)")
    run.add_argument("--json", action="store_true", help="print one JSON object per result on stdout")
    run.add_argument("--figures", action="store_true", help="also write PNG figures of each cell under WORKDIR/figures")


def add_model_flags(run: argparse.ArgumentParser) -> None:
    """The model zoo's and the real-scale recipe's flags (README: Model zoo, Running at full scale)."""
    run.add_argument("--encoder", help="the model's encoder instead of its zoo entry's: an smp encoder name "
                                       "(resnet50, ...) or tu-<timm model>; torchvision entries: their backbones")
    run.add_argument("--encoder-weights", metavar="NAME",
                     help="pretrained encoder weights the model library downloads itself, e.g. imagenet "
                          "(default none: random weights; offline use --init-weights)")
    run.add_argument("--crop-size", metavar="SIDE|HxW",
                     help="train on random crops of this size, with random scaling (0.5-2x) and horizontal flips "
                          "(default: whole images, no augmentation); evaluation uses whole images")
    run.add_argument("--optimizer", help="adamw (default, one-cycle schedule) or sgd (momentum, poly schedule)")
    run.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    run.add_argument("--weight-decay", type=float, help="weight decay (default 1e-4)")
    run.add_argument("--aux-weight", type=float,
                     help="loss weight of the auxiliary head, for models with one (default 0.4)")
    run.add_argument("--eval-batch-size", type=int, help="evaluation batch size (default 64; lower it for large images)")
    run.add_argument("--compile", action="store_true", default=None,
                     help="torch.compile the model for training (measured slower on CPUs; try it on GPUs)")


def add_common_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """Flags taken before or after the command; a subcommand's default is ``SUPPRESS`` so that
    it does not overwrite a flag given before the command."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on failure, print the traceback too")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="Backdoor attacks and defenses on semantic segmentation models: train, attack, defend, "
                    "evaluate, and render the leaderboard. Every option is documented in docs/cli.md.")
    add_common_flags(parser, False)
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_parser(commands)
    listing = commands.add_parser("list", help="list attacks, defenses, models and datasets with their parameters")
    listing.add_argument("kind", nargs="?", metavar="KIND", help="attacks, defenses, models or datasets (default: all)")
    listing.add_argument("--name", metavar="TEXT", help="only the entries whose name contains TEXT")
    listing.add_argument("--json", action="store_true", help="print a JSON list of the entries instead of a table")
    listing.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="import a plugin first (repeatable)")
    board = commands.add_parser("leaderboard", help="render the leaderboard (Markdown or an HTML page) from result files")
    board.add_argument("--results", default="runs/results", metavar="DIR", help="folder of result JSON files (default runs/results)")
    board.add_argument("--format", choices=("markdown", "html"), default="markdown",
                       help="markdown (default; with --output also writes the attack x defense heatmaps to "
                            "figures/ beside the results folder) or html (one self-contained static page)")
    board.add_argument("--output", metavar="FILE", help="write the leaderboard here (default: stdout)")
    board.add_argument("--gpu-results", metavar="DIR",
                       help="folder of results of the same cells run on a GPU: adds a GPU section with their "
                            "matrices and their agreement with --results (default: none)")
    export = commands.add_parser("export", help="export result files to CSV")
    export.add_argument("--results", default="runs/results", metavar="DIR", help="folder of result JSON files (default runs/results)")
    export.add_argument("--output", metavar="FILE.csv", help="write the CSV here (default: stdout)")
    for command in commands.choices.values():
        add_common_flags(command, argparse.SUPPRESS)
    return parser


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """TOML settings (if --config) overridden by the flags given on the command line."""
    from benchmark.grid import CONFIG_KEYS, plugin_paths, read_config

    settings: dict[str, Any] = read_config(args.config) if args.config else {}
    for key in CONFIG_KEYS - {"attack_params", "defense_params", "plugins"}:  # each has its flag
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    for flag, key in (("--attack-param", "attack_param"), ("--defense-param", "defense_param")):
        given = parse_key_values(getattr(args, key), flag)
        if given:
            settings.setdefault(f"{key}s", {}).update(given)
    settings["plugins"] = plugin_paths(settings.get("plugins", [])) + list(args.plugin or [])
    return settings


def command_run(args: argparse.Namespace) -> int:
    from benchmark import artifacts, distributed, follower
    from benchmark.executor import make_executor
    from benchmark.spec import figures_folder
    from benchmark.grid import build_grid
    from benchmark.plugins import load_plugins

    settings = run_settings(args)
    execute = make_executor(settings)
    load_plugins(settings.pop("plugins"))
    distributed.start(settings.get("device", "auto"))
    cells = build_grid(settings).cells()
    if distributed.is_follower():  # torchrun ranks other than 0 only join rank 0's trainings
        follower.follow()
        return 0
    log.info("%d cell(s) to run", len(cells))
    start = time.perf_counter()
    results = []
    before = dataclasses.replace(artifacts.counters)
    for spec, result in execute(cells):
        if args.figures:
            from benchmark.figures import cell_figure

            cell_figure(spec, result)
        results.append(result)
        if args.json:
            print(json.dumps(result, sort_keys=True), flush=True)
    if args.figures:
        from benchmark.rate_figure import asr_vs_poison_rate

        asr_vs_poison_rate(results, figures_folder(cells[0]) / "asr_vs_poison_rate.png")
    log.info("done in %.1fs: %d cell(s) computed, %d reused finished; trained %d model(s), reused %d cached",
             time.perf_counter() - start, len(results) - (artifacts.counters.finished_cells - before.finished_cells),
             artifacts.counters.finished_cells - before.finished_cells,
             artifacts.counters.trained - before.trained, artifacts.counters.reused - before.reused)
    if not args.json:
        print(format_table(results))
    return 0


def format_table(results: list[dict]) -> str:
    rows = [[fmt(r.get(key)) for key, _ in TABLE_COLUMNS] for r in results]
    return tabulate(rows, headers=[title for _, title in TABLE_COLUMNS], tablefmt="simple")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


LIST_KINDS = ("attacks", "defenses", "models", "datasets")


def command_list(args: argparse.Namespace) -> int:
    import models
    from attacks import Attack
    from benchmark import datasets
    from benchmark.plugins import load_plugins
    from defenses import Defense

    load_plugins(args.plugin or [])
    wanted = list_kind(args.kind)
    entries = []  # kind, name, description, parameters, axes
    if wanted in (None, "attacks"):
        for name, cls in Attack.registry.items():
            entries.append(("attack", name, cls.summary(), {f.name: _default(f) for f in cls.parameters()},
                            " | ".join(cls.axis_choices().values())))
    if wanted in (None, "defenses"):
        for name, cls in Defense.registry.items():
            entries.append((_defense_kind(cls), name, cls.summary(), {f.name: _default(f) for f in cls.parameters()}, ""))
    if wanted in (None, "models"):
        for name, entry in models.registry.items():
            entries.append(("model", name, entry.summary(), f"{entry.parameters()}; sizes: {entry.sizes()}", ""))
    if wanted in (None, "datasets"):
        for name, builder in datasets.registry.items():
            entries.append(("dataset", name, (builder.__doc__ or "").strip().split("\n")[0], {}, ""))
    entries = [e for e in entries if args.name is None or args.name in e[1]]
    if not entries:
        raise BenchmarkError(f"nothing registered matches {args.name!r}" + (f" among the {wanted}" if wanted else ""))
    if args.json:
        keys = ("kind", "name", "description", "parameters", "axes")
        print(json.dumps([dict(zip(keys, entry)) for entry in entries], indent=2))
        return 0
    headers = ["kind", "name", "description", "parameters (defaults)"]
    rows = [[kind, name, text, _params_text(params)] for kind, name, text, params, _ in entries]
    if any(axes for *_, axes in entries):
        headers.append("attack axes: trigger | placement | label rule | selection")
        rows = [row + [axes] for row, (*_, axes) in zip(rows, entries)]
    widths = column_widths(rows, headers)
    print(tabulate(rows, headers=headers, tablefmt="simple", maxcolwidths=widths, maxheadercolwidths=widths))
    return 0


def list_kind(kind: str | None) -> str | None:
    """``attacks`` (or ``attack``) ... ``datasets``; None lists every kind."""
    if kind is None:
        return None
    plural = kind if kind.endswith("s") else kind + "s"
    if plural not in LIST_KINDS:
        raise BenchmarkError(f"list: unknown kind {kind!r}; known: {', '.join(LIST_KINDS)}")
    return plural


def _params_text(params: dict | str) -> str:
    if isinstance(params, str):
        return params
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def column_widths(rows: list[list[str]], headers: list[str]) -> list[int | None] | None:
    """On a terminal, the widths that wrap the text columns to fit it; elsewhere (a pipe, a file)
    None: one line per entry, for grep."""
    if not sys.stdout.isatty():
        return None
    width = shutil.get_terminal_size().columns
    fixed = [max(len(str(row[i])) for row in rows + [headers]) for i in range(2)]  # kind and name stay whole
    free = max(20 * (len(headers) - 2), width - sum(fixed) - 2 * len(headers))
    share = [3, 4, 3][:len(headers) - 2]
    return fixed + [max(20, free * part // sum(share)) for part in share]


def _defense_kind(cls: type) -> str:
    from defenses import DetectionDefense, InputFilterDefense, ModelRepairDefense
    from defenses.training import DataFilterDefense, TrainingDefense

    for base, label in ((DetectionDefense, "defense/detection"), (InputFilterDefense, "defense/input filter"),
                        (ModelRepairDefense, "defense/model repair"),
                        (DataFilterDefense, "defense/poisoned-data detection"),
                        (TrainingDefense, "defense/secure training")):
        if issubclass(cls, base):
            return label
    return "defense"


def _default(f: dataclasses.Field) -> str:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def command_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.store import atomic_write_text

    if args.output:  # an output that cannot be written fails now, not after a long render
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    if args.format == "html":
        from leaderboard.page import render_html

        text = render_html(args.results, args.gpu_results)
    else:
        from leaderboard import render_leaderboard

        if args.output:  # the Markdown links the figures that exist, so draw them first
            from leaderboard.heatmaps import write_heatmaps, write_poison_rate_figure
            from leaderboard.render import leaderboard_views

            figure_dir = Path(args.results).parent / "figures"
            write_heatmaps(leaderboard_views(args.results), figure_dir)
            write_poison_rate_figure(args.results, figure_dir)
        text = render_leaderboard(args.results, args.gpu_results)
    if args.output:
        atomic_write_text(Path(args.output), text)
        log.info("wrote %s", args.output)
    else:
        sys.stdout.write(text)
    return 0


def command_export(args: argparse.Namespace) -> int:
    from leaderboard import export_csv

    export_csv(args.results, args.output)
    return 0


COMMANDS = {"run": command_run, "list": command_list, "leaderboard": command_leaderboard, "export": command_export}


def failure(error: Exception) -> tuple[str, int]:
    """The one-line message and exit status for an exception that ends a command."""
    if isinstance(error, BenchmarkError):
        return str(error), 2
    if isinstance(error, OSError) and error.strerror:  # the file system's answer, not a bug
        if isinstance(error, FileExistsError) and error.filename and Path(error.filename).is_file():
            return f"{str(error.filename)!r} is a file where a folder is needed", 1
        where = f": {str(error.filename)!r}" if error.filename is not None else ""
        return f"{error.strerror}{where}", 1
    return f"internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)", 1


def one_line(text: str) -> str:
    """A message that spans lines (e.g. a wrapped library error) joined into one."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def log_format() -> str:
    """``[name] message``; under torchrun (several ranks) each line names its rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"[rank {os.environ.get('RANK', '0')}] [%(name)s] %(message)s"
    return "[%(name)s] %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format=log_format(), stream=sys.stderr)
    # cuBLAS is deterministic only with a fixed workspace, which must be set before CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        message, status = failure(error)
        print(f"error: {one_line(message)}", file=sys.stderr)
        return status
