"""The job driver threads of this plugin process: at most one per job.

A job holds its grant from StartJob to its terminal event, which is exactly
while its driver runs, so the fingerprint's capacity in use and the cores
taken by pinned jobs are read from here.
"""

from __future__ import annotations

from collections import Counter

from c2d.plugin.kit import drivers as kit
from c2d.plugin.kit.fingerprint import Usage
from c2d_docker_engine.driver import JobDriver

__all__ = ["Drivers", "Usage"]


class Drivers(kit.Drivers[JobDriver]):
    def busy_cores(self, environment_id: str) -> Counter[int]:
        """How many running jobs of the environment are pinned to each core."""
        busy: Counter[int] = Counter()
        for driver in self.active():
            if driver.record.get("environment_id") == environment_id:
                busy.update(driver.record.get("cpuset") or [])
        return busy
