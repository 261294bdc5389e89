"""Training in N processes from inside another program: ``train_processes(config, processes=N, ...)``.

It runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m model_core train --config ...`` as a
child and behaves like :func:`model_core.training.train` for its caller: the same ``progress_callback`` (rank 0
appends every TrainProgress to a JSON-lines file that is read back here), the same ``should_stop`` (a stop file the
ranks look for at every optimizer step; they agree, write a checkpoint and stop), :class:`TrainingStopped` when
stopped, and the :class:`TrainResult` read from ``result.json``. A failure raises
:class:`TrainingProcessesFailed` with the error the failing rank reported and the tail of the processes' log.

Its files live in ``<output_dir>/launch/``: ``config.json``, ``progress.jsonl``, ``stop``, ``train.log``.

The processes die with their parent: the launcher (torchrun's agent) is started with a parent-death signal
(SIGKILL) and every rank sets one too (``--die-with-parent``), so a killed worker leaves no training behind to
race the run that resumes it. A stop that does not end the processes within ``stop_grace_s`` ends them with
SIGTERM, then SIGKILL (the newest checkpoint is then the one to resume from).

Threads: each process gets ``OMP_NUM_THREADS`` = CPU cores / N unless the environment sets it (torch would
otherwise start a full thread pool in every process and the processes would fight over the cores).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)

LAUNCH_DIR = "launch"
PROGRESS_FILE = "progress.jsonl"
STOP_FILE = "stop"
LOG_FILE = "train.log"
CONFIG_FILE = "config.json"
EXIT_STOPPED = 3  # `python -m model_core train` exit status after a stop (a checkpoint was written)
LOG_TAIL_LINES = 30
_PR_SET_PDEATHSIG = 1


class TrainingProcessesFailed(RuntimeError):
    """The training processes ended with an error (its message names the rank's error and ends with the log)."""


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (kept across exec). Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d): this process may outlive its parent",
                       ctypes.get_errno())
    elif parent == 1 or os.getppid() != parent:  # the parent ended before the signal was asked for
        os._exit(1)


def write_event(path: str | Path, event: str, **fields: Any) -> None:
    """One JSON line, appended in a single write (lines of several ranks do not interleave)."""
    line = json.dumps({"event": event, **fields}, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def launch_files(output_dir: str | Path) -> dict[str, Path]:
    root = Path(output_dir) / LAUNCH_DIR
    return {"dir": root, "config": root / CONFIG_FILE, "progress": root / PROGRESS_FILE, "stop": root / STOP_FILE,
            "log": root / LOG_FILE}


def training_command(config_path: Path, progress: Path, stop: Path, *, processes: int) -> list[str]:
    """The command line: torchrun's agent (dying with this process) running ``model_core train`` N times."""
    return [sys.executable, "-m", "model_core.launch",  # sets the parent-death signal, then execs the rest
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "model_core", "train", "--config", str(config_path), "--progress-jsonl", str(progress),
            "--stop-file", str(stop), "--quiet", "--die-with-parent"]


def train_processes(config, *, processes: int, progress_callback: Callable[[Any], None] | None = None,
                    should_stop: Callable[[], bool] | None = None, poll_s: float = 0.5, stop_grace_s: float = 600.0,
                    env: dict[str, str] | None = None):
    """Train ``config`` (a TrainConfig) in ``processes`` processes; returns the TrainResult (see the module doc)."""
    from model_core.training import TrainingStopped, TrainProgress, TrainResult, _finished_run

    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    config.validate()
    if config.batch_size % processes:
        raise ValueError(f"batch_size {config.batch_size} cannot be shared out evenly across {processes} processes: "
                         f"it is the micro-batch of the whole run; choose a multiple of {processes}")
    finished = _finished_run(config)
    if finished is not None:
        return finished
    files = launch_files(config.output_dir)
    files["dir"].mkdir(parents=True, exist_ok=True)
    files["config"].write_text(json.dumps(config.to_dict(), indent=1))
    files["progress"].write_text("")
    files["stop"].unlink(missing_ok=True)
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    command = training_command(files["config"], files["progress"], files["stop"], processes=processes)
    logger.info("training in %d processes: %s", processes, " ".join(command))
    with open(files["log"], "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env, start_new_session=True)
    reader = _EventReader(files["progress"])
    events: list[dict[str, Any]] = []
    stop_asked: float | None = None
    try:
        while True:
            rc = proc.poll()
            for event in reader.read():  # after poll(): whatever the processes wrote before ending is read
                events.append(event)
                if event["event"] == "progress" and progress_callback is not None:
                    progress_callback(TrainProgress(**event["progress"]))
            if rc is not None:
                break
            if stop_asked is None and should_stop is not None and should_stop():
                stop_asked = time.monotonic()
                files["stop"].touch()
                logger.info("stop asked: the training processes stop at their next step")
            elif stop_asked is not None and time.monotonic() - stop_asked > stop_grace_s:
                logger.warning("the training processes did not stop within %.0f s: ending them", stop_grace_s)
                _end(proc)
            time.sleep(poll_s)
    except BaseException:
        _end(proc)  # our caller is going away (an error in the callback, an interrupt): so do the processes
        raise
    stopped = [e for e in events if e["event"] == "stopped"]
    if rc == 0 and (Path(config.output_dir) / "result.json").is_file():
        return TrainResult(**json.loads((Path(config.output_dir) / "result.json").read_text()))
    if stopped or stop_asked is not None:
        raise TrainingStopped(stopped[0]["message"] if stopped else
                              f"stopped (the processes ended with status {rc}); training resumes from the newest "
                              "checkpoint")
    errors = [e for e in events if e["event"] == "error"]
    first = (f"rank {errors[0].get('rank')}: {errors[0].get('error')}: {errors[0].get('message')}" if errors
             else f"the training processes ended with status {rc}")
    raise TrainingProcessesFailed(f"{first}\n--- last lines of {files['log']}:\n{_tail(files['log'])}")


def progress_to_event(progress) -> dict[str, Any]:
    return {"progress": dataclasses.asdict(progress)}


class _EventReader:
    """Complete JSON lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        events = []
        for line in lines:
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("unreadable progress line: %r", line[:200])
        return events


def _end(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the processes' group (torchrun passes it on to the ranks), SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_bytes()[-20000:].decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


if __name__ == "__main__":  # python -m model_core.launch PROGRAM ARGS...: PROGRAM with the parent-death signal
    die_with_parent()
    os.execv(sys.argv[1], sys.argv[1:])
