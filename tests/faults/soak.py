"""`make soak`: one long run (not in CI). A campaign of --rows deliveries (default 50,000) goes out
through two workers of two processes and beat while a fault picked at random strikes every 20-40 s —
a killed worker, a killed beat, PostgreSQL restarts (fast, immediate, down for 10 s), a Redis
restart, an SMTP outage (421), 550s and 451s for a share of the mail, replies that hang after DATA,
slow replies — for at least --minutes (default 10). The relay is slowed (--relay-delay seconds a
message) so the run lasts. At the end it prints the issue's table for this run (duplicates by
Message-ID seen after each kind of fault) and runs `course audit --sink-log`; it exits non-zero when
the audit fails or a row was lost."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from tests.support.fault_stack import FaultStack


def faults(stack: FaultStack) -> dict[str, object]:
    def kill_worker() -> None:
        alive = [w for w in stack.workers if w.poll() is None]
        if alive:
            stack.kill(random.choice(alive))
        stack.start_worker(2)

    def kill_beat() -> None:
        for beat in stack.beats:
            if beat.poll() is None:
                stack.kill(beat)
        stack.start_beat()

    def pg_down() -> None:
        stack.postgres.stop("fast")
        time.sleep(10)
        stack.postgres.start()

    return {
        "SIGKILL of one worker": kill_worker,
        "beat kill -9": kill_beat,
        "PostgreSQL fast restart": lambda: stack.postgres.restart("fast"),
        "PostgreSQL immediate restart": lambda: stack.postgres.restart("immediate"),
        "PostgreSQL down 10 s": pg_down,
        "Redis restart": stack.redis.restart,
        "421 for 60 s": lambda: stack.smtp.refuse_for(60, 421),
        "550 for 5% of mail, 30 s": lambda: stack.smtp.refuse_randomly(0.05, 550, "5.1.1 No such user", 30),
        "451 for 20% of mail, 30 s": lambda: stack.smtp.refuse_randomly(0.2, 451, "4.3.2 Try again later", 30),
        "SMTP time-out after DATA, 3 times": lambda: stack.smtp.hang_after_data(3, seconds=6),
        "every reply delayed 2.5 s for 30 s": lambda: stack.smtp.delay_replies(2.5, 30),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--relay-delay", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    random.seed(args.seed)
    root = Path(tempfile.mkdtemp(prefix="course-soak-"))
    print(f"soak: {args.rows:,} deliveries, faults for at least {args.minutes} min, files in {root}", flush=True)
    injected: dict[str, int] = defaultdict(int)
    duplicates_after: dict[str, int] = defaultdict(int)
    with FaultStack(root, rows=args.rows) as stack:
        stack.smtp.base_delay = args.relay_delay
        stack.start_workers(2, 2)
        stack.start_beat()
        menu = faults(stack)
        started = time.monotonic()
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(random.uniform(20, 40))
            name = random.choice(list(menu))
            before = stack.smtp.duplicates()
            print(f"{time.monotonic() - started:6.0f}s  {stack.smtp.accepted:7,} accepted  fault: {name}", flush=True)
            menu[name]()  # type: ignore[operator]
            injected[name] += 1
            time.sleep(15)  # let its effect show before the next one
            duplicates_after[name] += stack.smtp.duplicates() - before
        result = stack.finish(timeout=1800)
    print(f"\n| fault | times | accepted twice (seen after it), of {args.rows:,} |\n|---|---|---|")
    for name in menu:
        if injected[name]:
            print(f"| {name} | {injected[name]} | {duplicates_after[name]} |")
    print(f"| **total** | {sum(injected.values())} | {result.duplicates} |")
    print(f"\nfinal states: {result.states}; lost: {result.lost}; {result.seconds / 60:.1f} min")
    print(result.audit_output)
    return 0 if result.audit_exit == 0 and result.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
