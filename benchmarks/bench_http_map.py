"""Overhead of the HTTP map: HttpExecutor over local evaluator processes vs the local process pool.

    python benchmarks/bench_http_map.py [--repeats 15] [--task-repeats 9] [--json]

1. One real generation: 64 genomes driving full laps on the default track (frame limit of the GA:
   1.5 x the pursuit baseline lap), through ``HttpExecutor`` over 2 evaluator processes (1 worker each)
   and through ``LocalExecutor(2)``, alternately, in the same run; the ratio of throughputs is printed.
   Two populations: the random initial generation of a seeded GA run, and the population after a few
   generations of that run (cars that drive further, so laps cost more).
2. 200 tasks of about 10 ms CPU each, one race per task (``chunksize=1``): an ordinary evaluation task
   with a short frame limit (and no early stop) sized so one lap takes ~10 ms here. The ideal time is
   the tasks' in-process CPU time divided by the 2 workers; efficiency = ideal / measured. Timed for
   the HTTP map as it runs by default (many waiting tasks travel several to a request, each still its
   own race), for the HTTP map sending every task in its own request, and for the local pool.

Both executors cut a generation into 2 chunks per worker (their default). Timings are medians over
``--repeats``; "paired" is the median of each repeat's own ratio (its runs were back to back, so
it is the least affected by load drifting on a shared machine), and the fastest run of each (the
one least disturbed by other jobs) is shown too. Compare only figures of the same run. The CPU time
the HTTP client and servers spend per task is printed as well.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402

from evaluator import ControllerSpec, EvaluationTask  # noqa: E402
from ga.executors import LocalExecutor  # noqa: E402
from ga.http_executor import HttpExecutor  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalFleet:
    """``n`` evaluator processes (``python -m evaluator``) on 127.0.0.1, ready when constructed."""

    def __init__(self, n: int, workers: int = 1, max_inflight: int | None = None, timeout: float = 180.0):
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        for _ in range(n):
            port = free_port()
            cmd = [sys.executable, "-m", "evaluator", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(workers), "--log-level", "warning"]
            if max_inflight is not None:
                cmd += ["--max-inflight", str(max_inflight)]
            self.procs.append(subprocess.Popen(cmd, cwd=REPO, env=env))
            self.urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            for url, proc in zip(self.urls, self.procs, strict=True):
                while True:
                    if proc.poll() is not None:
                        self.stop()
                        raise RuntimeError(f"evaluator {url} exited with {proc.returncode}")
                    try:
                        if client.get(f"{url}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        self.stop()
                        raise TimeoutError(f"evaluator {url} not ready")
                    time.sleep(0.1)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def ga_populations(generations: int = 6) -> tuple[EvaluationTask, list[list[float]], list[list[float]]]:
    """The task of a seeded GA run on the default track, its initial population and a later one."""
    from ga.run import main as ga_run

    with tempfile.TemporaryDirectory() as tmp:
        out0, outn = Path(tmp) / "g0", Path(tmp) / "gn"
        common = ["--population", "64", "--seed", "1", "--workers", "2"]
        devnull = open(os.devnull, "w")  # noqa: SIM115
        stdout, sys.stdout = sys.stdout, devnull
        try:
            assert ga_run(["--generations", "1", *common, "--out", str(out0)]) == 0
            assert ga_run(["--generations", str(generations), *common, "--out", str(outn)]) == 0
        finally:
            sys.stdout = stdout
            devnull.close()
        cp0 = json.loads((out0 / "checkpoint.json").read_text())
        cpn = json.loads((outn / "checkpoint.json").read_text())
    task = EvaluationTask.model_validate(cp0["config"]["tasks"][0])  # (one track: one task)
    # population entries: genome lists (possibly with a fitness alongside)
    def genomes(cp):
        out = []
        for ind in cp["population"]:
            g = ind["genome"] if isinstance(ind, dict) else ind
            out.append([float(x) for x in g])
        return out
    # the population *before* generation 1's selection is what a generation evaluates; the initial
    # population of run 0 is exactly generation 0's batch, the last population of run n a late batch
    return task, genomes(cp0), genomes(cpn)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def generation_benchmark(http: HttpExecutor, local: LocalExecutor, task, gs, repeats: int) -> dict:
    expected = list(local.map(task, gs))
    assert list(http.map(task, gs)) == expected, "HTTP results differ from the local executor's"
    t_local, t_http = [], []
    for i in range(repeats):  # each goes first in turn
        if i % 2:
            t_local.append(timed(lambda: list(local.map(task, gs))))
        t_http.append(timed(lambda: list(http.map(task, gs))))
        if not i % 2:
            t_local.append(timed(lambda: list(local.map(task, gs))))
    ml, mh = statistics.median(t_local), statistics.median(t_http)
    frames = sum(r.frames for r in expected)
    return {
        "genomes": len(gs),
        "finished": sum(r.finished for r in expected),
        "mean_frames": frames / len(gs),
        "local_s": ml,
        "http_s": mh,
        "local_evals_per_s": len(gs) / ml,
        "http_evals_per_s": len(gs) / mh,
        "throughput_ratio": ml / mh,
        # runs of the same repeat were back to back: their ratio is the least affected by load drifting
        "throughput_ratio_paired": statistics.median(a / b for a, b in zip(t_local, t_http, strict=True)),
        # the fastest run of each is the least disturbed by other jobs on a shared machine
        "throughput_ratio_best": min(t_local) / min(t_http),
        "local_runs": t_local,
        "http_runs": t_http,
    }


def calibrate_10ms(target_s: float = 0.010) -> EvaluationTask:
    spec = ControllerSpec(kind="mlp")
    rng = random.Random(5)
    g = [rng.gauss(0, 0.7) for _ in range(spec.genome_length())]
    probe = EvaluationTask(max_frames=200, stall_frames=0, controller=spec)
    probe.evaluate_batch([g])
    per = min(timed(lambda: probe.evaluate_batch([g])) for _ in range(7)) / 200
    frames = max(1, round(target_s / per))
    return EvaluationTask(max_frames=frames, stall_frames=0, controller=spec)


def _cpu(pids: list[int]) -> tuple[float, float]:
    """CPU seconds of the evaluator server processes, and of their worker processes."""
    server = workers = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            t = root.cpu_times()
            server += t.user + t.system
            for child in root.children(recursive=True):
                t = child.cpu_times()
                workers += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return server, workers


def small_task_benchmark(
    executors: dict[str, HttpExecutor | LocalExecutor], repeats: int, pids: list[int], n: int = 200
) -> dict:
    """200 tasks of ~10 ms through each executor (``chunksize=1``: one race per task), in turn."""
    task = calibrate_10ms()
    rng = random.Random(7)
    gs = [[rng.gauss(0, 0.7) for _ in range(task.controller.genome_length())] for _ in range(n)]
    expected = [task.evaluate_batch([g])[0] for g in gs]
    for ex in executors.values():
        assert list(ex.map(task, gs, chunksize=1)) == expected
    names = list(executors)
    serial: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name in names}
    # CPU outside the simulation (HTTP client + servers) and inside it (the evaluators' workers)
    cpu = {name: {"client": 0.0, "server": 0.0, "workers": 0.0} for name in names}
    for i in range(repeats):
        # in-process time of the same 200 tasks, one at a time: the ideal is that over 2 workers
        serial.append(timed(lambda: [task.evaluate_batch([g]) for g in gs]))
        for name in names[i % len(names):] + names[: i % len(names)]:  # each goes first in turn
            server0, workers0 = _cpu(pids)
            client0 = time.process_time()
            runs[name].append(timed(lambda ex=executors[name]: list(ex.map(task, gs, chunksize=1))))
            server1, workers1 = _cpu(pids)
            used = cpu[name]
            used["client"] += time.process_time() - client0
            used["server"] += server1 - server0
            used["workers"] += workers1 - workers0
    ideal = statistics.median(serial) / 2
    out: dict = {"tasks": n, "max_frames": task.max_frames, "task_ms": 1000 * statistics.median(serial) / n,
                 "ideal_s": ideal, "serial_runs": serial}
    for name in names:
        t, used = runs[name], cpu[name]
        out[name] = {
            "s": statistics.median(t),
            "efficiency": ideal / statistics.median(t),
            # each repeat against its own ideal (measured just before): the least affected by load drifting
            "efficiency_paired": statistics.median(s / 2 / x for s, x in zip(serial, t, strict=True)),
            "efficiency_best": min(serial) / 2 / min(t),
            "overhead_ms_per_task": 1000 * (used["client"] + used["server"]) / (n * repeats),
            "worker_ms_per_task": 1000 * used["workers"] / (n * repeats),
            "runs": t,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15, help="timed runs of each generation per executor")
    p.add_argument("--task-repeats", type=int, default=9, help="timed runs of the 200 short tasks")
    p.add_argument("--generations", type=int, default=6, help="GA generations before the late population")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)

    task, gen0, genn = ga_populations(args.generations)
    report: dict = {"cpus": os.cpu_count(), "load_avg_before": os.getloadavg()}
    with (
        LocalFleet(2, workers=1) as fleet,
        HttpExecutor(fleet.urls) as http,
        HttpExecutor(fleet.urls, pack_requests=False) as http_single,
        LocalExecutor(2) as local,
    ):
        report["generation_initial"] = generation_benchmark(http, local, task, gen0, args.repeats)
        report[f"generation_{args.generations}"] = generation_benchmark(http, local, task, genn, args.repeats)
        executors = {"http": http, "http_one_request_per_task": http_single, "local": local}
        report["tasks_10ms"] = small_task_benchmark(executors, args.task_repeats, fleet.pids())
        report["http_stats"] = {k: v for k, v in http.stats().items() if k != "endpoints"}
    report["load_avg_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"task: {task.track}, max_frames {task.max_frames}, controller {task.controller.describe()}")
    for key in ("generation_initial", f"generation_{args.generations}"):
        r = report[key]
        print(
            f"{key:>22}: 64 genomes ({r['finished']} finish, mean {r['mean_frames']:.0f} frames)  "
            f"local(2) {r['local_s']:.3f}s {r['local_evals_per_s']:.0f}/s   "
            f"http(2 evaluators) {r['http_s']:.3f}s {r['http_evals_per_s']:.0f}/s   "
            f"HTTP/local throughput {100 * r['throughput_ratio']:.1f}% "
            f"(paired: {100 * r['throughput_ratio_paired']:.1f}%, "
            f"fastest runs: {100 * r['throughput_ratio_best']:.1f}%)"
        )
    t = report["tasks_10ms"]
    print(
        f"{'200 tasks of ~10 ms':>22}: {t['task_ms']:.1f} ms/task in-process (max_frames {t['max_frames']}), "
        f"ideal {t['ideal_s']:.3f}s over 2 workers; one race per task (chunksize=1)"
    )
    labels = {"http": "http (packed requests)", "http_one_request_per_task": "http (a request per task)",
              "local": "local(2)"}
    for name, label in labels.items():
        r = t[name]
        overhead = f", {r['overhead_ms_per_task']:.2f} ms/task of HTTP client + server CPU" if name != "local" else ""
        print(
            f"{label:>28}: {r['s']:.3f}s = {100 * r['efficiency']:.1f}% of ideal "
            f"(paired {100 * r['efficiency_paired']:.1f}%, fastest {100 * r['efficiency_best']:.1f}%){overhead}"
        )
    print(f"load average before/after: {report['load_avg_before'][0]:.2f} / {report['load_avg_after'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
