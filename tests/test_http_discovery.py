"""Endpoint discovery (static, dns://, k8s://) and endpoints joining or leaving during a map."""

from __future__ import annotations

import socket
import threading

import pytest
from kubernetes import client as k8s
from support import Evaluator, free_port, gauss_genomes, start_evaluators

from evaluator import ControllerSpec, EvaluationTask
from ga.discovery import (
    Discovery,
    DiscoveryError,
    DnsDiscovery,
    K8sDiscovery,
    StaticDiscovery,
    parse_spec,
)
from ga.http_executor import HttpExecutor
from game import DEFAULT_TRACK

pytestmark = pytest.mark.slow

TASK = EvaluationTask(track=DEFAULT_TRACK, max_frames=300, controller=ControllerSpec(kind="mlp"))


def genomes(n: int, seed: int = 9) -> list[list[float]]:
    return gauss_genomes(TASK.controller.genome_length(), n, seed)


# --- parsing -------------------------------------------------------------------------------------


def test_parse_static_lists():
    d = parse_spec(" http://a:8000, b:9000/ ,http://a:8000")
    assert isinstance(d, StaticDiscovery) and not d.dynamic
    assert d.endpoints() == ["http://a:8000", "http://b:9000"]
    assert parse_spec(["https://x:1"]).endpoints() == ["https://x:1"]


def test_parse_dns_and_k8s():
    d = parse_spec("dns://evaluator.rrp.svc.cluster.local:8000")
    assert isinstance(d, DnsDiscovery) and d.dynamic
    assert (d.host, d.port) == ("evaluator.rrp.svc.cluster.local", 8000)
    k = parse_spec("k8s://rrp/evaluator")
    assert isinstance(k, K8sDiscovery) and (k.namespace, k.service, k.port) == ("rrp", "evaluator", None)
    assert parse_spec("k8s://rrp/evaluator:http").port == "http"
    assert parse_spec("k8s://rrp/evaluator:8000").port == 8000


@pytest.mark.parametrize("spec", ["", " , ", "dns://nohost", "dns://:80", "k8s://only-namespace", "ftp://a:1"])
def test_parse_errors(spec):
    with pytest.raises(DiscoveryError):
        parse_spec(spec)


# --- dns:// --------------------------------------------------------------------------------------


def test_dns_resolves_localhost():
    addrs = {info[4][0] for info in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}
    found = DnsDiscovery("localhost", 8123).endpoints()
    assert "http://127.0.0.1:8123" in found
    assert len(found) == len(addrs)
    assert DnsDiscovery("no-such-host.invalid", 80).endpoints() == []


def test_dns_discovery_drives_a_real_evaluator():
    (ev,) = start_evaluators(1)
    try:
        gs = genomes(8)
        with HttpExecutor(f"dns://localhost:{ev.port}") as ex:
            assert list(ex.map(TASK, gs)) == TASK.evaluate_batch(gs)
            assert ex.stats()["endpoints"][f"http://127.0.0.1:{ev.port}"]["completed"] == len(gs)
    finally:
        ev.stop()


def test_dns_records_changing_during_a_run_are_followed():
    """Two evaluators on the same port of 127.0.0.1 and 127.0.0.2, like two pods of a headless
    Service; the name first resolves to the first only, then (mid-run) to the second only."""
    port = free_port("127.0.0.1", "127.0.0.2")
    a = Evaluator(host="127.0.0.1", port=port)
    b = Evaluator(host="127.0.0.2", port=port)
    try:
        a.wait_ready()
        b.wait_ready()
        records = {"ips": ["127.0.0.1"]}

        def resolver(host, port, type=0):  # noqa: A002 - getaddrinfo's signature
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in records["ips"]]

        def on_event(kind, info):
            if kind == "result" and info["endpoint"] == a_url:
                records["ips"] = ["127.0.0.2"]

        a_url, b_url = f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port}"
        gs = genomes(30)
        discovery = DnsDiscovery("evaluator.test", port, resolver=resolver)
        with HttpExecutor(discovery, refresh_interval=0.05, on_event=on_event) as ex:
            assert list(ex.map(TASK, gs, chunksize=1)) == TASK.evaluate_batch(gs)
            endpoints = ex.stats()["endpoints"]
        assert endpoints[b_url]["completed"] > 0
        assert a_url not in endpoints or endpoints[a_url]["state"] == "gone"
    finally:
        a.stop()
        b.stop()


# --- k8s:// --------------------------------------------------------------------------------------


def _slice(addresses_ready, port=8000, port_name="http", address_type="IPv4", extra_ports=()):
    ports = [k8s.DiscoveryV1EndpointPort(name=port_name, port=port, protocol="TCP")]
    ports += [k8s.DiscoveryV1EndpointPort(name=n, port=p, protocol="TCP") for n, p in extra_ports]
    return k8s.V1EndpointSlice(
        address_type=address_type,
        metadata=k8s.V1ObjectMeta(name="evaluator-abc", labels={"kubernetes.io/service-name": "evaluator"}),
        endpoints=[
            k8s.V1Endpoint(addresses=[addr], conditions=k8s.V1EndpointConditions(ready=ready))
            for addr, ready in addresses_ready
        ],
        ports=ports,
    )


def test_k8s_endpoint_slices_ready_endpoints_and_ports():
    """A Kubernetes cluster cannot run on this machine: the EndpointSlice list the API server would
    return is built from the ``kubernetes`` client's own models and injected into the discovery."""
    calls = []

    def list_slices(namespace, label_selector):
        calls.append((namespace, label_selector))
        return k8s.V1EndpointSliceList(
            items=[
                _slice([("10.1.0.5", True), ("10.1.0.6", False), ("10.1.0.7", None)],
                       extra_ports=[("metrics", 9100)]),
                _slice([("fd00::7", True)], address_type="IPv6"),
                _slice([("pod.example", True)], address_type="FQDN"),
            ]
        )

    d = K8sDiscovery("rrp", "evaluator", list_slices=list_slices)
    assert d.endpoints() == ["http://10.1.0.5:8000", "http://10.1.0.7:8000", "http://[fd00::7]:8000"]
    assert calls == [("rrp", "kubernetes.io/service-name=evaluator")]
    assert K8sDiscovery("rrp", "evaluator", port="metrics", list_slices=list_slices).endpoints()[:1] == [
        "http://10.1.0.5:9100"
    ]
    assert K8sDiscovery("rrp", "evaluator", port="grpc", list_slices=list_slices).endpoints() == []
    # the same list as plain JSON dicts (camelCase, as the API server sends it)
    as_dicts = [{"addressType": "IPv4", "ports": [{"name": "http", "port": 8000}],
                 "endpoints": [{"addresses": ["10.2.0.1"], "conditions": {"ready": True}}]}]
    assert K8sDiscovery("rrp", "e", list_slices=lambda ns, sel: as_dicts).endpoints() == ["http://10.2.0.1:8000"]


def test_k8s_without_a_cluster_says_so(monkeypatch, tmp_path):
    from kubernetes.config import ConfigException

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    with pytest.raises(ConfigException):
        K8sDiscovery("rrp", "evaluator").endpoints()


def test_k8s_discovery_follows_pods_coming_and_going_during_a_run():
    """A Kubernetes cluster cannot run here: the EndpointSlices are injected, and point at real
    evaluator processes on 127.0.0.1 and 127.0.0.2 (same port, like two pods). Mid-run the first
    pod leaves the slice and the second joins; the run finishes on the second."""
    port = free_port("127.0.0.1", "127.0.0.2")
    a = Evaluator(host="127.0.0.1", port=port)
    b = Evaluator(host="127.0.0.2", port=port)
    lock = threading.Lock()
    current = {"pods": [("127.0.0.1", True), ("127.0.0.2", False)]}  # b not ready yet

    def list_slices(namespace, label_selector):
        with lock:
            return k8s.V1EndpointSliceList(items=[_slice(current["pods"], port=port)])

    def on_event(kind, info):
        if kind == "result" and info["endpoint"] == f"http://127.0.0.1:{port}":
            with lock:
                current["pods"] = [("127.0.0.1", False), ("127.0.0.2", True)]  # a terminating, b ready

    try:
        a.wait_ready()
        b.wait_ready()
        gs = genomes(30)
        discovery = K8sDiscovery("rrp", "evaluator", list_slices=list_slices)
        with HttpExecutor(discovery, refresh_interval=0.05, on_event=on_event) as ex:
            assert list(ex.map(TASK, gs, chunksize=1)) == TASK.evaluate_batch(gs)
            endpoints = ex.stats()["endpoints"]
        assert endpoints[f"http://127.0.0.2:{port}"]["completed"] > 0
    finally:
        a.stop()
        b.stop()


# --- a custom discovery --------------------------------------------------------------------------


class ListDiscovery(Discovery):
    dynamic = True

    def __init__(self, urls):
        self.urls = list(urls)

    def endpoints(self):
        return list(self.urls)

    def describe(self):
        return "list"


def test_an_endpoint_added_during_a_run_gets_work():
    a, b = start_evaluators(2)
    try:
        discovery = ListDiscovery([a.url])

        b_up = threading.Event()

        def on_event(kind, info):
            if kind == "result" and b.url not in discovery.urls:
                discovery.urls.append(b.url)
            if kind == "endpoint_up" and info["endpoint"] == b.url:
                b_up.set()

        gs = genomes(30)
        with HttpExecutor(discovery, refresh_interval=0.05, on_event=on_event) as ex:
            assert list(ex.map(TASK, gs, chunksize=1)) == TASK.evaluate_batch(gs)
            assert b_up.wait(60)
            # with both up, the next map certainly spreads over both
            assert list(ex.map(TASK, gs, chunksize=1)) == TASK.evaluate_batch(gs)
            endpoints = ex.stats()["endpoints"]
        assert endpoints[a.url]["completed"] > 0 and endpoints[b.url]["completed"] > 0
    finally:
        a.stop()
        b.stop()
