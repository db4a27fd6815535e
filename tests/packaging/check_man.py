#!/usr/bin/env python3
"""check_man.py - the man pages render and document what each tool's --help says.

Usage: check_man.py --tools DIR --man-src DIR [--installed DIR]

  --tools DIR      directory with the built or installed tools (every
                   executable named cloudtaser or cloudtaser-* is checked, so a
                   new tool without a man page fails)
  --man-src DIR    docs/man: one TOOL.1.scd per tool
  --installed DIR  optional: share/man/man1 of a `meson install`; every page
                   must be installed there, and be the page rendered here

For each tool: its --help (and, for `cloudtaser`, the --help of every command
listed under "Commands:") is read, and everything it names must appear in the
rendered man page: every long option (--x), every environment variable
($NAME or CLOUDTASER_/VAULT_/KUBE* names), every signal (SIGxxx) and every
exit status listed after "Exit status". So --help is a subset of the man
page; the other way round is only reported (a man page may say more). The
page must render with scdoc without error, carry .TH TOOL 1 and the sections
NAME, SYNOPSIS, OPTIONS and EXIT STATUS.

With --self-test the check also runs once against a stand-in for the first
tool whose --help names one more option, environment variable, signal and
exit status, and must find exactly those four: the checker itself can fail.

Exit status 0 when every check passes, 1 otherwise (each failure is listed).
"""
import argparse
import contextlib
import io
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile

OPT = re.compile(r"(?<![\w-])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
ENV = re.compile(r"\$([A-Z][A-Z0-9_]{2,})|\b((?:CLOUDTASER|VAULT|KUBE[A-Z]*)_[A-Z0-9_]+)\b")
SIG = re.compile(r"\b(SIG[A-Z]{2,}[0-9]*)\b")
SECTIONS = ("NAME", "SYNOPSIS", "OPTIONS", "EXIT STATUS")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout, p.stderr


def help_texts(tool):
    """[(label, text)] for the tool and, for cloudtaser, each command."""
    rc, out, err = run([tool, "--help"])
    name = os.path.basename(tool)
    if rc != 0 or not out.strip():
        raise RuntimeError("%s --help: exit %d, %d bytes on stdout: %s" % (name, rc, len(out), err.strip()))
    texts = [(name + " --help", out)]
    # Commands: "  source register     register a cluster..." under "Commands:"
    m = re.search(r"^Commands:\n((?:[ \t]+\S.*\n?)+)", out, re.M)
    if m:
        for line in m.group(1).splitlines():
            words = re.match(r"\s+([a-z][a-z-]*(?: [a-z][a-z-]*)?)\s{2,}\S", line)
            if not words:
                continue
            cmd = words.group(1).split()
            rc, sub, err = run([tool] + cmd + ["--help"])
            label = "%s %s --help" % (name, " ".join(cmd))
            if rc != 0 or not sub.strip():
                raise RuntimeError("%s: exit %d: %s" % (label, rc, err.strip()))
            texts.append((label, sub))
    return texts


def exit_codes(text):
    """Codes listed after "Exit status" (to the end of that paragraph), e.g.
    "Exit status: 0 success, 1 ..." or one "  0  stopped ..." per line."""
    codes = set()
    for m in re.finditer(r"^Exit status:?(.*?)(?:\n\s*\n|\Z)", text, re.M | re.S | re.I):
        codes |= set(re.findall(r"(?:^|[:,])\s*(\d{1,3})\s+[A-Za-z]", m.group(1), re.M))
    return codes


def roff_text(roff):
    """Plain text of scdoc's roff output, good enough to search in."""
    t = re.sub(r"\\f[BIRP]", "", roff)
    t = t.replace("\\&", "").replace("\\-", "-").replace("\\(aq", "'").replace("\\*(Aq", "'")
    t = t.replace("\\e", "\\").replace("\\\\", "\\")
    return t


def man_sections(roff):
    return set(re.findall(r'^\.SH "?([A-Z ]+?)"?\s*$', roff, re.M))


def man_exit_codes(roff):
    m = re.search(r"^\.SH EXIT STATUS\s*$(.*?)(?=^\.SH |\Z)", roff, re.M | re.S)
    if not m:
        return set()
    # items are bold numbers at the start of a line: \fB0\fR
    return set(re.findall(r"^\\fB(\d{1,3})\\fR\s*$", m.group(1), re.M))


def check_tool(tool, man_src, installed, failures, notes):
    name = os.path.basename(tool)
    src = os.path.join(man_src, name + ".1.scd")
    if not os.path.isfile(src):
        failures.append("%s: no man page source %s" % (name, src))
        return
    with open(src, "rb") as f:
        p = subprocess.run(["scdoc"], input=f.read(), capture_output=True, timeout=20)
    if p.returncode != 0 or not p.stdout:
        failures.append("%s: scdoc failed: %s" % (src, p.stderr.decode(errors="replace").strip()))
        return
    roff = p.stdout.decode()
    if not re.search(r'^\.TH "%s" "1"' % re.escape(name), roff, re.M):
        failures.append("%s: no .TH \"%s\" \"1\" line (first line of the .scd must be %s(1))" % (src, name, name))
    missing_sections = [s for s in SECTIONS if s not in man_sections(roff)]
    if missing_sections:
        failures.append("%s: missing sections %s" % (src, ", ".join(missing_sections)))
    text = roff_text(roff)

    try:
        texts = help_texts(tool)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        failures.append(str(e))
        return
    help_opts, help_env, help_sigs, help_codes = set(), set(), set(), set()
    for label, h in texts:
        help_opts |= set(OPT.findall(h))
        for a, b in ENV.findall(h):
            help_env.add(a or b)
        help_sigs |= set(SIG.findall(h))
        help_codes |= exit_codes(h)
    man_opts = set(OPT.findall(text))
    for o in sorted(help_opts):
        if o not in man_opts:
            failures.append("%s: option %s is in --help but not in the man page %s" % (name, o, src))
    for e in sorted(help_env):
        if not re.search(r"\b%s\b" % re.escape(e), text):
            failures.append("%s: environment variable %s is in --help but not in the man page" % (name, e))
    for s in sorted(help_sigs):
        if s not in text:
            failures.append("%s: signal %s is in --help but not in the man page" % (name, s))
    man_codes = man_exit_codes(roff)
    for c in sorted(help_codes):
        if c not in man_codes:
            failures.append("%s: exit status %s is in --help but not in the man page's EXIT STATUS" % (name, c))
    if not help_codes:
        failures.append("%s: --help lists no exit status" % name)
    extra = sorted(man_opts - help_opts)
    if extra:
        notes.append("%s: the man page also names %s (not in --help)" % (name, " ".join(extra)))

    if installed:
        page = os.path.join(installed, name + ".1")
        if not os.path.isfile(page):
            failures.append("%s: not installed as %s" % (name, page))
        else:
            with open(page) as f:
                inst = f.read()
            strip = lambda r: re.sub(r"^\.TH .*$", "", r, flags=re.M)
            if strip(inst) != strip(roff):
                failures.append("%s: the installed page differs from docs/man/%s.1.scd" % (page, name))
    print("%s: %d help text(s), %d options, %d environment variables, %d signals, exit statuses %s: %s"
          % (name, len(texts), len(help_opts), len(help_env), len(help_sigs),
             ",".join(sorted(help_codes)) or "-", "documented" if not [f for f in failures if f.startswith(name + ":")] else "DRIFT"))


def self_test(tool, man_src):
    """A stand-in for `tool` whose --help says more than the man page."""
    name = os.path.basename(tool)
    with tempfile.TemporaryDirectory() as d:
        fake = os.path.join(d, name)
        with open(fake, "w") as f:
            f.write("#!/bin/sh\n"
                    "%s \"$@\" || exit $?\n"
                    "[ \"$1\" = --help ] || exit 0\n"
                    "echo '  --brand-new-flag   not documented anywhere'\n"
                    "echo '  reads $CLOUDTASER_BRAND_NEW and stops on SIGUSR2'\n"
                    "echo\n"
                    "echo 'Exit status: 97 something new.'\n" % shlex.quote(os.path.abspath(tool)))
        os.chmod(fake, stat.S_IRWXU)
        failures, notes = [], []
        with contextlib.redirect_stdout(io.StringIO()):
            check_tool(fake, man_src, None, failures, notes)
    want = ["--brand-new-flag", "CLOUDTASER_BRAND_NEW", "SIGUSR2", "exit status 97"]
    found = [w for w in want if any(w in f for f in failures)]
    if found != want or len(failures) != len(want):
        return ["self-test: expected exactly %s to be reported, got: %s" % (want, failures)]
    print("self-test: an undocumented option, variable, signal and exit status are all caught")
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", required=True)
    ap.add_argument("--man-src", required=True)
    ap.add_argument("--installed")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    tools = sorted(os.path.join(a.tools, n) for n in os.listdir(a.tools)
                   if re.fullmatch(r"cloudtaser(-[a-z]+)*", n)
                   and os.access(os.path.join(a.tools, n), os.X_OK)
                   and os.path.isfile(os.path.join(a.tools, n)))
    failures, notes = [], []
    if not tools:
        failures.append("no tools found in %s" % a.tools)
    for t in tools:
        check_tool(t, a.man_src, a.installed, failures, notes)
    if a.self_test and tools:
        failures += self_test(tools[0], a.man_src)
    for n in notes:
        print("note: " + n)
    for f in failures:
        print("FAIL: " + f)
    print("man pages: %d tools, %d failures" % (len(tools), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
