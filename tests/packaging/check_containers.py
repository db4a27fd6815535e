#!/usr/bin/env python3
"""check_containers.py - lint of deploy/containers/*.Containerfile.

Usage: check_containers.py --tools DIR [--lib FILE]

No container engine runs here, so the images are never built in CI. This
checks what can be checked without one:
  - one Containerfile per installed tool (tools/meson.build), named after it;
  - multi-stage: a Debian build stage "AS build" and a Debian runtime stage;
  - every repository path a Containerfile copies or runs exists (scripts/...);
  - the build stage installs the Debian -dev package of every dependency()
    of the library and the tools (found through pkg-config and dpkg -S), runs
    meson setup / ninja / meson install, and the beacon's also builds a
    private wolfSSL (tuned or --lean) with scripts/build-tuned-wolfssl.sh
    and uses its prefix;
  - the runtime stage installs the package of every shared library the tool
    and libcloudtaser need directly (readelf + ldd + dpkg -S on the tools in
    --tools), or names it on a "# provides: PACKAGE" line;
  - the runtime stage runs as a numeric non-root USER, has ENTRYPOINT
    ["/usr/bin/TOOL"], runs TOOL --version at build time, cleans apt lists,
    and downloads nothing by hand (no ADD URL, curl, wget).
Exit status 0 when all checks pass, 1 otherwise.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CDIR = os.path.join(TOP, "deploy", "containers")
BASE_PACKAGES = {"libc6", "libgcc-s1"}   # in every Debian base image


# Every image is built against a wolfSSL of its own (the lean flavour):
# Debian's lacks the P-256 and AES fast paths (docs/PERFORMANCE.md).
LEAN_TOOLS = ("cloudtaser", "cloudtaser-beacon", "cloudtaser-bridge", "cloudtaser-operator")

def instructions(path):
    """[(INSTRUCTION, args, comment lines before it)] with continuations joined."""
    out, buf, comments = [], "", []
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not buf and line.strip().startswith("#"):
                comments.append(line.strip())
                continue
            if not line.strip() and not buf:
                continue
            if line.strip().startswith("#"):
                continue   # a comment inside a continued instruction
            buf += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                word, _, rest = buf.strip().partition(" ")
                out.append((word.upper(), rest.strip(), comments))
                buf, comments = "", []
    return out


def stages(instrs):
    st = []
    for ins in instrs:
        if ins[0] == "FROM":
            st.append([ins])
        elif st:
            st[-1].append(ins)
    return st


def apt_packages(stage):
    pk = set()
    for word, args, _ in stage:
        if word == "RUN":
            for m in re.finditer(r"apt-get install ([^&;|]*)", args):
                pk |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pk


def provides(stage):
    pk = set()
    for _, _, comments in stage:
        for c in comments:
            m = re.match(r"#\s*provides:\s*(\S+)", c)
            if m:
                pk.add(m.group(1))
    return pk


def installed_tools():
    with open(os.path.join(TOP, "tools", "meson.build")) as f:
        text = f.read()
    tools = []
    for m in re.finditer(r"executable\(\s*'([^']+)'(.*?)\)[ \t]*\n", text, re.S):
        if re.search(r"install:\s*true", m.group(2)):
            tools.append(m.group(1))
    return tools


def dev_packages():
    """{pkg-config name: Debian package} for every dependency() of the shipped code."""
    names = set()
    for rel in ("meson.build", "libcloudtaser/meson.build", "tools/meson.build"):
        with open(os.path.join(TOP, rel)) as f:
            names |= set(re.findall(r"dependency\(\s*'([^']+)'", f.read()))
    names -= {"threads", "cloudtaser"}
    out = {}
    for n in sorted(names):
        d = subprocess.run(["pkg-config", "--variable=pcfiledir", n], capture_output=True, text=True)
        if d.returncode != 0:
            out[n] = None
            continue
        pc = os.path.join(d.stdout.strip(), n + ".pc")
        out[n] = owner(pc)
    return out


def owner(path):
    for p in (path, os.path.realpath(path), "/usr" + path if path.startswith("/lib") else path):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


def needed(binary):
    r = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


def resolved(binary):
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return dict(re.findall(r"^\s*(\S+) => (\S+)", r.stdout, re.M))


def runtime_packages(tool_path, lib_path):
    """Debian packages of the libraries the tool and libcloudtaser load directly."""
    paths = resolved(tool_path)
    names = [n for n in needed(tool_path) if not n.startswith("libcloudtaser.so")]
    if lib_path:
        paths.update(resolved(lib_path))
        names += needed(lib_path)
    pk = {}
    for n in names:
        p = paths.get(n)
        pkg = owner(p) if p else None
        pk[n] = pkg
    return pk


def check_file(path, tool, tools_dir, lib, devpk, fails):
    name = os.path.basename(path)
    instrs = instructions(path)
    st = stages(instrs)
    if len(st) < 2:
        fails.append("%s: not a multi-stage build (%d stage)" % (name, len(st)))
        return
    args_default = {}
    for word, a, _ in instrs:
        if word == "ARG" and "=" in a:
            k, v = a.split("=", 1)
            args_default[k.strip()] = v.strip()
    for s in st:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args_default.get(m.group(1), "?"), s[0][1].split()[0])
        if not image.startswith("debian:"):
            fails.append("%s: stage from %s, not a Debian base" % (name, image))
    if not re.search(r"\bAS build$", st[0][0][1], re.I):
        fails.append("%s: the first stage must be 'AS build'" % name)
    build, final = st[0], st[-1]
    text = open(path).read()
    if re.search(r"^\s*ADD\s+https?://|\bcurl\b|\bwget\b", text, re.M | re.I):
        fails.append("%s: downloads by hand (ADD URL, curl or wget)" % name)
    # repository paths
    for word, a, _ in instrs:
        if word == "COPY" and "--from=" not in a:
            parts = shlex.split(a.replace("[", " ").replace("]", " ").replace(",", " "))
            for src in parts[:-1]:
                if not os.path.exists(os.path.join(TOP, src)):
                    fails.append("%s: COPY %s: no such path in the repository" % (name, src))
        if word == "RUN":
            for m in re.finditer(r"(?<![\w/.-])((?:scripts|deploy|tools|docs|bindings)/[\w./-]+)", a):
                if not os.path.exists(os.path.join(TOP, m.group(1))):
                    fails.append("%s: RUN uses %s, which does not exist" % (name, m.group(1)))
    brun = " ".join(a for w, a, _ in build if w == "RUN")
    for step in ("meson setup", "ninja -C", "meson install"):
        if step not in brun:
            fails.append("%s: the build stage does not run %s" % (name, step))
    bpk = apt_packages(build)
    for dep, pkg in devpk.items():
        if pkg is None:
            fails.append("%s: cannot find the Debian package of dependency('%s')" % (name, dep))
        elif pkg not in bpk:
            fails.append("%s: the build stage does not install %s (dependency('%s'))" % (name, pkg, dep))
    if tool in LEAN_TOOLS:
        m = re.search(r"scripts/build-tuned-wolfssl\.sh\s+(?:--lean\s+)?([^-\s]\S*)", brun)
        if not m:
            fails.append("%s: the image must build its wolfSSL (scripts/build-tuned-wolfssl.sh [--lean] PREFIX)" % name)
        elif "-Dwolfssl_prefix=" + m.group(1) not in brun:
            fails.append("%s: meson setup does not use the tuned wolfSSL prefix %s" % (name, m.group(1)))
        elif not any(w == "COPY" and "--from=build" in a and m.group(1) in a for w, a, _ in final):
            fails.append("%s: the runtime stage does not copy the tuned wolfSSL from %s" % (name, m.group(1)))
    rm = re.findall(r"rm -f ([^&;]*)", brun)
    if any("/usr/bin/%s " % tool in r + " " for r in rm):
        fails.append("%s: the build stage deletes its own tool" % name)
    # runtime stage
    users = [a for w, a, _ in final if w == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
        fails.append("%s: the runtime stage needs a numeric non-root USER (found %s)" % (name, users or "none"))
    eps = [a for w, a, _ in final if w == "ENTRYPOINT"]
    try:
        ep = json.loads(eps[-1]) if eps else None
    except ValueError:
        ep = None
    if ep != ["/usr/bin/" + tool]:
        fails.append("%s: ENTRYPOINT should be [\"/usr/bin/%s\"], is %s" % (name, tool, eps))
    frun = " ".join(a for w, a, _ in final if w == "RUN")
    if "/usr/bin/%s --version" % tool not in frun:
        fails.append("%s: the runtime stage should run %s --version (the image can load its libraries)" % (name, tool))
    for s in (build, final):
        for w, a, _ in s:
            if w == "RUN" and "apt-get install" in a and "rm -rf /var/lib/apt/lists/*" not in a:
                fails.append("%s: apt lists are not removed in the RUN that installs packages" % name)
    if tools_dir:
        fpk = apt_packages(final) | provides(final) | BASE_PACKAGES
        for libname, pkg in runtime_packages(os.path.join(tools_dir, tool), lib).items():
            if pkg is None:
                fails.append("%s: cannot find the package of %s" % (name, libname))
            elif pkg not in fpk:
                fails.append("%s: the runtime stage does not install %s (%s needs %s)" % (name, pkg, tool, libname))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", help="directory with the built tools (for their shared libraries)")
    ap.add_argument("--lib", help="the built libcloudtaser.so.N")
    a = ap.parse_args()
    fails = []
    tools = installed_tools()
    if not tools:
        fails.append("no installed executables found in tools/meson.build")
    files = {n[:-len(".Containerfile")]: os.path.join(CDIR, n) for n in os.listdir(CDIR)
             if n.endswith(".Containerfile")}
    for t in tools:
        if t not in files:
            fails.append("no deploy/containers/%s.Containerfile for the installed tool %s" % (t, t))
    for t in files:
        if t not in tools:
            fails.append("deploy/containers/%s.Containerfile: no such installed tool" % t)
    readme = os.path.join(CDIR, "README.md")
    if not os.path.isfile(readme) or "cannot be built" not in open(readme).read():
        fails.append("deploy/containers/README.md must say that the images cannot be built here")
    devpk = dev_packages()
    for t, path in sorted(files.items()):
        if t in tools:
            before = len(fails)
            check_file(path, t, a.tools, a.lib, devpk, fails)
            print("%s: %s" % (os.path.basename(path), "ok" if len(fails) == before else "FAILED"))
    for f in fails:
        print("FAIL: " + f)
    print("containers: %d Containerfiles, %d failures" % (len(files), len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
