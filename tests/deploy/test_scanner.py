"""checkov's checks in deploy-check: the overlays pass them, each check relied on
(``tools.deploycheck.scanner.RELIED_ON``, the ones that replaced rules of our own) fails on a
manifest that breaks it, findings name their object, the skip list is honest, and checkov runs
offline and never passes by not running. checkov runs once for all the mutated builds.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.deploy.objects import Objs, cases, container, ids, pod, replay_job
from tools.deploycheck import check, manifests, scanner

# --- mutations that checkov's checks must catch ---------------------------------------------


def _no_liveness(o: Objs) -> None:
    del container(o, "StatefulSet", "redis")["livenessProbe"]


def _no_readiness(o: Objs) -> None:
    del container(o, name="stream-processor")["readinessProbe"]


def _no_cpu_request(o: Objs) -> None:
    del container(o, name="social")["resources"]["requests"]["cpu"]


def _no_limits(o: Objs) -> None:
    del container(o)["resources"]["limits"]


def _no_memory_request(o: Objs) -> None:
    del container(o, "StatefulSet", "redis")["resources"]["requests"]["memory"]


def _latest(o: Objs) -> None:
    container(o)["image"] = "socialproof:latest"


def _untagged(o: Objs) -> None:
    container(o, "StatefulSet", "redis")["image"] = "redis"


def _privileged(o: Objs) -> None:
    container(o, name="catalog")["securityContext"]["privileged"] = True


def _privileged_job(o: Objs) -> None:
    job = replay_job(o)
    manifests.pod_spec(job)["containers"][0]["securityContext"]["privileged"] = True
    o.append(job)


def _host_pid(o: Objs) -> None:
    pod(o, name="notifier")["hostPID"] = True


def _host_ipc(o: Objs) -> None:
    pod(o, name="catalog")["hostIPC"] = True


def _host_network(o: Objs) -> None:
    pod(o, name="social")["hostNetwork"] = True


def _escalation(o: Objs) -> None:
    container(o, name="notifier")["securityContext"]["allowPrivilegeEscalation"] = True


def _writable_root(o: Objs) -> None:
    container(o, name="stream-processor")["securityContext"]["readOnlyRootFilesystem"] = False


def _root_allowed(o: Objs) -> None:
    # neither runAsNonRoot nor a user: the image decides, and may run as root
    security = pod(o, "StatefulSet", "redis")["securityContext"]
    del security["runAsNonRoot"], security["runAsUser"]


def _root(o: Objs) -> None:
    pod(o)["securityContext"]["runAsUser"] = 0


def _capability_added(o: Objs) -> None:
    container(o)["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]


def _nothing_dropped(o: Objs) -> None:
    del container(o)["securityContext"]["capabilities"]


def _capabilities(o: Objs) -> None:
    container(o)["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def _seccomp(o: Objs) -> None:
    pod(o)["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


def _token_mounted(o: Objs) -> None:
    pod(o)["automountServiceAccountToken"] = True


#: checkov check id -> mutations that must each make that check fail
CHECKOV_MUTATIONS: dict[str, list[Callable[[Objs], None]]] = {
    "CKV_K8S_8": [_no_liveness],
    "CKV_K8S_9": [_no_readiness],
    "CKV_K8S_10": [_no_cpu_request],
    "CKV_K8S_11": [_no_limits],
    "CKV_K8S_12": [_no_memory_request],
    "CKV_K8S_13": [_no_limits],
    "CKV_K8S_14": [_latest, _untagged],
    "CKV_K8S_16": [_privileged, _privileged_job],
    "CKV_K8S_17": [_host_pid],
    "CKV_K8S_18": [_host_ipc],
    "CKV_K8S_19": [_host_network],
    "CKV_K8S_20": [_escalation],
    "CKV_K8S_22": [_writable_root],
    "CKV_K8S_23": [_root_allowed],
    "CKV_K8S_25": [_capability_added],
    "CKV_K8S_28": [_nothing_dropped],
    "CKV_K8S_31": [_seccomp],
    "CKV_K8S_37": [_capabilities, _nothing_dropped],
    "CKV_K8S_38": [_token_mounted],
    "CKV_K8S_40": [_root],
}


CHECKOV_CASES = cases(CHECKOV_MUTATIONS)


@pytest.fixture(scope="session")
def scanned(built: dict[str, Objs]) -> scanner.Scan:
    """One checkov run: the dev and prod overlays as they are, and per mutation what it changed
    in a prod copy (the checks relied on judge one object at a time) with the network policies
    (checkov's graph check CKV2_K8S_6 looks for them)."""
    builds = {name: built[name] for name in ("dev", "prod")}
    base = built["prod"]
    for name, (_check_id, mutate) in zip(ids(CHECKOV_CASES), CHECKOV_CASES, strict=True):
        objects = copy.deepcopy(base)
        mutate(objects)
        builds[name] = [o for o in objects if o not in base or o["kind"] == "NetworkPolicy"]
        assert len(builds[name]) > 10, f"{name} changed nothing"
    return scanner.scan(builds)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_pass_schemas_checkov_and_every_rule(
    built: dict[str, Objs], scanned: scanner.Scan, overlay: str
) -> None:
    problems = check.check_objects(built[overlay], scan=False) + scanned.problems[overlay]
    assert problems == [], "\n".join(map(str, problems))


def test_every_check_relied_on_has_a_failing_mutation() -> None:
    assert set(CHECKOV_MUTATIONS) == set(scanner.RELIED_ON)


@pytest.mark.parametrize(("check_id", "mutate"), CHECKOV_CASES, ids=ids(CHECKOV_CASES))
def test_each_checkov_check_fails_on_a_manifest_that_breaks_it(
    scanned: scanner.Scan, check_id: str, mutate
) -> None:
    found = scanned.problems[f"{check_id}-{mutate.__name__.strip('_')}"]
    assert check_id in {p.rule for p in found}, f"{check_id} did not notice {mutate.__name__}"
    assert {p.scanner for p in found} == {"checkov"}


def test_checkov_findings_name_the_object_they_are_about(scanned: scanner.Scan) -> None:
    found = scanned.problems["CKV_K8S_16-privileged_job"]
    assert {p.where for p in found if p.rule == "CKV_K8S_16"} == {
        "Job/socialproof-replay-rebuild-*"
    }
    found = scanned.problems["CKV_K8S_14-untagged"]
    assert [(p.where, p.message) for p in found] == [
        ("StatefulSet/redis", "Image Tag should be fixed - not latest or blank")
    ]


def test_the_skip_list_gives_a_reason_and_never_skips_a_check_we_rely_on() -> None:
    for skip in scanner.SKIPS:
        assert len(skip.reason) > 40, skip.check_id
        assert skip.only or skip.check_id not in scanner.RELIED_ON, skip.check_id
    # a check skipped for one object still fails everywhere else (CKV_K8S_40: redis only)
    assert "StatefulSet/redis" in next(s.only for s in scanner.SKIPS if s.check_id == "CKV_K8S_40")


def test_the_skip_list_in_deploy_readme_is_the_one_applied() -> None:
    """deploy/README.md shows each skipped check, where it is skipped and why: the same as SKIPS."""
    readme = (manifests.DEPLOY_DIR / "README.md").read_text()
    rows = {
        m[1]: (m[2], m[3])
        for m in re.finditer(r"^\| `(CKV_\w+)` [^|]+ \| ([^|]+) \| (.+) \|$", readme, re.M)
    }
    assert set(rows) == {s.check_id for s in scanner.SKIPS}
    for skip in scanner.SKIPS:
        scope = ", ".join(f"`{o}`" for o in sorted(skip.only)) + " only" if skip.only else None
        assert rows[skip.check_id] == (scope or "every object", skip.reason.split(": ", 1)[1])


def test_a_workload_checkov_did_not_evaluate_fails(prod: Objs, monkeypatch) -> None:
    report = {"check_type": "kubernetes", "results": {"failed_checks": []}, "summary": {}}
    ran = subprocess.CompletedProcess([], 0, stdout=json.dumps(report), stderr="")
    monkeypatch.setattr(scanner.subprocess, "run", lambda *a, **k: ran)
    found = scanner.scan({"prod": prod}).problems["prod"]
    assert {(p.scanner, p.rule) for p in found} == {("checkov", "not-scanned")}
    assert {p.where for p in found} == {manifests.ref(o) for o, _spec in manifests.workloads(prod)}


def test_checkov_failing_to_run_is_an_error_not_a_pass(prod: Objs, monkeypatch) -> None:
    crashed = subprocess.CompletedProcess([], 2, stdout="", stderr="Traceback ...")
    monkeypatch.setattr(scanner.subprocess, "run", lambda *a, **k: crashed)
    with pytest.raises(scanner.ScannerFailed, match="checkov exited 2"):
        scanner.scan({"prod": prod})


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare (util-linux)")
def test_the_checks_run_without_a_network(built: dict[str, Objs], tmp_path) -> None:
    """checkov, the schemas (Strimzi's CRDs from the cache) and our rules, all offline."""
    import yaml

    from tools.deploycheck import crds, promcrds

    # fetched once, like `make deploy-check` does before the check
    crds.ensure_strimzi()
    promcrds.ensure_prometheus_operator()
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump_all(built["prod"]))
    code = (
        "import sys; from tools.deploycheck import check, manifests; "
        f"objs = manifests.load_documents(open({str(tmp_path / 'prod.yaml')!r}).read()); "
        "print({'prod': check.check_objects(objs)})"
    )
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no network namespaces here")
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=manifests.ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'prod': []}"
