"""Host memory of the Atari replay buffer: `FrameReplayBuffer` on the CPU, filled with N transitions of 4×84×84
uint8 frame stacks, measured as the process's resident set size (RSS), against storing obs and next_obs whole.

The fill writes rows of `num_envs` transitions, as the agent does. Most rows are written straight into the
buffer's tensors, in the layout add() leaves: random frames, episode ends followed by autoreset rows, reset
flags. (add() row by row manages 60–100k transitions/s on an idle core here, a small fraction of that on a
shared 2-core machine; the direct write keeps a 1 M run to seconds either way.) Then the envs restart
(mark_discontinuity) and the last 512 rows go through add() from a synthetic Atari stream: random frames,
zero-padded reset stacks, terminations, truncations and Gymnasium's autoreset steps. Correctness: the same
stream, regenerated from its seed, is fed to the naive `ReplayBuffer` (obs and next_obs stored whole), and
2,048 transitions from the add() rows must come out identical from both (obs and next-obs stacks, actions,
n-step returns, bootstrap factors). Sampling throughput is measured on the full buffer, batches of 32 on the
CPU; on a shared machine pass --threads 1 (two intra-op threads on two busy cores slow sampling several-fold).

    python bench/replay_memory.py --capacity 1000000
    python bench/replay_memory.py --capacity 100000 --num-envs 8 --json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from agents.replay import FrameReplayBuffer, ReplayBuffer  # noqa: E402

STACK, SIZE = 4, 84
OBS_SHAPE = (STACK, SIZE, SIZE)
OBS_BYTES = STACK * SIZE * SIZE  # 28,224 bytes per uint8 stack
N_ACTIONS = 18
END_PROB = 1 / 300  # per env step: an episode (or a life) every few hundred steps, as in Atari
ADD_ROWS = 512  # rows written through add(), and checked against the naive buffer
CHECK = 2048  # transitions compared
SAMPLE_BATCH = 32
SAMPLE_SECONDS = 3.0


def rss_bytes() -> int:
    try:
        import psutil
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no psutil and no VmRSS in /proc/self/status") from None
    return psutil.Process().memory_info().rss


class SyntheticAtari:
    """`num_envs` envs seen through Gymnasium's next-step autoreset, with 84×84 random frames and ale-py's
    stacking: each step shifts the stack by one frame; a reset obs is [0, 0, 0, f₀]; the step after an episode
    end returns the next reset obs, reward 0, and is no transition."""

    def __init__(self, num_envs: int, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.num_envs = num_envs
        self.obs = torch.zeros((num_envs,) + OBS_SHAPE, dtype=torch.uint8)
        self.obs[:, -1] = self._frames()
        self.autoreset = torch.zeros(num_envs, dtype=torch.bool)

    def _frames(self) -> torch.Tensor:
        return torch.randint(1, 256, (self.num_envs, SIZE, SIZE), generator=self.generator, dtype=torch.uint8)

    def step(self) -> dict[str, torch.Tensor]:
        g, n = self.generator, self.num_envs
        new = self._frames()
        next_obs = torch.cat([self.obs[:, 1:], new.unsqueeze(1)], dim=1)
        next_obs[self.autoreset, :-1] = 0
        valid = ~self.autoreset
        ends = (torch.rand(n, generator=g) < 30 * END_PROB) & valid  # dense ends: many resets in a few rows
        truncated = ends & (torch.rand(n, generator=g) < 0.3)
        rewards = torch.randint(-1, 2, (n,), generator=g).float() * valid
        step = dict(obs=self.obs, actions=torch.randint(N_ACTIONS, (n,), generator=g), rewards=rewards,
                    next_obs=next_obs, terminated=ends & ~truncated, truncated=truncated, valid=valid)
        self.obs, self.autoreset = next_obs, ends
        return step


def fill_directly(buffer: FrameReplayBuffer, rows: int, seed: int) -> None:
    """Rows [0, rows) written straight into the storage, in the layout add() leaves: each episode end is
    followed by an autoreset row (valid False) and then an episode's first obs."""
    g = torch.Generator().manual_seed(seed)
    shape = (rows, buffer.num_envs)
    drawn = torch.rand(shape, generator=g) < END_PROB
    ends = drawn.clone()
    ends[1:] &= ~drawn[:-1]  # the step after an end is an autoreset step, never an end itself
    valid = torch.ones(shape, dtype=torch.bool)
    valid[1:] = ~ends[:-1]
    truncated = ends & (torch.rand(shape, generator=g) < 0.1)
    buffer.actions[:rows] = torch.randint(N_ACTIONS, shape, generator=g, dtype=torch.int16)
    buffer.rewards[:rows] = torch.randint(-1, 2, shape, generator=g).float() * valid
    buffer.terminated[:rows] = ends & ~truncated
    buffer.episode_end[:rows] = ends
    buffer.valid[:rows] = valid
    buffer.first[1:rows + 1] = ~valid  # after an autoreset step comes a reset obs; row 0 is first already
    # Frames: a pool of random frames, shifted by the chunk number so that no two chunks are alike.
    chunk = 256
    pool = torch.randint(0, 256, (chunk, buffer.num_envs, SIZE, SIZE), generator=g, dtype=torch.uint8)
    for i, start in enumerate(range(0, rows + 1, chunk)):  # row `rows` holds the last next-obs frame
        stop = min(start + chunk, rows + 1)
        torch.add(pool[:stop - start], i, out=buffer.frames[start:stop])
    buffer.row = rows


def check_against_naive(buffer: FrameReplayBuffer, start_row: int, add_rows: int, seed: int,
                        n_step: int) -> dict[str, Any]:
    """Regenerate the add() stream into a naive ReplayBuffer and compare CHECK sampleable transitions."""
    reference = ReplayBuffer(add_rows * buffer.num_envs, buffer.num_envs, OBS_SHAPE, torch.uint8,
                             torch.device("cpu"), n_step=n_step, gamma=buffer.gamma)
    stream = SyntheticAtari(buffer.num_envs, seed)
    for _ in range(add_rows):
        reference.add(**stream.step())
    local = torch.arange(add_rows * buffer.num_envs)
    flat = local + start_row * buffer.num_envs
    sampleable = buffer._sampleable(flat)
    pick = torch.randperm(int(sampleable.sum()), generator=torch.Generator().manual_seed(seed))[:CHECK]
    got, want = buffer._batch_at(flat[sampleable][pick]), reference._batch_at(local[sampleable][pick])
    fields = ("obs", "next_obs", "actions", "returns", "bootstrap")
    mismatched = [name for name in fields if not torch.equal(getattr(got, name), getattr(want, name))]
    padded = (want.obs == 0).flatten(2).all(2).any(1)  # stacks that start an episode inside their 4 frames
    return {"transitions_compared": len(pick), "fields": list(fields), "mismatched_fields": mismatched,
            "zero_padded_obs_compared": int(padded.sum()), "identical": not mismatched}


def sampling_speed(buffer: FrameReplayBuffer, seed: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(20):  # warm-up
        buffer.sample(SAMPLE_BATCH, generator)
    batches, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < SAMPLE_SECONDS:
        buffer.sample(SAMPLE_BATCH, generator)
        batches += 1
    return {"batch_size": SAMPLE_BATCH, "batches_per_s": batches / elapsed,
            "samples_per_s": batches * SAMPLE_BATCH / elapsed, "us_per_batch": 1e6 * elapsed / batches}


MIN_CAPACITY_ROWS = 128  # below this, a buffer's rows hardly outnumber a stack and the n-step walk


def run(capacity: int, num_envs: int, n_step: int, seed: int) -> dict[str, Any]:
    torch.zeros(1).add_(1)  # torch's own start-up allocations land before the baseline
    rss_before = rss_bytes()
    started = time.perf_counter()
    buffer = FrameReplayBuffer(capacity, num_envs, OBS_SHAPE, torch.uint8, torch.device("cpu"), n_step=n_step)
    rss_allocated = rss_bytes()  # zeroed pages are only mapped, not yet resident
    add_rows = min(ADD_ROWS, buffer.rows // 2)
    direct_rows = buffer.rows - add_rows - 1  # one row goes to the restart between the two parts

    fill_directly(buffer, direct_rows, seed)
    direct_s = time.perf_counter() - started
    buffer.mark_discontinuity()  # the synthetic envs start fresh episodes
    stream = SyntheticAtari(num_envs, seed + 1)
    add_s = 0.0
    for _ in range(add_rows):  # steps made one at a time: a list of them would stay in the RSS
        step = stream.step()
        add_start = time.perf_counter()
        buffer.add(**step)
        add_s += time.perf_counter() - add_start
    del step, stream
    assert buffer.full and buffer.row == 0
    fill_s = time.perf_counter() - started
    rss_filled = rss_bytes()

    transitions = len(buffer)
    storage = sum(t.nbytes for t in buffer.state_dict().values() if isinstance(t, torch.Tensor))
    measured = rss_filled - rss_before
    naive = 2 * OBS_BYTES  # obs and next_obs whole, as SB3's default buffer (and the lab's ReplayBuffer) store them
    return {
        "capacity": capacity, "num_envs": num_envs, "rows": buffer.rows, "transitions": transitions,
        "n_step": n_step, "obs_shape": list(OBS_SHAPE),
        "rss_before_bytes": rss_before, "rss_after_alloc_bytes": rss_allocated, "rss_after_fill_bytes": rss_filled,
        "rss_delta_bytes": measured, "bytes_per_transition": measured / transitions,
        "storage_bytes": storage, "storage_bytes_per_transition": storage / transitions,
        "projected_1m_bytes": measured / transitions * 1_000_000,
        "naive_bytes_per_transition": naive, "naive_1m_bytes": naive * 1_000_000,
        "ratio_naive_to_measured": naive * transitions / measured,
        "fill_s": fill_s, "direct_fill_s": direct_s, "add_rows": add_rows,
        "add_rows_per_s": add_rows / add_s, "add_transitions_per_s": add_rows * num_envs / add_s,
        "sampling": sampling_speed(buffer, seed),
        "check": check_against_naive(buffer, direct_rows + 1, add_rows, seed + 1, n_step),
    }


def machine() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "usable_cpus": usable,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__}


def print_table(report: dict[str, Any]) -> None:
    gb = 1e9
    print(f"FrameReplayBuffer on the CPU: {report['transitions']:,} transitions of {report['num_envs']} envs "
          f"({report['rows']:,} rows), 4×84×84 uint8 stacks, n-step {report['n_step']}")
    print(f"{'RSS before':32}{report['rss_before_bytes'] / gb:>12.3f} GB")
    print(f"{'RSS after allocation':32}{report['rss_after_alloc_bytes'] / gb:>12.3f} GB")
    print(f"{'RSS after fill':32}{report['rss_after_fill_bytes'] / gb:>12.3f} GB")
    print(f"{'RSS growth':32}{report['rss_delta_bytes'] / gb:>12.3f} GB")
    print(f"{'bytes per transition (RSS)':32}{report['bytes_per_transition']:>12,.0f}")
    print(f"{'bytes per transition (tensors)':32}{report['storage_bytes_per_transition']:>12,.0f}")
    print(f"{'projected for 1M transitions':32}{report['projected_1m_bytes'] / gb:>12.2f} GB")
    print(f"{'naive obs + next_obs, 1M':32}{report['naive_1m_bytes'] / gb:>12.2f} GB"
          f"   ({report['naive_bytes_per_transition']:,} B each: {report['ratio_naive_to_measured']:.1f}× more)")
    print(f"{'fill time':32}{report['fill_s']:>12.1f} s   (add(): {report['add_rows']} rows, "
          f"{report['add_transitions_per_s']:,.0f} transitions/s)")
    s = report["sampling"]
    print(f"{'sampling, batches of 32':32}{s['samples_per_s']:>12,.0f} samples/s   ({s['us_per_batch']:.0f} µs per "
          f"batch, torch threads: {report['machine']['torch_threads']})")
    c = report["check"]
    verdict = "identical" if c["identical"] else f"MISMATCH in {', '.join(c['mismatched_fields'])}"
    print(f"{'check vs naive ReplayBuffer':32}{verdict:>12}   ({c['transitions_compared']:,} transitions, "
          f"{c['zero_padded_obs_compared']:,} of them zero-padded obs)")
    m = report["machine"]
    print(f"machine: {m['usable_cpus']} usable of {m['cpu_count']} CPUs, {m['platform']}, torch {m['torch']}; "
          f"{report['date']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, required=True, help="transitions the buffer holds")
    parser.add_argument("--num-envs", type=int, default=8, help="vector envs: transitions per row")
    parser.add_argument("--n-step", type=int, default=3, help="n-step returns for the check and the sampling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    if args.num_envs < 1 or args.n_step < 1:
        parser.error("--num-envs and --n-step must be at least 1")
    if args.capacity < MIN_CAPACITY_ROWS * args.num_envs:
        parser.error(f"--capacity must be at least {MIN_CAPACITY_ROWS * args.num_envs:,} ({MIN_CAPACITY_ROWS} rows of "
                     f"--num-envs {args.num_envs}): the check against the naive buffer needs that much history")
    if args.threads:
        torch.set_num_threads(args.threads)

    report = run(args.capacity, args.num_envs, args.n_step, args.seed)
    report["machine"] = machine()
    report["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    if not report["check"]["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
