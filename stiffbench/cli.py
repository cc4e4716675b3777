"""Command-line interface: list, simulate, score, run, leaderboard.

User errors (bad arguments, unknown names, malformed files) end with one line on stderr and exit
code 2, never a traceback. Progress goes to stderr; results (tables, JSON) to stdout.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path

from . import __version__

EXIT_USAGE = 2


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UserError(message)


def _param_pairs(pairs: list[str] | None) -> dict:
    """--param KEY=VALUE pairs; VALUE is parsed as JSON when it can be (numbers, lists), else a string."""
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _registry(args):
    """The plugin registry, limited to the third-party plugins named by --plugins if given."""
    from .registry import Registry

    allowed = None if args.plugins is None else [n.strip() for n in args.plugins.split(",") if n.strip()]
    return Registry(allowed=allowed)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stiffbench", description="Benchmark methods that learn stiff dynamics.")
    parser.add_argument("--version", action="version", version=f"stiffbench {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--plugins", metavar="A,B", help="load only these third-party plugins (entry-point or "
                        "distribution names) besides the built-ins; with STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD=1 "
                        "no third-party plugin loads unless named here")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add = lambda name, **kw: sub.add_parser(name, parents=[common], **kw)  # noqa: E731

    p = add("list", help="list installed systems, methods and metrics")
    p.add_argument("kind", nargs="?", choices=["systems", "methods", "metrics"])
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also each plugin's source, protocol (systems) and parameters (imports the plugins)")

    p = add("simulate", help="write a system's clean reference trajectory as CSV")
    p.add_argument("--system", required=True)
    p.add_argument("--t-end", type=float, required=True, help="end time (the system's unit, ms for hh)")
    p.add_argument("--out", required=True, help="CSV file to write (columns t and the states)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="system parameter (repeatable)")

    p = add("score", help="score a forecast CSV against a reference CSV")
    p.add_argument("--system", required=True)
    p.add_argument("--pred", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--window", nargs=2, type=float, metavar=("T0", "T1"), help="default: the first evaluation window")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="system parameter (repeatable)")

    for name, helptext in (("run", "run a suite's missing cells and write its leaderboard"),
                           ("leaderboard", "re-render a suite's leaderboard from the store"),
                           ("plot", "draw a suite's figures from its store (forecasts, cost vs accuracy, training "
                                    "curves) and link them from its leaderboard")):
        p = add(name, help=helptext)
        p.add_argument("--suite", default="quick", help="built-in suite name or TOML path (default: quick)")
        p.add_argument("--store", default="stiffbench-results", help="results folder or .sqlite file")
        p.add_argument("--leaderboard-dir", default="leaderboard", help="where <suite>.md is written")
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="the device whose cells to run or show (part of a cell's identity; default: auto, "
                            "cuda when available, else cpu)")
        if name == "run":
            p.add_argument("--rerun-stale", action="store_true",
                           help="also recompute the finished cells computed by code that has changed since")
            p.add_argument("--executor", default="process", choices=["serial", "process", "dask"],
                           help="serial: in this process; process (default): one isolated process per batch, "
                                "one per core; dask: dask.distributed")
            p.add_argument("--workers", type=_positive_int, help="parallel workers (default: one per core)")
            p.add_argument("--scheduler", help="dask scheduler address (tcp://HOST:PORT) of an existing cluster")
            p.add_argument("--strict", action="store_true",
                           help="exit 1 if any cell of the suite is not ok, diverged or n/a (for CI)")
            p.add_argument("--quiet", action="store_true", help="no progress lines")
            p.add_argument("--progress", default="auto", choices=["auto", "bar", "lines"],
                           help="bar: a live display (a bar over the cells, one per running batch over its epochs); "
                                "lines: plain lines, as in CI logs; auto (default): bar when stderr is a terminal; "
                                "--quiet shows neither")
            p.add_argument("--take-over-claims", action="store_true",
                           help="run cells that another run has claimed in the store (claims from another host "
                                "cannot be checked; use when no other run is using this store)")
            p.add_argument("--checkpoint-every", type=_non_negative_float, default=120.0, metavar="SECONDS",
                           help="save each training batch's state this often under <store>/checkpoints, so that an "
                                "interrupted run resumes it (default: 120; 0: never)")
            p.add_argument("--plots", action="store_true", help="also draw the suite's figures (as `stiffbench plot`)")
        elif name == "leaderboard":
            p.add_argument("--rescore", action="store_true", help="recompute metrics from stored forecasts")
        else:
            p.add_argument("--out", help="figures folder (default: <leaderboard-dir>/figures/<suite>)")
            which = p.add_mutually_exclusive_group()
            which.add_argument("--seed", type=int, help="draw this seed's forecasts (default: each row's median seed "
                               "by the table's primary metric)")
            which.add_argument("--all-seeds", action="store_true", help="draw every seed's forecast")
    p = sub.add_parser("bench", help="performance benchmarks")
    bench_sub = p.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    b = bench_sub.add_parser("training", help="time one training epoch: plain torchdiffeq heun2 vs stiffbench's "
                             "batched path; --json PATH writes the figures")
    from . import bench  # standard library only at import time

    bench.add_arguments(b)
    from . import export, merge  # standard library only at import time

    p = add("export", help="write a suite's cells (or, with --all, every cell of the store) as one CSV or Parquet table")
    export.add_arguments(p)
    p = add("merge", help="merge two stores' cells and forecasts into a new store")
    merge.add_arguments(p)
    return parser


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # clean up child processes as on Ctrl-C
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"stiffbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("stiffbench: interrupted; finished cells are kept in the store", file=sys.stderr)
        return 130


# ----------------------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from .registry import KINDS, PluginError, static_citation, static_description

    registry = _registry(args)
    rows = []
    for kind in [args.kind] if args.kind else list(KINDS):
        try:
            specs = registry.specs(kind)
        except PluginError as exc:
            raise UserError(str(exc)) from None
        for spec in specs.values():
            description = static_description(spec)
            citation = static_citation(spec)
            if citation and not args.verbose:
                description += f" [{citation}]"
            rows.append([kind, spec.name, description, f"{spec.distribution} {spec.version}"])
            if args.verbose:
                rows.append(_details(registry, kind, spec.name))
    from tabulate import tabulate

    if not args.verbose:
        print(tabulate(rows, headers=["kind", "name", "description [source]", "provided by"], tablefmt="simple"))
        return 0
    for kind, name, description, provider, *details in (rows[i] + rows[i + 1] for i in range(0, len(rows), 2)):
        print(f"{kind[:-1]} {name} ({provider}): {description}")
        print("".join(f"    {line}\n" for line in details))
    return 0


def _details(registry, kind: str, name: str) -> list[str]:
    """`describe_plugin`'s lines for one plugin, or the reason it cannot be loaded."""
    from .describe import describe_plugin
    from .registry import PluginError

    try:
        return describe_plugin(registry.load(kind, name))
    except PluginError as exc:
        return [f"not loadable: {exc}"]
    except Exception as exc:  # a plugin whose defaults fail: still list the others
        return [f"cannot describe: {type(exc).__name__}: {exc}"]


def _system(args):
    from pydantic import ValidationError

    from .registry import PluginError
    from .suite import validation_message

    name, params = args.system, _param_pairs(args.param)
    try:
        cls = _registry(args).load("systems", name)
    except PluginError as exc:
        raise UserError(str(exc)) from None
    try:
        return cls(cls.Params(**params))
    except ValidationError as exc:
        raise UserError(validation_message(exc, f"system {name} params")) from None


def cmd_simulate(args) -> int:
    from .csvio import write_trajectory

    if not args.t_end > 0:
        raise UserError(f"--t-end must be positive, got {args.t_end:g}")
    system = _system(args)
    trajectory = system.reference(args.t_end)
    try:
        write_trajectory(Path(args.out), trajectory)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {len(trajectory.t)} samples of {system.name} on [0, {trajectory.t[-1]:g}] to {args.out}", file=sys.stderr)
    return 0


def cmd_score(args) -> int:
    from .api import Window
    from .csvio import CSVError, read_trajectory, same_grid
    from .scoring import score

    system = _system(args)
    try:
        pred = read_trajectory(Path(args.pred), system.state_names)
        ref = read_trajectory(Path(args.ref), system.state_names, finite=True)
        same_grid(pred, ref)
    except CSVError as exc:
        raise UserError(str(exc)) from None
    if args.window:
        t0, t1 = args.window
        if not t0 < t1:
            raise UserError(f"--window: T0 must be less than T1, got {t0:g} {t1:g}")
        if t1 < ref.t[0] or t0 > ref.t[-1]:
            raise UserError(f"--window [{t0:g}, {t1:g}] lies outside the CSV grid [{ref.t[0]:g}, {ref.t[-1]:g}]")
        window = Window("window", t0, t1)
    else:
        window = system.evaluation_windows()[0]
    if len(ref.window(window.t0, window.t1).t) == 0:
        raise UserError(f"no samples of the CSVs lie in the window [{window.t0:g}, {window.t1:g}]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classes, _ = _registry(args).load_all("metrics")
    for warning in caught:
        print(f"stiffbench: warning: {warning.message}", file=sys.stderr)
    result = score(system, [cls() for cls in classes.values()], pred, ref, [window])
    out = {"status": result.status, **result.metrics[window.name]}
    if result.reason or result.metric_errors:
        out["reason"] = "; ".join(filter(None, [result.reason, *result.metric_errors]))
    print(json.dumps(out))
    return 0


def _open(args):
    """The suite, registry, cells (on the device asked for) and store; cells stored under the
    previous key rule are moved to their current keys first (`keys.adopt_legacy_cells`)."""
    from .keys import adopt_legacy_cells
    from .registry import PluginError
    from .runner import expand_cells, resolve_device
    from .store import Store, StoreError
    from .suite import SuiteError, load_suite

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            suite = load_suite(args.suite)
        for warning in caught:
            if issubclass(warning.category, DeprecationWarning):
                print(f"stiffbench: warning: {warning.message}", file=sys.stderr)
        registry = _registry(args)
        device = resolve_device(args.device)
        cells = expand_cells(suite, registry, device)
        store = Store(args.store)
    except (SuiteError, StoreError, PluginError) as exc:
        raise UserError(str(exc)) from None
    adopted = adopt_legacy_cells(cells, store, device)
    if adopted:
        print(f"stiffbench: {adopted} cell(s) stored under the previous key rule moved to their current keys "
              "(not retrained)", file=sys.stderr)
    return suite, registry, cells, store, device


def _write_leaderboard(args, suite, cells, store, metrics) -> Path:
    from . import leaderboard

    path = Path(args.leaderboard_dir) / f"{suite.name}.md"
    leaderboard.write(path, leaderboard.build(suite, cells, store, metrics, figures_dir=_figures_dir(args, suite),
                                              document_dir=path.parent))
    return path


def _figures_dir(args, suite) -> Path:
    from .plots.layout import default_figures_dir

    out = getattr(args, "out", None)
    return Path(out) if out else default_figures_dir(args.leaderboard_dir, suite.name)


def _plot(args, suite, cells, store, metrics) -> None:
    """Draw the suite's figures; one line on what was written and what could not be drawn."""
    from .plots import PlotError, plot_suite

    out = _figures_dir(args, suite)
    try:
        report = plot_suite(suite, cells, store, metrics, out, seed=getattr(args, "seed", None),
                            all_seeds=getattr(args, "all_seeds", False))
    except PlotError as exc:
        raise UserError(str(exc)) from None
    print(f"figures: {len(report.written)} written under {out}")
    for reason in report.skipped:
        print(f"stiffbench: not drawn: {reason}", file=sys.stderr)


def _live_display(args):
    """The run's live display on stderr (`--progress bar`, or auto on a terminal); None for plain
    lines or --quiet."""
    if args.quiet or args.progress == "lines" or (args.progress == "auto" and not sys.stderr.isatty()):
        return None
    from rich.console import Console

    from .progress import LiveDisplay

    return LiveDisplay(Console(stderr=True, force_terminal=args.progress == "bar" or None))


def cmd_run(args) -> int:
    from .executors import make_executor
    from .runner import Runner
    from .store import RunRecord
    from .suite import SuiteError

    if args.scheduler and args.executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    suite, registry, cells, store, device = _open(args)
    try:
        executor = make_executor(args.executor, args.workers, args.scheduler)
    except (SuiteError, RuntimeError, OSError) as exc:
        raise UserError(str(exc)) from None
    display = _live_display(args)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if display is not None:  # lines print above the display
        log = display.print
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load errors are reported as records and log lines
            runner = Runner(registry, store, device=device, log=log, executor=executor, verbose=not args.quiet,
                            announce=lambda msg: print(msg, flush=True),
                            checkpoint_every_s=args.checkpoint_every or None,
                            take_over_claims=args.take_over_claims, rerun_stale=args.rerun_stale, progress=display)
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        report = runner.run(suite, cells)
    finally:
        executor.close()
    if report.to_run:
        store.add_run(RunRecord(suite.name, started, shlex.join(["stiffbench", *args.argv]), report.total, report.to_run,
                                round(report.wall_s, 1), round(report.peak_rss_mb, 1), args.executor, executor.workers,
                                f"{platform.machine()}, {os.cpu_count()} CPUs"))
    if args.plots:
        _plot(args, suite, report.cells, store, _metrics(registry, suite))
    path = _write_leaderboard(args, suite, report.cells, store, _metrics(registry, suite))
    print(f"suite {suite.name}: {report.to_run} cell(s) run in {report.wall_s:.1f} s wall "
          f"({args.executor} executor, {executor.workers} worker(s)), peak RSS {report.peak_rss_mb:.0f} MiB; "
          f"leaderboard: {path}")
    failed = [r for r in store.get_many(c.key for c in cells).values() if r.status in ("error", "load_error", "timeout")]
    store.close()
    if args.strict and failed:
        print(f"stiffbench: --strict: {len(failed)} cell(s) ended in error, load_error or timeout", file=sys.stderr)
        return 1
    return 0


def _metrics(registry, suite):
    """The loadable metrics with the suite's parameters (load errors were reported already)."""
    from .runner import metric_instances

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric_instances(registry, suite)


def cmd_leaderboard(args) -> int:
    suite, registry, cells, store, _ = _open(args)
    metrics = _metrics(registry, suite)
    if args.rescore:
        from .rescore import rescore

        counts = rescore(cells, store, metrics, {name: entry.params for name, entry in suite.metrics.items()})
        print(f"rescored {counts['rescored']} cell(s); {counts['missing']} without a usable forecast", file=sys.stderr)
    path = _write_leaderboard(args, suite, cells, store, metrics)
    print(f"leaderboard: {path}")
    store.close()
    return 0


def cmd_plot(args) -> int:
    from .plots import PlotError, require_matplotlib

    try:
        require_matplotlib()
    except PlotError as exc:
        raise UserError(str(exc)) from None
    if not Path(args.store).exists():
        raise UserError(f"no store at {args.store} (run the suite first: stiffbench run --suite {args.suite} "
                        f"--store {args.store})")
    suite, registry, cells, store, _ = _open(args)
    metrics = _metrics(registry, suite)
    _plot(args, suite, cells, store, metrics)
    path = _write_leaderboard(args, suite, cells, store, metrics)
    print(f"leaderboard: {path}")
    store.close()
    return 0


def cmd_bench(args) -> int:
    from . import bench
    from .suite import SuiteError

    try:
        return bench.main(args)
    except SuiteError as exc:  # e.g. --device cuda without CUDA
        raise UserError(str(exc)) from None


def cmd_export(args) -> int:
    from . import export

    try:
        return export.main(args)
    except export.ExportError as exc:
        raise UserError(str(exc)) from None


def cmd_merge(args) -> int:
    from . import merge

    try:
        return merge.main(args)
    except merge.MergeError as exc:
        raise UserError(str(exc)) from None


COMMANDS = {
    "bench": cmd_bench,
    "export": cmd_export,
    "merge": cmd_merge,
    "list": cmd_list,
    "simulate": cmd_simulate,
    "score": cmd_score,
    "run": cmd_run,
    "leaderboard": cmd_leaderboard,
    "plot": cmd_plot,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
