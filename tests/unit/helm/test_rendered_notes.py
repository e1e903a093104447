"""NOTES.txt as `helm install` prints it: what the installer must check or do next."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.unit.helm.chart import CHART_DIR, NAMESPACE, RELEASE, user_values

pytestmark = pytest.mark.chart


def notes(values: dict[str, Any] | None = None) -> str:
    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(
            user_values(values), name=RELEASE, namespace=NAMESPACE, is_install=True
        )
    [text] = [text for key, text in rendered.items() if key.endswith("/NOTES.txt")]
    return str(text)


def test_notes_say_to_check_the_dns_peers_of_the_network_policy() -> None:
    # The default DNS peer (pods labelled k8s-app=kube-dns) is wrong for NodeLocal
    # DNSCache or OpenShift: the daemon then resolves no registry and every pull fails.
    text = notes()
    assert "networkPolicy.egress.dnsTo" in text
    assert "k8s-app=kube-dns" in text
    assert "networkPolicy.egress.dnsTo" not in notes({"networkPolicy": {"enabled": False}})


def test_notes_say_the_registry_egress_keeps_off_the_metadata_service() -> None:
    assert "169.254.169.254" in notes()
    host_socket = {"mode": "hostSocket", "hostSocket": {"socketGroupId": 999}}
    assert "169.254.169.254" not in notes(host_socket)


def test_notes_offer_port_forward_only_when_the_pod_loopback_answers() -> None:
    assert "port-forward" in notes()
    text = notes({"server": {"listenHost": "$(POD_IP)"}})
    assert "port-forward" in text
    assert "cannot reach it" in text
    assert "kubectl -n imagesvc port-forward" not in text
