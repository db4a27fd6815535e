#!/usr/bin/env python3
"""check_systemd.py - checks deploy/systemd/*.service.

Usage: check_systemd.py --units DIR --tools DIR [--man DIR] [--self-test]

--man is a man directory holding man1/ (share/man of a `meson install`).

1. A small parser reads each unit (sections, repeated keys, continuation
   lines) and checks the hardening the project promises (docs/OPERATIONS.md):
   DynamicUser, ProtectSystem=strict, ProtectHome, PrivateTmp,
   NoNewPrivileges, an empty or minimal CapabilityBoundingSet,
   RestrictAddressFamilies limited to IP and local sockets,
   SystemCallFilter=@system-service, MemoryDenyWriteExecute, LockPersonality,
   SIGTERM with a stop timeout; for the beacon CAP_NET_BIND_SERVICE as its only
   (ambient) capability, LimitNOFILE=1048576, ExecReload sending SIGHUP and a
   TimeoutStopSec longer than its drain timeout (read from --help or the
   unit's own --drain-timeout); for the bridge LimitMEMLOCK and the
   StateDirectory holding CLOUDTASER_STORE.
2. Every option on an ExecStart= line exists in that tool's --help (the unit
   cannot drift from the tool).
3. `systemd-analyze verify` on copies whose /usr/bin paths point at --tools
   (and MANPATH at --man, so Documentation=man: is checked too) must print
   nothing, and `systemd-analyze security --offline=yes` must rate each unit
   2.0 or better ("OK"). If systemd-analyze is missing, steps 1-2 still run and
   the output says that step 3 did not.

--self-test also checks a broken copy of the beacon unit (DynamicUser gone,
a stop timeout shorter than the drain, a misspelt directive, an option the
beacon does not have) and requires all four to be caught.

Exit status 0 when all checks pass, 1 otherwise.
"""
import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile

MAX_EXPOSURE = 2.0


def parse_unit(path):
    """{section: {key: [values]}}; raises ValueError on a malformed line."""
    sections, cur = {}, None
    with open(path) as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        m = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if m:
            cur = sections.setdefault(m.group(1), {})
            continue
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)", line)
        if not m or cur is None:
            raise ValueError("%s: cannot parse line %d: %r" % (path, i, line))
        cur.setdefault(m.group(1), []).append(m.group(2))
    return sections


def seconds(v):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", v.strip())
    if not m:
        raise ValueError("cannot read a time span from %r" % v)
    n = int(m.group(1))
    return n * 60 if m.group(2) in ("min", "m") else n


def tool_help(tools, name):
    p = subprocess.run([os.path.join(tools, name), "--help"], capture_output=True, text=True, timeout=20)
    if p.returncode != 0:
        raise RuntimeError("%s --help: exit %d" % (name, p.returncode))
    return p.stdout


def check_unit(path, tools, fails):
    name = os.path.basename(path)
    try:
        u = parse_unit(path)
    except (OSError, ValueError) as e:
        fails.append(str(e))
        return None
    svc = u.get("Service", {})

    def one(key):
        v = svc.get(key)
        return v[-1] if v else None

    def need(key, want, why=""):
        got = one(key)
        if got != want:
            fails.append("%s: %s=%s expected, found %s%s" % (name, key, want, got, why))

    for sec in ("Unit", "Service", "Install"):
        if sec not in u:
            fails.append("%s: no [%s] section" % (name, sec))
    for key, want in (("DynamicUser", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                      ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                      ("MemoryDenyWriteExecute", "yes"), ("LockPersonality", "yes"),
                      ("KillSignal", "SIGTERM"), ("RestrictNamespaces", "yes"),
                      ("SystemCallArchitectures", "native")):
        need(key, want)
    fams = set(" ".join(svc.get("RestrictAddressFamilies", [])).split())
    if not fams or not fams <= {"AF_INET", "AF_INET6", "AF_UNIX"}:
        fails.append("%s: RestrictAddressFamilies must allow only AF_INET AF_INET6 AF_UNIX, found %s"
                     % (name, sorted(fams) or "nothing"))
    if "@system-service" not in " ".join(svc.get("SystemCallFilter", [])).split():
        fails.append("%s: SystemCallFilter=@system-service missing" % name)
    if not one("TimeoutStopSec"):
        fails.append("%s: no TimeoutStopSec" % name)

    execs = svc.get("ExecStart", [])
    if len(execs) != 1:
        fails.append("%s: expected one ExecStart=, found %d" % (name, len(execs)))
        return u
    argv = execs[0].split()
    tool = os.path.basename(argv[0])
    if argv[0] != "/usr/bin/" + tool or tool + ".service" != name:
        fails.append("%s: ExecStart should run /usr/bin/%s, runs %s" % (name, name[:-8], argv[0]))
        return u
    try:
        help_text = tool_help(tools, tool)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        fails.append("%s: %s" % (name, e))
        return u
    known = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))
    for a in argv[1:]:
        if a.startswith("--") and a not in known:
            fails.append("%s: ExecStart uses %s, which %s --help does not list" % (name, a, tool))

    if tool == "cloudtaser-beacon":
        need("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE")
        need("AmbientCapabilities", "CAP_NET_BIND_SERVICE")
        need("LimitNOFILE", "1048576")
        reload = one("ExecReload") or ""
        if not re.fullmatch(r"(/usr)?/bin/kill -(HUP|s HUP|SIGHUP) \$MAINPID", reload):
            fails.append("%s: ExecReload should send SIGHUP to $MAINPID, is %r" % (name, reload))
        drain_ms = None
        if "--drain-timeout" in argv:
            drain_ms = int(argv[argv.index("--drain-timeout") + 1])
        else:
            m = re.search(r"--drain-timeout MS[^\n]*\(default (\d+)\)", help_text)
            drain_ms = int(m.group(1)) if m else None
        if drain_ms is None:
            fails.append("%s: cannot find the drain timeout in the unit or in --help" % name)
        elif one("TimeoutStopSec") and seconds(one("TimeoutStopSec")) * 1000 <= drain_ms:
            fails.append("%s: TimeoutStopSec=%s is not longer than the drain timeout (%d ms)"
                         % (name, one("TimeoutStopSec"), drain_ms))
        else:
            print("%s: TimeoutStopSec %s > drain timeout %d ms" % (name, one("TimeoutStopSec"), drain_ms))
    elif tool == "cloudtaser-bridge":
        need("CapabilityBoundingSet", "")
        if not one("LimitMEMLOCK"):
            fails.append("%s: no LimitMEMLOCK (the bridge locks key pages)" % name)
        state = one("StateDirectory")
        env = " ".join(svc.get("Environment", []))
        m = re.search(r"CLOUDTASER_STORE=(\S+)", env)
        if not state:
            fails.append("%s: no StateDirectory for the SQLite store" % name)
        elif not m or not m.group(1).startswith("/var/lib/%s/" % state):
            fails.append("%s: CLOUDTASER_STORE should be in /var/lib/%s/" % (name, state))
    else:
        fails.append("%s: no checks known for %s" % (name, tool))
    return u


def analyze(units, tools, man, fails):
    sa = shutil.which("systemd-analyze")
    if not sa:
        print("systemd-analyze not found: only the parser checks ran (install Debian's systemd package)")
        return
    with tempfile.TemporaryDirectory() as d:
        copies = []
        for path in units:
            with open(path) as f:
                text = f.read()
            text = re.sub(r"/usr/bin/(cloudtaser[a-z-]*)", lambda m: os.path.join(os.path.abspath(tools), m.group(1)), text)
            c = os.path.join(d, os.path.basename(path))
            with open(c, "w") as f:
                f.write(text)
            copies.append(c)
        env = dict(os.environ)
        args = [sa, "verify"]
        if man and shutil.which("man"):
            env["MANPATH"] = os.path.abspath(man)
        else:
            args.append("--man=no")
            print("systemd-analyze verify: Documentation=man: not checked (%s)"
                  % ("no man program" if man else "no --man directory"))
        p = subprocess.run(args + copies, capture_output=True, text=True, env=env, timeout=60)
        out = (p.stdout + p.stderr).strip()
        if p.returncode != 0 or out:
            fails.append("systemd-analyze verify (exit %d): %s" % (p.returncode, out))
        else:
            print("systemd-analyze verify: %d units, no complaint" % len(copies))
        for c in copies:
            p = subprocess.run([sa, "security", "--offline=yes", c], capture_output=True, text=True, timeout=60)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", p.stdout)
            if not m:
                fails.append("systemd-analyze security %s: no rating (exit %d): %s"
                             % (os.path.basename(c), p.returncode, p.stderr.strip()))
            elif float(m.group(1)) > MAX_EXPOSURE:
                fails.append("%s: exposure %s %s, above %.1f" % (os.path.basename(c), m.group(1), m.group(2), MAX_EXPOSURE))
            else:
                print("%s: systemd-analyze security exposure %s %s" % (os.path.basename(c), m.group(1), m.group(2)))


def self_test(units_dir, tools, man):
    src = os.path.join(units_dir, "cloudtaser-beacon.service")
    with open(src) as f:
        text = f.read()
    bad = text.replace("DynamicUser=yes\n", "").replace("TimeoutStopSec=45", "TimeoutStopSec=20")
    bad = bad.replace("ProtectHome=yes", "ProtectHomee=yes\nProtectHome=yes")
    bad = bad.replace("--metrics 127.0.0.1:9443", "--metrics 127.0.0.1:9443 --no-such-flag")
    if bad == text:
        return ["self-test: could not mutate the beacon unit"]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "cloudtaser-beacon.service")
        with open(path, "w") as f:
            f.write(bad)
        fails = []
        with contextlib.redirect_stdout(io.StringIO()):
            check_unit(path, tools, fails)
            analyze([path], tools, man, fails)
    want = ["DynamicUser=yes expected", "not longer than the drain timeout", "ProtectHomee",
            "--no-such-flag"]
    missing = [w for w in want if not any(w in f for f in fails)]
    if missing:
        return ["self-test: a broken unit was not caught for %s (got %s)" % (missing, fails)]
    print("self-test: a broken beacon unit is caught (%d complaints)" % len(fails))
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", required=True)
    ap.add_argument("--tools", required=True)
    ap.add_argument("--man")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    units = sorted(os.path.join(a.units, n) for n in os.listdir(a.units) if n.endswith(".service"))
    fails = []
    names = {os.path.basename(u) for u in units}
    for want in ("cloudtaser-beacon.service", "cloudtaser-bridge.service"):
        if want not in names:
            fails.append("missing %s" % want)
    for u in units:
        check_unit(u, a.tools, fails)
    analyze(units, a.tools, a.man, fails)
    if a.self_test:
        fails += self_test(a.units, a.tools, a.man)
    for f in fails:
        print("FAIL: " + f)
    print("systemd units: %d units, %d failures" % (len(units), len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
