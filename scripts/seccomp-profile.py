#!/usr/bin/env python3
"""Writes ringgate's seccomp profile: a container runtime's default profile, resolved for
ringgate's container, plus io_uring.

    python3 scripts/seccomp-profile.py DEFAULT.json > helm/ringgate/seccomp/ringgate-io-uring.json

DEFAULT.json is the runtime default in Docker's format (`profiles/seccomp/default.json` of
moby; `names`, `includes`/`excludes` by capability and architecture, an `archMap`). The
shipped profile was made from Docker 20.10.24's, as packaged by Debian 12
(`apt-get download golang-github-docker-docker-dev`, file
usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json).

Kubelets hand a Localhost profile to the runtime as it is, and containerd reads it as a
plain OCI `LinuxSeccomp` (it ignores `includes`, `excludes` and `archMap`, so conditional
rules would all apply at once). The output is therefore plain OCI, with every condition
decided here for the container the chart runs:

- no capabilities (the chart drops ALL): rules that need a capability are left out, rules
  that apply without one are kept;
- x86-64 and arm64 nodes: rules for other architectures are left out; the filter lists both
  families (a name unknown to the node's architecture is skipped by the runtime);
- a kernel of at least 5.12 (what io_uring without locked memory needs): `minKernel` holds.

Then io_uring_setup, io_uring_enter and io_uring_register are allowed.
"""

from __future__ import annotations

import json
import sys

ARCHES = {"amd64", "x86", "x32", "arm64", "arm"}
ARCHITECTURES = [
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
]
IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]


def applies(rule: dict) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("caps"):
        return False
    if inc.get("arches") and not ARCHES & set(inc["arches"]):
        return False
    if exc.get("arches") and ARCHES <= set(exc["arches"]):
        return False
    return True


def resolve(default: dict) -> dict:
    allowed: set[str] = set()
    special: list[dict] = []
    for rule in default["syscalls"]:
        if not applies(rule):
            continue
        out = {"names": sorted(rule["names"]), "action": rule["action"]}
        if rule.get("args"):
            out["args"] = [
                {
                    "index": a["index"],
                    "value": a["value"],
                    "valueTwo": a.get("valueTwo", 0),
                    "op": a["op"],
                }
                for a in rule["args"]
            ]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        if out["action"] == "SCMP_ACT_ALLOW" and "args" not in out:
            allowed.update(out["names"])
        else:
            special.append(out)
    allowed.update(IO_URING)
    return {
        "defaultAction": default["defaultAction"],
        "defaultErrnoRet": default.get("defaultErrnoRet", 1),
        "architectures": ARCHITECTURES,
        "syscalls": [{"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"}, *special],
    }


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        profile = resolve(json.load(f))
    json.dump(profile, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
