"""Trains the demo models and logs them into a logdir:  python -m demo --logdir runs/demo

Six runs, two per task, each with loss and accuracy scalars (torch's SummaryWriter)
and the LSTM's states on a fixed probe batch at every epoch (tb_lstm_states):

    brackets/lr_0.01, brackets/lr_0.002   character-level LSTM on nested brackets
    prices/hidden_32, prices/hidden_8     LSTM forecasting prices with injected anomalies
    memory/chrono, memory/forget_bias_1   LSTM recalling a token 50-99 steps back; its
                                          states are logged with their gradients

Then:  tensorboard --logdir runs/demo  and open the "LSTM States" tab.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time

from demo import brackets, memory, prices

MODULES = {"brackets": brackets, "prices": prices, "memory": memory}
TASKS = tuple(MODULES)
# Written into the logdir when every run is complete; `make demo` reuses a logdir that has it.
COMPLETE = ".demo-complete"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Train the tb-lstm-states demo models and log their states into LOGDIR.",
    )
    parser.add_argument("--logdir", required=True, help="where to write the runs (e.g. runs/demo)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per run (default: %d for brackets, %d for prices, %d for memory)"
        % (brackets.EPOCHS, prices.EPOCHS, memory.EPOCHS),
    )
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help="comma-separated subset of %s" % ",".join(TASKS)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--summary", default=None, help="also write the final figures as JSON to this file"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print one line per run instead of one per epoch"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="first delete the demo's own run directories in LOGDIR "
        "(e.g. from an interrupted demo)",
    )
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error("unknown task(s) %s; choose from %s" % (", ".join(unknown), ", ".join(TASKS)))

    def log(line):
        if not args.quiet:
            print(line, flush=True)

    if args.fresh:
        for task in TASKS:
            shutil.rmtree(os.path.join(args.logdir, task), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(args.logdir, COMPLETE))
    figures = {}
    started = time.perf_counter()
    for task in tasks:
        module = MODULES[task]
        epochs = args.epochs if args.epochs is not None else module.EPOCHS
        for name, value in module.RUNS:
            run_started = time.perf_counter()
            result = module.train_run(
                args.logdir, name, value, epochs=epochs, seed=args.seed, log=log
            )
            result["seconds"] = time.perf_counter() - run_started
            figures["%s/%s" % (task, name)] = result
            print(_summary_line(task, name, result), flush=True)
    total = time.perf_counter() - started
    print(
        "demo: trained and logged %d runs in %.0f s into %s" % (len(figures), total, args.logdir),
        flush=True,
    )
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump({"seconds": total, "runs": figures}, f, indent=2, sort_keys=True)
    with open(os.path.join(args.logdir, COMPLETE), "w") as f:
        f.write("%s\n" % ",".join(tasks))
    return 0


def _summary_line(task, name, result):
    if task == "brackets":
        detail = "accuracy %.3f, depth unit %d with r = %+.3f" % (
            result["accuracy"],
            result["unit"],
            result["r"],
        )
    elif task == "memory":
        detail = "held-out accuracy %.3f (chance %.3f)" % (
            result["accuracy"],
            1.0 / len(memory.VALUES),
        )
    else:
        detail = (
            "direction accuracy %.3f, change track finds %d/%d anomalies "
            "(recall %.2f, precision %.2f)"
            % (
                result["direction"],
                result["found"],
                result["total"],
                result["recall"],
                result["precision"],
            )
        )
    return "%s/%s: %s (%.0f s)" % (task, name, detail, result["seconds"])


if __name__ == "__main__":
    sys.exit(main())
