#!/usr/bin/python3
"""Runs a command under a seccomp profile in Docker's JSON format, as runc would load it, so
that deploy/seccomp/apus.json can be checked against the real apus without a container engine:
    /usr/bin/python3 IntegrationTests/deploy/seccomp_exec.py PROFILE COMMAND [ARG...]
Needs libseccomp's Python binding (Debian: python3-seccomp). Reads only what the profile uses:
defaultAction, defaultErrnoRet and syscalls[] of names, action, errnoRet and args.
"""

import json
import os
import sys

import seccomp

OPS = {"SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT,
       "SCMP_CMP_LE": seccomp.LE, "SCMP_CMP_GT": seccomp.GT, "SCMP_CMP_GE": seccomp.GE,
       "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ}


def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno_ret)
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    raise SystemExit(f"seccomp_exec: action {name} is not supported here")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        profile = json.load(f)
    default_errno = profile.get("defaultErrnoRet", 1)
    f = seccomp.SyscallFilter(defaction=action(profile["defaultAction"], default_errno))
    rules = 0
    for rule in profile["syscalls"]:
        act = action(rule["action"], rule.get("errnoRet", default_errno))
        args = [seccomp.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0))
                for a in rule.get("args", [])]
        for name in rule["names"]:
            try:
                f.add_rule(act, name, *args)
            except (ValueError, RuntimeError) as e:
                # A name this architecture lacks (vm86 on arm64): runc skips it too.
                print(f"seccomp_exec: {name} skipped: {e}", file=sys.stderr)
                continue
            rules += 1
    f.load()
    print(f"seccomp_exec: {rules} rules of {sys.argv[1]} loaded", file=sys.stderr)
    os.execvp(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
