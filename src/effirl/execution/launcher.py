"""Starts one fork server: namespaces and filesystem view first, then ``exec`` of the server's interpreter.

Run by :class:`effirl.execution.worker.Worker` as ``python -m effirl.execution.launcher ARGS_JSON``. Doing the
set-up here (with ``ctypes``) and then replacing this process by a fresh interpreter means the fork server,
whose memory every untrusted child inherits, never holds a native-call module.
"""

from __future__ import annotations

import json
import marshal
import os
import sys
from dataclasses import asdict

from effirl.execution import isolation


def main() -> None:
    args = json.loads(sys.argv[1])
    report = isolation.enter_worker_sandbox(args["isolation"], args["writable"], args["workdir"],
                                            args.get("readonly"), args.get("tmp_mb", 64),
                                            host_proc=args.get("host_proc", False))
    try:
        isolation.prctl(isolation.PR_SET_NO_NEW_PRIVS, 1)  # inherited by the server and every child
    except OSError as exc:
        report.problems.append(f"cannot set no_new_privs ({exc})")
    env = dict(os.environ)
    env["EFFIRL_ISOLATION"] = marshal.dumps(asdict(report)).hex()
    argv = args["argv"]
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
