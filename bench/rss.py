"""Peak resident memory of the current process."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak RSS. ru_maxrss is no good here: Linux carries it over from the
    parent across fork and exec, so it would report the benchmark's own peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
