import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).with_name("resume_script.py")


def _start(run_dir, log, resume, sleep):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(run_dir), str(log), "1" if resume else "0", str(sleep)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_then_resume_continues_from_last_epoch(tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "epochs.log"
    proc = _start(run_dir, log, resume=False, sleep=1.5)
    deadline = time.time() + 240
    while time.time() < deadline:
        if log.exists() and len(log.read_text().split()) >= 3:
            break
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.1)
    time.sleep(0.5)  # let the checkpoint of the logged epoch be written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = [int(e) for e in log.read_text().split()]
    assert "done" not in log.read_text()
    assert (run_dir / "backup").is_dir()

    proc = _start(run_dir, log, resume=True, sleep=0)
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    entries = log.read_text().split()
    resumed = [int(e) for e in entries[len(done_before) : -1]]
    assert entries[-1] == "done"
    # continues right after the last finished (checkpointed) epoch, up to the configured 6 epochs
    assert resumed[0] in (done_before[-1], done_before[-1] + 1)
    assert resumed[-1] == 5
    assert len(resumed) < 6


def test_fresh_run_moves_old_checkpoint_aside(tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "epochs.log"
    (run_dir / "backup").mkdir(parents=True)
    proc = _start(run_dir, log, resume=False, sleep=0)
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    assert log.read_text().split()[0] == "0"
    assert any(p.name.startswith("backup.old-") for p in run_dir.iterdir())
    assert (run_dir / "history.csv").exists() and (run_dir / "logs").is_dir()
