"""Decode benchmark: BinaryFILE framing and ITCH decoding speed, in messages per second.

`run()` writes a BinaryFILE of generated order flow (the feed generator's
realistic mix) to a temporary directory and times three ways of reading it:

- `batch_msgs_per_s`: the vectorised path: `iter_batches`, a count by type
  and the price and locate of every Add Order of each chunk, with numpy;
- `framing_msgs_per_s`: `iter_messages`, message bytes one by one;
- `typed_decode_msgs_per_s`: `iter_messages` plus `itch.decode` of each.

Each is the best of `repeats` runs (the least disturbed by other load).
Returns a JSON-ready dict for `make bench`.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .codec import itch
from .codec.binaryfile import iter_batches, iter_messages, write_binaryfile
from .feed import FeedConfig, generate_messages

__all__ = ["run"]


def _best_rate(count: int, work: Callable[[], int], repeats: int) -> float:
    """Messages per second of the fastest of `repeats` runs of `work` (which returns its count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        seen = work()
        best = min(best, time.perf_counter() - start)
        if seen != count:
            raise AssertionError(f"benchmark read {seen} messages, wrote {count}")
    return count / best


def run(messages: int = 1_000_000, seed: int = 0, repeats: int = 3,
        progress: Callable[[str], None] | None = None) -> dict:
    """Generate a `messages`-message BinaryFILE and measure the three read paths."""
    report = progress or (lambda line: None)
    with tempfile.TemporaryDirectory(prefix="tick2trade-bench-") as directory:
        path = Path(directory) / "bench.NASDAQ_ITCH50"
        report(f"generating {messages} messages")
        config = FeedConfig(seed=seed, messages=messages - 22)  # 22 = preamble and closing events
        count = write_binaryfile(path, (itch.encode(m) for m in generate_messages(config)))

        def batches() -> int:
            types: Counter[str] = Counter()
            for batch in iter_batches(path):
                types.update(batch.count_by_type())
                adds = batch.type_mask("A")
                batch.field(32, 4, adds)  # price
                batch.field(1, 2, adds)  # locate
            return sum(types.values())

        def framing() -> int:
            return sum(1 for _ in iter_messages(path))

        def typed() -> int:
            return sum(1 for raw in iter_messages(path) if itch.decode(raw))

        results = {"messages": count, "file_bytes": path.stat().st_size, "python": platform.python_version()}
        for name, work in (("batch", batches), ("framing", framing), ("typed_decode", typed)):
            report(f"timing {name}")
            results[f"{name}_msgs_per_s"] = round(_best_rate(count, work, repeats))
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(progress=print), indent=2))
