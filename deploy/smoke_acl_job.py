"""Runs the ACL bootstrap Job's commands, as rendered, against the real broker.

A Job cannot run here, but its containers' commands can: this starts
`strom serve` on loopback with the authorizer on, then runs each init
container's args and the last container's, in the kubelet's order, with the
`strom` binary, their secretKeyRef env vars filled in (a SCRAM password), and
the bootstrap address moved to the local broker. Each must exit 0, and the
ACLs the values asked for must then be listed by the broker.

    python deploy/smoke_acl_job.py STROM_BINARY RENDERED.yaml [--without-command-config]

--without-command-config drops --command-config and serves PLAINTEXT with
User:ANONYMOUS as the super user, for a broker whose CLI has `strom acl` and
`strom user` but no --command-config yet (the acl branch alone). With it the
broker's own listener is SASL_PLAINTEXT with a PLAIN admin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import yaml

from smoke_env import free_port, http_status

ADMIN_PASSWORD = "admin-secret"


def job_containers(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        job = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Job")
    spec = job["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def main(binary: str, rendered: str, without_command_config: bool) -> int:
    containers = job_containers(rendered)
    workdir = tempfile.mkdtemp(prefix="strom-smoke-acl-")
    kafka, admin = free_port(), free_port()
    env = {"PATH": "/usr/bin:/bin", "STROM_LOG_DIRS": os.path.join(workdir, "data"),
           "STROM_ADMIN_HTTP_LISTENER": f"127.0.0.1:{admin}",
           "STROM_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}
    args = [binary, "serve", "--listeners", f"INSIDE://127.0.0.1:{kafka}", "--override", "gateway.listener="]
    command_config = os.path.join(workdir, "command.properties")
    if without_command_config:
        env["STROM_LISTENER_SECURITY_PROTOCOL_MAP"] = "INSIDE:PLAINTEXT"
        env["STROM_SUPER_USERS"] = "User:ANONYMOUS"
    else:
        env["STROM_LISTENER_SECURITY_PROTOCOL_MAP"] = "INSIDE:SASL_PLAINTEXT"
        env["STROM_SUPER_USERS"] = "User:admin"
        env["STROM_SASL_ENABLED_MECHANISMS"] = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
        env["JAAS"] = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="{ADMIN_PASSWORD}";'
        args += ["--override", "listener.name.inside.plain.sasl.jaas.config=${env:JAAS}"]
        with open(command_config, "w", encoding="utf-8") as f:
            f.write("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                    "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="admin" password="{ADMIN_PASSWORD}";\n')
    problems: list[str] = []
    stderr_path = os.path.join(workdir, "stderr.log")
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, env=env, cwd=workdir, stdout=err, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http_status(admin, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            problems.append(f"/readyz never answered 200 (exit code {proc.poll()})")
        wanted_acls = 0
        for ct in [] if problems else containers:
            cargs = list(ct["args"])
            if "-b" in cargs:
                cargs[cargs.index("-b") + 1] = f"127.0.0.1:{kafka}"
            if "--command-config" in cargs:
                i = cargs.index("--command-config")
                if without_command_config:
                    del cargs[i:i + 2]
                else:
                    cargs[i + 1] = command_config
            cenv = {"PATH": "/usr/bin:/bin"}
            for e in ct.get("env", []):
                cenv[e["name"]] = e.get("value", "scram-password-from-the-secret")
            if cargs[:2] == ["acl", "create"]:
                principals = sum(1 for a in cargs if a in ("--allow-principal", "--deny-principal"))
                wanted_acls += principals * sum(1 for a in cargs if a == "--operation")
            if cargs[:2] == ["acl", "list"]:
                cargs += ["--output", "json"]
            r = subprocess.run([binary, *cargs], env=cenv, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                problems.append(f"container {ct['name']}: strom {' '.join(cargs)}: exit {r.returncode}: "
                                f"{r.stderr.strip()[-300:]}")
                continue
            if cargs[:2] == ["acl", "list"]:
                lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
                try:
                    listed = json.loads(r.stdout) if r.stdout.strip().startswith("[") else [json.loads(ln) for ln in lines]
                except ValueError:
                    listed = lines
                print(f"  acl list: {len(listed)} ACLs, {wanted_acls} wanted")
                if len(listed) != wanted_acls:
                    problems.append(f"acl list shows {len(listed)} ACLs, the values create {wanted_acls}: {r.stdout[:500]}")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(stderr_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    for p_ in problems:
        print(f"  {p_}")
    if problems:
        print("  broker log (last lines):")
        for line in log.splitlines()[-10:]:
            print(f"    {line}")
    subprocess.run(["rm", "-rf", workdir], check=False)
    print(f"{'FAIL' if problems else 'ok'}: ACL bootstrap Job's commands: {rendered}")
    return 1 if problems else 0


if __name__ == "__main__":
    rest = [a for a in sys.argv[1:] if a != "--without-command-config"]
    if len(rest) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(rest[0], rest[1], "--without-command-config" in sys.argv[1:]))
