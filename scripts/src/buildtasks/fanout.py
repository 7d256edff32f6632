"""One multi-platform build spread over several builders: one build each, in parallel, merged.

`[tool.buildtasks.builders]` maps platforms to builders. When the platforms of a build map to
more than one, each builder builds its platforms at the same time, pushes them untagged by
digest and records them; `merge.merge` then makes one index of exactly those digests, and the
tags are applied to it. Each build's output is prefixed with its platforms so the logs stay
readable side by side; a failure names the builder and platforms that failed, and nothing is
tagged.

One builder for everything (the default) is a plain `build.build_image`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from functools import partial

from buildtasks import builders as builders_mod
from buildtasks.build import BuildOptions, BuildOutcome, build_image, preflight
from buildtasks.config import Config, ImageSpec, parse_platforms
from buildtasks.errors import BuildtasksError, ConfigError
from buildtasks.parallel import first_failure, relabel, run_all
from buildtasks.push import repositories
from buildtasks.runner import Runner


def groups_for(
    config: Config, image: ImageSpec, options: BuildOptions
) -> list[tuple[builders_mod.BuilderSpec, tuple[str, ...]]]:
    """The builders this build runs on, each with its platforms."""
    platforms = parse_platforms(list(options.platforms)) if options.platforms else image.platforms
    if options.builder:
        return [(cli_builder(options.builder), platforms)]
    return builders_mod.assign(platforms, config.builders)


def cli_builder(text: str) -> builders_mod.BuilderSpec:
    """`--builder`: a buildx builder's bare name, or any builder string of the configuration."""
    forms = ("default", "builder:", "context:", *builders_mod.ENDPOINT_SCHEMES)
    value = text if text.startswith(forms) else f"builder:{text}"
    return builders_mod.parse_builder(value, "--builder")


def check_spread(
    groups: list[tuple[builders_mod.BuilderSpec, tuple[str, ...]]],
    options: BuildOptions,
    *,
    test: bool = False,
) -> None:
    """Refuse what a spread build cannot do, before anything runs."""
    if len(groups) < 2:
        return
    where = "; ".join(f"{', '.join(p)} on {spec}" for spec, p in groups)
    if "," in options.name:
        raise ConfigError(
            f"the platforms build on different builders ({where}), which merge into one "
            "registry: give one --name, then copy the index with "
            "`docker buildx imagetools create --tag OTHER/NAME:TAG NAME@DIGEST`"
        )
    if not (options.push or options.push_by_digest):
        raise ConfigError(
            f"the platforms build on different builders ({where}): add --push to merge them "
            "into one index by digest, or --platform to build one builder's platforms"
        )
    if test:
        raise ConfigError(
            f"--test runs on one engine, and this build spreads over several ({where}): test "
            "each platform's build, or run the release chain"
        )


def build_spread(
    config: Config,
    image: ImageSpec,
    options: BuildOptions,
    runner: Runner,
    *,
    env: Mapping[str, str],
    now: datetime,
) -> BuildOutcome:
    """Build `image` on every builder its platforms map to; merge and tag unless asked not to."""
    from buildtasks.merge import MergeOptions, PlatformDigest, merge_image

    groups = groups_for(config, image, options)
    check_spread(groups, options)
    if len(groups) == 1:
        spec, _ = groups[0]
        return build_image(
            config, image, options, runner.derive(env=spec.env), env=env, now=now, on=spec
        )

    def one(group: tuple[builders_mod.BuilderSpec, tuple[str, ...]]) -> BuildOutcome:
        spec, platforms = group
        part = replace(options, platforms=platforms, push=False, push_by_digest=True)
        label = f"[{','.join(platforms)}] "
        sub = runner.derive(env=spec.env, prefix=label)
        sub.say(f"==> building on {spec}")
        try:
            preflight(sub)
            return build_image(config, image, part, sub, env=env, now=now, on=spec)
        except BuildtasksError as exc:
            raise relabel(exc, f"{', '.join(platforms)} on {spec}: {exc}") from None

    runner.say(
        f"==> {image.key}: {len(groups)} builders at once: "
        + "; ".join(f"{', '.join(p)} on {spec}" for spec, p in groups)
    )
    outcomes, errors = run_all([partial(one, group) for group in groups])
    if errors:
        raise first_failure(errors, "; nothing was tagged")
    given = [
        PlatformDigest(
            platforms=outcome.platforms,
            digest=outcome.registry_digest,
            repository=repositories(outcome.tags)[0],
            source=f"the {', '.join(outcome.platforms)} build",
            stand_ins=outcome.stand_ins,
        )
        for outcome in outcomes
    ]
    return merge_image(
        config,
        image,
        runner,
        MergeOptions(
            platforms=tuple(p for _, platforms in groups for p in platforms),
            name=options.name,
            tags=options.tags,
            untagged=options.push_by_digest,
        ),
        env=env,
        now=now,
        given=given,
    )


def describe_builders(
    config: Config, runner: Runner, *, env: Mapping[str, str]
) -> list[tuple[str, bool, str]]:
    """(builder, reachable, detail) for `default` and every configured builder."""
    from buildtasks.build import current_builder
    from buildtasks.caches import choose

    mapped: dict[builders_mod.BuilderSpec, list[str]] = {builders_mod.DEFAULT: []}
    for platform, spec in config.builders.items():
        mapped.setdefault(spec, []).append(platform)
    rows = []
    for spec, platforms in mapped.items():
        sub = runner.derive(env=spec.env)
        serves = ", ".join(platforms) if platforms else "every platform not listed"
        try:
            preflight(sub)
            builder = current_builder(sub, spec.buildx_name)
        except BuildtasksError as exc:
            rows.append((str(spec), False, f"{serves}; unreachable: {exc}"))
            continue
        store = f", {builder.store} image store" if builder.store else ""
        cache, _ = choose(
            config.cache,
            driver=builder.driver,
            capable=builder.capable,
            env=env,
            local_dir="",
            local_present=False,
            repository="",
            slug="",
        )
        rows.append(
            (
                str(spec),
                True,
                f"{serves}; driver {builder.driver or '?'}{store}; can build "
                f"{', '.join(builder.platforms) or 'what its engine runs'}; "
                f"cache {cache.kind if cache else 'none'}",
            )
        )
    return rows
