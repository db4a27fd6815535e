#!/usr/bin/env python3
"""check_examples.py - the deployment examples stay consistent with the code.

Usage: check_examples.py --tools DIR

Neither Terraform nor Argo CD runs here, so this checks what can be checked:
  examples/argocd/application.yaml: an Argo CD Application whose source path
    is the operator chart in this repository, whose Helm values are exactly the
    one value operator.beacon.address, and with which the chart renders
    (minihelm) to a Deployment passing that address to --beacon;
  examples/terraform/*.tf: balanced braces, brackets and quotes; the
    kubernetes_namespace data source for kube-system and its metadata[0].uid;
    every `cloudtaser ...` command of a local-exec provisioner names a command
    and options that `cloudtaser` (in --tools) has.
Exit status 0 when all checks pass, 1 otherwise.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minihelm  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def check_argocd(fails):
    path = os.path.join(TOP, "examples", "argocd", "application.yaml")
    with open(path) as f:
        app = yaml.safe_load(f)
    if app.get("apiVersion") != "argoproj.io/v1alpha1" or app.get("kind") != "Application":
        fails.append("argocd: not an argoproj.io/v1alpha1 Application")
        return
    src = app["spec"]["source"]
    chart = os.path.join(TOP, src.get("path", ""))
    if not os.path.isfile(os.path.join(chart, "Chart.yaml")):
        fails.append("argocd: source.path %s is not a chart in this repository" % src.get("path"))
        return
    values = flatten(yaml.safe_load(src["helm"]["values"]))
    if list(values) != ["operator.beacon.address"]:
        fails.append("argocd: the values should be exactly operator.beacon.address, are %s" % list(values))
        return
    try:
        docs = minihelm.documents(minihelm.render_chart(chart, values, release=src["helm"].get("releaseName", "cloudtaser"),
                                                        namespace=app["spec"]["destination"]["namespace"]))
    except minihelm.TemplateError as e:
        fails.append("argocd: the chart does not render with these values: %s" % e)
        return
    deps = [d for _, d in docs if d["kind"] == "Deployment"]
    args = deps[0]["spec"]["template"]["spec"]["containers"][0]["args"] if deps else []
    if "--beacon" not in args or args[args.index("--beacon") + 1] != values["operator.beacon.address"]:
        fails.append("argocd: the rendered operator does not get --beacon %s" % values["operator.beacon.address"])
    else:
        print("argocd: Application renders the operator chart with --beacon %s (%d manifests)"
              % (values["operator.beacon.address"], len(docs)))


def help_of(tools, argv):
    p = subprocess.run([os.path.join(tools, "cloudtaser")] + argv + ["--help"], capture_output=True,
                       text=True, timeout=20)
    return p.returncode, p.stdout


def check_terraform(tools, fails):
    files = sorted(glob.glob(os.path.join(TOP, "examples", "terraform", "*.tf")))
    if not files:
        fails.append("terraform: no .tf files")
        return
    text_all = ""
    for path in files:
        with open(path) as f:
            text = f.read()
        text_all += text
        code = re.sub(r"#.*", "", text)
        code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', code)   # strings (their ${} may hold braces)
        for o, c in ("{}", "[]", "()"):
            if code.count(o) != code.count(c):
                fails.append("terraform: %s: unbalanced %s%s" % (os.path.basename(path), o, c))
        if text.count('"') % 2:
            fails.append("terraform: %s: unbalanced quotes" % os.path.basename(path))
    if not re.search(r'data\s+"kubernetes_namespace"\s+"(\w+)"\s*\{\s*metadata\s*\{\s*name\s*=\s*"kube-system"', text_all):
        fails.append("terraform: no kubernetes_namespace data source for kube-system")
    if "metadata[0].uid" not in text_all:
        fails.append("terraform: the fingerprint (metadata[0].uid) is not used")
    commands = re.findall(r'command\s*=\s*"(cloudtaser [^"]*)"', text_all)
    if not any(c.startswith("cloudtaser source register") for c in commands):
        fails.append("terraform: no `cloudtaser source register` command")
    union = set()
    for cmd in commands:
        words = re.sub(r"\$\{[^}]*\}", "VALUE", cmd).split()[1:]
        sub = [w for w in words[:2] if not w.startswith("-")]
        rc, h = help_of(tools, sub)
        if rc != 0:
            fails.append("terraform: `cloudtaser %s --help` failed: the command does not exist" % " ".join(sub))
            continue
        known = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", h))
        union |= known
        for w in words:
            if w.startswith("--") and w not in known:
                fails.append("terraform: `%s` uses %s, which cloudtaser %s does not have" % (cmd, w, " ".join(sub)))
    # options built elsewhere (a local spliced into a command) must exist too
    for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', re.sub(r"#.*", "", text_all)):
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", lit):
            if union and flag not in union:
                fails.append("terraform: %s (in \"%s\") is not an option of the cloudtaser commands used" % (flag, lit[:60]))
    print("terraform: %d files, %d cloudtaser commands checked against --help" % (len(files), len(commands)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", required=True)
    a = ap.parse_args()
    fails = []
    check_argocd(fails)
    check_terraform(a.tools, fails)
    for f in fails:
        print("FAIL: " + f)
    print("examples: %d failures" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
