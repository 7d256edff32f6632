"""Look at a built image from outside: its unpacked size and how fast it turns healthy.

Used by the benchmark session and by the image-test plugin (`buildtasks.testing.images`).
These stream `docker export` or poll `docker inspect`, so they start their own processes.
"""

from __future__ import annotations

import subprocess
import time


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI and capture its output; with `check`, fail showing docker's error."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()[-500:]}")
    return result


def unpacked_bytes(image: str) -> int:
    """The size of the image's flattened filesystem, as `docker export` streams it."""
    name = docker("create", image).stdout.strip()
    try:
        proc = subprocess.Popen(["docker", "export", name], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        size = sum(len(chunk) for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))
        proc.wait(timeout=120)
        return size
    finally:
        docker("rm", "-f", name, check=False)


def seconds_to_healthy(image: str, *args: str, timeout: float = 60) -> float:
    """Start a container and return the seconds until Docker reports it healthy."""
    started = time.perf_counter()
    container = docker("run", "-d", image, *args).stdout.strip()
    try:
        while time.perf_counter() - started < timeout:
            status = docker(
                "inspect", "--format", "{{.State.Health.Status}}", container
            ).stdout.strip()
            if status == "healthy":
                return time.perf_counter() - started
            time.sleep(0.05)
        raise RuntimeError(f"{image} did not turn healthy within {timeout}s")
    finally:
        docker("rm", "-f", container)
