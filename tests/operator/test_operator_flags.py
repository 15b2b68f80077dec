"""``barman-cloud-plugin operator`` takes upstream's flags as upstream's Deployment passes them."""

from __future__ import annotations

import pytest

from barman_cloud.errors import InvalidInput
from barman_cloud_cli.main import build_parser
from barman_cloud_operator.process import OperatorConfig


def test_upstream_deployment_arguments_are_accepted() -> None:
    # kubernetes/deployment.yaml of plugin-barman-cloud, plus the other controller-runtime flags.
    args = build_parser().parse_args(
        [
            "operator", "--server-cert=/server/tls.crt", "--server-key=/server/tls.key",
            "--client-cert=/client/tls.crt", "--server-address=:9090", "--leader-elect",
            "--log-level=debug", "--metrics-bind-address=:8443", "--metrics-secure=false",
            "--health-probe-bind-address=:8081", "--enable-http2=false",
        ]
    )  # fmt: skip
    assert args.leader_elect is True
    assert args.log_level == "debug"
    assert (args.health_probe_bind_address, args.metrics_bind_address) == (":8081", ":8443")


def test_defaults_are_upstreams() -> None:
    args = build_parser().parse_args(["operator"])
    assert (args.leader_elect, args.health_probe_bind_address, args.metrics_bind_address) == (
        False,
        ":8081",
        "0",
    )
    assert build_parser().parse_args(["operator", "--leader-elect=false"]).leader_elect is False
    assert build_parser().parse_args(["operator", "--leader-elect=true"]).leader_elect is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["operator", "--leader-elect=maybe"])


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":8081", (None, 8081)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::]:8081", ("::", 8081)),
        ("0", None),
    ],
)
def test_health_probe_addresses(address: str, expected: tuple[str | None, int] | None) -> None:
    assert OperatorConfig(health_probe_bind_address=address).health_address() == expected


def test_a_bad_health_probe_address_is_refused_before_anything_starts() -> None:
    config = OperatorConfig(health_probe_bind_address="localhost", sidecar_image="example/image:1")
    with pytest.raises(InvalidInput, match="invalid --health-probe-bind-address 'localhost'"):
        config.validate()
