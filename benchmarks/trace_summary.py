"""Summary of a PyTorch profiler trace (chrome JSON) of training steps: where a step's time goes.

For a trace written by SpeechBrain's ``--profile_training`` (``torch.profiler``
with ``tensorboard_trace_handler``: ``<output_folder>/profiler_logs/*.pt.trace.json``)
it reports, over the profiled steps (``ProfilerStep#k`` annotations):

* the mean wall time of a step;
* the GPU's busy share of that wall time (the union of kernel and memcpy intervals);
* the host waits per step: CUDA runtime calls that block the host
  (``cudaStreamSynchronize``, ``cudaDeviceSynchronize``, ``cudaEventSynchronize``,
  ``cudaMemcpy*`` from pageable memory) with their count and time;
* the operators (``cpu_op``) with the most inclusive host time.

Usage::

    python benchmarks/trace_summary.py TRACE.json [--json out.json]
"""

import argparse
import gzip
import json
import sys

BLOCKING = ("Synchronize", "cudaMemcpy")


def _load(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def _union(intervals):
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def summarize_trace(path, top=15):
    """The summary of one trace (see the module docstring), as a dict; times in milliseconds."""
    events = [e for e in _load(path).get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    steps = [e for e in events if str(e.get("name", "")).startswith("ProfilerStep#")]
    if not steps:
        raise SystemExit(f"{path}: no ProfilerStep# events (not a trace of training steps)")
    first = min(e["ts"] for e in steps)
    last = max(e["ts"] + e["dur"] for e in steps)

    def inside(e):
        return first <= e["ts"] and e["ts"] + e["dur"] <= last

    gpu = [(e["ts"], e["ts"] + e["dur"]) for e in events
           if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and inside(e)]
    waits = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") == "cuda_runtime" and inside(e) and any(b in name for b in BLOCKING):
            count, ms = waits.get(name, (0, 0.0))
            waits[name] = (count + 1, ms + e["dur"] / 1000)
    ops = {}
    for e in events:
        if e.get("cat") == "cpu_op" and inside(e):
            ops[e["name"]] = ops.get(e["name"], 0.0) + e["dur"] / 1000
    n = len(steps)
    wall = (last - first) / 1000
    return {
        "trace": str(path), "steps": n, "step_ms": wall / n,
        "gpu_busy_share": _union(gpu) / 1000 / wall if wall else None,
        "n_kernels_per_step": sum(1 for e in events if e.get("cat") == "kernel" and inside(e)) / n,
        "host_waits_per_step": {k: {"calls": c / n, "ms": ms / n} for k, (c, ms) in sorted(waits.items())},
        "top_cpu_ops_ms_per_step": dict(sorted(((k, v / n) for k, v in ops.items()),
                                               key=lambda kv: -kv[1])[:top]),
    }


def format_summary(s):
    """The summary as a few readable lines."""
    busy = "n/a (no GPU kernels)" if not s["gpu_busy_share"] else f"{100 * s['gpu_busy_share']:.1f} %"
    lines = [f"{s['steps']} steps, {s['step_ms']:.2f} ms per step, GPU busy {busy}, "
             f"{s['n_kernels_per_step']:.0f} kernels per step"]
    for name, w in s["host_waits_per_step"].items():
        lines.append(f"  host wait {name}: {w['calls']:.1f} calls, {w['ms']:.2f} ms per step")
    for name, ms in s["top_cpu_ops_ms_per_step"].items():
        lines.append(f"  op {name}: {ms:.2f} ms per step (inclusive)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    summary = summarize_trace(args.trace)
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
