"""When a failed webhook delivery is tried again: at once, seconds, minutes, then hours (> 24 h)."""

from __future__ import annotations

# Seconds to wait before attempt k + 1 after attempt k failed (the first attempt is at once).
# Like other Standard Webhooks senders: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (27.6 h).
RETRY_DELAYS_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1


def retry_delay_s(attempts_made: int) -> float | None:
    """Seconds until the next attempt after `attempts_made` failures; None: give up."""
    if attempts_made < 1:
        raise ValueError(f"attempts_made={attempts_made}; it counts failed attempts, from 1")
    index = attempts_made - 1
    return RETRY_DELAYS_S[index] if index < len(RETRY_DELAYS_S) else None
