"""The latency bench's stand-still probes (bench/ui_latency.py): how a late wake-up of a probe is told apart
from waiting for a core, and which gaps it is counted in."""
import importlib.util
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ui_latency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ui_latency_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stalls_with(bench, events):
    stalls = bench.MachineStalls.__new__(bench.MachineStalls)  # no probe processes: the events given
    stalls.events, stalls.probes = list(events), []
    return stalls


def test_a_stand_still_is_the_lateness_the_kernel_did_not_count_as_waiting(bench):
    period = bench.PROBE_PERIOD_S
    # cpu 0 woke at 10.000 s 16 ms late, none of it waiting for a core; cpu 1 at 10.0 s 12 ms late, all waiting
    stalls = stalls_with(bench, [(0, 10.000, 16.0, 0.0), (1, 10.000, 12.0, 12.0)])
    assert stalls.stood_still(9.990, 10.010) == pytest.approx(16.0)
    # its sleep began period + 16 ms before it woke: a gap ending just after that start overlaps it
    began = 10.000 - period - 0.016
    assert stalls.stood_still(began - 0.010, began + 0.001) == pytest.approx(16.0)
    assert stalls.stood_still(began - 0.010, began - 0.001) == 0.0  # over before the sleep began
    assert stalls.stood_still(10.001, 10.020) == 0.0  # begun after it woke
    only_waiting = stalls_with(bench, [(1, 10.000, 12.0, 12.0)])
    assert only_waiting.stood_still(9.990, 10.010) == pytest.approx(0.0)


def test_the_probes_start_one_per_cpu_and_stop(bench):
    stalls = bench.MachineStalls()
    try:
        assert len(stalls.probes) == len(bench.cpus_usable())
        assert all(probe.poll() is None for probe in stalls.probes)  # running, each has said it is ready
        time.sleep(0.05)
        for cpu, woke, late, waited in list(stalls.events):
            assert late > bench.PROBE_LATE_MS and 0 <= cpu < len(stalls.probes)
    finally:
        stalls.close()
    assert all(probe.poll() is not None for probe in stalls.probes)


def test_a_stalled_gui_thread_has_every_threads_stack_written(bench, tmp_path):
    """--stall-dump: faulthandler's watchdog, armed at each tick, writes the stacks when the ticks stop; a run
    without a stall writes none."""
    dump = bench.StallDump(str(tmp_path / "stalls.txt"), after=0.05)
    try:
        dump.begin("a run that ticks")
        for _ in range(5):
            dump.tick()
            time.sleep(0.01)
        assert dump.end() == 0
        dump.begin("a run that stalls")
        dump.tick()
        time.sleep(0.3)  # no tick: the GUI thread is stuck here
        assert dump.end() == 1
    finally:
        dump.close()
    text = (tmp_path / "stalls.txt").read_text()
    assert "=== a run that ticks" in text and "=== a run that stalls" in text
    assert "test_a_stalled_gui_thread_has_every_threads_stack_written" in text.split("=== a run that stalls")[1]
    again = bench.StallDump(str(tmp_path / "stalls.txt"), after=0.05)  # a later bench, appending to the file
    try:
        again.begin("a later run")
        again.tick()
        assert again.end() == 0  # the stall written before is not counted again
    finally:
        again.close()
