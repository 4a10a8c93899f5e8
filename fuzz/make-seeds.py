#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (git-ignored).

Seeds: the load generator's fixtures (bench/fixtures/*.json) and, when the shared
conformance fixtures are beside the repository (../shared/conformance), every
Pod Security Standards conformance pod, labelled as a workspace and wrapped in an
AdmissionReview, plus UPDATE / DELETE / subresource / StatefulSet variants.
"""
import copy
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "bench", "fixtures")
CONFORMANCE = os.path.join(os.path.dirname(ROOT), "shared", "conformance", "pod-security-admission")


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    raw = json.dumps(data, separators=(",", ":")).encode()
    with open(os.path.join(d, "seed-" + hashlib.sha1(raw).hexdigest()[:16]), "wb") as f:
        f.write(raw)


def review(obj, op="CREATE", sub=None, old=None, kind=("", "v1", "Pod", "pods")):
    group, version, k, res = kind
    req = {
        "uid": "00000000-0000-4000-8000-000000000001",
        "kind": {"group": group, "version": version, "kind": k},
        "resource": {"group": group, "version": version, "resource": res},
        "name": (obj or {}).get("metadata", {}).get("name", ""),
        "namespace": "ns",
        "operation": op,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    if sub:
        req["subResource"] = sub
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def as_workspace(pod, name="ws"):
    pod = copy.deepcopy(pod)
    meta = pod.setdefault("metadata", {})
    meta.setdefault("labels", {})["devenv.io/workspace"] = name
    return pod


def statefulset(pod):
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "ws", "namespace": "ns", "labels": pod["metadata"].get("labels", {})},
        "spec": {
            "serviceName": "ws",
            "selector": {"matchLabels": {"devenv.io/workspace": "ws"}},
            "template": {"metadata": pod["metadata"], "spec": pod["spec"]},
        },
    }


def main():
    pods = []
    for name in sorted(os.listdir(FIXTURES)):
        if name.endswith(".json"):
            with open(os.path.join(FIXTURES, name)) as f:
                r = json.load(f)
            write("request_path", r)
            pods.append(r["request"]["object"])
    if os.path.isdir(CONFORMANCE):
        try:
            import yaml
        except ImportError:
            print("make-seeds: python3-yaml missing, conformance pods skipped", file=sys.stderr)
            yaml = None
        if yaml:
            for dirpath, _, files in os.walk(CONFORMANCE):
                for name in sorted(files):
                    if name.endswith(".yaml"):
                        with open(os.path.join(dirpath, name)) as f:
                            doc = yaml.safe_load(f)
                        if isinstance(doc, dict) and doc.get("kind") == "Pod":
                            pods.append(doc)
    ws_pods = [as_workspace(p) for p in pods]
    for p in ws_pods:
        write("patch_apply", p)
        write("request_path", review(p))
    for p in ws_pods[:12]:
        write("request_path", review(p, op="UPDATE", old=p))
        write("request_path", review(p, op="UPDATE", sub="ephemeralcontainers", old=p))
        write("request_path", review(p, op="UPDATE", sub="resize", old=p))
        write("request_path", review(None, op="DELETE", old=p))
        if "spec" in p:
            write("request_path", review(statefulset(p), kind=("apps", "v1", "StatefulSet", "statefulsets")))
    n = {t: len(os.listdir(os.path.join(HERE, "corpus", t))) for t in ("request_path", "patch_apply")}
    print(f"make-seeds: {n}")


if __name__ == "__main__":
    main()
