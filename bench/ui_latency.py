"""GUI responsiveness while sampling: the real window, offscreen.

For each model named (default: toy-gmm, then the first built-in image model, or a small stand-in conv
net on 3×64×64 when none is installed) it samples with recording on (every run is stored in a private
library, as in the app): 2-D models with DDPM, 1000 steps, batch 2000, CFG w=3; image models with DDIM,
100 steps, batch 16, CFG w=3 on label 7 with the guidance maps on (the default). Networks the app compiles
for the CPU (core/compiled.py) are compiled first, as the app would have done in the background. Start is
pressed on a window that has drawn the model and settings just set (0.5 s later), as a person presses it.
It prints:
  - the largest gap between ticks of a 10 ms QTimer on the GUI thread during the run (target ≤ 20 ms),
    with the median and 99th percentile;
  - the time from Start to the first frame painted;
  - how many gaps exceeded 20 ms, and the GUI thread's time on a core during the run (per frame painted);
  - frames painted vs steps run (coalescing drops frames the GUI had no time for);
  - for the four largest gaps, how the GUI thread spent them (Linux schedstat): on a core (its own work),
    waiting for a core (the machine is busy), or off the cores (the timer's own wait until the next tick,
    and any wait for the GIL or a lock);
  - when a CPU of the machine stood still during a gap (the hypervisor not running it: see PROBE, one small
    process per CPU), for how long, and the largest gap less such stand-stills, which the app cannot help.
With --profile it also says where the GUI thread was when a tick came late: a watchdog thread
samples the GUI thread's Python stack (and the sampling thread's) whenever no tick has arrived for 30 ms,
the slowest GUI slots and every view's paint are timed one by one, and each of the largest gaps lists the
slots and paints that ran in it and the other threads that were on a core meanwhile (by thread name).
With --stall-dump FILE, whenever the GUI thread misses its ticks for 100 ms during a run, the stacks of every
thread at that moment are appended to FILE (faulthandler: this works while another thread holds the GIL).
Usage: python bench/ui_latency.py [--models toy-gmm,mnist-cfg] [--steps 1000] [--batch 2000] [--repeat N]
                                  [--profile] [--switch-interval S] [--no-probes] [--stall-dump FILE]
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import functools
import gc
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from torch import nn  # noqa: E402


class StandInUNet(nn.Module):
    """A few 3×3 convolutions at full resolution: image-sized work per step, no trained weights."""

    def __init__(self, channels: int = 3, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x, t, y=None):
        return 0.1 * self.net(x)


def wait_for(app: QApplication, signal, timeout_s: float = 120.0) -> list:
    got: list = []
    loop = QEventLoop()
    signal.connect(lambda *a: (got.append(a), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    return got


def thread_schedstat() -> tuple[float, float]:
    """(ms on a core, ms waiting for a core) of the calling thread so far, from Linux's schedstat; (nan, nan)
    elsewhere. Between two ticks of the GUI timer, the rest of the wall time the thread was off the cores:
    asleep until the tick is due, or waiting for the GIL (or a lock); not for the machine."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            on_cpu, waiting, _ = f.read().split()
        return int(on_cpu) / 1e6, int(waiting) / 1e6
    except (OSError, ValueError):
        return float("nan"), float("nan")


def host_steal() -> float:
    """ms the hypervisor has kept this virtual machine's CPUs from running so far (the `steal` column of
    /proc/stat, summed over the CPUs, in 10 ms ticks); nan elsewhere. A late tick in which the GUI thread neither
    ran nor waited for a core, while steal grew, was the machine being paused, not the app."""
    try:
        with open("/proc/stat") as f:
            return int(f.readline().split()[8]) * 10.0
    except (OSError, ValueError, IndexError):
        return float("nan")


# A probe process per CPU (pinned to it where the OS allows): it sleeps PROBE_PERIOD_S at a time and reports each
# wake-up that came over PROBE_LATE_MS late, with how much of that the kernel counted as waiting for a core
# (schedstat's run delay). A wake-up late without such a wait is the CPU itself standing still: the
# hypervisor did not run this virtual CPU, although the kernel had work for it. A perf sched trace of such a
# tick showed the GUI thread woken on time and its CPU left idle for 16.8 ms. It is a separate process, so
# nothing of this one (the GIL, its threads) can delay it.
PROBE = """
import os, sys, time
cpu, period, late = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
try:
    os.sched_setaffinity(0, {cpu})
except (AttributeError, OSError):
    pass
try:
    stat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    queued = lambda: int(os.pread(stat, 100, 0).split()[1]) / 1e6
except (AttributeError, OSError):
    queued = lambda: 0.0
print("ready", flush=True)
while True:
    t0, q0 = time.perf_counter(), queued()
    time.sleep(period)
    t1, q1 = time.perf_counter(), queued()
    over = (t1 - t0 - period) * 1000
    if over > late:
        print(f"{t1:.6f} {over:.2f} {q1 - q0:.2f}", flush=True)
"""
PROBE_PERIOD_S = 0.003
PROBE_LATE_MS = 4.0


def cpus_usable() -> set[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:
        return set(range(os.cpu_count() or 1))


class MachineStalls:
    """The moments this machine's CPUs stood still (see PROBE), from one probe process per CPU."""

    def __init__(self):
        import subprocess

        self.events: list[tuple[int, float, float, float]] = []  # (cpu, woke at, ms late, ms waiting for a core)
        self.probes = []
        for cpu in sorted(cpus_usable()):
            probe = subprocess.Popen([sys.executable, "-c", PROBE, str(cpu), str(PROBE_PERIOD_S), str(PROBE_LATE_MS)],
                                     stdout=subprocess.PIPE, text=True)
            probe.stdout.readline()  # "ready"
            threading.Thread(target=self._read, args=(cpu, probe.stdout), name="stall-probe", daemon=True).start()
            self.probes.append(probe)

    def _read(self, cpu: int, lines) -> None:
        for line in lines:
            woke, late, waited = (float(x) for x in line.split())
            self.events.append((cpu, woke, late, waited))

    def within(self, t0: float, t1: float) -> list[tuple[int, float, float]]:
        """(cpu, ms late, ms waiting for a core) of the probes' late wake-ups whose sleep overlapped [t0, t1]."""
        return [(cpu, late, waited) for cpu, woke, late, waited in list(self.events)
                if woke > t0 and woke - PROBE_PERIOD_S - late / 1000 < t1]

    def stand_stills(self, t0: float, t1: float) -> list[float]:
        """ms each stand-still of a CPU overlapping [t0, t1] lasted: a late wake-up less the part the kernel
        counted as waiting for a core, where that is over PROBE_LATE_MS."""
        return [late - waited for _, late, waited in self.within(t0, t1) if late - waited >= PROBE_LATE_MS]

    def stood_still(self, t0: float, t1: float) -> float:
        """ms the longest stand-still overlapping [t0, t1] lasted (0 when none)."""
        return max(self.stand_stills(t0, t1), default=0.0)

    def close(self) -> None:
        for probe in self.probes:
            probe.kill()
            probe.wait()


def settle(seconds: float) -> None:
    """Let the window draw what was just changed (a model loaded, settings set) before Start is pressed, as
    it has long done by the time a person presses it."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def threads_on_cores() -> dict[str, float]:
    """ms on a core so far of each of this process's threads but the calling one, summed by thread name (Linux;
    empty elsewhere): who else was on the two cores during a late tick."""
    own = threading.get_native_id()
    named = {thread.native_id: thread.name for thread in threading.enumerate()}  # (the OS knows them as "python")
    busy: collections.Counter = collections.Counter()
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return {}
    for tid in tids:
        if int(tid) == own:
            continue
        try:
            name = named.get(int(tid))
            if name is None:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                busy[name] += int(f.read().split()[0]) / 1e6
        except (OSError, ValueError, IndexError):
            continue  # (a thread that ended meanwhile)
    return dict(busy)


def idle_gaps(app: QApplication, seconds: float) -> np.ndarray:
    """Gaps (ms) between 10 ms ticks while nothing runs: what the machine itself allows."""
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    timer.stop()
    return np.diff(ticks) * 1000


class GuiWatchdog:
    """Samples the GUI thread's Python stack every 5 ms while its last tick is over `late_ms` old."""

    def __init__(self, late_ms: float = 30.0):
        self.late_s = late_ms / 1000
        self.gui_id = threading.get_ident()
        self.last_tick = time.perf_counter()
        self.stacks: collections.Counter = collections.Counter()
        self.others: collections.Counter = collections.Counter()  # where the sampling thread was meanwhile
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def tick(self) -> None:
        self.last_tick = time.perf_counter()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            if time.perf_counter() - self.last_tick < self.late_s:
                continue
            frames = sys._current_frames()
            if self.gui_id not in frames:
                continue
            self.stacks[self._where(frames[self.gui_id])] += 1
            sampling = [t.ident for t in threading.enumerate() if t.name == "sampling"]
            if sampling and sampling[0] in frames:
                self.others[self._where(frames[sampling[0]])] += 1

    @staticmethod
    def _where(frame) -> str:
        lines = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)[-4:]]
        return " < ".join(reversed(lines))

    def report(self, top: int = 6) -> None:
        total = sum(self.stacks.values())
        print(f"  GUI thread late (no tick for 30 ms): {total} samples of 5 ms; where it was:")
        for stack, n in self.stacks.most_common(top):
            print(f"    {n:4d}  {stack}")
        if self.others:
            print("  meanwhile the sampling thread was at:")
            for stack, n in self.others.most_common(top):
                print(f"    {n:4d}  {stack}")


STALL_DUMP_S = 0.1  # --stall-dump: a GUI thread this late has every thread's stack written


class StallDump:
    """--stall-dump FILE: each tick re-arms faulthandler's watchdog, a thread of C that needs no interpreter lock,
    so a GUI thread that misses its ticks for STALL_DUMP_S gets every thread's stack written to FILE at that
    moment, also while another thread holds the interpreter lock (when --profile's watchdog cannot run either).
    Twice a first run stalled its GUI thread for 245 and 334 ms, asleep, neither seen again; this says where."""

    def __init__(self, path: str, after: float = STALL_DUMP_S):
        self.path = path
        self.after = after
        self.file = open(path, "a")  # noqa: SIM115 (open for the whole bench; faulthandler writes to its fd)
        self._seen = self._written()  # a file kept from an earlier bench: its stalls are not this one's

    def _written(self) -> int:
        return Path(self.path).read_text(errors="replace").count("Timeout (")

    def begin(self, label: str) -> None:
        self.file.write(f"=== {label}, at {time.strftime('%H:%M:%S')}\n")
        self.file.flush()  # (before faulthandler writes to the same file underneath)

    def tick(self) -> None:
        faulthandler.dump_traceback_later(self.after, file=self.file)

    def end(self) -> int:
        """Disarm; how many stalls were written since `begin`."""
        faulthandler.cancel_dump_traceback_later()
        written = self._written()
        new, self._seen = written - self._seen, written
        return new

    def close(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        self.file.close()


class GcTimer:
    """Times the interpreter's garbage collections (every thread waits for them: they hold the GIL)."""

    def __init__(self):
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], 1000 * (time.perf_counter() - self._start)))

    def report(self) -> None:
        for generation in range(3):
            times = [ms for g, ms in self.pauses if g == generation]
            if times:
                print(f"  garbage collections of generation {generation}: {len(times)}, longest {max(times):.1f} ms, "
                      f"total {sum(times):.1f} ms")
        self.pauses.clear()


class SlotTimer:
    """Wraps methods of objects in place and records (calls, total ms, max ms) per method, and each outermost
    call's (start, end, name) on the GUI thread, to say what ran in the largest gaps."""

    def __init__(self):
        self.stats: dict[str, list[float]] = {}
        self.calls: list[tuple[float, float, str]] = []
        self._depth = 0

    def wrap(self, obj, *names: str, by_instance: bool = False) -> None:
        """by_instance: name each call by its instance's class (a base class's method, e.g. every view's paint)."""
        for name in names:
            original = getattr(obj, name)
            key = f"{obj.__name__ if isinstance(obj, type) else type(obj).__name__}.{name}"
            self.stats.setdefault(key, [0, 0.0, 0.0])

            @functools.wraps(original)
            def timed(*args, _original=original, _key=key, _name=name, **kwargs):
                t = time.perf_counter()
                self._depth += 1
                try:
                    return _original(*args, **kwargs)
                finally:
                    self._depth -= 1
                    end = time.perf_counter()
                    ms = 1000 * (end - t)
                    if by_instance:
                        _key = f"{type(args[0]).__name__}.{_name}"
                        self.stats.setdefault(_key, [0, 0.0, 0.0])
                    if self._depth == 0:
                        self.calls.append((t, end, _key))
                    row = self.stats[_key]
                    row[0] += 1
                    row[1] += ms
                    row[2] = max(row[2], ms)
            setattr(obj, name, timed)

    def within(self, start: float, end: float) -> str:
        """The outermost timed calls that ended between `start` and `end`, with their ms."""
        return " ".join(f"{key}:{1000 * (b - a):.0f}" for a, b, key in self.calls if start < b <= end) or "-"

    def report(self) -> None:
        self.calls.clear()
        print("  GUI slots (calls, total ms, max ms):")
        for key, (n, total, worst) in sorted(self.stats.items(), key=lambda kv: -kv[1][2]):
            if n:
                print(f"    {key:40s} {int(n):5d} {total:8.1f} {worst:7.1f}")
        for row in self.stats.values():
            row[:] = [0, 0.0, 0.0]


def measure(app: QApplication, win, label: str, profile: SlotTimer | None = None,
            stalls: MachineStalls | None = None, dump: StallDump | None = None) -> dict | None:
    """One run from Start until the library has recorded it; prints and returns its gap figures (ms)."""
    ticks: list[float] = []
    sched: dict[float, tuple[float, float]] = {}  # tick → the GUI thread's (cpu, runqueue) ms so far
    steal: dict[float, float] = {}  # tick → the host's steal time so far (ms, in 10 ms ticks)

    others: dict[float, dict[str, float]] = {}  # tick → the other threads' ms on a core so far (--profile)

    def tick() -> None:
        now = time.perf_counter()
        ticks.append(now)
        sched[now] = thread_schedstat()
        steal[now] = host_steal()
        if profile is not None:
            others[now] = threads_on_cores()

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    watchdog = GuiWatchdog() if profile is not None else None
    collections = GcTimer() if profile is not None else None
    if watchdog is not None:
        timer.timeout.connect(watchdog.tick)
        watchdog.start()
    if dump is not None:
        dump.begin(label)
        timer.timeout.connect(dump.tick)
    shown: list[int] = []
    win.frame_shown.connect(shown.append)
    recorded: list = []
    win.results.run_recorded.connect(recorded.append)
    timer.start()
    start = time.perf_counter()
    sched[start] = thread_schedstat()
    steal[start] = host_steal()
    others[start] = threads_on_cores()
    if not win.start_run():
        print(f"{label}: could not start: {win.last_error}")
        return None
    finished = wait_for(app, win.run_finished, 600)
    finished_at = time.perf_counter()
    if not recorded:  # the run file and PNGs are written off the GUI thread; the GUI takes the entry back
        wait_for(app, win.results.run_recorded, 60)
    end = time.perf_counter()
    sched[end] = thread_schedstat()
    steal[end] = host_steal()
    others[end] = threads_on_cores()
    timer.stop()
    if watchdog is not None:
        watchdog.stop()
    dumped = dump.end() if dump is not None else 0
    win.frame_shown.disconnect()
    win.results.run_recorded.disconnect(recorded.append)
    if not finished:
        print(f"{label}: timed out")
        return None
    result = finished[0][0]
    ticks = [t for t in ticks if start <= t <= end]
    gaps = np.diff([start, *ticks, end]) * 1000
    first = (win.first_frame_at - start) * 1000 if win.first_frame_at else float("nan")
    marks = [start, *ticks, end]
    still = np.array([stalls.stood_still(marks[i], marks[i + 1]) if stalls else 0.0 for i in range(len(gaps))])
    figures = {"max": gaps.max(), "p99": np.percentile(gaps, 99), "median": np.median(gaps),
               "over": int((gaps > 20).sum()), "ticks": len(gaps), "max_less_still": (gaps - still).max()}
    print(f"{label}")
    print(f"  run: {len(result) - 1} steps in {finished_at - start:.2f} s on {result.device}, recorded "
          f"{1000 * (end - finished_at):.0f} ms later; frames painted: {len(shown)}")
    print(f"  GUI timer (10 ms) gaps: max {figures['max']:.1f} ms, p99 {figures['p99']:.1f} ms, "
          f"median {figures['median']:.1f} ms  (target max ≤ 20 ms)")
    print(f"  Start → first frame on screen: {first:.1f} ms")
    (cpu0, _), (cpu1, _) = sched[start], sched[end]
    print(f"  gaps over 20 ms: {figures['over']} of {figures['ticks']}; the GUI thread's time on a core: "
          f"{cpu1 - cpu0:.0f} ms, {(cpu1 - cpu0) / max(len(shown), 1):.1f} ms per frame painted")
    if dumped:
        print(f"  the GUI thread missed its ticks for {1000 * dump.after:.0f} ms {dumped} time(s): every thread's "
              f"stack at that moment is in {dump.path}")
    stamps = np.array([start, *ticks, end]) - start
    worst = np.argsort(gaps)[::-1][:4]
    print("  largest gaps (ms, ending at ms after Start): "
          + ", ".join(f"{gaps[i]:.0f} @ {1000 * stamps[i + 1]:.0f}" for i in worst))
    parts = []
    for i in worst:
        (cpu0, queue0), (cpu1, queue1) = sched[marks[i]], sched[marks[i + 1]]
        cpu, queue = cpu1 - cpu0, queue1 - queue0
        paused = steal[marks[i + 1]] - steal[marks[i]]
        parts.append(f"{gaps[i]:.0f} = {cpu:.0f} on a core + {queue:.0f} waiting for one + {gaps[i] - cpu - queue:.0f} "
                     "off" + (f" (host steal meanwhile: {paused:.0f} ms)" if paused > 0 else "")
                     + (f" (a CPU stood still for {still[i]:.0f} ms of it)" if still[i] else ""))
    total_steal = steal[end] - steal[start]
    if total_steal > 0:
        print(f"  the hypervisor kept this machine's CPUs from running for {total_steal:.0f} ms during the run "
              "(/proc/stat steal)")
    print("  the GUI thread's time in them (off: asleep until the tick, or waiting for the GIL or a lock): "
          + "; ".join(parts))
    if stalls is not None:
        during = stalls.stand_stills(start, end)
        print(f"  a CPU stood still (a probe woke late, not waiting for a core) {len(during)} times during the run"
              + (f", for up to {max(during):.0f} ms" if during else "")
              + f"; the largest gap less such stand-stills within it: {figures['max_less_still']:.1f} ms")
    if profile is not None:
        for i in worst:
            print(f"    in the {gaps[i]:.0f} ms gap: {profile.within(marks[i], marks[i + 1])}")
            before, after = others[marks[i]], others[marks[i + 1]]
            busy = sorted(((after[name] - before.get(name, 0.0), name) for name in after), reverse=True)
            print("      other threads on a core (ms): "
                  + (", ".join(f"{name} {ms:.0f}" for ms, name in busy[:3] if ms >= 0.5) or "none"))
    if profile is not None:
        profile.report()
        watchdog.report()
        collections.report()
        gc.callbacks.remove(collections._callback)
    return figures


def prepare(app: QApplication, win, name: str, args) -> str | None:
    """Load model `name` ("image": the first built-in image model, or the stand-in) and set the run's
    settings; the run's label, or None when it cannot be loaded."""
    from core import ModelBundle, ModelConfig, list_models

    infos = {info.name: info for info in list_models()}
    if name == "image":
        images = [info.name for info in infos.values() if len(info.data_shape) == 3]
        if not images:
            config = ModelConfig(architecture="stand-in", data_shape=(3, 64, 64))
            win.set_bundle(ModelBundle("stand-in-64px", config, StandInUNet()))
            win.session.update(sampler="ddim", steps="100", batch_images=16, guidance="none")
            return "stand-in conv net 3×64×64: DDIM 100 steps, batch 16"
        name = images[0]
    if name not in infos:
        print(f"{name}: not a built-in model ({', '.join(infos)})")
        return None
    if win.loader.key != name:
        win.loader.load(name)
        if not wait_for(app, win.model_loaded):
            print(f"{name} did not load: {win.last_error}")
            return None
    caps = win.session.caps
    if len(infos[name].data_shape) == 1:
        win.session.update(sampler="ddpm", steps=args.steps, batch_points=args.batch, guidance="cfg", weight=3.0,
                           class_index=min(2, max(caps.num_classes - 1, 0)))
        return f"{name}: DDPM {args.steps} steps, batch {args.batch}, CFG w=3"
    win.session.update(sampler="ddim", steps="100", batch_images=16, guidance="cfg", weight=3.0, class_index=7,
                       maps=True)
    shape = "×".join(map(str, infos[name].data_shape))
    return f"{name}: DDIM 100 steps, batch 16, {shape}, CFG w=3, maps on"


def precompile(names: list[str]) -> None:
    """Compile the networks of the models named that the app would compile in the background
    (core/compiled.py), before the window opens: the runs are measured as they are once that is done, and
    no compiler competes with them."""
    from core import compiled, list_models, load_model

    known = {info.name for info in list_models()}
    for name in (n.strip() for n in names):
        if name not in known:
            continue
        bundle = load_model(name, "cpu")
        if compiled.wanted(bundle):
            start = time.perf_counter()
            compiled.compile_network(bundle)
            print(f"compiled {name}'s network for this CPU in {time.perf_counter() - start:.0f} s (once)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="toy-gmm,image",
                        help="comma-separated built-in models; 'image' is the first built-in image model")
    parser.add_argument("--steps", default="1000")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per model (the machine's load varies)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="override sys.setswitchinterval (seconds) to compare GIL hand-over settings")
    parser.add_argument("--no-probes", action="store_true",
                        help="leave out the processes that note when a CPU stands still (see PROBE)")
    parser.add_argument("--stall-dump", metavar="FILE", default=None,
                        help=f"append every thread's stack to FILE whenever the GUI thread misses its ticks for "
                             f"{1000 * STALL_DUMP_S:.0f} ms during a run (faulthandler)")
    parser.add_argument("--profile", action="store_true",
                        help="also time the GUI slots and sample where the GUI thread is when ticks come late")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    precompile(args.models.split(","))
    scratch = tempfile.mkdtemp(prefix="ui-latency-")
    os.environ["GUIDANCE_STUDIO_DATA"] = scratch  # keep the bench's runs out of the user's library
    app = QApplication.instance() or QApplication([])
    from desktop_app.main_window import MainWindow

    profile = None
    if args.profile:  # wrapped on the classes, before the window connects its slots
        import pyqtgraph as pg

        from desktop_app import results_controller, tasks
        from desktop_app.panels import run_panel
        from desktop_app.views import (
            field_arrows,
            guidance_dock,
            guidance_maps,
            guidance_plots,
            live as views,
            point_cloud,
        )

        profile = SlotTimer()
        profile.wrap(MainWindow, "_paint_latest", "_on_finished", "start_run")
        profile.wrap(views.LiveViews, "new_frame", "finish", "begin")
        profile.wrap(results_controller.ResultsController, "record")
        profile.wrap(point_cloud.PointCloudItem, "paint")
        profile.wrap(views.ImagePane, "show_image")
        profile.wrap(guidance_dock.GuidanceViews, "refresh", "show_step")
        profile.wrap(guidance_plots.ClassStack, "set_shares")
        profile.wrap(guidance_plots.ClassBars, "show_probs")
        profile.wrap(field_arrows.FieldOverlay, "show_step", "_on_field")
        profile.wrap(tasks.SerialTasks, "_deliver")
        profile.wrap(run_panel.RunPanel, "show_progress")
        profile.wrap(pg.GraphicsView, "paintEvent", by_instance=True)
        profile.wrap(guidance_maps.ColourScale, "paintEvent")
    win = MainWindow(settings=QSettings(os.path.join(scratch, "studio.ini"), QSettings.Format.IniFormat))
    win.resize(1500, 950)
    win.show()
    t0 = time.perf_counter()
    win.begin_startup()
    if not wait_for(app, win.model_loaded):
        print("the default model did not load:", win.last_error)
        return 1
    print(f"engine + toy-gmm loaded {1000 * (time.perf_counter() - t0):.0f} ms after begin_startup; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    app.processEvents()
    if profile is not None:
        profile.wrap(win.plots, "set_curves")

    idle = idle_gaps(app, 3.0)
    print(f"idle window, no run (machine baseline): max gap {idle.max():.1f} ms, p99 {np.percentile(idle, 99):.1f} ms")
    stalls = None if args.no_probes else MachineStalls()
    dump = StallDump(args.stall_dump) if args.stall_dump else None
    summary = []
    for name in args.models.split(","):
        label = prepare(app, win, name.strip(), args)
        if label is None:
            continue
        for _ in range(args.repeat):
            settle(0.5)
            figures = measure(app, win, label, profile, stalls, dump)
            if figures is not None:
                summary.append((label.split(":")[0], figures, os.getloadavg()[0]))
    print("summary (ms): model, max, p99, median, gaps over 20 ms, 1-min load average after the run"
          + (", max less the CPUs' stand-stills" if stalls else ""))
    for name, figures, load in summary:
        print(f"  {name:16s} {figures['max']:7.1f} {figures['p99']:7.1f} {figures['median']:7.1f} "
              f"{figures['over']:5d}/{figures['ticks']:<5d} load {load:.2f}"
              + (f"  {figures['max_less_still']:7.1f}" if stalls else ""))
    win.close()
    if stalls is not None:
        stalls.close()
    if dump is not None:
        dump.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
