"""minihelm.py - renders this project's Helm charts without Helm.

Helm is not in the package registries this project can use, so the charts in
deploy/helm/ are written in a small subset of Helm's Go-template language and
this module renders exactly that subset, failing loudly on anything else (so a
template cannot silently use syntax that is not checked here):

  {{ .Values.a.b }}  {{ .Release.Name }}  {{ .Release.Namespace }}
  {{ .Release.Service }}  {{ .Chart.Name }}  {{ .Chart.Version }}  {{ .Chart.AppVersion }}
  {{- if COND }} ... {{- else if COND }} ... {{- else }} ... {{- end }}
  pipelines with |, parentheses, string and integer literals, and the
  functions required, default, quote, not, and, or, eq, ne, toYaml, indent,
  nindent, fail
  {{/* comments */}}, and the whitespace trimming of {{- and -}}

Semantics follow Go's text/template and Helm's sprig functions for these
cases: truth is Go's (false, 0, "", nil and empty collections are false),
`required` fails on nil or "", `default` replaces an empty value, `quote`
double-quotes with escapes, `toYaml` drops the final newline. One deliberate
difference: a field that does not exist is an error here (Helm renders it
empty), which catches misspelt value names.
"""
import json
import os
import re

import yaml


class TemplateError(Exception):
    pass


_ACTION = re.compile(r"\{\{(-[ \t\r\n])?[ \t\r\n]*(.*?)[ \t\r\n]*([ \t\r\n]-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+)|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)'
                    r'|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[()|]))')


def truth(v):
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return True


def to_text(v):
    if v is None:
        raise TemplateError("a nil value would print as <no value>")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    raise TemplateError("cannot print a %s (use toYaml)" % type(v).__name__)


def _to_yaml(v):
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(n, s):
    pad = " " * int(n)
    return "\n".join(pad + line for line in to_text(s).split("\n"))


def _fail(msg):
    raise TemplateError(to_text(msg))


def _required(msg, v):
    if v is None or v == "":
        raise TemplateError(to_text(msg))
    return v


FUNCS = {
    "required": _required,
    "default": lambda d, v: v if truth(v) else d,
    "quote": lambda v: json.dumps(to_text(v)),
    "not": lambda v: not truth(v),
    "and": lambda *a: next((x for x in a if not truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truth(x)), a[-1]),
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "toYaml": _to_yaml,
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "fail": _fail,
}


def _tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError("unsupported template syntax near %r in {{ %s }}" % (expr[pos:pos + 20], expr))
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Expr:
    """A pipeline: parse once, evaluate against a context."""

    def __init__(self, text):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.tree = self._pipeline()
        if self.i != len(self.toks):
            raise TemplateError("unexpected %r in {{ %s }}" % (self.toks[self.i][1], text))

    def _peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def _pipeline(self):
        cmds = [self._command()]
        while self._peek() == ("punct", "|"):
            self.i += 1
            cmds.append(self._command())
        return ("pipe", cmds)

    def _command(self):
        ops = []
        while True:
            kind, val = self._peek()
            if kind is None or val in ("|", ")"):
                break
            ops.append(self._operand())
        if not ops:
            raise TemplateError("empty command in {{ %s }}" % self.text)
        return ops

    def _operand(self):
        kind, val = self._peek()
        self.i += 1
        if kind == "str":
            return ("lit", json.loads(val))
        if kind == "num":
            return ("lit", int(val))
        if kind == "field":
            return ("field", val[1:].split("."))
        if kind == "ident":
            if val in ("true", "false"):
                return ("lit", val == "true")
            if val not in FUNCS:
                raise TemplateError("unsupported function %r in {{ %s }}" % (val, self.text))
            return ("fn", val)
        if val == "(":
            p = self._pipeline()
            if self._peek() != ("punct", ")"):
                raise TemplateError("missing ) in {{ %s }}" % self.text)
            self.i += 1
            return p
        raise TemplateError("unexpected %r in {{ %s }}" % (val, self.text))

    def eval(self, ctx):
        return self._eval(self.tree, ctx)

    def _eval(self, node, ctx):
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "field":
            v = ctx
            for i, name in enumerate(node[1]):
                if not isinstance(v, dict) or name not in v:
                    raise TemplateError("no field .%s (in {{ %s }})" % (".".join(node[1][:i + 1]), self.text))
                v = v[name]
            return v
        if kind == "pipe":
            result, first = None, True
            for cmd in node[1]:
                result = self._command_eval(cmd, ctx, None if first else [result])
                first = False
            return result
        raise TemplateError("bad node %r" % (node,))

    def _command_eval(self, cmd, ctx, piped):
        head = cmd[0]
        if head[0] == "fn":
            args = [self._eval(a, ctx) for a in cmd[1:]] + (piped or [])
            try:
                return FUNCS[head[1]](*args)
            except TypeError as e:
                raise TemplateError("%s: wrong arguments in {{ %s }}: %s" % (head[1], self.text, e))
        if len(cmd) != 1 or piped:
            raise TemplateError("a value cannot take arguments in {{ %s }}" % self.text)
        return self._eval(head, ctx)


def _parse(src, name):
    """-> list of nodes: str | ("out", expr) | ("if", [(expr, body)], else_body)."""
    pieces, pos = [], 0
    for m in _ACTION.finditer(src):
        pieces.append(("text", src[pos:m.start()]))
        pieces.append(("act", m.group(2), bool(m.group(1)), bool(m.group(3))))
        pos = m.end()
    pieces.append(("text", src[pos:]))
    if "{{" in "".join(p[1] for p in pieces if p[0] == "text"):
        raise TemplateError("%s: unterminated or malformed {{ action" % name)
    # whitespace trimming
    for i, p in enumerate(pieces):
        if p[0] != "act":
            continue
        if p[2] and i > 0:
            pieces[i - 1] = ("text", pieces[i - 1][1].rstrip(" \t\r\n"))
        if p[3] and i + 1 < len(pieces):
            pieces[i + 1] = ("text", pieces[i + 1][1].lstrip(" \t\r\n"))

    root = []
    stack = [(root, None)]   # (current body, if-node)
    for p in pieces:
        body = stack[-1][0]
        if p[0] == "text":
            if p[1]:
                body.append(p[1])
            continue
        text = p[1]
        if text.startswith("/*"):
            if not text.endswith("*/"):
                raise TemplateError("%s: unterminated comment" % name)
            continue
        word = text.split(None, 1)[0] if text else ""
        rest = text[len(word):].strip()
        if word == "if":
            node = ("if", [(_Expr(rest), [])], [])
            body.append(node)
            stack.append((node[1][0][1], node))
        elif word == "else":
            if stack[-1][1] is None:
                raise TemplateError("%s: else without if" % name)
            node = stack.pop()[1]
            if rest.startswith("if "):
                node[1].append((_Expr(rest[3:].strip()), []))
                stack.append((node[1][-1][1], node))
            elif rest:
                raise TemplateError("%s: unsupported {{ else %s }}" % (name, rest))
            else:
                stack.append((node[2], node))
        elif word == "end":
            if stack[-1][1] is None:
                raise TemplateError("%s: end without if" % name)
            stack.pop()
        elif word in ("range", "with", "define", "template", "include", "block", "define"):
            raise TemplateError("%s: {{ %s }} is not supported by minihelm" % (name, word))
        else:
            body.append(("out", _Expr(text)))
    if len(stack) != 1:
        raise TemplateError("%s: missing {{ end }}" % name)
    return root


def _run(nodes, ctx, out):
    for n in nodes:
        if isinstance(n, str):
            out.append(n)
        elif n[0] == "out":
            out.append(to_text(n[1].eval(ctx)))
        else:
            for cond, body in n[1]:
                if truth(cond.eval(ctx)):
                    _run(body, ctx, out)
                    break
            else:
                _run(n[2], ctx, out)


def render_string(src, ctx, name="template"):
    out = []
    _run(_parse(src, name), ctx, out)
    return "".join(out)


def merge(base, over):
    """Deep merge (Helm's coalescing of -f / --set over values.yaml)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def set_value(values, path, value):
    """--set a.b.c=value (strings, with true/false/integers converted as Helm does)."""
    if isinstance(value, str):
        if value in ("true", "false"):
            value = value == "true"
        elif re.fullmatch(r"-?\d+", value):
            value = int(value)
    keys = path.split(".")
    over = cur = {}
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value
    return merge(values, over)


def render_chart(chart_dir, sets=None, release="cloudtaser", namespace="cloudtaser"):
    """-> {template file name: rendered text}. sets: {"a.b": value}."""
    with open(os.path.join(chart_dir, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        values = yaml.safe_load(f) or {}
    for k, v in (sets or {}).items():
        values = set_value(values, k, v)
    ctx = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
    }
    out = {}
    tdir = os.path.join(chart_dir, "templates")
    for name in sorted(os.listdir(tdir)):
        if name.startswith("_") or not (name.endswith((".yaml", ".yml")) or name == "NOTES.txt"):
            continue
        with open(os.path.join(tdir, name)) as f:
            src = f.read()
        try:
            out[name] = render_string(src, ctx, name)
        except TemplateError as e:
            raise TemplateError("%s/templates/%s: %s" % (os.path.basename(chart_dir), name, e))
    return out


def documents(rendered):
    """Parses every rendered manifest: [(file, document)], empty documents dropped."""
    docs = []
    for name, text in rendered.items():
        if name == "NOTES.txt":
            continue
        for d in yaml.safe_load_all(text):
            if d is not None:
                docs.append((name, d))
    return docs
