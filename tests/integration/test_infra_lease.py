"""`tqa infra lease/release` through the real python-chi and Blazar client against a Keystone/Blazar stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.errors import UserError
from ops.infra import lease as leases
from tests.support.openstack_standin import APP_CRED_ID, APP_CRED_SECRET, Behaviour, StandIn

pytestmark = pytest.mark.integration


@pytest.fixture()
def standin(tmp_path: Path) -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def _clouds_yaml(tmp_path: Path, standin: StandIn, secret: str = APP_CRED_SECRET) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        "  chi-test:\n"
        "    auth:\n"
        f"      auth_url: {standin.url}\n"
        f"      application_credential_id: {APP_CRED_ID}\n"
        f"      application_credential_secret: {secret}\n"
        "    region_name: CHI@TEST\n"
        "    interface: public\n"
        "    identity_api_version: 3\n"
        "    auth_type: v3applicationcredential\n"
    )
    return path


def test_lease_becomes_active_and_reservation_is_written_for_terraform(tmp_path: Path, standin: StandIn) -> None:
    leases.configure_from_clouds_yaml("chi-test", _clouds_yaml(tmp_path, standin))
    request = leases.LeaseRequest(name="tqa-staging-gpu", nodes=2, floating_ips=1, hours=3)

    created = leases.create_lease(request)
    seen: list[str] = []
    active = leases.wait_until_active(created.id, timeout_s=30, poll_s=0.01, say=seen.append)
    tfvars = leases.write_reservation(active, tmp_path, "staging")

    assert active.status == "ACTIVE"
    assert seen[-1] == "lease tqa-staging-gpu: ACTIVE"
    assert json.loads(tfvars.read_text()) == {"gpu_reservation_id": active.node_reservation_id}
    assert leases.recorded_lease(tmp_path, "staging").id == created.id
    assert tfvars.name == "lease-staging.tfvars.json"
    with pytest.raises(UserError, match="No lease recorded for canary"):
        leases.recorded_lease(tmp_path, "canary")
    # What Blazar received is what python-chi builds: a physical:host reservation for two A100 nodes, one FIP.
    (body,) = [b for method, path, b in standin.state.requests if method == "POST" and path.endswith("/leases")]
    hosts = [r for r in body["reservations"] if r["resource_type"] == "physical:host"]
    assert hosts[0]["min"] == hosts[0]["max"] == 2
    assert json.loads(hosts[0]["resource_properties"]) == ["==", "$node_type", "gpu_a100_pcie"]
    assert [r["amount"] for r in body["reservations"] if r["resource_type"] == "virtual:floatingip"] == [1]
    assert body["start_date"] == "now"


def test_lease_that_never_becomes_active_times_out_clearly(tmp_path: Path, standin: StandIn) -> None:
    standin.state.behaviour = Behaviour(polls_until_active=None)
    leases.configure_from_clouds_yaml("chi-test", _clouds_yaml(tmp_path, standin))
    created = leases.create_lease(leases.LeaseRequest(name="tqa-stuck"))

    with pytest.raises(UserError, match=r"still STARTING after 0 s .*--timeout.*tqa infra release"):
        leases.wait_until_active(created.id, timeout_s=0.2, poll_s=0.01)


def test_lease_in_error_is_reported_not_waited_for(tmp_path: Path, standin: StandIn) -> None:
    standin.state.behaviour = Behaviour(polls_until_active=1, end_status="ERROR")
    leases.configure_from_clouds_yaml("chi-test", _clouds_yaml(tmp_path, standin))
    created = leases.create_lease(leases.LeaseRequest(name="tqa-broken"))

    with pytest.raises(UserError, match="is ERROR, not ACTIVE"):
        leases.wait_until_active(created.id, timeout_s=30, poll_s=0.01)


def test_blazar_refusal_is_one_sentence_with_its_reason(tmp_path: Path, standin: StandIn) -> None:
    standin.state.behaviour = Behaviour(refuse_create="Not enough hosts available")
    leases.configure_from_clouds_yaml("chi-test", _clouds_yaml(tmp_path, standin))

    with pytest.raises(UserError, match="Blazar refused lease 'tqa-staging-gpu': .*Not enough hosts available"):
        leases.create_lease(leases.LeaseRequest(name="tqa-staging-gpu"))
    assert standin.state.leases == {}


def test_wrong_credentials_are_one_sentence_before_any_lease(tmp_path: Path, standin: StandIn) -> None:
    clouds = _clouds_yaml(tmp_path, standin, secret="wrong")
    leases.configure_from_clouds_yaml("chi-test", clouds)

    with pytest.raises(UserError) as refused:
        leases.create_lease(leases.LeaseRequest(name="tqa-staging-gpu"))
    assert str(refused.value) == leases.BAD_CREDENTIALS
    with pytest.raises(UserError, match="refused the credentials"):
        leases.wait_until_active("any-lease", timeout_s=1, poll_s=0.01)
    with pytest.raises(UserError, match="refused the credentials"):
        leases.release_lease("any-lease")
    assert not any(path.endswith("/leases") or "/leases/" in path for _, path, _ in standin.state.requests)

    # What the user sees from `tqa infra lease`: the sentence, exit code 2, no traceback.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    cli = [sys.executable, "-m", "ops.cli", "infra", "lease", "staging", "--cloud", "chi-test"]
    cli += ["--clouds-file", str(clouds)]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert leases.BAD_CREDENTIALS in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr and "Unauthorized" not in done.stderr


def test_release_deletes_by_id_and_by_name(tmp_path: Path, standin: StandIn) -> None:
    leases.configure_from_clouds_yaml("chi-test", _clouds_yaml(tmp_path, standin))
    first = leases.create_lease(leases.LeaseRequest(name="tqa-a"))
    leases.create_lease(leases.LeaseRequest(name="tqa-b"))

    leases.release_lease(first.id)
    leases.release_lease("tqa-b")

    assert standin.state.leases == {}
    with pytest.raises(UserError, match="No lease 'tqa-a' found"):
        leases.release_lease("tqa-a")


def test_unknown_cloud_is_a_user_error(tmp_path: Path, standin: StandIn) -> None:
    with pytest.raises(UserError, match="Cloud 'chi-nowhere' is not in clouds.yaml"):
        leases.configure_from_clouds_yaml("chi-nowhere", _clouds_yaml(tmp_path, standin))


def test_extend_prolongs_only_a_lease_that_ends_soon(tmp_path: Path, standin: StandIn) -> None:
    from datetime import UTC, datetime, timedelta

    leases.configure_from_clouds_yaml("chi-test", _clouds_yaml(tmp_path, standin))
    created = leases.create_lease(leases.LeaseRequest(name="tqa-production-gpu", hours=48))
    end = datetime.fromisoformat(created.end_date).replace(tzinfo=UTC)

    # Two days left, extend only within one: nothing is asked of Blazar.
    same, extended = leases.extend_lease(created.id, hours=24, if_ending_within_h=24)
    assert not extended and same.end_date == created.end_date
    assert not any(method == "PUT" for method, _, _ in standin.state.requests)

    # A day later it ends within 25 h: prolonged by 24 h, through Blazar's update call.
    later, extended = leases.extend_lease(
        created.id, hours=24, if_ending_within_h=25, now=datetime.now(UTC) + timedelta(hours=24)
    )
    assert extended
    assert datetime.fromisoformat(later.end_date).replace(tzinfo=UTC) - end == timedelta(hours=24)
    ((_, path, body),) = [r for r in standin.state.requests if r[0] == "PUT"]
    assert path.endswith(created.id) and body["end_date"] == (end + timedelta(hours=24)).strftime("%Y-%m-%d %H:%M")


def test_extend_refused_by_blazar_says_why(tmp_path: Path, standin: StandIn) -> None:
    leases.configure_from_clouds_yaml("chi-test", _clouds_yaml(tmp_path, standin))
    created = leases.create_lease(leases.LeaseRequest(name="tqa-production-gpu"))
    standin.state.behaviour = Behaviour(refuse_update="Not enough resources available after the lease")
    with pytest.raises(UserError, match="refused to extend lease tqa-production-gpu by 24 h: .*Not enough resources"):
        leases.extend_lease(created.id, hours=24)
