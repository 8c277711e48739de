"""Command line: ``seqapps train|evaluate|predict|export|bench APP [--config F] [--set key=value ...]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seqapps import registry
from seqapps.export.metadata import ExportError

EXAMPLES = """examples:
  seqapps train translate                          # offline embedded corpus, exports to runs/translate
  seqapps train translate --config seqapps/translate/configs/spa_eng.yaml --out trained/translate
  seqapps train translate --set epochs=3 --data ../shared/data/translation/spa-eng/spa.txt
  seqapps train translate --resume                 # continue a run that was interrupted
  seqapps train translate --print-config > my.yaml # every setting; edit, then --config my.yaml
  seqapps evaluate translate --model trained/translate
  seqapps predict translate "¿Dónde está la estación?"
  seqapps export translate --model runs/translate
  seqapps bench layers
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", help=f"application: {', '.join(registry.available())}")


def _versions() -> str:
    """seqapps and the libraries its models depend on, from the installed packages' metadata (no import)."""
    from importlib import metadata

    import seqapps

    parts = [f"seqapps {seqapps.__version__}"]
    for name in ("tensorflow", "keras", "ai-edge-litert"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} not installed")
    parts.append(f"python {sys.version.split()[0]}")
    return ", ".join(parts)


class _Version(argparse.Action):
    """--version: the versions are looked up only when it is given, not on every command."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_versions())  # on stdout, as argparse's own version action does
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqapps",
        description="Train, evaluate, run and export recurrent-network applications.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the versions of seqapps and its libraries")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model, evaluate it on the test split and export it")
    _common(p)
    p.add_argument("--config", help="YAML file of config values (see the app's configs/ folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    p.add_argument("--tiny", action="store_true", help="start from the app's tiny test configuration")
    p.add_argument("--data", help="data spec to train on (the same as --set data=SPEC; see the README)")
    p.add_argument("--out", type=Path, help="output folder (default runs/APP)")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint in --out")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (defaults < --tiny < --config < --set) as YAML, a file --config reads, "
        "and exit without training",
    )

    p = sub.add_parser("evaluate", help="evaluate a trained model on a data set's test split")
    _common(p)
    p.add_argument("--model", type=Path, help="model folder (default: the shipped trained/APP)")
    p.add_argument("--data", help="data spec to evaluate on (default: the one the model was trained on)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="evaluation option")

    p = sub.add_parser("predict", help="run a trained model on inputs", add_help=False)
    _common(p)

    p = sub.add_parser(
        "export",
        help="export a trained model to SavedModel and TFLite",
        description="Export a trained model to SavedModel (saved_model/1) and TFLite files, each checked against the "
        "Keras model. The export is built beside the output folder and replaces it only when every file is written "
        "and checked: a failure or Ctrl-C leaves it as it was.",
    )
    _common(p)
    p.add_argument("--model", type=Path, help="trained model folder (default runs/APP)")
    p.add_argument(
        "--out",
        type=Path,
        help="export folder (default: the model folder, updated in place); a folder that holds a model of the app "
        "is replaced, a non-empty one without a model is refused",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one of the app's export settings in the model's config.yaml for this export (e.g. "
        "translate's beam_width=8, forecast's tflite_int8=true; others are refused with the list); the exported "
        "config.yaml records it",
    )

    p = sub.add_parser("bench", help="benchmarks (layers: custom cells vs Keras built-ins)")
    p.add_argument("app", nargs="?", default="all", help="'layers', an app name, or 'all'")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument(
        "--out",
        type=Path,
        help="Markdown report to write (default: bench/results.md for a full run, "
        "bench/results-PART[-quick].md for a part or --quick, so the full report is never replaced)",
    )
    return parser


def _model_dir(app, given):
    """--model, else the shipped model (or runs/APP for an app that ships none); an error names the fix."""
    from seqapps.app import shipped

    folder = Path(given) if given is not None else Path(app.default_model_dir or Path("runs") / app.name)
    if given is None and app.default_model_dir:
        folder = shipped(folder)  # run from elsewhere: the checkout's shipped model
    if folder.is_dir():
        from seqapps.export import metadata

        return metadata.check_model_folder(folder, app.name)
    if given is not None:
        fix = "check the --model path"
    elif app.default_model_dir:
        fix = "pass --model DIR (the shipped models are in the trained/ folder of a seqapps checkout)"
    else:
        fix = f"train first (make train-{app.name}) or pass --model DIR"
    from seqapps.data import looked_up_from

    raise FileNotFoundError(f"model folder {folder}{looked_up_from(folder)} not found: {fix}")


def _train_multi_worker(app, cfg, out, resume):
    """Every worker runs the same command; the chief writes ``out``, the others a temporary folder
    that is removed afterwards (so a cluster produces exactly one model)."""
    import shutil
    import tempfile

    from seqapps import training

    if resume:  # refused here, on every worker: the chief alone refusing it would leave the others waiting for it
        raise ValueError(
            "--resume is not supported with distribute=multiworker: restart the run (the chief's per-epoch "
            "checkpoint is in <run>/backup for a manual tf.train.Checkpoint restore)"
        )
    training.strategy(cfg)  # before any other TensorFlow op, as MultiWorkerMirroredStrategy requires
    if training.is_chief():
        app.train(cfg, out, resume=resume)
        return
    tmp = Path(tempfile.mkdtemp(prefix="seqapps-worker-"))
    try:
        app.train(cfg, tmp / "model", resume=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _out_folder(path, app: str) -> Path:
    """``--out``: a folder that may not exist yet, but not a file nor another app's model folder (checked
    before anything is trained or exported, so that neither is overwritten)."""
    from seqapps.export.metadata import app_of

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {path} is a file, not a folder: give a folder for the model (it is created)")
    other = app_of(path)
    if other is not None and other != app:
        raise FileExistsError(
            f"--out {path} holds a {other} model (its metadata.json says app: {other}); writing a {app} model "
            f"there would overwrite it: choose another --out folder, or remove that one first"
        )
    return path


# import names of the dependencies that the commands need and the TFLite device runtimes do not
_FULL_INSTALL = {
    "tensorflow", "keras", "yaml", "sklearn", "scipy", "matplotlib", "sacrebleu", "tensorflow_datasets", "pandas"
}  # fmt: skip


def main(argv=None) -> int:
    try:
        return _run(argv)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _FULL_INSTALL:
            raise
        print(
            f"seqapps: error: the Python package {exc.name!r} is not installed: the seqapps commands need all of "
            "seqapps' dependencies (pip install seqapps; from a checkout: make install). Without them only the "
            "TFLite device runtimes run (python -m seqapps.sentiment.tflite_runtime MODEL_DIR TEXT ...)",
            file=sys.stderr,
        )
        return 2


def _run(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["predict"]:
        return _predict(argv[1:])
    args = parser.parse_args(argv)
    # a file's modification time comes from the kernel's coarse clock, which can lag time.time() by a few ms:
    # one second of slack still tells this run's model.keras from one an earlier run left
    started, exporting = time.time() - 1.0, []
    from seqapps import config as config_lib
    from seqapps import native_log

    try:
        native_log.init_devices()  # before the first op: TensorFlow's expected start-up errors are not shown
        if args.command == "bench":
            from seqapps import bench

            return bench.main(args.app, quick=args.quick, out=args.out)
        app = registry.get_app(args.app)
        if args.command == "train":
            cfg = app.tiny_config() if args.tiny else app.default_config()
            overrides = ([f"data={args.data}"] if args.data is not None else []) + args.set  # --set data= wins
            cfg = config_lib.load(cfg, args.config, overrides)
            if args.print_config:
                print(config_lib.to_yaml(cfg), end="")
                return 0
            out = _out_folder(args.out or Path("runs") / app.name, app.name)

            def watched(method):  # training exports last, once everything an export reads is written
                def call(*a, **k):
                    exporting.append(True)
                    return method(*a, **k)

                return call

            # for the messages if the export fails or Ctrl-C stops it
            app.export, app.export_trained = watched(app.export), watched(app.export_trained)
            try:
                if cfg.distribute == "multiworker":
                    _train_multi_worker(app, cfg, out, args.resume)
                else:
                    app.train(cfg, out, resume=args.resume)
            finally:
                del app.export, app.export_trained
        elif args.command == "evaluate":
            options = config_lib.parse_overrides(args.set)
            data = options.pop("data", None)
            if data is not None and args.data is not None and data != args.data:
                raise ValueError(f"--data {args.data} and --set data={data} name different data: give one of them")
            app.evaluate(_model_dir(app, args.model), data=args.data if args.data is not None else data, **options)
        elif args.command == "export":
            from seqapps.export import metadata
            from seqapps.export.atomic import staged_dir

            model = Path(args.model or Path("runs") / app.name)
            if not model.is_dir():
                raise FileNotFoundError(f"model folder {model} not found; train first (make train-{app.name})")
            metadata.check_model_folder(model, app.name)
            out = _out_folder(args.out or model, app.name)
            if out.resolve() in model.resolve().parents:
                raise ValueError(
                    f"--out {out} holds the model folder {model}: an export replaces --out's contents, which would "
                    f"delete the model it exports; give a folder outside it, or export in place (--out {model})"
                )
            cfg = None
            if args.set:
                saved = model / "config.yaml"
                if not saved.is_file():
                    raise FileNotFoundError(f"{saved} not found; train first (make train-{app.name})")
                trained = config_lib.read(type(app.default_config()), saved)
                cfg = config_lib.load(trained, None, args.set)
                app.check_export_settings(trained, cfg)  # before anything is written
            # The whole export is built beside --out and replaces it only once every file is written and checked:
            # a failure or Ctrl-C leaves the folder as it was. In place it starts from a copy of the model folder;
            # another folder gets this model alone (none of the files of a model it held before).
            in_place = out.resolve() == model.resolve()
            replaced = not in_place and out.is_dir() and any(out.iterdir())
            if replaced and metadata.app_of(out) is None:
                raise FileExistsError(
                    f"--out {out} is not empty and holds no model: an export replaces the folder's contents, so give "
                    "a new or empty folder"
                )
            with staged_dir(out, start_empty=not in_place) as staging:
                # in place, the staging copy is the model folder: exported from itself, nothing is copied twice
                app.export(staging if in_place else model, staging, cfg=cfg)
            print(f"[{app.name}] exported to {out}" + (" (the model it held was replaced)" if replaced else ""))
    except (
        KeyError,
        ValueError,
        OSError,
        UnicodeDecodeError,
        FloatingPointError,
        ExportError,
    ) as exc:  # OSError: files
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"seqapps {args.command}: error: {msg}", file=sys.stderr)
        if args.command == "train" and exporting:  # the export is staged: the folder holds the new model alone
            import shlex

            export = shlex.join(["seqapps", "export", app.name, "--model", str(out)])
            print(
                f"the model was trained and saved in {out}, but not exported; once the cause is fixed: {export}",
                file=sys.stderr,
            )
        return 2
    except KeyboardInterrupt:
        print(f"\nseqapps {args.command}: interrupted", file=sys.stderr)
        if args.command == "train" and "out" in locals():
            import shlex

            saved = out / "model.keras"
            run = Path(cfg.run_dir) if getattr(cfg, "run_dir", "") else out
            export = shlex.join(["seqapps", "export", app.name, "--model", str(out)])
            resume = shlex.join(["seqapps", *argv, *([] if args.resume else ["--resume"])])
            if exporting:  # the model, its scores and everything else an export reads were written
                print(f"training had finished; finish the export with: {export}", file=sys.stderr)
            elif saved.is_file() and saved.stat().st_mtime >= started and not any(run.rglob("backup")):
                # training had ended (Keras deletes the checkpoint then) but its test scores were not written
                print(
                    f"training had finished and {saved} was saved, but not scored or exported: export it with: "
                    f"{export} (seqapps evaluate {app.name} --model {shlex.quote(str(out))} scores it), or train again "
                    f"with: {resume} (the checkpoint was deleted at the end of training)",
                    file=sys.stderr,
                )
            else:
                print(f"every finished epoch is checkpointed; continue with: {resume}", file=sys.stderr)
        elif args.command == "export":
            print("exports are written atomically: nothing half-written was left", file=sys.stderr)
        return 130
    return 0


def _predict(argv) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        usage = (
            "usage: seqapps predict APP [--model DIR] INPUTS... (seqapps predict APP --help for the app's options)\n"
            f"apps: {', '.join(registry.available())}"
        )
        if not argv:  # like argparse: a missing argument is an error (exit 2), asking for help is not
            print(f"{usage}\nseqapps predict: error: name the app", file=sys.stderr)
            return 2
        print(usage)
        return 0
    try:
        app = registry.get_app(argv[0])
    except KeyError as exc:
        print(f"seqapps predict: error: {exc.args[0]}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"seqapps predict {app.name}")
    parser.add_argument("--model", type=Path, help="model folder (default: the shipped trained/APP)")
    app.add_predict_arguments(parser)
    args = parser.parse_args(argv[1:])
    from seqapps import native_log

    try:
        native_log.init_devices()
        app.predict(_model_dir(app, args.model), args)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # OSError: missing, unreadable files
        print(f"seqapps predict: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # output files are written atomically: none is left half-written
        print("\nseqapps predict: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
