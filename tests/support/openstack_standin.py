"""A local stand-in for Keystone v3, Blazar v1 and the part of Neutron that python-chi and the OpenStack provider call.

Neutron here: networks by name (the site's `public` and `sharednet1`), and security groups with their rules, created,
read and deleted as Neutron does (stateful groups; a new group carries Neutron's two default egress rules), so
`tofu apply` of the security groups lands in it and a test can read the rules back through Neutron's API.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

APP_CRED_ID = "standin-app-cred"
APP_CRED_SECRET = "standin-app-cred-value"  # noqa: S105 - a test fixture, accepted only by this stand-in
PUBLIC_NET_ID = "5c2b6d5e-0000-4000-8000-00000000pub1"
SHARED_NET_ID = "5c2b6d5e-0000-4000-8000-0000000shar1"
NETWORKS = [
    {"id": PUBLIC_NET_ID, "name": "public", "router:external": True, "status": "ACTIVE", "subnets": []},
    {"id": SHARED_NET_ID, "name": "sharednet1", "router:external": False, "status": "ACTIVE", "subnets": []},
]


@dataclass
class Behaviour:
    """How the stand-in's Blazar answers: how many polls until ACTIVE (None: never), or refuse creation."""

    polls_until_active: int | None = 2
    end_status: str = "ACTIVE"
    refuse_create: str | None = None
    refuse_update: str | None = None


@dataclass
class State:
    behaviour: Behaviour = field(default_factory=Behaviour)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    security_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    security_group_rules: dict[str, dict[str, Any]] = field(default_factory=dict)


class StandIn:
    """Keystone + Blazar + Neutron on one port; `url` is the auth_url for clouds.yaml."""

    def __init__(self, region: str = "CHI@TEST") -> None:
        self.region = region
        self.state = State()
        handler = _handler(self.state, self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/identity/v3"

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(state: State, standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _body(self) -> dict[str, Any] | None:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def _send(self, code: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("X-Auth-Token") in state.tokens:
                return True
            self._send(401, {"error": {"code": 401, "message": "The request you have made requires authentication."}})
            return False

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self._body()
            state.requests.append(("POST", self.path, body))
            if self.path == "/identity/v3/auth/tokens":
                return self._token(body or {})
            if not self._authorized():
                return
            if self.path == "/reservation/v1/leases":
                return self._create(body or {})
            if self.path == "/network/v2.0/security-groups":
                return self._send(201, {"security_group": self._create_group((body or {})["security_group"])})
            if self.path == "/network/v2.0/security-group-rules":
                return self._create_rule((body or {})["security_group_rule"])
            self._send(404, {"error": {"code": 404, "message": f"no route {self.path}"}})

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(("GET", self.path, None))
            if self.path in ("/identity/v3", "/identity/v3/"):
                return self._send(200, {"version": {"id": "v3.14", "status": "stable", "links": []}})
            if not self._authorized():
                return
            if self.path.startswith("/network/v2.0/networks"):
                query = parse_qs(urlsplit(self.path).query)
                names = query.get("name")
                return self._send(200, {"networks": [n for n in NETWORKS if not names or n["name"] in names]})
            if self.path.startswith("/network/v2.0/security-group"):
                return self._get_security(urlsplit(self.path).path.removeprefix("/network/v2.0/"))
            if self.path == "/reservation/v1/leases":
                return self._send(200, {"leases": list(state.leases.values())})
            if self.path.startswith("/reservation/v1/leases/"):
                return self._show(self.path.rsplit("/", 1)[1])
            self._send(404, {"error": {"code": 404, "message": f"no route {self.path}"}})

        def do_PUT(self) -> None:  # noqa: N802
            body = self._body() or {}
            state.requests.append(("PUT", self.path, body))
            if not self._authorized():
                return
            lease = state.leases.get(self.path.rsplit("/", 1)[1]) if "/reservation/v1/leases/" in self.path else None
            if lease is None:
                return self._send(404, {"error_code": 404, "error_message": f"no lease at {self.path}"})
            if state.behaviour.refuse_update:
                return self._send(409, {"error_code": 409, "error_message": state.behaviour.refuse_update})
            # blazarclient turns prolong_for into a new end date ("YYYY-MM-DD HH:MM") before it calls Blazar.
            if "end_date" in body:
                end = datetime.strptime(body["end_date"], "%Y-%m-%d %H:%M")
                lease["end_date"] = end.strftime("%Y-%m-%dT%H:%M:00.000000")
            self._send(200, {"lease": lease})

        def do_DELETE(self) -> None:  # noqa: N802
            state.requests.append(("DELETE", self.path, None))
            if not self._authorized():
                return
            if self.path.startswith("/network/v2.0/security-group-rules/"):
                rule = state.security_group_rules.pop(self.path.rsplit("/", 1)[1], None)
                if rule:
                    group = state.security_groups[rule["security_group_id"]]
                    group["security_group_rules"] = [r for r in group["security_group_rules"] if r["id"] != rule["id"]]
                    return self._send(204)
                return self._send(404, {"NeutronError": {"type": "SecurityGroupRuleNotFound", "message": "not found"}})
            if self.path.startswith("/network/v2.0/security-groups/"):
                group = state.security_groups.pop(self.path.rsplit("/", 1)[1], None)
                if group:
                    for rule in group["security_group_rules"]:
                        state.security_group_rules.pop(rule["id"], None)
                    return self._send(204)
                return self._send(404, {"NeutronError": {"type": "SecurityGroupNotFound", "message": "not found"}})
            lease_id = self.path.rsplit("/", 1)[1]
            if self.path.startswith("/reservation/v1/leases/") and state.leases.pop(lease_id, None):
                return self._send(204)
            self._send(404, {"error": {"code": 404, "message": f"Lease {lease_id} could not be found."}})

        def _token(self, body: dict[str, Any]) -> None:
            identity = body.get("auth", {}).get("identity", {})
            cred = identity.get("application_credential", {})
            if cred.get("id") != APP_CRED_ID or cred.get("secret") != APP_CRED_SECRET:
                return self._send(401, {"error": {"code": 401, "message": "Invalid application credential."}})
            token = uuid.uuid4().hex
            state.tokens.add(token)
            catalog = [
                {
                    "type": kind,
                    "name": name,
                    "id": uuid.uuid4().hex,
                    "endpoints": [
                        {
                            "id": uuid.uuid4().hex,
                            "interface": "public",
                            "region": standin.region,
                            "region_id": standin.region,
                            "url": f"{standin.base}{path}",
                        }
                    ],
                }
                for kind, name, path in (
                    ("identity", "keystone", "/identity/v3"),
                    ("reservation", "blazar", "/reservation/v1"),
                    ("network", "neutron", "/network"),
                )
            ]
            token_body = {
                "token": {
                    "methods": ["application_credential"],
                    "expires_at": "2999-01-01T00:00:00.000000Z",
                    "issued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                    "user": {"id": "u1", "name": "tester", "domain": {"id": "default", "name": "Default"}},
                    "project": {"id": "p1", "name": "CHI-000000", "domain": {"id": "default", "name": "Default"}},
                    "roles": [{"id": "r1", "name": "member"}],
                    "catalog": catalog,
                }
            }
            self._send(201, token_body, headers={"X-Subject-Token": token})

        def _create_group(self, spec: dict[str, Any]) -> dict[str, Any]:
            group_id = str(uuid.uuid4())
            group = {
                "id": group_id,
                "name": spec.get("name", ""),
                "description": spec.get("description", ""),
                "project_id": "p1",
                "tenant_id": "p1",
                "stateful": True,
                "tags": [],
                "security_group_rules": [],
            }
            state.security_groups[group_id] = group
            for ethertype in ("IPv4", "IPv6"):
                self._add_rule({"security_group_id": group_id, "direction": "egress", "ethertype": ethertype})
            return group

        def _add_rule(self, spec: dict[str, Any]) -> dict[str, Any]:
            rule = {
                "id": str(uuid.uuid4()),
                "security_group_id": spec["security_group_id"],
                "direction": spec["direction"],
                "ethertype": spec.get("ethertype", "IPv4"),
                "protocol": spec.get("protocol"),
                "port_range_min": spec.get("port_range_min"),
                "port_range_max": spec.get("port_range_max"),
                "remote_ip_prefix": spec.get("remote_ip_prefix"),
                "remote_group_id": spec.get("remote_group_id"),
                "description": spec.get("description", ""),
                "project_id": "p1",
                "tenant_id": "p1",
            }
            state.security_group_rules[rule["id"]] = rule
            state.security_groups[rule["security_group_id"]]["security_group_rules"].append(rule)
            return rule

        def _create_rule(self, spec: dict[str, Any]) -> None:
            for ref in (spec.get("security_group_id"), spec.get("remote_group_id")):
                if ref is not None and ref not in state.security_groups:
                    return self._send(404, {"NeutronError": {"type": "SecurityGroupNotFound", "message": ref}})
            self._send(201, {"security_group_rule": self._add_rule(spec)})

        def _get_security(self, path: str) -> None:
            kind, _, ident = path.partition("/")
            table = state.security_groups if kind == "security-groups" else state.security_group_rules
            key = "security_group" if kind == "security-groups" else "security_group_rule"
            if not ident:
                return self._send(200, {f"{key}s": list(table.values())})
            if ident not in table:
                return self._send(404, {"NeutronError": {"type": "NotFound", "message": f"{key} {ident} not found"}})
            self._send(200, {key: table[ident]})

        def _create(self, body: dict[str, Any]) -> None:
            if state.behaviour.refuse_create:
                return self._send(409, {"error_code": 409, "error_message": state.behaviour.refuse_create})
            lease_id = str(uuid.uuid4())
            now = datetime.now(UTC)
            reservations = [
                dict(r, id=str(uuid.uuid4()), lease_id=lease_id, status="pending") for r in body.get("reservations", [])
            ]
            lease = {
                "id": lease_id,
                "name": body["name"],
                "status": "PENDING",
                "user_id": "u1",
                "project_id": "p1",
                "created_at": now.strftime("%Y-%m-%d %H:%M:%S"),
                "start_date": now.strftime("%Y-%m-%dT%H:%M:00.000000"),
                "end_date": datetime.strptime(body["end_date"], "%Y-%m-%d %H:%M").strftime("%Y-%m-%dT%H:%M:00.000000"),
                "reservations": reservations,
                "events": [],
            }
            state.leases[lease_id] = lease
            state.polls[lease_id] = 0
            self._send(201, {"lease": lease})

        def _show(self, lease_id: str) -> None:
            lease = state.leases.get(lease_id)
            if lease is None:
                return self._send(404, {"error_code": 404, "error_message": f"Lease {lease_id} could not be found."})
            state.polls[lease_id] += 1
            wanted = state.behaviour.polls_until_active
            if wanted is not None and state.polls[lease_id] >= wanted:
                lease["status"] = state.behaviour.end_status
            elif lease["status"] == "PENDING" and state.polls[lease_id] > 1:
                lease["status"] = "STARTING"
            self._send(200, {"lease": lease})

    return Handler
