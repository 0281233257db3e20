"""A progress bar on stderr with live bits per byte, speed and ETA (tqdm underneath)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """Counts units (bytes or tokens) done and the bits spent on them."""

    def __init__(self, total: int, desc: str, unit: str = "B", initial: int = 0, enabled: bool = True) -> None:
        self.bits = 0.0
        self.done = 0
        self.unit = unit
        self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1000,
                         initial=initial, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                         smoothing=0.1, mininterval=0.5)

    def update(self, n: int, bits: float = 0.0, status: str | None = None) -> None:
        """Count ``n`` more units coded in ``bits``; ``status`` replaces the running bits/unit."""
        self.done += n
        self.bits += bits
        if status is not None:
            self._bar.set_postfix_str(status, refresh=False)
        elif self.done:
            self._bar.set_postfix_str(f"{self.bits / self.done:.3f} bits/{self.unit}", refresh=False)
        self._bar.update(n)

    def retitle(self, desc: str, total: int | None = None) -> None:
        """Name what is being coded; ``total``: the units to do, where the plan changed them."""
        self._bar.set_description_str(desc, refresh=False)
        if total is not None:
            self._bar.total = total

    def write(self, message: str) -> None:
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
