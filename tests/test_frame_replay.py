"""FrameReplayBuffer against the naive reference: the same stream of stacked-frame observations fed into
`ReplayBuffer` (which stores every obs and next obs whole) must give identical transitions slot by slot —
obs and next-obs stacks, n-step returns, bootstrap factors, actions — across episode starts (zero-padded reset
stacks), life losses, truncations, autoreset steps, restarts and wrap-around. Plus: the rows next to the head are
never drawn, uniform and prioritized; the uniform sampler's fixed-shape rejection; state round trips; memory.
Real ale-py frames go through the same comparison in tests/test_atari.py."""
import io
import random

import pytest
import torch

from agents.replay import FrameReplayBuffer, ReplayBuffer

CPU = torch.device("cpu")
STACK, SIZE = 4, 2  # 4 frames of 2×2 pixels
GAMMA = 0.9


def frame(step: int, env: int) -> torch.Tensor:
    """A constant image that names its step and env (never 0, so zero padding cannot pass for a frame)."""
    return torch.full((SIZE, SIZE), (step * 7 + env) % 251 + 1, dtype=torch.uint8)


def reset_obs(step: int, env: int) -> torch.Tensor:
    obs = torch.zeros(STACK, SIZE, SIZE, dtype=torch.uint8)
    obs[-1] = frame(step, env)
    return obs


class Stream:
    """Vector envs as the agent sees them through Gymnasium's next-step autoreset: a step after an episode end
    returns the next episode's zero-padded reset obs and is no transition (valid False). Episodes end at random
    by termination or truncation; a life loss is a terminal for the learner without a reset."""

    def __init__(self, num_envs: int, seed: int, end_prob: float = 0.15) -> None:
        self.num_envs, self.end_prob = num_envs, end_prob
        self.rng = random.Random(seed)
        self.t = 0
        self.obs = torch.stack([reset_obs(0, e) for e in range(num_envs)])
        self.autoreset = [False] * num_envs

    def restart(self) -> None:
        """Reset every env outside the stream, as a resume does: no autoreset step."""
        self.t += 1
        self.obs = torch.stack([reset_obs(self.t, e) for e in range(self.num_envs)])
        self.autoreset = [False] * self.num_envs

    def step(self) -> dict[str, torch.Tensor]:
        self.t += 1
        next_obs, rewards, terminated, truncated, valid = [], [], [], [], []
        for e in range(self.num_envs):
            valid.append(not self.autoreset[e])
            if self.autoreset[e]:
                next_obs.append(reset_obs(self.t, e))
                rewards.append(0.0)
                kind = None
            else:
                next_obs.append(torch.cat([self.obs[e, 1:], frame(self.t, e).unsqueeze(0)]))
                rewards.append(float(self.rng.randint(-3, 9)))
                draw = self.rng.random()
                kind = "terminated" if draw < self.end_prob else "truncated" if draw < 1.5 * self.end_prob \
                    else "life_lost" if draw < 2 * self.end_prob else None
            terminated.append(kind in ("terminated", "life_lost"))
            truncated.append(kind == "truncated")
            self.autoreset[e] = kind in ("terminated", "truncated")
        step = dict(obs=self.obs, actions=torch.tensor([self.rng.randrange(18) for _ in range(self.num_envs)]),
                    rewards=torch.tensor(rewards), next_obs=torch.stack(next_obs),
                    terminated=torch.tensor(terminated), truncated=torch.tensor(truncated), valid=torch.tensor(valid))
        self.obs = step["next_obs"]
        return step


def buffers(capacity: int, num_envs: int, n_step: int,
            prioritized: bool = False) -> tuple[FrameReplayBuffer, ReplayBuffer]:
    kwargs = dict(n_step=n_step, gamma=GAMMA, prioritized=prioritized)
    frames = FrameReplayBuffer(capacity, num_envs, (STACK, SIZE, SIZE), torch.uint8, CPU, **kwargs)
    reference = ReplayBuffer(capacity, num_envs, (STACK, SIZE, SIZE), torch.uint8, CPU, **kwargs)
    assert frames.rows == reference.rows
    return frames, reference


def expected_sampleable(buffer: FrameReplayBuffer) -> torch.Tensor:
    """Valid written slots, minus the head row and the stack − 1 rows after it once the buffer is full."""
    ok = buffer.valid.clone()
    if not buffer.full:
        ok[buffer.row:] = False
    else:
        for k in range(STACK):
            ok[(buffer.row + k) % buffer.rows] = False
    return ok.flatten()


def assert_same_transitions(frames: FrameReplayBuffer, reference: ReplayBuffer, flat: torch.Tensor) -> None:
    got, want = frames._batch_at(flat), reference._batch_at(flat)
    for name in ("obs", "next_obs", "actions", "returns", "bootstrap", "index"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert got.actions.dtype == torch.long


def compare_everywhere(frames: FrameReplayBuffer, reference: ReplayBuffer, coverage: dict[str, int]) -> None:
    """All sampleable slots agree; count the cases that make the comparison meaningful."""
    slots = torch.arange(len(frames))
    sampleable = frames._sampleable(slots)
    assert torch.equal(sampleable, expected_sampleable(frames)[:len(frames)])
    flat = slots[sampleable]
    assert_same_transitions(frames, reference, flat)
    batch = reference._batch_at(flat)
    padding = (batch.obs == 0).flatten(2).all(2).sum(1)  # zero-padded slots per obs stack
    coverage["padded obs"] += int(((padding > 0) & (padding < STACK - 1)).sum())
    coverage["reset obs"] += int((padding == STACK - 1).sum())
    coverage["padded next_obs"] += int(((batch.next_obs == 0).flatten(2).all(2).sum(1) > 0).sum())
    coverage["partial n-step"] += int((batch.bootstrap > GAMMA ** frames.n_step + 1e-4).sum())  # walk cut short
    if frames.full:
        row = flat // frames.num_envs
        coverage["wrapped stacks"] += int((row < STACK - 1).sum())  # history runs past the storage's end
        head = frames._row_slots(frames.row)
        stale = head[reference.valid.flatten()[head]]
        # The head row's own obs is gone from frame storage: sampling it would be wrong, so it must be forbidden.
        coverage["stale head differs"] += int((frames._batch_at(stale).obs != reference._batch_at(stale).obs)
                                              .flatten(1).any(1).sum())


@pytest.mark.parametrize("n_step", [1, 3])
def test_frames_rebuild_exactly_what_the_envs_returned(n_step: int) -> None:
    frames, reference = buffers(capacity=30, num_envs=3, n_step=n_step)  # 10 rows: wraps 8 times
    stream = Stream(3, seed=n_step)
    coverage = dict.fromkeys(["padded obs", "reset obs", "padded next_obs", "partial n-step", "wrapped stacks",
                              "stale head differs"], 0)
    for _ in range(80):
        step = stream.step()
        frames.add(**step)
        reference.add(**step)
        compare_everywhere(frames, reference, coverage)
    assert frames.full and not hasattr(frames, "next_obs")
    if n_step == 1:  # one-step walks cannot be cut short
        del coverage["partial n-step"]
    assert all(count > 0 for count in coverage.values()), coverage


def test_restart_starts_fresh_stacks_and_cuts_n_step() -> None:
    frames, reference = buffers(capacity=24, num_envs=2, n_step=3)
    unmarked, _ = buffers(capacity=24, num_envs=2, n_step=3)
    stream = Stream(2, seed=5, end_prob=0.0)  # no episode ends: only the restart separates the episodes
    for _ in range(6):  # rows 0..5
        step = stream.step()
        for buffer in (frames, reference, unmarked):
            buffer.add(**step)
    for buffer in (frames, reference):
        buffer.mark_discontinuity()
    stream.restart()
    for _ in range(4):
        step = stream.step()
        for buffer in (frames, reference, unmarked):
            buffer.add(**step)
    # Row 6 of the frame buffer keeps the next obs of row 5 as a no-transition row; the restart follows it.
    assert frames.row == reference.row + 1 and not frames.valid[6].any()
    before, after = torch.arange(12), torch.arange(12, 20)
    assert_same_transitions(frames, reference, before)
    got, want = frames._batch_at(after + 2), reference._batch_at(after)
    for name in ("obs", "next_obs", "actions", "returns", "bootstrap"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert (got.obs[:2, :-1] == 0).all() and (got.obs[:2, -1] != 0).all()  # the restart's obs: [0, 0, 0, f]
    assert not frames._sampleable(frames._row_slots(6)).any()
    assert not torch.equal(unmarked._batch_at(after).obs, want.obs)  # unmarked, stacks run across the restart
    returns, last_row, bootstrap = frames._n_step(torch.tensor([4 * frames.num_envs]))  # (t4, env 0)
    assert (last_row.item(), bootstrap.item()) == (5, pytest.approx(GAMMA ** 2))  # cut at the restart


def test_restart_of_an_empty_buffer_changes_nothing() -> None:
    buffer = FrameReplayBuffer(24, 2, (STACK, SIZE, SIZE), torch.uint8, CPU)
    buffer.mark_discontinuity()
    assert buffer.row == 0 and len(buffer) == 0 and buffer.first[0].all() and not buffer.episode_end.any()


def test_uniform_sampling_draws_only_sampleable_slots() -> None:
    frames, reference = buffers(capacity=60, num_envs=3, n_step=3)
    stream = Stream(3, seed=7, end_prob=0.3)  # many autoreset slots
    generator = torch.Generator().manual_seed(0)
    enough = short = 0
    for t in range(60):
        step = stream.step()
        frames.add(**step)
        reference.add(**step)
        if t < 3:
            continue
        # The scheme: 2·B candidates drawn uniformly from the written slots; the sampleable ones, in draw order,
        # fill the batch; only if fewer than B are, leftover picks follow with weight 0.
        candidates = torch.randint(len(frames), (32,), generator=torch.Generator().set_state(generator.get_state()))
        batch = frames.sample(16, generator)
        allowed = expected_sampleable(frames)
        ok = allowed[candidates]
        assert torch.equal(batch.index, torch.cat([candidates[ok], candidates[~ok]])[:16])
        assert torch.equal(batch.weights, allowed[batch.index].float())
        if ok.sum() >= 16:
            enough += 1
            assert allowed[batch.index].all()
        else:
            short += 1
        counted = batch.weights > 0  # weight-0 picks may be forbidden rows, rebuilt from overwritten frames
        want = reference._batch_at(batch.index[counted])
        assert torch.equal(batch.obs[counted], want.obs) and torch.equal(batch.next_obs[counted], want.next_obs)
    assert enough > 20 and short > 0
    batches = [frames.sample(64, generator) for _ in range(50)]
    drawn = torch.cat([b.index[b.weights > 0] for b in batches]).unique()
    assert torch.equal(drawn, expected_sampleable(frames).nonzero().squeeze(1))  # every allowed slot, only those


@pytest.mark.parametrize("buffer_class", [ReplayBuffer, FrameReplayBuffer])
def test_uniform_sampling_keeps_its_shape_and_zero_weights_leftover_invalid_picks(buffer_class: type) -> None:
    # 2 rows of 4 envs written, one valid slot: a batch of 8 from 16 candidates must repeat it and pad with
    # invalid picks that carry weight 0.
    buffer = buffer_class(40, 4, (STACK, SIZE, SIZE), torch.uint8, CPU)
    stream = Stream(4, seed=0)
    for valid in ([False, False, True, False], [False] * 4):
        step = stream.step()
        buffer.add(**{**step, "valid": torch.tensor(valid)})
    generator = torch.Generator().manual_seed(1)
    counted = 0.0
    for _ in range(10):
        batch = buffer.sample(8, generator)
        assert batch.index.shape == batch.weights.shape == (8,) and batch.obs.shape == (8, STACK, SIZE, SIZE)
        assert torch.equal(batch.weights, (batch.index == 2).float())
        assert batch.weights.sum() < 8
        counted += batch.weights.sum().item()
    assert counted > 0


def test_prioritized_sampling_never_draws_forbidden_rows() -> None:
    frames, reference = buffers(capacity=30, num_envs=3, n_step=3, prioritized=True)
    stream = Stream(3, seed=11)
    generator = torch.Generator().manual_seed(2)
    for t in range(50):
        step = stream.step()
        frames.add(**step)
        reference.add(**step)
        allowed = expected_sampleable(frames)
        leaves = frames.tree.leaves()
        assert (leaves[~allowed] == 0).all() and (leaves[allowed] > 0).all()
        if t >= 3:
            batch = frames.sample(32, generator, beta=0.5)
            assert allowed[batch.index].all()
            want = reference._batch_at(batch.index)
            assert torch.equal(batch.obs, want.obs) and torch.equal(batch.next_obs, want.next_obs)
            assert torch.equal(batch.returns, want.returns)
            # Large TD errors everywhere, forbidden slots included: those must keep priority 0.
            frames.update_priorities(torch.arange(frames.rows * 3), torch.full((frames.rows * 3,), 50.0))
            assert (frames.tree.leaves()[~allowed] == 0).all()
    # One slot with a far larger error than the rest takes most of the draws.
    favourite = int(expected_sampleable(frames).nonzero()[0])
    frames.update_priorities(torch.tensor([favourite]), torch.tensor([1e6]))
    drawn = frames.sample(256, generator).index
    assert (drawn == favourite).float().mean() > 0.9


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_round_trip_gives_identical_samples(prioritized: bool) -> None:
    frames, _ = buffers(capacity=30, num_envs=3, n_step=3, prioritized=prioritized)
    stream = Stream(3, seed=13)
    for _ in range(25):
        frames.add(**stream.step())
    if prioritized:
        frames.update_priorities(torch.arange(12), torch.linspace(0.1, 5.0, 12))
    saved = io.BytesIO()
    torch.save(frames.state_dict(), saved)  # as a checkpoint holds it
    restored, _ = buffers(capacity=30, num_envs=3, n_step=3, prioritized=prioritized)
    restored.load_state_dict(torch.load(io.BytesIO(saved.getvalue())))
    step = stream.step()
    for buffer in (frames, restored):  # and both go on alike
        buffer.add(**step)
    a = frames.sample(64, torch.Generator().manual_seed(4))
    b = restored.sample(64, torch.Generator().manual_seed(4))
    for name in ("obs", "next_obs", "actions", "returns", "bootstrap", "weights", "index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_memory_is_one_frame_plus_22_bytes_per_slot() -> None:
    buffer = FrameReplayBuffer(8 * 1000, 8, (4, 84, 84), torch.uint8, CPU)
    storage = {name: t for name, t in buffer.state_dict().items() if isinstance(t, torch.Tensor)}
    slots = buffer.rows * buffer.num_envs
    assert storage["frames"].dtype == torch.uint8 and storage["frames"].nbytes == slots * 84 * 84
    metadata = sum(t.nbytes for name, t in storage.items() if name not in ("frames", "max_priority"))
    # int16 action, float32 reward, 4 flags; the n-step walk: float32 return and bootstrap, int32 last row
    assert metadata / slots <= 22
    # A million transitions: 84·84 bytes of frame plus metadata each, within 7.5 GB.
    assert 1_000_000 * (84 * 84 + metadata / slots) <= 7.5e9

