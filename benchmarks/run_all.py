"""Run every benchmark in this folder and summarise their target lines.

Run it as ``python benchmarks/run_all.py`` (each ``bench_*.py`` with
``--quick``, a few minutes in all) or ``python benchmarks/run_all.py --full``
(their full sizes). Names narrow the set: ``run_all.py unary stdout``.

Scripts run one after another, each in its own interpreter, their output
shown as it comes. A script that does not take ``--quick`` runs with its
defaults (said in the summary). At the end every line that states a target
(``... (target <= 1.25) met``) is printed again under its script.

Exit status 1 when a script failed (non-zero exit or a timeout); a missed
target is reported, never failed.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# A line that states a target: "(target <= 1.25)", "(target >= 0.95: met)", "target >= 50,000 ev/s".
TARGET_LINE = re.compile(r"\btarget\s*(<=|>=|<|>)")
# Grace between SIGINT (the script's finally blocks stop its daemon) and SIGKILL.
INTERRUPT_GRACE = 30.0


def _scripts(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if not names:
        return found
    chosen = [p for p in found if any(n in p.stem for n in names)]
    if not chosen:
        raise SystemExit(f"no benchmark matches {names}; have {[p.stem for p in found]}")
    return chosen


def _takes_quick(script: Path) -> bool:
    """Whether the script's ``--help`` lists ``--quick``."""
    out = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=HERE.parent,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return out.returncode == 0 and "--quick" in out.stdout


def _stop(proc: subprocess.Popen[str], timed_out: list[bool]) -> None:
    """Interrupt a script that ran too long, then kill it (by its PID, via the Popen)."""
    timed_out.append(True)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(INTERRUPT_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()


def _run(script: Path, quick: bool, timeout: float) -> tuple[int, float, list[str], bool]:
    cmd = [sys.executable, "-u", str(script)]
    if quick:
        cmd.append("--quick")
    print(f"\n===== {script.name} {' '.join(cmd[3:])}".rstrip(), flush=True)
    start = time.monotonic()
    targets: list[str] = []
    timed_out: list[bool] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent) as proc:
        watchdog = threading.Timer(timeout, _stop, args=(proc, timed_out))
        watchdog.daemon = True
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                if TARGET_LINE.search(line):
                    targets.append(line.strip())
            code = proc.wait()
        finally:
            watchdog.cancel()
    return code, time.monotonic() - start, targets, bool(timed_out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full sizes (no --quick)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per script before it is stopped (default 1800)"
    )
    parser.add_argument("names", nargs="*", help="run only benchmarks whose name contains one of these")
    args = parser.parse_args()

    results = []
    for script in _scripts(args.names):
        takes_quick = _takes_quick(script)
        code, seconds, targets, timed_out = _run(script, not args.full and takes_quick, args.timeout)
        results.append((script, code, seconds, targets, timed_out, takes_quick))

    print("\n===== summary" + (" (full sizes)" if args.full else " (--quick)"))
    failed = 0
    for script, code, seconds, targets, timed_out, takes_quick in results:
        if timed_out:
            state = f"TIMED OUT after {args.timeout:.0f} s"
        elif code != 0:
            state = f"FAILED (exit {code})"
        else:
            state = "ok"
        failed += state != "ok"
        note = "" if args.full or takes_quick else ", no --quick: ran with its defaults"
        print(f"{script.name}: {state}, {seconds:.1f} s{note}")
        for line in targets:
            print(f"    {line}")
        if not targets and state == "ok":
            print("    (no target line)")
    missed = sum("MISSED" in line or "NOT met" in line for r in results for line in r[3])
    print(f"{len(results)} script(s), {failed} failed, {missed} target(s) missed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
