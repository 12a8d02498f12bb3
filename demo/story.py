"""The demo's story, measured from what was logged (not from the training process).

    python -m demo.story runs/demo

reads the demo logdir with `tls.read_states` and prints, per run and epoch, the
correlation of the best cell unit with the nesting depth (brackets), the recall
and precision of the change track on the injected anomalies (prices), computed with
the backend's own `analysis.changes`, the depth unit's significance (lag, r, q against
the depth series) in both bracket runs and its matched unit across them, and how far
back the logged gradients reach, their early/late ratio, the units with a long memory
horizon, and the held-out accuracy the run logged as a scalar (memory).
"""

import argparse
import json
import os
import sys

import numpy as np

import tb_lstm_states as tls
from demo import brackets, memory, prices


def brackets_figures(logdir, run):
    """`{step: {"unit", "r"}}` for one brackets run, from its logged float16 cell states."""
    _, depth, _ = brackets.probe_batch()
    figures = {}
    for rec in tls.read_states(logdir, run=run, tag=brackets.TAG):
        logged_depth = rec.series["depth"]
        if not np.array_equal(logged_depth, depth):
            raise AssertionError(
                "%s step %d: the logged depth is not the probe's" % (run, rec.step)
            )
        unit, r = brackets.depth_correlation(rec.states.layers[0].cell, logged_depth)
        figures[rec.step] = {"unit": unit, "r": r}
    return figures


def depth_unit_across_runs(logdir, last_steps):
    """The depth unit of the first brackets run at its last step, its significance
    against the depth series, and its matched unit in the second run (issue 15).

    Args:
      logdir: the demo logdir.
      last_steps: `{run: step}` of the two brackets runs, the first run first.

    Returns:
      `significance.follower_across`'s result plus `runs` and `step`.
    """
    from tb_lstm_states.analysis import significance

    (one_run, one_step), (other_run, other_step) = last_steps.items()
    (one,) = tls.read_states(logdir, run=one_run, tag=brackets.TAG, steps=one_step)
    (other,) = tls.read_states(logdir, run=other_run, tag=brackets.TAG, steps=other_step)
    found = significance.follower_across(
        one.states.layers[0].cell,
        other.states.layers[0].cell,
        one.series["depth"],
        one.states.lengths,
    )
    return {**found, "runs": [one_run, other_run], "step": one.step}


def prices_figures(logdir, run, kind="cell"):
    """`{step: anomaly_recall(...)}` for one prices run, on the logged `kind` states."""
    probe_price, anomalies = prices.probe_batch()
    marks = prices.anomaly_marks(anomalies, probe_price.shape[1])
    figures = {}
    for rec in tls.read_states(logdir, run=run, tag=prices.TAG):
        if not np.array_equal(rec.series["anomaly"], marks):
            raise AssertionError(
                "%s step %d: the logged anomaly marks are not the probe's" % (run, rec.step)
            )
        values = rec.states.layers[0].get(kind)
        figures[rec.step] = prices.anomaly_recall(values, rec.states.lengths, anomalies)
    return figures


def memory_figures(logdir, run):
    """`{step: {"reach", "ratio", "long_memory_units"}}` for one memory run, from its
    logged dL/dc_t and forget gates."""
    _, _, positions, _ = memory.probe_batch()
    marks = memory.capital_marks(positions)
    figures = {}
    for rec in tls.read_states(logdir, run=run, tag=memory.TAG):
        if not np.array_equal(rec.series["capital"], marks):
            raise AssertionError(
                "%s step %d: the logged capital marks are not the probe's" % (run, rec.step)
            )
        grads = rec.states.layers[0].grads["cell"]
        figures[rec.step] = {
            "reach": memory.gradient_reach(grads),
            "ratio": memory.early_late_ratio(grads),
            "long_memory_units": memory.long_memory_units(rec.states.layers[0].gates["forget"]),
        }
    return figures


def logged_scalars(logdir, run, tag):
    """`{step: value}` of a scalar the run logged with its SummaryWriter."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        os.path.join(logdir, run), size_guidance={event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    return {e.step: e.value for e in accumulator.Scalars(tag)}


def story(logdir):
    """The final-epoch figures of every demo run, plus every epoch's."""
    result = {}
    for name, _ in brackets.RUNS:
        run = "%s/%s" % (brackets.TASK, name)
        per_step = brackets_figures(logdir, run)
        last = max(per_step)
        result[run] = {
            "final_step": last,
            "steps": len(per_step),
            **per_step[last],
            "abs_r_by_step": {s: round(abs(f["r"]), 4) for s, f in sorted(per_step.items())},
        }
    across = depth_unit_across_runs(logdir, {run: f["final_step"] for run, f in result.items()})
    result[across["runs"][0]]["across_runs"] = across
    for name, _ in prices.RUNS:
        run = "%s/%s" % (prices.TASK, name)
        per_step = prices_figures(logdir, run)
        hidden = prices_figures(logdir, run, kind="hidden")
        last = max(per_step)
        result[run] = {
            "final_step": last,
            "steps": len(per_step),
            **per_step[last],
            "hidden_recall": hidden[last]["recall"],
            "recall_by_step": {s: round(f["recall"], 4) for s, f in sorted(per_step.items())},
        }
    for name, _ in memory.RUNS:
        run = "%s/%s" % (memory.TASK, name)
        per_step = memory_figures(logdir, run)
        if not per_step:  # a logdir from before the memory story, or --tasks without it
            continue
        accuracy = logged_scalars(logdir, run, memory.ACCURACY_TAG)
        last = max(per_step)
        result[run] = {
            "final_step": last,
            "steps": len(per_step),
            **per_step[last],
            "time_steps": memory.SEQUENCE_LENGTH,
            "units": memory.HIDDEN_SIZE,
            "accuracy": accuracy[last],
            "chance": 1.0 / len(memory.VALUES),
            "reach_by_step": {s: f["reach"] for s, f in sorted(per_step.items())},
            "accuracy_by_step": {s: round(a, 4) for s, a in sorted(accuracy.items())},
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m demo.story", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("logdir")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    figures = story(args.logdir)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    for run, f in figures.items():
        if run.startswith(memory.TASK):
            print(
                "%-20s step %d: the gradient reaches %d of %d steps back, early/late ratio "
                "%.1e; held-out accuracy %.3f (chance %.3f); %d of %d units have a memory "
                "horizon of %d steps or more"
                % (
                    run,
                    f["final_step"],
                    f["reach"],
                    f["time_steps"],
                    f["ratio"],
                    f["accuracy"],
                    f["chance"],
                    f["long_memory_units"],
                    f["units"],
                    memory.MIN_BACK,
                )
            )
        elif run.startswith(brackets.TASK):
            print(
                "%-20s step %d: cell unit %d follows the nesting depth, r = %+.3f"
                % (run, f["final_step"], f["unit"], f["r"])
            )
            if "across_runs" in f:
                print(depth_line(f["across_runs"]))
        else:
            print(
                "%-20s step %d: change track (cell) finds %d/%d injected anomalies (recall %.2f, "
                "precision %.2f; hidden: recall %.2f)"
                % (
                    run,
                    f["final_step"],
                    f["found"],
                    f["total"],
                    f["recall"],
                    f["precision"],
                    f["hidden_recall"],
                )
            )
    return 0


def depth_line(f):
    """The depth unit's significance in both bracket runs and its match, in words."""
    match = f["match"] or {}

    def q(value):
        if value is None:
            return "n/a"
        return "< 1e-15" if value < 1e-15 else "= %.1e" % value

    return (
        "depth unit across runs, step %d: %s unit %d follows the depth at lag %d, r = %+.3f, "
        "q %s; matched in %s to unit %s (|r| between them %.2f, sign %+d), which follows it "
        "at lag %s, r = %+.3f, q %s; CKA of the two runs' cell states %.2f"
        % (
            f["step"],
            f["runs"][0],
            f["unit"],
            f["lag"],
            f["r"],
            q(f["q"]),
            f["runs"][1],
            match.get("unit"),
            match.get("similarity", float("nan")),
            match.get("sign", 0),
            match.get("lag"),
            match.get("r", float("nan")),
            q(match.get("q")),
            f["cka"],
        )
    )


if __name__ == "__main__":
    sys.exit(main())
