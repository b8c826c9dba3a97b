"""`tqa infra lease|release|plan|apply|destroy|inventory|configure`: Chameleon leases, OpenTofu and Ansible."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ops.cli._io import console
from ops.infra.paths import INFRA_DIR

CloudOption = Annotated[str, typer.Option(help="clouds.yaml entry of the bare-metal site (CHI@TACC or CHI@UC).")]
CloudsFile = Annotated[
    Path | None, typer.Option(help="clouds.yaml to read (default: OS_CLIENT_CONFIG_FILE or ~/.config/openstack).")
]
VarFile = Annotated[Path, typer.Option(help="Terraform variables of the environment, e.g. infra/staging.tfvars.")]


def lease(
    name: Annotated[str, typer.Option(help="Lease name, e.g. tqa-staging-gpu.")] = "tqa-staging-gpu",
    nodes: Annotated[int, typer.Option(help="How many bare-metal nodes to reserve.")] = 1,
    node_type: Annotated[str, typer.Option(help="Chameleon node type.")] = "gpu_a100_pcie",
    hours: Annotated[float, typer.Option(help="Length of the reservation window.")] = 6.0,
    start: Annotated[datetime | None, typer.Option(help="Start (UTC); default now.")] = None,
    floating_ips: Annotated[int, typer.Option(help="Floating IPs to reserve with the nodes.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the lease to become ACTIVE.")] = 900.0,
    cloud: CloudOption = "chi-tacc",
    clouds_file: CloudsFile = None,
) -> None:
    """Reserve GPU nodes with Blazar, wait until ACTIVE, and write the reservation id for Terraform."""
    from ops.infra import lease as leases

    leases.configure_from_clouds_yaml(cloud, clouds_file)
    request = leases.LeaseRequest(
        name=name, nodes=nodes, node_type=node_type, hours=hours, start=start, floating_ips=floating_ips
    )
    created = leases.create_lease(request)
    console.print(f"lease {created.name} ({created.id}) created, {created.start_date} to {created.end_date}")
    active = leases.wait_until_active(created.id, timeout_s=timeout, say=console.print)
    path = leases.write_reservation(active, INFRA_DIR)
    console.print(f"[green]ACTIVE[/]: reservation {active.node_reservation_id} written to {path}")


def release(
    lease_ref: Annotated[str | None, typer.Argument(help="Lease id or name (default: the recorded one).")] = None,
    cloud: CloudOption = "chi-tacc",
    clouds_file: CloudsFile = None,
) -> None:
    """Delete the lease, freeing the nodes (instances on it are deleted by Chameleon)."""
    from ops.infra import lease as leases

    leases.configure_from_clouds_yaml(cloud, clouds_file)
    ref = lease_ref or leases.recorded_lease(INFRA_DIR).id
    leases.release_lease(ref)
    for leftover in (INFRA_DIR / "lease.auto.tfvars.json", INFRA_DIR / "lease.json"):
        leftover.unlink(missing_ok=True)
    console.print(f"lease {ref} released")


def plan(var_file: VarFile) -> None:
    """`tofu init` and `tofu plan` of infra/ with the environment's variables."""
    from ops.infra.terraform import InfraRunner

    runner = InfraRunner(var_file)
    runner.init()
    changes, text = runner.plan()
    typer.echo(text)
    console.print("changes pending" if changes else "no changes")


def apply(var_file: VarFile) -> None:
    """Create or update the environment (VMs, GPU nodes on the lease, volumes, floating IPs)."""
    from ops.infra.terraform import InfraRunner

    runner = InfraRunner(var_file)
    runner.init()
    typer.echo(runner.apply())


def destroy(var_file: VarFile) -> None:
    """Delete everything the environment's state holds."""
    from ops.infra.terraform import InfraRunner

    runner = InfraRunner(var_file)
    runner.init()
    typer.echo(runner.destroy())


def inventory(environment: Annotated[str, typer.Argument(help="staging, canary or production.")]) -> None:
    """Write Terraform's ansible_inventory output to ansible/inventory/<environment>/hosts.yml."""
    from ops.infra.terraform import InfraRunner

    path = InfraRunner(None).inventory(environment)
    console.print(f"inventory written to {path}")


def configure(
    environment: Annotated[str, typer.Argument(help="staging, canary or production.")],
    playbook: Annotated[str, typer.Option(help="Playbook in ansible/.")] = "site.yml",
    limit: Annotated[str | None, typer.Option(help="Only these hosts or groups.")] = None,
) -> None:
    """Run the Ansible playbook against the environment's inventory (ansible-runner)."""
    from ops.infra.configure import configure as run_configure

    result = run_configure(environment, playbook=playbook, limit=limit, say=console.print)
    console.print(f"[green]{result.status}[/]: {result.total_changed} changes on {len(result.changed)} hosts")
