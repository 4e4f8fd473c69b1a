"""The `sst` command: argument parsing and dispatch; each verb is one call into the core, which
also prints its result. Heavy libraries (torch, transformers, ClearML) load only in the verb
that needs them, so `sst --help` (and `sst <verb> --help`) is instant."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sst
from sst.env.cpu import pin_cpu_isa
from sst.errors import SstError, user_error
from sst.io import interactive

if TYPE_CHECKING:
    from sst.config import Config

CONFIG_HELP = "YAML preset (see configs/); key=value arguments override it"
SOURCE_HELP = "runs/<id>, an offline session .zip, or a ClearML task id or link"


def _config_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", "-c", metavar="YAML", help=CONFIG_HELP)
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. split.n_seeds=100"
    )
    return p


def _no_config(args: argparse.Namespace, why: str, also: Sequence[str] = ()) -> None:
    """Refuse -c or key=value (also in ``also``, folders that swallow them): not read here."""
    if args.config or args.overrides or any("=" in a and not Path(a).is_dir() for a in also):
        raise SstError(why, fix="drop --config and key=value arguments")


def _load(args: argparse.Namespace) -> Config:
    """The preset and overrides; executed by a clearml-agent, the task's parameters win (they
    hold the task's whole config, possibly edited in the web UI)."""
    from sst.config import load_config
    from sst.tracking.server import remote_overrides

    return load_config(args.config, [*args.overrides, *remote_overrides()])


def cmd_data(args: argparse.Namespace) -> int:
    from sst.verbs.prepare import print_data

    print_data(_load(args))
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from sst.verbs.prepare import split_and_print

    split_and_print(_load(args), force=args.force)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sst.verbs.prepare import ensure_split
    from sst.verbs.train import print_summary, resume, seeds_summary, train_each_seed

    if args.resume:
        _no_config(args, "--resume takes the run's recorded config")
        print_summary(resume(Path(args.resume)))
        return 0
    cfg = _load(args)
    ensure_split(cfg)  # an agent's fresh clone or a new machine: made from the sources
    results = train_each_seed(cfg, print_summary)
    if len(results) > 1:
        print(seeds_summary(results))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """`sst train` with ``train.distill_from`` = the teacher (:mod:`sst.verbs.distill`)."""
    args.overrides = [*args.overrides, f"train.distill_from={args.teacher}"]
    args.resume = None
    return cmd_train(args)


def cmd_predict(args: argparse.Namespace) -> int:
    from sst.verbs.predict import format_one, predict_file, predict_texts, run_folder

    run = run_folder(args.run, args.task, args.model)
    if args.file:
        if not args.out:
            raise SstError("--file needs --out", fix="add --out predictions.tsv")
        n = predict_file(run, Path(args.file), Path(args.out))
        print(f"{n} predictions written to {args.out}")
        return 0
    if not args.texts:
        raise SstError("nothing to predict", fix="pass phrases, or --file FILE --out FILE")
    for text, probs in predict_texts(run, args.texts):
        print(format_one(text, probs))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from sst.config import load_config
    from sst.verbs.doctor import DEMO, doctor

    preset = args.config or (DEMO if DEMO.is_file() else None)
    try:
        cfg: Config | SstError = load_config(preset, args.overrides)
    except SstError as e:  # the rest of the table still tells the user about the machine
        cfg = e
    return doctor(cfg, ping=not args.no_ping, bits=args.bits)


def cmd_config(args: argparse.Namespace) -> int:
    from sst.config import describe
    from sst.io import dumps

    if args.config or args.overrides:
        print(dumps(_load(args).to_dict()), end="")
    else:
        print("\n".join(describe()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if args.what == "prune":  # it reads each run's own config: a -c or key=value would be ignored
        from sst.bench.prune import bench_prune

        _no_config(args, "bench prune reads each run's own config", also=args.runs)
        return bench_prune([Path(r) for r in args.runs], args.texts, out)
    if args.what == "quality":  # one config per arm: the preset and overrides, each arm's on top
        from sst.bench.quality import STORE, bench_quality

        only = None if args.only is None else [a for a in args.only.split(",") if a]
        store = Path(args.store) if args.store else STORE
        return bench_quality(args.config, args.overrides, args.arm, out, only, store)
    cfg, n = _load(args), args.phrases
    if args.what == "split":
        from sst.bench.split import bench_split

        return bench_split(cfg, args.seeds, args.peer_seeds, out)
    from sst.bench import train as bench

    verbs = {"isa": bench.bench_isa, "profile": bench.bench_profile, "train": bench.bench_train}
    return bench.bench_ours(cfg, n) if args.what == "ours" else verbs[args.what](cfg, n, out)


def cmd_sweep(args: argparse.Namespace) -> int:
    from sst.run.folder import SWEEP_RECORD
    from sst.verbs.report import publish, sweep_rows
    from sst.verbs.sweep import sweep

    if args.local == bool(args.queue):
        raise SstError("choose where the sweep runs", fix="pass --local or --queue NAME")
    sweep_dir, outcomes = sweep(
        Path(args.models),
        base=Path(args.config) if args.config else None,
        extra=args.overrides,
        local=args.local,
        queue=args.queue,
        resume=args.resume,
        wait=args.wait,
    )
    failed = [o for o in outcomes if o.status == "failed"]
    print(
        f"sweep record {sweep_dir / SWEEP_RECORD}: {len(outcomes) - len(failed)} ok, "
        f"{len(failed)} failed"
    )
    if args.local:
        publish(sweep_rows(sweep_dir), args.by, Path(args.report or f"reports/{sweep_dir.name}"))
    return 1 if failed and len(failed) == len(outcomes) else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from sst.run.folder import TUNE_RECORD
    from sst.run.trials import leaderboard
    from sst.verbs.tune import tune

    if args.local == bool(args.queue):
        raise SstError("choose where the search runs", fix="pass --local or --queue NAME")
    tuned = tune(
        Path(args.space),
        base=Path(args.config) if args.config else None,
        extra=args.overrides,
        local=args.local,
        queue=args.queue,
    )
    print(leaderboard(tuned.trials).to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"tune record {tuned.tune_dir / TUNE_RECORD}")
    if tuned.best is None:
        print("no trial completed", file=sys.stderr)
        return 1
    run = tuned.best.run_dir or tuned.best.task_id
    print(f"best: trial {tuned.best.number} ({run}); replay it with `sst replay {run}`")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sst.run.ranking import parse_by
    from sst.verbs.report import collect, from_project, publish

    parse_by(args.by)  # a bad --by fails before anything is read
    rows = from_project(args.project, args.tag) if args.tag else collect(map(Path, args.runs))
    publish(rows, args.by, Path(args.out), track=not args.no_clearml, project=args.project)
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from sst.verbs.ensemble import ensemble, select
    from sst.verbs.report import collect, print_top

    if args.runs:
        members, by = [Path(r) for r in args.runs], "given"
    else:
        members = select(Path(args.runs_dir), args.top, args.by)
        by = f"top {args.top} by validation {args.by}"
    folder, model_id = ensemble(members, Path(args.runs_dir), by=by)
    print(f"ensemble of {', '.join(m.name for m in members)} ({by})")
    print_top(collect([folder]), "macro_f1")
    print(f"run folder {folder}")
    if model_id:
        print(f"registered as ClearML model {model_id} (tagged ensemble)")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from sst.verbs.replay import replay, replay_online

    if args.queue:
        if args.overrides:
            raise SstError("an online replay clones the task as recorded", fix="drop key=value")
        rec, new, verdict = replay_online(args.source, args.queue)
    else:
        out = Path(args.out) if args.out else None
        rec, new, verdict = replay(args.source, args.overrides, out_root=out)
    print(f"recorded {rec.source}\nreplayed {new.source}")
    if new.tracking:
        print(new.tracking)
    print(verdict.render())
    return 0 if verdict.identical else 1


def cmd_upload(args: argparse.Namespace) -> int:
    from sst.tracking.share import upload

    task_id, link, attached, model_id = upload(
        Path(args.session), Path(args.run) if args.run else None
    )
    print(f"task {task_id}: {link}")
    print(f"run folder attached: {attached}" if attached else "no run folder attached (--run)")
    if model_id:
        print(f"weights registered as ClearML model {model_id} (sst predict --model {model_id})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from sst.verbs.replay import compare, intact, load

    if args.b is None:
        print(intact(Path(args.a)))
        return 0
    a, b = load(args.a, reads=None), load(args.b, reads=None)  # run folders: every file
    verdict = compare(a, b)
    print(verdict.render())
    return 0 if verdict.identical else 1


def cmd_export(args: argparse.Namespace) -> int:
    from sst.verbs.export import export

    out, status, model_id = export(
        Path(args.run), Path(args.out) if args.out else None, force=args.force
    )
    print(f"{out}: {status} (from_pretrained(folder, trust_remote_code=True) loads it)")
    if model_id:
        print(f"registered as ClearML model {model_id} (tagged export)")
    return 0


def _verb(sub: Any, func: Callable[[argparse.Namespace], int], help: str) -> Any:
    """The sub-command named after ``func`` (``cmd_<verb>``), which runs it."""
    p = sub.add_parser(func.__name__.removeprefix("cmd_"), help=help)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from sst.run.ranking import BALANCED_RULE, BY_HELP

    parser = argparse.ArgumentParser(
        prog="sst",
        description="Fine-tune BERT-like encoders on SST-5; every run tracked and replayable.",
    )
    parser.add_argument("--version", action="version", version=f"sst {sst.__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    _config_args(_verb(sub, cmd_data, "fetch and parse the raw data; print what it holds"))
    p = _verb(sub, cmd_split, "tree-preserving train/val/test split, versioned and tracked")
    p.description = (
        "Hold out whole sentences for test (seed chosen by the smallest Wasserstein distance "
        "between train and test labels, or the canonical PTB split), carve a validation set, and "
        "write the split once with a manifest."
    )
    _config_args(p)
    p.add_argument("--force", action="store_true", help="replace an existing, different split")
    p = _verb(sub, cmd_train, "fine-tune model.name on train.split; writes runs/<id>/")
    _config_args(p)
    p.add_argument("--resume", metavar="RUN", help="continue runs/<id>.partial from its checkpoint")
    p = _verb(sub, cmd_distill, "train one model on a teacher's soft labels (an ensemble's)")
    _config_args(p)
    p.add_argument(
        "--teacher",
        required=True,
        metavar="RUN",
        help="runs/ensemble-<k>-<hash> (`sst ensemble`) or one run: its members predict the "
        "train phrases; train.distill_temperature and train.distill_mix shape the loss",
    )
    p = _verb(sub, cmd_predict, "classify phrases with a finished run, a shared task or a model")
    p.add_argument("--run", help="runs/<id>")
    p.add_argument("--task", help="a ClearML task id or link (its shared run is downloaded)")
    p.add_argument("--model", help="a ClearML model id (registered by sst: its sha256 is checked)")
    p.add_argument("texts", nargs="*", help="phrases to classify")
    p.add_argument("--file", help="TSV with a text (or Phrase) column, or one phrase per line")
    p.add_argument("--out", help="where to write the predictions TSV (with --file)")
    p = _verb(sub, cmd_doctor, "am I set up? machine, lock drift (exit 1), ClearML, the data")
    _config_args(p).add_argument(
        "--no-ping", action="store_true", help="do not ask a configured ClearML server to answer"
    )
    p.add_argument(
        "--bits",
        action="store_true",
        help="run the bits probe (seconds): does this machine reproduce portable runs? (exit 1 "
        "when not)",
    )
    _config_args(_verb(sub, cmd_config, "list every config key, or print a resolved config"))
    p = _verb(sub, cmd_bench, "benchmarks, as ratios against a peer measured in the same run")
    p.description = (
        "split: vectorised seed search vs the per-seed pandas+scipy loop. train: our loop "
        "(random, stratified) vs HF Trainer (group_by_length), inference vs an HF pipeline. "
        "profile: where a step's time goes, ours vs HF Trainer. isa: our loop with the CPU's own "
        "kernels vs each pinned level (SST_CPU_ISA=avx2, portable), fresh processes; ours: one "
        "such process. "
        "prune: --runs (dense, pruned) by seed group: accuracy, speed, size on disk. "
        "quality: the plain HF Trainer script (peer), the config (kit) and each --arm, over "
        "train.seeds: test quality as mean ± sd, differences outside the seed noise marked."
    )
    p.add_argument("what", choices=["split", "train", "profile", "isa", "ours", "prune", "quality"])
    p.add_argument("--runs", nargs="+", default=[], help="run folders (prune)")
    p.add_argument("--texts", type=int, default=500, help="test phrases timed (prune)")
    _config_args(p)
    p.add_argument("--phrases", type=int, default=3000, help="train phrases (train benchmark)")
    p.add_argument("--out", help="update this Markdown file's section (BENCHMARKS.md)")
    p.add_argument("--seeds", type=int, default=10000, help="seeds for the vectorised search")
    p.add_argument("--peer-seeds", type=int, default=300, help="seeds for the per-seed scipy peer")
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar='"LABEL key=value ..."',
        help="quality: one more arm, the config with these overrides (repeatable)",
    )
    p.add_argument(
        "--only",
        metavar="ARMS",
        help="quality: train only these arms (comma-separated labels; the others' stored "
        'measurements are shown; --only "": train nothing, show what is stored)',
    )
    p.add_argument(
        "--store",
        metavar="DIR",
        help="quality: where each measurement is kept (default benchmarks/quality)",
    )
    p = _verb(sub, cmd_sweep, "train every model of a models.txt, here or on a ClearML queue")
    p.description = (
        "Each line of --models (a model, then key=value overrides) becomes a training run of the "
        "--config preset. --local: one `sst train` process per line, failures recorded, then a "
        "leaderboard. --queue: clone the template task per line, tag it with the sweep id and "
        "enqueue it (needs a ClearML server)."
    )
    _config_args(p)
    p.add_argument("--models", default="models.local.txt", help="the model list")
    p.add_argument("--local", action="store_true", help="run here, one process per model")
    p.add_argument("--queue", help="ClearML queue to enqueue the clones on")
    p.add_argument("--resume", action="store_true", help="skip completed lines; continue partial")
    p.add_argument("--wait", action="store_true", help="(--queue) wait and print task status")
    p.add_argument("--by", default="balanced", help="leaderboard ranking (see sst report)")
    p.add_argument("--report", help="leaderboard folder (default reports/<sweep-id>)")
    p = _verb(sub, cmd_tune, "search one model's hyperparameters, here or on a ClearML queue")
    p.description = (
        "Each trial trains the --config preset with values drawn from the --space file (Optuna's "
        "TPE, seeded there). The objective is the best validation root macro-F1, never test. "
        "--local: Optuna in this process. --queue: ClearML's HyperParameterOptimizer clones the "
        "template task per trial onto the queue (needs a ClearML server)."
    )
    _config_args(p)
    p.add_argument(
        "--space", required=True, help="search space YAML (see configs/spaces/demo.yaml)"
    )
    p.add_argument("--local", action="store_true", help="run the trials here, one by one")
    p.add_argument("--queue", help="ClearML queue to enqueue the trials on")
    p = _verb(sub, cmd_report, "leaderboard of run folders: Markdown, HTML, JSON, confusion grid")
    p.description = (
        f"Rank runs by --by: {BY_HELP}. {BALANCED_RULE}, qualifying runs first by macro-F1. "
        "Flags checkpoints fine-tuned on SST/GLUE (contamination risk)."
    )
    p.add_argument("runs", nargs="*", default=["runs"], help="runs/ folders or runs/<id>")
    p.add_argument("--by", default="balanced", help="ranking criterion (default balanced)")
    p.add_argument("--out", default="reports/latest", help="output folder")
    p.add_argument("--no-clearml", action="store_true", help="do not report the table to ClearML")
    p.add_argument("--tag", help="online: rank the project's training tasks with this tag")
    p.add_argument("--project", default="sst", help="online: the ClearML project (with --tag)")
    p = _verb(sub, cmd_ensemble, "average the best runs' probabilities into a scored run folder")
    p.add_argument("runs", nargs="*", help="runs/<id> members (default: --top by --by)")
    p.add_argument("--top", type=int, default=3, help="how many runs (without explicit runs)")
    p.add_argument("--by", default="macro_f1", help="selection metric on the validation set")
    p.add_argument("--runs-dir", default="runs", help="where runs are read and written")
    p = _verb(sub, cmd_replay, "re-run a recorded run (folder, session, task) and compare bits")
    p.description = (
        "Re-executes from the recorded config, split (manifest sha256 checked first) and seed "
        "only, into <runs_dir>/replays/; the last line is BIT-IDENTICAL or DIFFERENT with the "
        "fingerprint fields and metrics that differ. Exit 0 only when identical. key=value "
        "arguments change the recorded config on purpose (what breaks identity?)."
    )
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="deliberate changes")
    p.add_argument("--queue", help="server: clone the task onto this queue instead of running here")
    p.add_argument("--out", help="where the replay's run folder goes (default <runs>/replays)")
    p = _verb(sub, cmd_verify, "is a run intact? do two runs match: BIT-IDENTICAL or what differs")
    p.description = "Re-hashes every file the fingerprint records first; a changed one is refused."
    p.add_argument("a", help=SOURCE_HELP)
    p.add_argument("b", nargs="?", help=f"{SOURCE_HELP} (none: only check that a is intact)")
    p = _verb(sub, cmd_upload, "import an offline session into ClearML; print the task link")
    p.description = "Imports the session and attaches the run folder (to replay, verify, predict)."
    p.add_argument("session", help="the offline session .zip that sst train printed")
    p.add_argument("--run", help="the run folder to attach (default: found in runs/ by task id)")
    p = _verb(sub, cmd_export, "a run as a folder plain transformers loads, with a model card")
    p.add_argument("run", help="runs/<id> (verified against its fingerprint first)")
    p.add_argument("--out", help="the folder to write (default exports/<id>)")
    p.add_argument("--force", action="store_true", help="replace a different export there")
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options anywhere: argparse ends a positional list (overrides, texts) at the first option
    and returns what follows it unrecognised: `sst split a=1 --force b=2` appends it, in order."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    items = getattr(args, "overrides", getattr(args, "texts", None))
    if rest and (items is None or any(r.startswith("-") for r in rest)):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if items is not None:
        items.extend(rest)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        pin_cpu_isa()  # before any verb imports torch
        if not interactive(sys.stderr):  # the hub's download bars: no carriage returns in a log
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        return int(args.func(args))
    except (SstError, OSError) as e:  # OSError: read-only, permission, disk full, in the way
        for line in str(user_error(e)).splitlines():  # one per problem (errors.Problems)
            print(f"sst {args.verb}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sst {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
