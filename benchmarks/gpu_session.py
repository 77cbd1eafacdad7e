"""Issue 20: GPU retraining throughput, everything in one call on a lent GPU machine.

    python3 -m benchmarks.gpu_session --out $OUT/gpu_session.md    # on the GPU machine (docs/benchmarks.md, "GPU")
    .venv/bin/python -m benchmarks.gpu_session --device cpu --tiny      # here: checks that every section runs

Sections, in order of importance, each guarded (a failure is written down, the next one runs)
and skipped once ``--budget`` seconds have passed; the markdown is written as it goes, so a run
cut short keeps what it measured:

1. ``throughput``: seconds per alpha = 0.5 model and models per GPU-hour for ResNet-9 on
   CIFAR-shaped synthetic data (generated on the machine: 50,000 players, 32x32x3), (a) an
   airbench-size budget (width 0.5: 32-64-128-256 channels, about airbench94's 2 M parameters;
   8 epochs) and (b) the datamodels recipe (width 1.0, 16 epochs), at K = 1, 4, 8, 32 models per
   pass with bfloat16 autocast (``train.precision``), at K = 1 and 8 in float32; and peak GPU
   memory per model.
   Each is timed over two short step counts after a warm-up: the per-step slope times the
   recipe's steps plus the intercept (set-up, evaluation) is the projected time of a whole
   model. Then the small CNN on the digits (the demo's config, whole models) at the same K.
2. ``store``: a short sweep through the real store (the demo's config, 256 models in 2 shards,
   K = 32), then ``collect``; model 0 retrained on the CPU beside its GPU margins.
3. ``equality``: the same 192 model indices trained one at a time and 32 per pass (the demo's
   config): per target, a Welch test of the two margin samples (equal in distribution: about
   5% of targets below p = 0.05), and the paired differences' size.
4. ``profile``: ``torch.profiler`` of a ResNet-9 pass (datamodels recipe, K = 1 and 8,
   bfloat16): the top kernels and how busy the GPU was.
5. ``levers``: ``compile=default`` (torch.compile's fused kernels) and ``compile=reduce-overhead``
   (CUDA graphs as well) against eager, bfloat16: the airbench-size ResNet-9 at K = 1 and 8 and
   the small CNN at K = 1 and 32, with each first pass's seconds (the compilation);
   reduce-overhead first, as the likelier gain when the budget runs short.
6. ``processes``: P = 1, 2, 4 processes training at once on the GPU (SLURM tasks sharing it),
   the airbench-size ResNet-9 at bfloat16, K = 1 (and K = 8 at P = 2): the summed models per hour.

The figures are also written as JSON beside ``--out`` (``gpu_session.json``: a row per measurement).
"""

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import queue
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_train import sweep_run
from benchmarks.harness import save_results

from datamodels.sweep.loaders import total_steps
from datamodels.sweep.masks import kept_examples
from datamodels.store.shards import collect_run, load_sweep
from datamodels.sweep.stage import SweepRun

KS = (1, 4, 8, 32)
STEPS = {False: (5, 25), True: (2, 6)}  # the short and long passes timed, by --tiny
FP32_KS = (1, 8)  # float32 against bfloat16: two K are enough to compare
COMPILE_MODES = (None, "reduce-overhead", "default")  # eager; CUDA graphs and fused kernels; fused kernels alone
PRECISIONS = ("fp32", "bf16")
NETS = {"airbench-size": {"width": 0.5, "epochs": 8}, "datamodels recipe": {"width": 1.0, "epochs": 16}}
DEMO = ["experiment=demo"]


class Report:
    """The markdown file, written and flushed section by section, and the time budget."""

    def __init__(self, path: Path, budget: float):
        self.path, self.deadline, self.start = path, time.perf_counter() + budget, time.perf_counter()
        self.lines: list[str] = []
        self.results: dict = {}

    def write(self, *lines: str) -> None:
        self.lines += lines
        print(*lines, sep="\n", flush=True)
        self.path.write_text("\n".join(self.lines) + "\n\n```json\n" + json.dumps(self.results, indent=1) + "\n```\n")

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def section(self, name: str, function, *args) -> None:
        if self.left() <= 0:
            self.write(f"\n## {name}: skipped (time budget spent)")
            return
        start = time.perf_counter()
        try:
            function(self, *args)
        except Exception:  # a failed section is written down; the next one runs
            self.write(f"\n## {name}: failed", "```", traceback.format_exc()[-3000:], "```")
        self.write(f"({name}: {time.perf_counter() - start:.0f} s; {time.perf_counter() - self.start:.0f} s in all)")


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_pass(run, indices, steps: int, precision: str) -> tuple[float, float]:
    """Wall seconds of one pass of ``indices`` at ``steps`` SGD steps, and its peak memory (GB)."""
    run.train_cfg = dataclasses.replace(run.train_cfg, steps=steps, precision=precision)
    cuda = run.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    synchronize(str(run.device))
    start = time.perf_counter()
    run.train_pass(indices)  # returns numpy margins: synchronised
    seconds = time.perf_counter() - start
    return seconds, (torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan"))


def resnet9(device: str, tiny: bool, width: float, epochs: int | None = None):
    """A sweep of ResNet-9 on CIFAR-shaped synthetic data (50,000 players; toy sizes with ``tiny``)."""
    players = 600 if tiny else 50_000
    return sweep_run(["dataset=synthetic", f"dataset.train={players}", "dataset.target=1000", "dataset.holdout=1000",
                      f"dataset.options.num_images={players + 2000}", "model=resnet9",
                      f"model.width={0.0625 if tiny else width}", "train=cifar10", f"device={device}",
                      f"run_dir={tempfile.mkdtemp()}"]
                     + ([f"train.epochs={epochs}"] if epochs else []) + (["train.batch_size=32"] if tiny else []),
                     tempfile.mkdtemp())


def projected(run, k: int, precision: str, short: int, long: int) -> dict:
    """One ResNet-9 pass of ``k`` models timed at ``short`` and ``long`` SGD steps (the faster of
    two each, after a warm-up, whose time is kept as ``first_pass_s``: compilation shows there);
    the per-step slope times the recipe's steps plus the intercept is a whole model's time."""
    indices = range(k)
    first, _ = timed_pass(run, indices, short, precision)  # warm-up: kernel choice, allocator, compilation
    # the faster of two of each: a stall of the shared machine is not the GPU's
    t1 = min(timed_pass(run, indices, short, precision)[0] for _ in range(2))
    t2, memory = min(timed_pass(run, indices, long, precision) for _ in range(2))
    slope = max((t2 - t1) / (long - short), 1e-9)
    recipe = total_steps(len(kept_examples(run.mask_of(0), run.groups)), run.train_cfg)
    per_model = (slope * recipe + t1 - slope * short) / k
    return {"s_per_step": slope, "s_per_model": per_model, "models_per_hour": 3600 / per_model,
            "gb_per_model": memory / k, "recipe_steps": recipe, "first_pass_s": first}


def throughput(report: Report, device: str, tiny: bool) -> None:
    players = 600 if tiny else 50_000
    short, long = STEPS[tiny]
    ks = KS[:2] if tiny else KS
    report.write(f"\n## throughput: ResNet-9, CIFAR-shaped synthetic, {players:,} players, alpha 0.5, batch "
                 f"{32 if tiny else 512}",
                 f"(timed at {short} and {long} SGD steps per pass, the faster of two each, after a warm-up; "
                 f"s/model = (slope x the recipe's steps + intercept) / K; float32 at two K only)", "",
                 "| network | precision | K | s/step (pass) | s/model | models per GPU-hour | GB per model "
                 "(peak / K, data included) |",
                 "|---|---|---|---|---|---|---|")
    for name, net in NETS.items():
        run = resnet9(device, tiny, **net)
        width = run.model_options["width"]
        for precision in PRECISIONS:
            for k in (k for k in ks if precision == "bf16" or k in FP32_KS):
                if report.left() <= 0:
                    report.write(f"| {name} | {precision} | {k} | skipped (time budget) | | | |")
                    continue
                try:
                    got = projected(run, k, precision, short, long)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    report.write(f"| {name} | {precision} | {k} | out of memory | | | |")
                    continue
                report.results.setdefault("throughput", []).append({"network": name, "precision": precision, "K": k} | got)
                report.write(f"| {name} (width {width}, {net['epochs']} epochs = {got['recipe_steps']} steps) "
                             f"| {precision} | {k} | {got['s_per_step']:.4f} | {got['s_per_model']:.2f} "
                             f"| {got['models_per_hour']:,.0f} | {got['gb_per_model']:.2f} |")
    digits(report, device, ks)


def whole_models(run, k: int, device: str) -> dict:
    """Seconds per model and mean holdout accuracy of whole models trained ``k`` per pass, after a
    warm-up pass (its time kept as ``first_pass_s``: compilation shows there)."""
    start = time.perf_counter()
    run.train_pass(range(10**6, 10**6 + k))
    first = time.perf_counter() - start
    synchronize(device)
    start = time.perf_counter()
    records = [r for at in range(0, 2 * max(k, 4), k) for r in run.train_pass(range(at, at + k))]
    per_model = (time.perf_counter() - start) / len(records)
    return {"s_per_model": per_model, "models_per_hour": 3600 / per_model,
            "holdout_acc": float(np.mean([r.holdout_acc for r in records])), "first_pass_s": first}


def digits(report: Report, device: str, ks) -> None:
    report.write("", "small CNN, digits (the demo's config: 100 cluster players, 12 epochs, batch 64), whole models:",
                 "", "| precision | K | s/model | models per GPU-hour | mean holdout acc |", "|---|---|---|---|---|")
    run = sweep_run(DEMO + [f"device={device}", f"run_dir={tempfile.mkdtemp()}"], tempfile.mkdtemp())
    for precision in PRECISIONS:
        run.train_cfg = dataclasses.replace(run.train_cfg, precision=precision)
        for k in ks:
            got = whole_models(run, k, device)
            report.results.setdefault("digits", []).append({"precision": precision, "K": k} | got)
            report.write(f"| {precision} | {k} | {got['s_per_model']:.3f} | {got['models_per_hour']:,.0f} "
                         f"| {got['holdout_acc']:.4f} |")


def levers(report: Report, device: str, tiny: bool) -> None:
    """torch.compile (``compile=``: inductor's fused kernels; reduce-overhead adds CUDA graphs)
    against eager, at bfloat16, where Python and kernel launches weigh most: the airbench-size
    ResNet-9 at K = 1 and 8, and the small CNN at K = 1 and 32."""
    short, long = STEPS[tiny]
    report.write("\n## levers: torch.compile and CUDA graphs (compile=...), bfloat16", "",
                 "| network | compile | K | s/model | models per GPU-hour | first pass (s: compiling) "
                 "| mean holdout acc |", "|---|---|---|---|---|---|---|")
    small = sweep_run(DEMO + [f"device={device}", "train.precision=bf16", f"run_dir={tempfile.mkdtemp()}"],
                      tempfile.mkdtemp())
    cases = [("airbench-size ResNet-9", resnet9(device, tiny, **NETS["airbench-size"]), (1, 2) if tiny else (1, 8),
              lambda run, k: projected(run, k, "bf16", short, long) | {"holdout_acc": float("nan")}),
             ("small CNN, digits", small, (1, 4) if tiny else (1, 32), lambda run, k: whole_models(run, k, device))]
    for name, run, ks, measure in cases:
        for k in ks:
            for mode in COMPILE_MODES:
                if report.left() <= 0:
                    report.write(f"| {name} | {mode} | {k} | skipped (time budget) | | | |")
                    continue
                run.train_cfg = dataclasses.replace(run.train_cfg, compile=mode)
                got = measure(run, k)
                report.results.setdefault("levers", []).append({"network": name, "compile": mode, "K": k} | got)
                report.write(f"| {name} | {mode or 'eager'} | {k} | {got['s_per_model']:.3f} "
                             f"| {got['models_per_hour']:,.0f} | {got['first_pass_s']:.1f} "
                             f"| {got['holdout_acc']:.4f} |")


def store(report: Report, device: str, tiny: bool) -> None:
    models, per_pass = (16, 4) if tiny else (256, 32)
    folder = tempfile.mkdtemp()
    settings = DEMO + [f"device={device}", f"sweep.models_per_pass={per_pass}", f"sweep.num_models={models}",
                       f"sweep.models_per_shard={models // 2}", f"run_dir={folder}"]
    run = sweep_run(settings, folder)
    start = time.perf_counter()
    written = [run.run_shard(shard, progress=False) for shard in range(run.num_shards)]
    seconds = time.perf_counter() - start
    _, collected = collect_run(folder)
    sweep = load_sweep(folder)
    margins = np.asarray(sweep.margins)  # [models, T]
    cpu = SweepRun(dict(run.config, device="cpu"), tempfile.mkdtemp()).train_one(0).margins
    corr = float(np.corrcoef(cpu, margins[np.flatnonzero(np.asarray(sweep.model_index) == 0)[0]])[0, 1])
    report.results["store"] = {"models": models, "shards": written, "seconds": seconds,
                               "present": len(collected.present), "finite": bool(np.isfinite(margins).all()),
                               "cpu_vs_gpu_model0_corr": corr}
    report.write(f"\n## store: {models} models of the demo's config in {run.num_shards} shards, K = {per_pass}, "
                 f"on {device}", "",
                 f"- shards: {written}, {seconds:.1f} s ({models / seconds * 3600:,.0f} models per hour with the "
                 f"store's writes); collect: {len(collected.present)} of {models} present, "
                 f"{len(collected.missing)} missing; margins finite: {bool(np.isfinite(margins).all())}",
                 f"- model 0 retrained on the CPU: correlation of its margins with the GPU's, over the targets: "
                 f"{corr:.3f}")


def equality(report: Report, device: str, tiny: bool) -> None:
    from scipy import stats

    models, k = (8, 4) if tiny else (192, 32)
    run = sweep_run(DEMO + [f"device={device}", f"run_dir={tempfile.mkdtemp()}"], tempfile.mkdtemp())
    one = np.stack([run.train_one(i).margins for i in range(models)])
    stacked = np.stack([r.margins for at in range(0, models, k) for r in run.train_pass(range(at, at + k))])
    p = stats.ttest_ind(one, stacked, axis=0, equal_var=False).pvalue
    paired = np.abs(one - stacked).mean() / one.std(0).mean()
    report.results["equality"] = {"models": models, "K": k, "share_p_below_0.05": float(np.mean(p < 0.05)),
                                  "min_p_times_T": float(p.min() * len(p)), "paired_diff_over_sd": float(paired)}
    report.write(f"\n## equality: {models} models one at a time against the same {models} at K = {k} (digits)", "",
                 f"- per-target Welch tests: {np.mean(p < 0.05):.3f} of {len(p)} targets below p = 0.05 "
                 f"(equal in distribution: about 0.05); smallest p x targets = {p.min() * len(p):.2f}",
                 f"- mean |one at a time - stacked| of the same model over the targets' margin sd: {paired:.3f}")


def profile(report: Report, device: str, tiny: bool) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    run = resnet9(device, tiny, 1.0)
    steps = 3 if tiny else 20
    for k in (1, 2) if tiny else (1, 8):
        timed_pass(run, range(k), 2 if tiny else 5, "bf16")  # warm-up
        with profiler(activities=activities) as prof:
            wall, _ = timed_pass(run, range(k), steps, "bf16")
        events = prof.key_averages()
        # torch >= 2.4 names the GPU's times "device" (the "cuda" names are gone from the events)
        key = "self_device_time_total" if cuda else "self_cpu_time_total"
        busy = sum(getattr(e, key) for e in events) / 1e6
        report.write(f"\n## profile: ResNet-9 (datamodels recipe), K = {k}, bf16, a pass of {steps} steps: "
                     f"{wall:.2f} s wall, {busy:.2f} s of {'GPU kernels' if cuda else 'CPU ops'} "
                     f"({busy / wall:.0%} of the wall)", "```",
                     events.table(sort_by=key, row_limit=12, max_name_column_width=50), "```")
        report.results.setdefault("profile", []).append({"K": k, "wall_s": wall, "busy_s": busy})


def _process_worker(device: str, tiny: bool, k: int, short: int, long: int, barrier, results) -> None:
    """One of several processes sharing the device: its own sweep, timed once all are ready."""
    torch.set_num_threads(1)
    run = resnet9(device, tiny, **NETS["airbench-size"])
    timed_pass(run, range(k), short, "bf16")  # set-up and first kernels, before the others start
    barrier.wait()
    results.put(projected(run, k, "bf16", short, long))


def processes(report: Report, device: str, tiny: bool) -> None:
    """P processes training at once on the one device (SLURM tasks sharing a GPU: the launcher's
    ``tasks_per_node`` above ``gpus_per_node``), the airbench-size ResNet-9 at bfloat16: the
    device's models per hour summed over the processes, each timed as in ``throughput``."""
    short, long = STEPS[tiny]
    settings = [(1, 1), (2, 1)] if tiny else [(1, 1), (2, 1), (4, 1), (2, 8)]
    report.write("\n## processes: P processes at once on the device, airbench-size ResNet-9, bfloat16", "",
                 "| P | K | s/model (mean over the processes) | models per GPU-hour (summed) |", "|---|---|---|---|")
    spawn = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    for p, k in settings:
        if report.left() <= 0:
            report.write(f"| {p} | {k} | skipped (time budget) | |")
            continue
        barrier, results = spawn.Barrier(p), spawn.Queue()
        workers = [spawn.Process(target=_process_worker, args=(device, tiny, k, short, long, barrier, results))
                   for _ in range(p)]
        for worker in workers:
            worker.start()
        got, deadline = [], time.perf_counter() + max(report.left(), 0) + 120
        try:
            while len(got) < p:
                try:
                    got.append(results.get(timeout=1))
                except queue.Empty:  # a process that failed (its traceback is above) never reports
                    if any(w.exitcode for w in workers) or time.perf_counter() > deadline:
                        raise RuntimeError(f"{p} processes: a process failed or did not report in time") from None
        finally:
            for worker in workers:
                worker.join(timeout=10)
                worker.kill()
        per_hour = sum(g["models_per_hour"] for g in got)
        mean = float(np.mean([g["s_per_model"] for g in got]))
        report.results.setdefault("processes", []).append({"P": p, "K": k, "s_per_model": mean,
                                                           "models_per_hour": per_hour})
        report.write(f"| {p} | {k} | {mean:.3f} | {per_hour:,.0f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_session.md"))
    parser.add_argument("--budget", type=float, default=450, help="seconds after which sections are skipped")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to check on a CPU that every section runs")
    parser.add_argument("--sections", default="throughput,store,equality,profile,levers,processes")
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    report = Report(Path(args.out), args.budget)
    gpu = (f"{torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
           if args.device.startswith("cuda") else "none")
    report.results["machine"] = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
                                 "python": platform.python_version(), "cpus": os.cpu_count()}
    report.write(f"# GPU session (benchmarks/gpu_session.py): {gpu}; torch {torch.__version__}, CUDA "
                 f"{torch.version.cuda}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    functions = {"throughput": throughput, "store": store, "equality": equality, "profile": profile,
                 "levers": levers, "processes": processes}
    for name in args.sections.split(","):
        report.section(name, functions[name], args.device, args.tiny)
    save_results("gpu_session", [{"section": section} | row for section, found in report.results.items()
                                 if section != "machine" for row in (found if isinstance(found, list) else [found])],
                 path=Path(args.out).with_suffix(".json"))


if __name__ == "__main__":
    main()
