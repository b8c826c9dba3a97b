"""`tqa infra lease|extend|release|plan|apply|destroy|inventory|configure ENV`: leases, OpenTofu and Ansible.

Every command takes the environment it touches (staging, canary or production) and says it: each environment has
its own lease, Terraform workspace (state), variables file and inventory.
"""

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
VarFile = Annotated[
    Path | None, typer.Option(help="Terraform variables of the environment (default: infra/<environment>.tfvars).")
]
Environment = Annotated[str, typer.Argument(help="staging, canary or production.")]


def _say(environment: str, text: str) -> None:
    console.print(f"[bold]{environment}[/]: {text}")


def lease(
    environment: Environment,
    name: Annotated[str | None, typer.Option(help="Lease name (default: tqa-<environment>-gpu).")] = None,
    nodes: Annotated[int, typer.Option(help="How many bare-metal nodes to reserve.")] = 1,
    node_type: Annotated[str, typer.Option(help="Chameleon node type.")] = "gpu_a100_pcie",
    hours: Annotated[float, typer.Option(help="Length of the reservation window.")] = 6.0,
    start: Annotated[datetime | None, typer.Option(help="Start (UTC); default now.")] = None,
    floating_ips: Annotated[int, typer.Option(help="Floating IPs to reserve with the nodes.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the lease to become ACTIVE.")] = 900.0,
    cloud: CloudOption = "chi-tacc",
    clouds_file: CloudsFile = None,
) -> None:
    """Reserve the environment's GPU nodes with Blazar, wait until ACTIVE, and record the reservation for Terraform."""
    from ops.infra import lease as leases
    from ops.infra.terraform import _check_environment

    _check_environment(environment)
    leases.configure_from_clouds_yaml(cloud, clouds_file)
    request = leases.LeaseRequest(
        name=name or f"tqa-{environment}-gpu",
        nodes=nodes,
        node_type=node_type,
        hours=hours,
        start=start,
        floating_ips=floating_ips,
    )
    created = leases.create_lease(request)
    _say(environment, f"lease {created.name} ({created.id}) created, {created.start_date} to {created.end_date}")
    active = leases.wait_until_active(created.id, timeout_s=timeout, say=lambda text: _say(environment, text))
    path = leases.write_reservation(active, INFRA_DIR, environment)
    _say(environment, f"[green]ACTIVE[/]: reservation {active.node_reservation_id} written to {path}")


def extend(
    environment: Environment,
    hours: Annotated[float, typer.Option(help="How many hours to add.")] = 24.0,
    if_ending_within: Annotated[
        float | None, typer.Option(help="Only extend when the lease ends within this many hours (for a daily job).")
    ] = None,
    lease_ref: Annotated[
        str | None, typer.Option(help="Lease id or name (default: the environment's recorded lease).")
    ] = None,
    cloud: CloudOption = "chi-tacc",
    clouds_file: CloudsFile = None,
) -> None:
    """Prolong the environment's lease before it ends (Chameleon deletes the nodes when it does)."""
    from ops.infra import lease as leases
    from ops.infra.terraform import _check_environment

    _check_environment(environment)
    leases.configure_from_clouds_yaml(cloud, clouds_file)
    lease_id = leases.lease_id(lease_ref) if lease_ref else leases.recorded_lease(INFRA_DIR, environment).id
    info, extended = leases.extend_lease(lease_id, hours, if_ending_within_h=if_ending_within)
    leases.write_reservation(info, INFRA_DIR, environment)
    if extended:
        _say(environment, f"lease {info.name} extended by {hours:g} h: ends {info.end_date}")
    else:
        _say(environment, f"lease {info.name} ends {info.end_date}, more than {if_ending_within:g} h away: unchanged")


def release(
    environment: Environment,
    lease_ref: Annotated[str | None, typer.Option(help="Lease id or name (default: the environment's).")] = None,
    cloud: CloudOption = "chi-tacc",
    clouds_file: CloudsFile = None,
) -> None:
    """Delete the environment's lease, freeing the nodes (instances on it are deleted by Chameleon)."""
    from ops.infra import lease as leases
    from ops.infra.terraform import _check_environment

    _check_environment(environment)
    leases.configure_from_clouds_yaml(cloud, clouds_file)
    ref = lease_ref or leases.recorded_lease(INFRA_DIR, environment).id
    leases.release_lease(ref)
    for leftover in leases.lease_files(INFRA_DIR, environment):
        leftover.unlink(missing_ok=True)
    _say(environment, f"lease {ref} released")


def plan(environment: Environment, var_file: VarFile = None) -> None:
    """`tofu init` and `tofu plan` of the environment (its workspace, variables and lease)."""
    from ops.infra.terraform import InfraRunner

    runner = InfraRunner(environment, var_file)
    runner.init()
    _say(environment, f"planning workspace {environment} with {', '.join(runner._var_files())}")
    changes, text = runner.plan()
    typer.echo(text)
    _say(environment, "changes pending" if changes else "no changes")


def apply(environment: Environment, var_file: VarFile = None) -> None:
    """Create or update the environment (VMs, GPU nodes on its lease, volumes, floating IPs)."""
    from ops.infra.terraform import InfraRunner

    runner = InfraRunner(environment, var_file)
    runner.init()
    _say(environment, f"applying workspace {environment}")
    typer.echo(runner.apply())


def destroy(environment: Environment, var_file: VarFile = None) -> None:
    """Delete everything the environment's state holds (other environments are untouched)."""
    from ops.infra.terraform import InfraRunner

    runner = InfraRunner(environment, var_file)
    runner.init()
    _say(environment, f"destroying workspace {environment}")
    typer.echo(runner.destroy())


def inventory(environment: Environment) -> None:
    """Write the environment's ansible_inventory output to ansible/inventory/<environment>/hosts.yml."""
    from ops.infra.terraform import InfraRunner

    path = InfraRunner(environment, need_var_file=False).inventory()
    _say(environment, f"inventory written to {path}")


def configure(
    environment: Environment,
    playbook: Annotated[str, typer.Option(help="Playbook in ansible/.")] = "site.yml",
    limit: Annotated[str | None, typer.Option(help="Only these hosts or groups.")] = None,
    secrets_file: Annotated[
        Path | None,
        typer.Option(help="The environment's secrets as YAML, Ansible Vault-encrypted or not (passed as -e @file)."),
    ] = None,
    vault_password_file: Annotated[
        Path | None, typer.Option(help="File holding the vault password (or ANSIBLE_VAULT_PASSWORD_FILE).")
    ] = None,
    known_hosts: Annotated[
        Path | None,
        typer.Option(help="known_hosts with every node's host key (default: ansible/inventory/<env>/known_hosts)."),
    ] = None,
    ssh_key: Annotated[Path | None, typer.Option(help="Private key to log in with (default: ssh's own).")] = None,
) -> None:
    """Run the Ansible playbook against the environment's inventory, with its secrets and host keys."""
    from ops.infra.configure import configure as run_configure

    result = run_configure(
        environment,
        playbook=playbook,
        limit=limit,
        secrets_file=secrets_file,
        vault_password_file=vault_password_file,
        known_hosts=known_hosts,
        ssh_key=ssh_key,
        say=console.print,
    )
    _say(environment, f"[green]{result.status}[/]: {result.total_changed} changes on {len(result.changed)} hosts")
