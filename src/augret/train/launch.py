"""Run ``augret train`` under ``torchrun``: N local processes (GPUs), or one node of many.

:func:`torchrun_command` builds the command line, :func:`run_torchrun` runs it, streams its
output into a log file and the ``augret.train.launch`` logger, and returns what
:func:`augret.train.train` would have returned in-process::

    from augret.train import run_torchrun

    summary = run_torchrun("configs/train-clip_sf-large.yaml", "runs/large", nproc=8,
                           overrides={"data.dir": "/data/M-BEIR"})
    encoder_dir = summary["final"]

Multi-node: run the same call on every node with ``nnodes``, ``rdzv_endpoint`` (a host:port
of node 0 that every node can reach) and, for the static rendezvous, ``node_rank``. See
``docs/scaling.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from augret.data.jsonl import read_json
from augret.errors import BackendError, ConfigError

__all__ = ["TrainingFailed", "run_torchrun", "torchrun_command", "torchrun_env"]

log = logging.getLogger(__name__)

TAIL_LINES = 40
SUMMARY_FILE = "summary.json"  # augret.train.loop.SUMMARY_FILE, without importing torch
_NPROC_WORDS = ("auto", "cpu", "gpu")


class TrainingFailed(BackendError):
    """A ``torchrun`` training run exited with an error (or ran out of time).

    Attributes:
        returncode: torchrun's exit status (``None`` when it was stopped for a timeout).
        log_file: The full log.
        tail: Its last lines.
        command: The command that ran.
    """

    def __init__(self, message: str, *, returncode: int | None, log_file: Path,
                 tail: list[str], command: list[str]) -> None:
        self.returncode = returncode
        self.log_file = log_file
        self.tail = tail
        self.command = command
        body = "\n".join(f"  | {line}" for line in tail)
        super().__init__(f"{message} (log: {log_file}); last lines:\n{body}" if tail else
                         f"{message} (log: {log_file})")


def _yaml_value(value: Any) -> str:
    """``value`` as ``--set`` reads it back (YAML, flow style, one line)."""
    import yaml

    if isinstance(value, Path):
        value = str(value)
    elif isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text.removesuffix("...").strip()  # a plain scalar ends with a document marker


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _set_args(overrides: Mapping[str, Any] | Sequence[str] | None, out: Path) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        flat = _flatten(overrides)
        given = flat.get("output_dir")
        if given is not None and Path(given) != out:
            raise ConfigError(f"overrides set output_dir={given}, but out={out}")
        # as in load_config, a None value is a key that was not given
        items = [f"{k}={_yaml_value(v)}" for k, v in flat.items()
                 if v is not None and k != "output_dir"]
    elif isinstance(overrides, str):
        raise ConfigError("overrides: expected a mapping or a list of KEY=VALUE strings")
    else:
        items = list(overrides)
        bad = [s for s in items if "=" not in s or not s.partition("=")[0].strip()]
        if bad:
            raise ConfigError(f"overrides {bad}: expected KEY=VALUE (as for --set)")
    return [arg for item in items for arg in ("--set", item)]


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"rdzv_endpoint {endpoint!r}: expected HOST:PORT")
    return host, int(port)


def torchrun_command(
    config: str | Path,
    out: str | Path,
    *,
    nproc: int | Literal["auto", "cpu", "gpu"] = 1,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    rdzv_backend: Literal["c10d", "static"] = "c10d",
    rdzv_id: str | None = None,
    max_restarts: int = 0,
    resume: bool = False,
    progress: bool = False,
    python: str | None = None,
) -> list[str]:
    """The ``torchrun … -m augret train`` command line for one node.

    Args:
        config: The training config (YAML).
        out: The output directory (``--out``). With several nodes it must be on a filesystem
            every node shares: rank 0 writes it, every rank reads checkpoints from it.
        nproc: Processes on this node, one per GPU (or ``gpu``/``auto``/``cpu`` as torchrun
            reads them).
        overrides: Config overrides, either a mapping as for
            :func:`augret.config.load_config` (dotted or nested keys; ``None`` values are
            skipped, as there) or ``KEY=VALUE`` strings as for ``--set``.
        nnodes: Nodes in the job; each runs this command.
        node_rank: This node's rank (the static rendezvous only: c10d ranks nodes in the order
            they join).
        rdzv_endpoint: ``HOST:PORT`` every node can reach (needed when ``nnodes > 1``; one
            node alone uses ``--standalone`` on a free port when it is not given).
        rdzv_backend: ``c10d`` (torchrun's default: the node whose address matches
            ``rdzv_endpoint`` hosts the store) or ``static`` (``--master_addr/--master_port``
            and a fixed ``--node_rank``).
        rdzv_id: The job id every node shares (c10d; default: derived from ``out``).
        max_restarts: torchrun restarts the worker group up to this many times after a
            failure; a restarted run continues from the latest checkpoint.
        resume: Continue from the latest checkpoint in ``out`` (``--resume``).
        progress: Show rank 0's progress bar (off by default: the output is a log).
        python: The interpreter (default: this one).

    Raises:
        ConfigError: Inconsistent arguments.
    """
    out = Path(out)
    if isinstance(nproc, str):
        if nproc not in _NPROC_WORDS:
            raise ConfigError(f"nproc {nproc!r}: expected a number or one of {_NPROC_WORDS}")
    elif isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"nproc must be >= 1, got {nproc!r}")
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ConfigError(f"node_rank {node_rank} is not in [0, nnodes={nnodes})")
    if max_restarts < 0:
        raise ConfigError("max_restarts must be >= 0")
    if rdzv_backend not in ("c10d", "static"):
        raise ConfigError(f"rdzv_backend {rdzv_backend!r}: expected c10d or static")
    if nnodes > 1 and not rdzv_endpoint:
        raise ConfigError(f"{nnodes} nodes need rdzv_endpoint (HOST:PORT of node 0)")
    cmd = [python or sys.executable, "-m", "torch.distributed.run",
           "--nproc_per_node", str(nproc)]
    if rdzv_endpoint is None:
        cmd += ["--standalone"]
    elif rdzv_backend == "static":
        host, port = _split_endpoint(rdzv_endpoint)
        cmd += ["--nnodes", str(nnodes), "--node_rank", str(node_rank),
                "--master_addr", host, "--master_port", str(port)]
    else:
        _split_endpoint(rdzv_endpoint)
        job = rdzv_id or "augret-" + hashlib.sha1(str(out).encode()).hexdigest()[:12]
        cmd += ["--nnodes", str(nnodes), "--rdzv_backend", "c10d",
                "--rdzv_endpoint", rdzv_endpoint, "--rdzv_id", job]
    if max_restarts:
        cmd += ["--max_restarts", str(max_restarts)]
    cmd += ["-m", "augret", "train", str(config), "--out", str(out)]
    if resume:
        cmd.append("--resume")
    if not progress:
        cmd.append("--no-progress")
    return cmd + _set_args(overrides, out)


def torchrun_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment :func:`run_torchrun` gives torchrun: this process's, ``env`` on top.

    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` unless set: with the store torchrun shares by
    default, a worker group restarted by ``--max_restarts`` reads the previous group's keys
    and hangs in ``init_process_group``.
    """
    base = dict(os.environ)
    base.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    base["PYTHONUNBUFFERED"] = "1"
    return {**base, **(env or {})}


def _stop(proc: subprocess.Popen[str], grace: float = 30.0) -> None:
    """SIGTERM torchrun (it stops its workers), then SIGKILL its process group."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the workers exit once torchrun is gone
        proc.wait()


def run_torchrun(
    config: str | Path,
    out: str | Path,
    *,
    log_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cwd: str | Path | None = None,
    **launch: Any,
) -> dict[str, Any]:
    """Train under torchrun in a subprocess and wait for it.

    Args:
        config: The training config (YAML).
        out: The output directory.
        log_file: Where torchrun's output goes (appended; default:
            ``OUT/torchrun-node<node_rank>.log``). Every line is also logged at INFO.
        env: Extra environment variables (e.g. ``CUDA_VISIBLE_DEVICES``,
            ``NCCL_SOCKET_IFNAME``); see :func:`torchrun_env`.
        timeout: Stop the run after this many seconds.
        cwd: The working directory (relative paths in the config resolve against it).
        **launch: :func:`torchrun_command`'s keyword arguments (``nproc``, ``overrides``,
            ``nnodes``, ``node_rank``, ``rdzv_endpoint``, ``resume``, ...).

    Returns:
        The summary that :func:`augret.train.train` returns (``step``, ``loss``, ``final``
        ...), read from ``OUT/summary.json``, plus ``log``. A node whose ``out`` is not
        the one rank 0 wrote gets only ``output_dir``, ``final`` and ``log``.

    Raises:
        ConfigError: Inconsistent arguments.
        TrainingFailed: torchrun exited with an error or timed out; the message holds the
            last lines of the log.
    """
    out = Path(out)
    cmd = torchrun_command(config, out, **launch)
    out.mkdir(parents=True, exist_ok=True)
    node = launch.get("node_rank", 0)
    log_path = Path(log_file) if log_file else out / f"torchrun-node{node}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    log.info("launching: %s", " ".join(cmd))
    with log_path.open("a", encoding="utf-8") as sink:
        sink.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        sink.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1, cwd=cwd,
                                env=torchrun_env(env), start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                with contextlib.suppress(ValueError):  # closed after a timeout: drain only
                    sink.write(line)
                    sink.flush()
                line = line.rstrip()
                tail.append(line)
                log.info("torchrun: %s", line)

        reader = threading.Thread(target=pump, name="augret-torchrun-log", daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            reader.join(10)
            raise TrainingFailed(f"torchrun did not finish within {timeout:g} s",
                                 returncode=None, log_file=log_path, tail=list(tail),
                                 command=cmd) from None
        except BaseException:  # e.g. KeyboardInterrupt: leave no training behind
            _stop(proc)
            raise
        reader.join()
    if rc != 0:
        lines = list(tail)
        # the worker's own one-line error (augret's CLI prints "error: ...") leads
        reason = next((x for x in reversed(lines) if x.startswith("error: ")), None)
        head = f"torchrun exited with status {rc}" + (f": {reason[7:]}" if reason else "")
        raise TrainingFailed(head, returncode=rc, log_file=log_path, tail=lines, command=cmd)
    summary_path = out / SUMMARY_FILE
    if summary_path.is_file():
        summary = read_json(summary_path)
    else:
        summary = {"output_dir": str(out), "final": str(out / "final")}
    return {**summary, "log": str(log_path)}
