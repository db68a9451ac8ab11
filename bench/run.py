"""Run every benchmark (or the ones named) and append the results to bench/RESULTS.md.

    python -m bench.run                       # all eight
    python -m bench.run ptpip_bulk cccp_udp   # some
    python -m bench.bench_ptpip_bulk --size 4 # one alone, with its options
"""

from __future__ import annotations

import importlib
import sys

ALL = ["ptpip_bulk", "ptpip_latency", "ptpip_liveview", "ptpip_concurrency", "cccp_bulk", "cccp_udp", "cccp_fanout",
       "ts_index"]


def main(argv: list[str] | None = None) -> None:
    names = (argv if argv is not None else sys.argv[1:]) or ALL
    for name in names:
        if name not in ALL:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(ALL)}")
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.bench_{name}").main([])


if __name__ == "__main__":
    main()
