"""The Kubernetes manifests (``deploy/kubernetes/``), loaded as YAML and checked against the
Slurm script and the storage rules: the worker Job runs the very ``hpo worker`` command of
``deploy/slurm/hpo-worker.sbatch``, in parallel pods that reach the PostgreSQL StatefulSet
through its Service and keep the data cache on a shared volume.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from hpo.errors import UsageError
from hpo.storage.urls import mask_url, parse_storage_url

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
SBATCH = ROOT / "deploy" / "slurm" / "hpo-worker.sbatch"


def _docs() -> list[dict]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [(d["kind"], d["metadata"]["name"]) for d in docs])
    return found[0]


def _container(obj: dict, name: str) -> dict:
    (found,) = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _normalise(word: str) -> str:
    """``$VAR``, ``${VAR}`` (shell) and ``$(VAR)`` (Kubernetes) all become ``${VAR}``."""
    return re.sub(r"\$\((\w+)\)|\$\{(\w+)\}|\$(\w+)",
                  lambda m: "${" + next(g for g in m.groups() if g) + "}", word)


def sbatch_worker_command() -> list[str]:
    """The ``hpo worker ...`` invocation of the Slurm script (its one ``exec hpo`` line)."""
    lines = [ln.strip() for ln in SBATCH.read_text().splitlines()
             if ln.strip().startswith("exec hpo ")]
    assert len(lines) == 1, lines
    return [_normalise(w) for w in shlex.split(lines[0])[1:]]


def _expand(value: str, env: dict[str, dict], secrets: dict[str, str]) -> str:
    """A Kubernetes ``$(VAR)`` reference resolved from the container's earlier env entries
    (a secret's value given by ``secrets``); an undefined one stays as written, as there."""
    def one(m: re.Match) -> str:
        entry = env.get(m.group(1))
        if entry is None:
            return m.group(0)
        if "value" in entry:
            return entry["value"]
        ref = entry["valueFrom"]["secretKeyRef"]
        return secrets[f"{ref['name']}/{ref['key']}"]
    return re.sub(r"\$\((\w+)\)", one, value)


def test_the_manifests_hold_the_postgres_service_statefulset_and_the_two_jobs() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in _docs())
    assert kinds == [("Job", "hpo-create"), ("Job", "hpo-worker"),
                     ("PersistentVolumeClaim", "hpo-data"), ("Service", "hpo-postgres"),
                     ("StatefulSet", "hpo-postgres")]


def test_the_worker_job_runs_the_slurm_scripts_worker_command_in_parallel_pods() -> None:
    docs = _docs()
    job = _one(docs, "Job", "hpo-worker")
    worker = _container(job, "worker")
    command = [_normalise(w) for w in worker["command"] + worker.get("args", [])]
    assert command == sbatch_worker_command()
    assert command[:2] == ["hpo", "worker"] and "--study" in command
    env = _env(worker)
    for var in re.findall(r"\$\{(\w+)\}", " ".join(command)):
        assert var in env, f"{var} is used by the command but not set in the pod"
        # The Slurm script sets it too (from its argument or SLURM_CPUS_PER_TASK).
        assert re.search(rf"^export {var}\b|^{var}=", SBATCH.read_text(), re.M), var
    assert int(env["HPO_THREADS"]["value"]) == int(worker["resources"]["requests"]["cpu"])
    spec = job["spec"]
    assert spec["parallelism"] >= 2 and "completions" not in spec  # a work queue
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # Time to fail and re-queue the running trial between SIGTERM and SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= 30
    rules = spec["podFailurePolicy"]["rules"]
    fail_job = [r for r in rules if r["action"] == "FailJob"]
    assert fail_job and fail_job[0]["onExitCodes"]["values"] == [UsageError.exit_code]
    assert any(r["action"] == "Ignore" and {"type": "DisruptionTarget"} in r["onPodConditions"]
               for r in rules)


@pytest.mark.parametrize(("job", "container"), [("hpo-worker", "worker"),
                                                ("hpo-create", "create")])
def test_every_pod_reaches_the_postgres_service_with_the_secrets_password(job, container
                                                                          ) -> None:
    docs = _docs()
    service = _one(docs, "Service", "hpo-postgres")
    sts = _one(docs, "StatefulSet", "hpo-postgres")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]
    pg_env = _env(_container(sts, "postgres"))
    mounts = {m["name"]: m["mountPath"]
              for m in _container(sts, "postgres")["volumeMounts"]}
    claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    assert claims == list(mounts)
    assert pg_env["PGDATA"]["value"].startswith(mounts[claims[0]] + "/")

    env = _env(_container(_one(docs, "Job", job), container))
    secret = {"hpo-postgres/password": "s3cret-pw"}
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == pg_env["POSTGRES_PASSWORD"]["valueFrom"]
    raw = env["HPO_STORAGE"]["value"]
    assert raw.startswith("postgresql://")  # the user-facing form of a PostgreSQL URL
    url = parse_storage_url(_expand(raw, env, secret))
    assert (url.host, url.port) == (f"{service['metadata']['name']}", 5432)
    assert url.database == pg_env["POSTGRES_DB"]["value"]
    assert url.username == pg_env["POSTGRES_USER"]["value"]
    assert url.password == "s3cret-pw"
    assert "s3cret-pw" not in mask_url(_expand(raw, env, secret))
    # The Secret itself is not shipped: no password in the repository.
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_the_data_cache_is_on_a_volume_every_worker_pod_shares() -> None:
    docs = _docs()
    pod = _one(docs, "Job", "hpo-worker")["spec"]["template"]["spec"]
    worker = _container(_one(docs, "Job", "hpo-worker"), "worker")
    cache = _env(worker)["HPO_CACHE_DIR"]["value"]
    (mount,) = [m for m in worker["volumeMounts"]
                if cache == m["mountPath"] or cache.startswith(m["mountPath"].rstrip("/") + "/")]
    assert not mount.get("readOnly")  # downloads are written there
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = _one(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # one volume, many pods


def test_the_create_job_creates_the_study_from_its_configmap_once() -> None:
    job = _one(_docs(), "Job", "hpo-create")
    create = _container(job, "create")
    assert create["command"][:2] == ["hpo", "create"]
    path = Path(create["command"][2])
    (mount,) = [m for m in create["volumeMounts"] if path.parent == Path(m["mountPath"])]
    (volume,) = [v for v in job["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "hpo-study"
    assert job["spec"].get("parallelism", 1) == 1 and job["spec"].get("completions", 1) == 1


def test_the_normalisation_tells_commands_apart() -> None:
    """The comparison above can fail: another flag, order or variable is a difference."""
    assert _normalise("$(HPO_STUDY)") == _normalise("$HPO_STUDY") == "${HPO_STUDY}"
    assert _normalise("$(HPO_STUDY)") != _normalise("$HPO_THREADS")
    assert [_normalise(w) for w in ["hpo", "worker", "--study", "$(A)"]] != [
        "hpo", "worker", "${A}", "--study"]
