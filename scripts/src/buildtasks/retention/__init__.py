"""Retention: delete old images from a registry without breaking any tag, index or signature.

* `policy`: what to keep, from `[tool.buildtasks.retention]` and each image's own table;
* `model`: what a registry holds (tags, manifests, their children, blobs and referrers);
* `plan`: the pure decision, keep or delete, each with its reason, and the bytes it frees;
* `oci`: any registry through the distribution API (plus the lab registry's own storage);
* `ghcr`: GitHub's container registry through the Packages REST API;
* `service`: inventory → plan → apply, the one path `docker.cleanup` and `docker.usage` share.
"""
