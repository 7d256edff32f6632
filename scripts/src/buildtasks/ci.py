"""What the GitHub workflows ask of the tasks: the build matrix, outputs, the job summary (pure).

A workflow step is one task invocation; what it hands to the next job goes through
`$GITHUB_OUTPUT` and what a person should read through `$GITHUB_STEP_SUMMARY`, both written
by the task itself (as GitHub's own actions do), so the workflow files carry no logic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from buildtasks import timing
from buildtasks.config import Config, ImageSpec
from buildtasks.record import platforms_slug


def matrix(config: Config, image: ImageSpec) -> list[dict[str, str]]:
    """One build job per platform of `image`: the platform, its runner label, a file-safe slug."""
    return [
        {
            "platform": platform,
            "runner": config.runner_for(platform),
            "slug": platforms_slug((platform,)),
        }
        for platform in image.platforms
    ]


def output_lines(outputs: Mapping[str, str]) -> str:
    """`$GITHUB_OUTPUT` lines: `name=value`, or GitHub's heredoc form for a multi-line value
    (`name<<DELIMITER`, the lines, `DELIMITER`), the delimiter chosen so no line equals it."""
    out = []
    for name, value in outputs.items():
        if "\n" not in value:
            out.append(f"{name}={value}\n")
            continue
        delimiter = "EOF_BUILDTASKS"
        while delimiter in value.splitlines():
            delimiter += "_"
        out.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    return "".join(out)


def build_outputs(key: str, record: Mapping[str, object], *, prefix: bool) -> dict[str, str]:
    """What docker/build-push-action and docker/metadata-action output, for one built image.

    `record` is the build record (`.buildtasks/<image>/metadata.json`). `digest` is what the
    registry serves once pushed (the build's digest before), `imageid` the engine's id,
    `tags` one per line, `version`, `labels` (one `KEY=VALUE` per line), `metadata` the
    record as compact JSON. With `prefix` (several images in one run) each name starts with
    the image key (`backend-digest`).
    """
    facts = record.get("buildtasks")
    facts = facts if isinstance(facts, Mapping) else {}
    digest = str(record.get("containerimage.digest", ""))
    labels = facts.get("labels") if isinstance(facts.get("labels"), Mapping) else {}
    values = {
        "digest": str(facts.get("registry_digest") or digest),
        "imageid": str(record.get("containerimage.config.digest", digest)),
        "tags": "\n".join(str(t) for t in facts.get("tags") or ()),
        "version": str(facts.get("version", "")),
        "labels": "\n".join(f"{k}={v}" for k, v in labels.items()),
        "metadata": compact(record),
    }
    return {f"{key}-{name}" if prefix else name: value for name, value in values.items()}


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Summary:
    """What a release published, for `$GITHUB_STEP_SUMMARY`."""

    image: str
    ref: str
    platforms: tuple[str, ...]
    tags: tuple[str, ...]
    #: Severity → count of the vulnerability findings the scan reported.
    findings: Mapping[str, int]
    gate: tuple[str, ...]
    signer: str
    #: (step, seconds) in the order they ran.
    timings: Sequence[tuple[str, float]]
    pushed: bool = True


def summary_markdown(summary: Summary) -> str:
    """The job summary of one image's release as Markdown."""
    counts = ", ".join(f"{sev} {n}" for sev, n in summary.findings.items()) or "none"
    rows = [
        ("image", summary.image),
        ("digest", f"`{summary.ref}`"),
        ("platforms", ", ".join(summary.platforms)),
        ("tags", ", ".join(f"`{t}`" for t in summary.tags) if summary.pushed else "nothing pushed"),
        ("vulnerabilities", f"{counts} (gate: {','.join(summary.gate)})"),
        ("signed by", summary.signer if summary.pushed else "not signed (nothing pushed)"),
    ]
    lines = [f"### {summary.image}", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    if summary.timings:
        total = timing.total(summary.timings)
        lines += ["", "| step | seconds |", "| --- | ---: |"]
        lines += [
            f"| {'&emsp;' if step.startswith(timing.INSIDE) else ''}{step.strip()} | {seconds:.1f} |"
            for step, seconds in summary.timings
        ]
        lines.append(f"| **total** | **{total:.1f}** |")
    return "\n".join(lines) + "\n\n"
