"""Atomic checkpoint saves: a process SIGKILLed during or between saves never leaves a truncated
``model_*.pth`` or a ``last_checkpoint`` that names one; resuming loads the last complete save.

Each kill test runs a child process that saves twice through a checkpointer, blocking in the
middle of the second save's writes, and kills it there. The same scenario with Detectron2's
plain DetectionCheckpointer leaves a broken checkpoint, which shows the test can fail.
"""

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from gn_det.checkpoint import AtomicFileWriter, CheckpointLoadError, SafeDetectionCheckpointer

CHILD = textwrap.dedent(r'''
    import sys, time
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from gn_det.checkpoint import SafeDetectionCheckpointer

    kind, out_dir, block_in = sys.argv[1:4]

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)
            # 8 MB of data so that the save is written in many chunks.
            self.register_buffer("big", torch.zeros(2_000_000))

    class Blocking:
        """File proxy that stops the process (until killed) once `limit` bytes were written."""
        def __init__(self, f, limit):
            self.f, self.limit, self.written = f, limit, 0
        def write(self, data):
            if self.written + len(data) > self.limit:
                n = max(0, self.limit - self.written)
                self.f.write(data[:n])
                self.f.flush()
                print("blocked", flush=True)
                time.sleep(600)
            self.written += len(data)
            return self.f.write(data)
        def __getattr__(self, name):
            return getattr(self.f, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    class BlockingPathManager:
        def __init__(self, base, suffix, limit):
            self.base, self.suffix, self.limit = base, suffix, limit
        def open(self, path, mode="r", *args, **kwargs):
            f = self.base.open(path, mode, *args, **kwargs)
            return Blocking(f, self.limit) if path.endswith(self.suffix) and "w" in mode else f
        def __getattr__(self, name):
            return getattr(self.base, name)

    model = Model()
    cls = SafeDetectionCheckpointer if kind == "safe" else DetectionCheckpointer
    checkpointer = cls(model, out_dir)
    with torch.no_grad():
        model.linear.weight.fill_(1.0)
    checkpointer.save("model_0000001", iteration=1)
    print("saved 1", flush=True)
    with torch.no_grad():
        model.linear.weight.fill_(2.0)
    if block_in == "model":
        checkpointer.path_manager = BlockingPathManager(checkpointer.path_manager, "model_0000002.pth", 4_000_000)
    elif block_in == "last_checkpoint":
        checkpointer.path_manager = BlockingPathManager(checkpointer.path_manager, "last_checkpoint", 0)
    checkpointer.save("model_0000002", iteration=2)
    print("saved 2", flush=True)
    time.sleep(600)
    ''')


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.register_buffer("big", torch.zeros(2_000_000))


def _run_and_kill(tmp_path, kind, block_in, kill_after):
    """Run the child, SIGKILL it once it printed `kill_after`; return the checkpoint dir."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    child = subprocess.Popen(
        [sys.executable, str(script), kind, str(out_dir), block_in],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        lines = []
        for line in child.stdout:
            lines.append(line.strip())
            if line.strip() == kill_after:
                break
        assert (
            lines and lines[-1] == kill_after
        ), f"child output {lines}; stderr:\n{child.stderr.read()}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return out_dir


def _resume(out_dir):
    model = Model()
    checkpointer = SafeDetectionCheckpointer(model, str(out_dir))
    extra = checkpointer.resume_or_load("", resume=True)
    return model, extra


def test_kill_during_model_save_keeps_the_last_complete_checkpoint(tmp_path):
    out_dir = _run_and_kill(tmp_path, "safe", "model", "blocked")
    files = sorted(os.listdir(out_dir))
    assert "model_0000002.pth" not in files  # never visible under its final name
    assert (out_dir / "last_checkpoint").read_text() == "model_0000001.pth"
    partial = [f for f in files if f.endswith(".partial")]
    assert (
        len(partial) == 1 and os.path.getsize(out_dir / partial[0]) >= 4_000_000
    )  # the kill was mid-write
    model, extra = _resume(out_dir)
    assert extra["iteration"] == 1
    assert torch.equal(model.linear.weight, torch.ones(4, 4))
    assert not any(f.endswith(".partial") for f in os.listdir(out_dir))  # cleaned up (and logged)


def test_plain_detectron2_checkpointer_leaves_a_truncated_file(tmp_path):
    out_dir = _run_and_kill(tmp_path, "plain", "model", "blocked")
    assert os.path.exists(out_dir / "model_0000002.pth")  # truncated under its final name
    with pytest.raises(CheckpointLoadError, match="model_0000002.pth.*(truncated|zip)"):
        SafeDetectionCheckpointer(Model()).load(str(out_dir / "model_0000002.pth"))


def test_kill_during_last_checkpoint_write_keeps_the_previous_tag(tmp_path):
    out_dir = _run_and_kill(tmp_path, "safe", "last_checkpoint", "blocked")
    assert (out_dir / "last_checkpoint").read_text() == "model_0000001.pth"
    model, extra = _resume(out_dir)
    assert extra["iteration"] == 1 and torch.equal(model.linear.weight, torch.ones(4, 4))


def test_plain_detectron2_checkpointer_empties_last_checkpoint_when_killed(tmp_path):
    # It opens the tag with "w", which truncates it before writing the new name.
    out_dir = _run_and_kill(tmp_path, "plain", "last_checkpoint", "blocked")
    assert (out_dir / "last_checkpoint").read_text() == ""


def test_kill_between_saves_resumes_from_the_latest(tmp_path):
    out_dir = _run_and_kill(tmp_path, "safe", "none", "saved 2")
    assert (out_dir / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not any(f.endswith(".partial") for f in os.listdir(out_dir))
    model, extra = _resume(out_dir)
    assert extra["iteration"] == 2 and torch.equal(model.linear.weight, torch.full((4, 4), 2.0))


def test_exception_during_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "model_final.pth"
    path.write_bytes(b"old complete content")
    with pytest.raises(RuntimeError, match="disk full"):
        with AtomicFileWriter(str(path), "wb") as f:
            f.write(b"new partial")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old complete content"
    assert os.listdir(tmp_path) == ["model_final.pth"]


def test_atomic_file_gets_the_mode_a_plain_open_would_give(tmp_path):
    with open(tmp_path / "plain", "wb") as f:
        f.write(b"x")
    with AtomicFileWriter(str(tmp_path / "atomic"), "wb") as f:
        f.write(b"x")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "atomic") == mode(tmp_path / "plain")


def test_saves_are_ordinary_detectron2_checkpoints(tmp_path):
    model = Model()
    with torch.no_grad():
        model.linear.weight.fill_(3.0)
    SafeDetectionCheckpointer(model, str(tmp_path)).save("model_final", iteration=9)
    loaded = Model()
    extra = DetectionCheckpointer(loaded, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 9 and torch.equal(loaded.linear.weight, model.linear.weight)
