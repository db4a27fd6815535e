#!/usr/bin/env python3
"""test_helm.py - renders deploy/helm/* with minihelm and checks the manifests.

Run: python3 tests/packaging/test_helm.py [--tools DIR]
With --tools (the built or installed tools), every flag a chart passes to a
tool must exist in that tool's --help. `helm lint` / `helm template` are not
available here (Helm is not in the package registries this project uses);
minihelm renders the subset of the template language the charts use.
"""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minihelm  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPERATOR = os.path.join(TOP, "deploy", "helm", "cloudtaser-operator")
BEACON = os.path.join(TOP, "deploy", "helm", "cloudtaser-beacon")
TOOLS = None
ADDR = "beacon.example.com:443"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
NAMESPACED = {"ServiceAccount", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
              "Role", "RoleBinding", "StatefulSet"}


def render(chart, **sets):
    return minihelm.documents(minihelm.render_chart(chart, sets))


def by_kind(docs, kind):
    return [d for _, d in docs if d.get("kind") == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    if len(found) != 1:
        raise AssertionError("expected one %s, found %d" % (kind, len(found)))
    return found[0]


_help_cache = {}


def tool_flags(tool):
    if tool not in _help_cache:
        p = subprocess.run([os.path.join(TOOLS, tool), "--help"], capture_output=True, text=True, timeout=20)
        if p.returncode != 0:
            raise AssertionError("%s --help: exit %d" % (tool, p.returncode))
        _help_cache[tool] = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", p.stdout))
    return _help_cache[tool]


class Common:
    """Checks every rendered document of every variant must pass."""

    def check_docs(self, docs, chart_name):
        self.assertTrue(docs)
        for name, d in docs:
            where = "%s (%s)" % (name, d.get("kind"))
            self.assertIsInstance(d, dict, where)
            self.assertTrue(d.get("apiVersion"), where + ": apiVersion")
            self.assertTrue(d.get("kind"), where + ": kind")
            self.assertNotEqual(d["kind"], "Secret", where + ": the charts never create a Secret")
            md = d.get("metadata") or {}
            self.assertTrue(md.get("name"), where + ": metadata.name")
            self.assertRegex(md["name"], r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", where + ": a DNS-1123 name")
            if d["kind"] in NAMESPACED:
                self.assertEqual(md.get("namespace"), "cloudtaser", where + ": namespace")
            self.assertEqual((md.get("labels") or {}).get("app.kubernetes.io/name"), chart_name, where)
            self.assertNotIn("<no value>", repr(d), where)
            if d["kind"] == "Deployment":
                self.check_pod(d, where)

    def check_pod(self, dep, where):
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        sel = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"]["labels"]
        for k, v in sel.items():
            self.assertEqual(labels.get(k), v, where + ": selector matches the pod labels")
        psc = pod.get("securityContext") or {}
        self.assertIs(psc.get("runAsNonRoot"), True, where + ": pod runAsNonRoot")
        self.assertEqual((psc.get("seccompProfile") or {}).get("type"), "RuntimeDefault", where)
        self.assertNotIn("hostNetwork", pod)
        self.assertNotIn("hostPID", pod)
        mounts_ok = {v["name"] for v in pod.get("volumes", [])}
        for c in pod.get("initContainers", []) + pod["containers"]:
            cw = "%s container %s" % (where, c.get("name"))
            self.assertRegex(c.get("image", ""), r"^[^\s:]+:[^\s:]+$", cw + ": image with a tag")
            sc = c.get("securityContext") or {}
            self.assertIs(sc.get("allowPrivilegeEscalation"), False, cw)
            self.assertIs(sc.get("readOnlyRootFilesystem"), True, cw)
            self.assertIs(sc.get("runAsNonRoot"), True, cw)
            self.assertEqual((sc.get("capabilities") or {}).get("drop"), ["ALL"], cw)
            self.assertNotIn("add", sc.get("capabilities") or {}, cw)
            self.assertNotIn("privileged", sc, cw)
            self.assertEqual((sc.get("seccompProfile") or {}).get("type"), "RuntimeDefault", cw)
            for m in c.get("volumeMounts", []):
                self.assertIn(m["name"], mounts_ok, cw + ": mounts a declared volume")
            for e in c.get("env", []):
                self.assertNotIn("valueFrom", e, cw + ": no secretKeyRef")
        for v in pod.get("volumes", []):
            self.assertNotIn("hostPath", v, where)

    def check_flags(self, args, tool):
        if not TOOLS:
            return
        known = tool_flags(tool)
        for a in args:
            if a.startswith("--"):
                self.assertIn(a, known, "%s: %s passes %s, which --help does not list" % (tool, a, a))


class OperatorChart(unittest.TestCase, Common):
    def test_fails_without_the_beacon_address(self):
        with self.assertRaises(minihelm.TemplateError) as cm:
            minihelm.render_chart(OPERATOR)
        self.assertIn("operator.beacon.address is required", str(cm.exception))
        with self.assertRaises(minihelm.TemplateError):
            minihelm.render_chart(OPERATOR, {"operator.beacon.address": ""})

    def test_exactly_one_required_value(self):
        tdir = os.path.join(OPERATOR, "templates")
        req = []
        for n in os.listdir(tdir):
            with open(os.path.join(tdir, n)) as f:
                req += re.findall(r"required\s+\"[^\"]*\"\s+(\.Values\.[\w.]+)", f.read())
        self.assertEqual(req, [".Values.operator.beacon.address"])

    def test_defaults_with_the_one_value(self):
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR})
        self.check_docs(docs, "cloudtaser-operator")
        kinds = sorted(d["kind"] for _, d in docs)
        self.assertEqual(kinds, ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                                 "ServiceAccount"])
        dep = one(docs, "Deployment")
        self.assertEqual(dep["spec"]["replicas"], 1)
        self.assertEqual(dep["spec"]["strategy"]["type"], "Recreate")
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], one(docs, "ServiceAccount")["metadata"]["name"])
        c = pod["containers"][0]
        self.assertTrue(c["image"].endswith(":0.1.0"), c["image"])
        args = c["args"]
        self.assertEqual(args[args.index("--beacon") + 1], ADDR)
        self.assertIn("--beacon-system-ca", args)
        self.assertNotIn("--beacon-ca", args)
        self.assertNotIn("--fingerprint", args)
        self.check_flags(args, "cloudtaser-operator")
        # the projected token: audience cloudtaser-bridge, 600 s, passed as --token-file
        token_file = args[args.index("--token-file") + 1]
        mount = [m for m in c["volumeMounts"] if token_file.startswith(m["mountPath"].rstrip("/") + "/")]
        self.assertEqual(len(mount), 1, "the token file lies in one mounted volume")
        vol = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]
        sat = [s["serviceAccountToken"] for s in vol["projected"]["sources"] if "serviceAccountToken" in s]
        self.assertEqual(len(sat), 1)
        self.assertEqual(sat[0]["audience"], "cloudtaser-bridge")
        self.assertEqual(sat[0]["expirationSeconds"], 600)
        self.assertEqual(os.path.join(mount[0]["mountPath"], sat[0]["path"]), token_file)

    def test_probes_and_operations_port(self):
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR})
        c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        args = c["args"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports["metrics"], 9464)
        self.assertEqual(args[args.index("--metrics") + 1], "0.0.0.0:9464")
        self.assertIn("--metrics-allow-remote", args)  # the kubelet probes the pod address
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertLessEqual(c[probe]["timeoutSeconds"], c[probe]["periodSeconds"])
        self.check_flags(args, "cloudtaser-operator")
        # IPv6-only clusters
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR, "metrics.address": "::",
                                   "metrics.port": "9500"})
        c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["args"][c["args"].index("--metrics") + 1], "[::]:9500")
        self.assertEqual(c["args"][c["args"].index("--broker-listen") + 1], "[::]:8200")
        self.assertEqual({p["name"]: p["containerPort"] for p in c["ports"]}["metrics"], 9500)

    def test_broker_on_by_default(self):
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR})
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        args = c["args"]
        self.assertEqual(args[args.index("--broker-listen") + 1], "0.0.0.0:8200")
        names = [args[i + 1] for i, a in enumerate(args) if a == "--broker-name"]
        self.assertEqual(names, ["cloudtaser-broker.cloudtaser.svc",
                                 "cloudtaser-broker.cloudtaser.svc.cluster.local"])
        self.assertEqual(args[args.index("--broker-max-in-flight") + 1], "256")
        # the CA is written into a writable memory volume (the root is read-only)
        ca_out = args[args.index("--broker-ca-out") + 1]
        m = [m for m in c["volumeMounts"] if ca_out.startswith(m["mountPath"] + "/")]
        self.assertEqual(len(m), 1)
        self.assertNotEqual(m[0].get("readOnly"), True)
        vol = [v for v in pod["volumes"] if v["name"] == m[0]["name"]][0]
        self.assertEqual(vol["emptyDir"]["medium"], "Memory")
        # the Service: in-cluster only, port 8200 to the container's broker port
        svc = one(docs, "Service")
        self.assertEqual(svc["metadata"]["name"], "cloudtaser-broker")
        self.assertEqual(svc["spec"]["type"], "ClusterIP")
        self.assertEqual(svc["spec"]["ports"], [{"name": "https", "port": 8200, "targetPort": "broker",
                                                 "protocol": "TCP"}])
        self.assertEqual({p["name"]: p["containerPort"] for p in c["ports"]}["broker"], 8200)
        labels = pod and one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(labels.get(k), v, "the Service selects the operator pod")
        # the Service's name is one the certificate carries
        self.assertTrue(names[0].startswith(svc["metadata"]["name"] + "."))
        self.assertEqual(by_kind(docs, "ConfigMap"), [])   # no CA given: no ConfigMap
        self.check_flags(args, "cloudtaser-operator")

    def test_broker_ca_configmap_and_port(self):
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR, "broker.caCert": PEM,
                                   "broker.port": "8300"})
        self.check_docs(docs, "cloudtaser-operator")
        cm = one(docs, "ConfigMap")
        self.assertEqual(cm["metadata"]["name"], "cloudtaser-broker-ca")
        self.assertEqual(cm["data"], {"ca.crt": PEM})
        svc = one(docs, "Service")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 8300)
        c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["args"][c["args"].index("--broker-listen") + 1], "0.0.0.0:8300")

    def test_broker_disabled(self):
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR, "broker.enabled": "false",
                                   "broker.caCert": PEM})
        self.check_docs(docs, "cloudtaser-operator")
        self.assertEqual(by_kind(docs, "Service"), [])
        self.assertEqual(by_kind(docs, "ConfigMap"), [])
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        for flag in ("--broker-listen", "--broker-name", "--broker-ca-out"):
            self.assertNotIn(flag, args)
        self.assertNotIn("broker", [p["name"] for p in pod["containers"][0]["ports"]])
        # the probes stay
        self.assertIn("readinessProbe", pod["containers"][0])

    def rules(self, docs):
        return one(docs, "ClusterRole")["rules"]

    def test_rbac_is_limited(self):
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR})
        rules = self.rules(docs)
        norm = sorted((tuple(r.get("apiGroups", [])), tuple(r.get("resources", [])),
                       tuple(r.get("resourceNames", [])), tuple(r.get("nonResourceURLs", [])),
                       tuple(sorted(r["verbs"]))) for r in rules)
        self.assertEqual(norm, sorted([
            (("",), ("namespaces",), ("kube-system",), (), ("get",)),
            (("authentication.k8s.io",), ("tokenreviews",), (), (), ("create",)),
            ((), (), (), ("/openid/v1/jwks",), ("get",)),
        ]))
        self.assertNotIn("*", repr(rules))
        self.assertNotIn("secrets", repr(rules))
        binding = one(docs, "ClusterRoleBinding")
        self.assertEqual(binding["roleRef"]["name"], one(docs, "ClusterRole")["metadata"]["name"])
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "cloudtaser-operator",
                                                "namespace": "cloudtaser"}])

    def test_migration_adds_only_secrets(self):
        base = self.rules(render(OPERATOR, **{"operator.beacon.address": ADDR}))
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR, "migration.enabled": "true"})
        self.check_docs(docs, "cloudtaser-operator")
        rules = self.rules(docs)
        extra = [r for r in rules if r not in base]
        self.assertEqual(extra, [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]}])
        self.assertEqual(len(rules), len(base) + 1)

    def mounted_file(self, pod, path):
        """The ConfigMap key behind a file path in the operator container."""
        c = pod["containers"][0]
        m = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        self.assertEqual(len(m), 1, path + " lies in one mounted volume")
        vol = [v for v in pod["volumes"] if v["name"] == m[0]["name"]][0]
        return vol["configMap"]["name"], os.path.relpath(path, m[0]["mountPath"])

    def test_beacon_ca_and_issuer_keys_from_a_configmap(self):
        jwks = '{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"BB","kid":"k"}]}'
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR, "operator.beacon.ca": PEM,
                                   "operator.issuerKeys": jwks})
        self.check_docs(docs, "cloudtaser-operator")
        cm = one(docs, "ConfigMap")
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        self.assertNotIn("--beacon-system-ca", args)
        for flag, content in (("--beacon-ca", PEM), ("--jwks-file", jwks)):
            name, key = self.mounted_file(pod, args[args.index(flag) + 1])
            self.assertEqual(name, cm["metadata"]["name"])
            self.assertEqual(cm["data"][key], content)
        self.check_flags(args, "cloudtaser-operator")
        # only the keys: no CA in the ConfigMap, the system CAs for the beacon
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR, "operator.issuerKeys": jwks})
        self.assertEqual(list(one(docs, "ConfigMap")["data"]), ["jwks.json"])
        self.assertIn("--beacon-system-ca", one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])

    def test_pin_and_optional_values(self):
        pin = "ab" * 32
        fp = "0ad50c05-1153-4508-9237-4cb2912e2c23"
        docs = render(OPERATOR, **{"operator.beacon.address": ADDR, "operator.beacon.pin": pin,
                                   "operator.beacon.ca": PEM, "operator.beacon.name": "beacon.internal",
                                   "operator.fingerprint": fp, "operator.operationalRoom": "cd" * 32,
                                   "operator.verbose": "true", "image.tag": "9.9.9",
                                   "priorityClassName": "system-cluster-critical"})
        self.check_docs(docs, "cloudtaser-operator")
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        args = c["args"]
        self.assertEqual(args[args.index("--beacon-pin") + 1], pin)
        self.assertNotIn("--beacon-ca", args)            # a pin wins over a CA
        self.assertNotIn("--beacon-system-ca", args)
        self.assertEqual(args[args.index("--fingerprint") + 1], fp)
        self.assertEqual(args[args.index("--beacon-name") + 1], "beacon.internal")
        self.assertIn("--verbose", args)
        self.assertTrue(c["image"].endswith(":9.9.9"))
        self.assertEqual(pod["priorityClassName"], "system-cluster-critical")
        self.check_flags(args, "cloudtaser-operator")

    def test_no_secret_in_any_template_text(self):
        for chart in (OPERATOR, BEACON):
            tdir = os.path.join(chart, "templates")
            for n in os.listdir(tdir):
                with open(os.path.join(tdir, n)) as f:
                    self.assertNotRegex(f.read(), r"kind:\s*Secret\b", n)


class BeaconChart(unittest.TestCase, Common):
    def test_fails_without_the_tls_secret(self):
        with self.assertRaises(minihelm.TemplateError) as cm:
            minihelm.render_chart(BEACON)
        self.assertIn("tls.secretName is required", str(cm.exception))

    def test_defaults(self):
        docs = render(BEACON, **{"tls.secretName": "beacon-tls"})
        self.check_docs(docs, "cloudtaser-beacon")
        self.assertEqual(sorted(d["kind"] for _, d in docs),
                         ["Deployment", "PodDisruptionBudget", "Service", "Service"])
        dep = one(docs, "Deployment")
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        args = c["args"]
        self.check_flags(args, "cloudtaser-beacon")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(args[args.index("--listen") + 1], "[::]:%d" % ports["relay"])
        self.assertEqual(args[args.index("--metrics") + 1], "[::]:%d" % ports["metrics"])
        self.assertIn("--metrics-allow-remote", args)
        # drain on termination: the grace period outlasts the drain deadline
        drain_ms = int(args[args.index("--drain-timeout") + 1])
        self.assertGreater(pod["terminationGracePeriodSeconds"] * 1000, drain_ms)
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        # the certificate: the user's TLS Secret, copied mode 0600 for the beacon
        secret_vols = [v for v in pod["volumes"] if "secret" in v]
        self.assertEqual(len(secret_vols), 1)
        self.assertEqual(secret_vols[0]["secret"]["secretName"], "beacon-tls")
        key = args[args.index("--key") + 1]
        cert = args[args.index("--cert") + 1]
        self.assertEqual(os.path.dirname(key), os.path.dirname(cert))
        init = pod["initContainers"][0]
        self.assertIn("install -m 0600", " ".join(init["command"]))
        self.assertIn(os.path.dirname(key), [m["mountPath"] for m in init["volumeMounts"]])
        tls_vol = [v for v in pod["volumes"] if v["name"] == [m for m in c["volumeMounts"]
                                                              if m["mountPath"] == os.path.dirname(key)][0]["name"]][0]
        self.assertEqual(tls_vol["emptyDir"]["medium"], "Memory")
        self.assertIs(pod["automountServiceAccountToken"], False)

        services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
        relay = services["cloudtaser-beacon"]
        self.assertEqual(relay["spec"]["type"], "LoadBalancer")
        self.assertEqual(relay["spec"]["externalTrafficPolicy"], "Local")
        self.assertEqual([(p["port"], p["targetPort"]) for p in relay["spec"]["ports"]], [(443, "relay")])
        metrics = services["cloudtaser-beacon-metrics"]
        self.assertEqual(metrics["spec"]["type"], "ClusterIP")
        self.assertEqual([(p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]], [(9443, "metrics")])
        self.assertEqual(metrics["metadata"]["annotations"]["prometheus.io/scrape"], "true")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        for s in services.values():
            for k, v in s["spec"]["selector"].items():
                self.assertEqual(labels.get(k), v)
        pdb = one(docs, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertNotIn("minAvailable", pdb["spec"])
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])

    def test_overrides(self):
        docs = render(BEACON, **{"tls.secretName": "beacon-tls", "service.type": "ClusterIP",
                                 "podDisruptionBudget.minAvailable": "1", "beacon.drainTimeoutMs": "20000",
                                 "terminationGracePeriodSeconds": "30", "service.annotations":
                                 {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}})
        self.check_docs(docs, "cloudtaser-beacon")
        relay = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "cloudtaser-beacon"][0]
        self.assertEqual(relay["spec"]["type"], "ClusterIP")
        self.assertNotIn("externalTrafficPolicy", relay["spec"])
        self.assertEqual(relay["metadata"]["annotations"],
                         {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"})
        pdb = one(docs, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"], {"minAvailable": 1, "selector": pdb["spec"]["selector"]})
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        self.assertEqual(args[args.index("--drain-timeout") + 1], "20000")
        self.assertGreater(pod["terminationGracePeriodSeconds"] * 1000, 20000)


class Renderer(unittest.TestCase):
    """minihelm itself: the subset it accepts behaves like Helm, the rest is refused."""

    ctx = {"Values": {"a": "x", "e": "", "t": True, "n": 0, "m": {"k": "v"}},
           "Release": {"Name": "r"}, "Chart": {"AppVersion": "1.0"}}

    def r(self, src):
        return minihelm.render_string(src, self.ctx)

    def test_trimming_and_conditionals(self):
        self.assertEqual(self.r("a:\n{{- if .Values.t }}\n  b{{- end }}\n"), "a:\n  b\n")
        self.assertEqual(self.r("{{ if .Values.e }}x{{ else if .Values.n }}y{{ else }}z{{ end }}"), "z")
        self.assertEqual(self.r("{{ if and .Values.a (not .Values.e) }}ok{{ end }}"), "ok")
        self.assertEqual(self.r("{{ .Values.e | default .Chart.AppVersion | quote }}"), '"1.0"')
        self.assertEqual(self.r('{{ ne .Values.a "x" }}'), "false")
        self.assertEqual(self.r("m:\n{{ toYaml .Values.m | indent 2 }}"), "m:\n  k: v")
        self.assertEqual(self.r("{{/* note */}}{{ .Release.Name }}"), "r")

    def test_errors(self):
        for bad in ("{{ .Values.missing }}", "{{ range .Values.m }}{{ end }}", "{{ if .Values.t }}",
                    "{{ include \"x\" . }}", "{{ .Values.a | upper }}", '{{ required "need e" .Values.e }}',
                    "{{ end }}", "{{ .Values.m }}"):
            with self.assertRaises(minihelm.TemplateError, msg=bad):
                self.r(bad)


def main():
    global TOOLS
    if "--tools" in sys.argv:
        i = sys.argv.index("--tools")
        TOOLS = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
