"""Chameleon leases through python-chi and Blazar: reserve GPU nodes for a window, wait, hand the id to Terraform."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ml.errors import UserError

BLAZAR_TIME_FORMAT = "%Y-%m-%d %H:%M"
# Chameleon's application credentials are the recommended way to authenticate scripts.
AUTH_KEYS = (
    "auth_url",
    "application_credential_id",
    "application_credential_secret",
    "username",
    "password",
    "user_domain_name",
    "project_name",
    "project_id",
    "project_domain_name",
)


class LeaseRequest(BaseModel):
    """What to reserve: bare-metal nodes of one type, optional floating IPs, for a time window."""

    name: str = Field(min_length=1)
    node_type: str = "gpu_a100_pcie"
    nodes: int = Field(default=1, ge=1)
    floating_ips: int = Field(default=0, ge=0)
    hours: float = Field(default=6.0, gt=0, le=7 * 24)
    start: datetime | None = None

    def window(self, now: datetime | None = None) -> tuple[str, str]:
        """Blazar's start and end strings (UTC, minute resolution); start "now" when none is given."""
        now = now or datetime.now(UTC)
        begin = self.start or now
        start = "now" if self.start is None else begin.strftime(BLAZAR_TIME_FORMAT)
        return start, (begin + timedelta(hours=self.hours)).strftime(BLAZAR_TIME_FORMAT)


class LeaseInfo(BaseModel):
    """The part of a Blazar lease that Terraform and the operator need."""

    id: str
    name: str
    status: str
    node_reservation_id: str | None
    fip_reservation_id: str | None
    start_date: str
    end_date: str


def configure_from_clouds_yaml(cloud: str, clouds_file: Path | None = None) -> None:
    """Point python-chi at the site described by one clouds.yaml entry (the same file Terraform reads)."""
    import chi
    from openstack.config import loader

    files = [str(clouds_file)] if clouds_file else None
    if clouds_file is not None and not clouds_file.is_file():
        raise UserError(f"{clouds_file} does not exist: download clouds.yaml from the Chameleon dashboard.")
    try:
        region = loader.OpenStackConfig(config_files=files, load_envvars=False).get_one(cloud=cloud)
    except Exception as exc:  # openstacksdk raises its own config errors with the cloud name in them
        raise UserError(f"Cloud {cloud!r} is not in clouds.yaml ({exc}); add it or pass --cloud.") from exc
    auth: dict[str, Any] = dict(region.config.get("auth", {}))
    if "auth_url" not in auth:
        raise UserError(f"Cloud {cloud!r} in clouds.yaml has no auth_url.")
    auth_type = region.config.get("auth_type") or (
        "v3applicationcredential" if "application_credential_id" in auth else "v3password"
    )
    chi.context.reset()
    chi.set("auth_type", auth_type)
    for key in AUTH_KEYS:
        if auth.get(key):
            chi.set(key, auth[key])
    if region.region_name:
        chi.set("region_name", region.region_name)
    chi.set("interface", region.config.get("interface", "public"))


BAD_CREDENTIALS = (
    "Chameleon refused the credentials in clouds.yaml (wrong, expired or deleted): create a new application "
    "credential on the Chameleon dashboard and put its id and secret in clouds.yaml."
)


@contextmanager
def _authenticated() -> Iterator[None]:
    """Keystone's 401 for bad credentials becomes one sentence instead of a keystoneauth traceback."""
    from keystoneauth1.exceptions import Unauthorized

    try:
        yield
    except Unauthorized as exc:
        raise UserError(BAD_CREDENTIALS) from exc


def _blazar_error(exc: Exception) -> str:
    return str(exc.args[0] if exc.args else exc).strip()


def _info(lease_json: dict[str, Any]) -> LeaseInfo:
    def first(kind: str) -> str | None:
        ids = [r["id"] for r in lease_json.get("reservations", []) if r.get("resource_type") == kind]
        return ids[0] if ids else None

    return LeaseInfo(
        id=lease_json["id"],
        name=lease_json["name"],
        status=lease_json["status"],
        node_reservation_id=first("physical:host"),
        fip_reservation_id=first("virtual:floatingip"),
        start_date=lease_json["start_date"],
        end_date=lease_json["end_date"],
    )


def create_lease(request: LeaseRequest) -> LeaseInfo:
    """Submit the lease to Blazar (python-chi builds the reservations); returns it as Blazar first reports it."""
    from blazarclient.exception import BlazarClientException
    from chi import lease as chi_lease
    from chi.clients import blazar

    start, end = request.window()
    reservations: list[dict[str, Any]] = []
    chi_lease.add_node_reservation(reservations, count=request.nodes, node_type=request.node_type)
    if request.floating_ips:
        chi_lease.add_fip_reservation(reservations, count=request.floating_ips)
    try:
        with _authenticated():
            created = blazar().lease.create(
                name=request.name, start=start, end=end, reservations=reservations, events=[]
            )
    except BlazarClientException as exc:
        raise UserError(f"Blazar refused lease {request.name!r}: {_blazar_error(exc)}") from exc
    return _info(created)


def wait_until_active(
    lease_id: str,
    timeout_s: float = 900.0,
    poll_s: float = 15.0,
    say: Callable[[str], None] = lambda _: None,
) -> LeaseInfo:
    """Poll Blazar until the lease is ACTIVE; a lease that errors or never starts becomes a clear UserError."""
    from chi.clients import blazar

    client = blazar()
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        with _authenticated():
            info = _info(client.lease.get(lease_id))
        if info.status != last:
            say(f"lease {info.name}: {info.status}")
            last = info.status
        if info.status == "ACTIVE":
            return info
        if info.status in {"ERROR", "TERMINATED", "TERMINATING", "DELETED"}:
            raise UserError(
                f"Lease {info.name} ({lease_id}) is {info.status}, not ACTIVE: check its events on the Chameleon "
                "dashboard, release it with `tqa infra release` and lease again."
            )
        if time.monotonic() >= deadline:
            raise UserError(
                f"Lease {info.name} ({lease_id}) is still {info.status} after {timeout_s:.0f} s (it starts at "
                f"{info.start_date}): wait longer with --timeout, or release it with `tqa infra release`."
            )
        time.sleep(poll_s)


def lease_id(lease_ref: str) -> str:
    """The id of a lease given by id or name (python-chi resolves names)."""
    from chi import lease as chi_lease
    from chi.exception import CHIValueError

    try:
        with _authenticated():
            return chi_lease.get_lease(lease_ref).id
    except CHIValueError as exc:
        raise UserError(f"No lease {lease_ref!r} found: pass a lease id or name.") from exc


def release_lease(lease_ref: str) -> None:
    """Delete a lease by id or name (python-chi resolves names)."""
    from blazarclient.exception import BlazarClientException
    from chi import lease as chi_lease
    from chi.exception import CHIValueError

    try:
        with _authenticated():
            lease = chi_lease.get_lease(lease_ref)
            lease.delete()
    except CHIValueError as exc:
        raise UserError(f"No lease {lease_ref!r} found: `tqa infra release` needs a lease id or name.") from exc
    except BlazarClientException as exc:
        raise UserError(f"Blazar refused to delete lease {lease_ref!r}: {_blazar_error(exc)}") from exc


def lease_files(infra_dir: Path, environment: str) -> tuple[Path, Path]:
    """Where one environment's lease is recorded: the Terraform variables file and the lease itself.

    Not `*.auto.tfvars.json`: Terraform would read every environment's file into every plan. `tqa infra plan/apply`
    pass the file of the environment they touch.
    """
    return infra_dir / f"lease-{environment}.tfvars.json", infra_dir / f"lease-{environment}.json"


def write_reservation(info: LeaseInfo, infra_dir: Path, environment: str) -> Path:
    """Record the environment's reservation id for Terraform and the lease beside it for release and extend."""
    if not info.node_reservation_id:
        raise UserError(f"Lease {info.name} has no node reservation; lease GPU nodes with `tqa infra lease`.")
    tfvars, record = lease_files(infra_dir, environment)
    tfvars.write_text(json.dumps({"gpu_reservation_id": info.node_reservation_id}, indent=2) + "\n")
    record.write_text(info.model_dump_json(indent=2) + "\n")
    return tfvars


def recorded_lease(infra_dir: Path, environment: str) -> LeaseInfo:
    """The lease `tqa infra lease <environment>` last wrote."""
    _, path = lease_files(infra_dir, environment)
    if not path.is_file():
        raise UserError(
            f"No lease recorded for {environment} in {path}: lease one with `tqa infra lease {environment}`, "
            "or pass the lease id or name."
        )
    return LeaseInfo.model_validate_json(path.read_text())


def _end(info: LeaseInfo) -> datetime:
    return datetime.fromisoformat(info.end_date.replace("Z", "")).replace(tzinfo=UTC)


def extend_lease(
    lease_id: str, hours: float, if_ending_within_h: float | None = None, now: datetime | None = None
) -> tuple[LeaseInfo, bool]:
    """Prolong the lease by `hours` (Blazar checks the nodes are free that long); with `if_ending_within_h`, only
    when it ends sooner than that. Returns the lease as Blazar reports it after, and whether it was extended."""
    from blazarclient.exception import BlazarClientException
    from chi.clients import blazar

    client = blazar()
    with _authenticated():
        info = _info(client.lease.get(lease_id))
    left_h = (_end(info) - (now or datetime.now(UTC))).total_seconds() / 3600
    if if_ending_within_h is not None and left_h > if_ending_within_h:
        return info, False
    try:
        with _authenticated():
            updated = client.lease.update(lease_id, prolong_for=f"{int(round(hours * 60))}m")
    except BlazarClientException as exc:
        raise UserError(
            f"Blazar refused to extend lease {info.name} by {hours:g} h: {_blazar_error(exc)} (the nodes may be "
            "reserved by someone else after it ends; lease other nodes and move the environment)."
        ) from exc
    return _info(updated), True
