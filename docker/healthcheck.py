"""Container healthcheck: exit 0 when the given URL answers 2xx within the timeout."""

from __future__ import annotations

import sys
import urllib.request


def main(url: str, timeout_s: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 0 if 200 <= response.status < 300 else 1
    except OSError as exc:
        print(f"healthcheck {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/readyz"))
