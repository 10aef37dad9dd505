"""Where the evaluators are: a static list, DNS of a (headless) Service, or Kubernetes EndpointSlices.

``parse_spec`` turns the ``--evaluators`` value into a :class:`Discovery`:

- ``http://a:8000,http://b:8000`` (or ``a:8000,b:8000``): a fixed list;
- ``dns://SERVICE:PORT``: every address the name resolves to (a headless Service has one A/AAAA record
  per ready pod), resolved again during the run;
- ``k8s://NAMESPACE/SERVICE[:PORT]``: the ready endpoints of the Service's EndpointSlices
  (``discovery.k8s.io/v1``) read through the ``kubernetes`` client, in-cluster or from the kubeconfig,
  read again during the run. ``PORT`` is a port number or name; by default the port named ``http``,
  else the first TCP port of the slice.

``Discovery.endpoints()`` returns base URLs (``http://10.0.0.7:8000``); it may block (DNS, API server),
so the HTTP executor calls it from a thread.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "Discovery",
    "DiscoveryError",
    "DnsDiscovery",
    "K8sDiscovery",
    "StaticDiscovery",
    "parse_spec",
]


class DiscoveryError(ValueError):
    """A discovery spec that cannot be understood."""


def _host_for_url(host: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url:
        raise DiscoveryError("empty evaluator address")
    if "://" not in url:
        url = "http://" + url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise DiscoveryError(f"evaluator address {url!r}: scheme must be http or https")
    return url


class Discovery:
    """Base class: ``endpoints()`` lists evaluator base URLs; ``dynamic`` says whether to ask again."""

    dynamic = False

    def endpoints(self) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class StaticDiscovery(Discovery):
    """A fixed list of base URLs."""

    def __init__(self, urls: Iterable[str]):
        seen: dict[str, None] = {}
        for url in urls:
            seen[normalise_url(url)] = None
        if not seen:
            raise DiscoveryError("no evaluator addresses given")
        self.urls = list(seen)

    def endpoints(self) -> list[str]:
        return list(self.urls)

    def describe(self) -> str:
        return ",".join(self.urls)


class DnsDiscovery(Discovery):
    """All addresses of a DNS name (a Kubernetes headless Service), resolved again on every call."""

    dynamic = True

    def __init__(
        self,
        host: str,
        port: int,
        scheme: str = "http",
        resolver: Callable[..., Sequence[Any]] = socket.getaddrinfo,
    ):
        if not host:
            raise DiscoveryError("dns:// needs a host name")
        self.host = host
        self.port = int(port)
        self.scheme = scheme
        self._resolve = resolver

    def endpoints(self) -> list[str]:
        try:
            infos = self._resolve(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return []  # a headless Service with no ready pod has no records
        out: dict[str, None] = {}
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            out[f"{self.scheme}://{_host_for_url(sockaddr[0])}:{self.port}"] = None
        return list(out)

    def describe(self) -> str:
        return f"dns://{self.host}:{self.port}"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute of a kubernetes client model, or key of the same object as a plain dict."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        camel = "".join(w if i == 0 else w.capitalize() for i, w in enumerate(name.split("_")))
        return obj.get(name, obj.get(camel, default))
    return getattr(obj, name, default)


class K8sDiscovery(Discovery):
    """Ready endpoints of a Service, from its EndpointSlices (``discovery.k8s.io/v1``).

    ``list_slices`` (for tests, or a custom client) is a callable ``(namespace, label_selector) ->``
    an EndpointSlice list (a ``V1EndpointSliceList``, a list of ``V1EndpointSlice`` or the same as dicts).
    By default it calls ``DiscoveryV1Api().list_namespaced_endpoint_slice`` with the in-cluster
    configuration, or the kubeconfig outside a cluster.
    """

    dynamic = True

    def __init__(
        self,
        namespace: str,
        service: str,
        port: int | str | None = None,
        scheme: str = "http",
        list_slices: Callable[[str, str], Any] | None = None,
    ):
        if not namespace or not service:
            raise DiscoveryError("k8s:// needs NAMESPACE/SERVICE")
        self.namespace = namespace
        self.service = service
        self.port = port
        self.scheme = scheme
        self._list_slices = list_slices

    def _default_lister(self) -> Callable[[str, str], Any]:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config(context=os.environ.get("RRP_KUBE_CONTEXT"))
        api = client.DiscoveryV1Api()

        def lister(namespace: str, label_selector: str) -> Any:
            return api.list_namespaced_endpoint_slice(namespace, label_selector=label_selector, timeout_seconds=10)

        return lister

    def _pick_port(self, ports: Sequence[Any]) -> int | None:
        ports = [p for p in ports or [] if (_get(p, "protocol") or "TCP") == "TCP"]
        if isinstance(self.port, int):
            for p in ports:
                if _get(p, "port") == self.port:
                    return self.port
            return self.port if not ports else None
        if isinstance(self.port, str):
            for p in ports:
                if _get(p, "name") == self.port:
                    return _get(p, "port")
            return None
        for p in ports:
            if _get(p, "name") == "http":
                return _get(p, "port")
        return _get(ports[0], "port") if ports else None

    def endpoints(self) -> list[str]:
        if self._list_slices is None:
            self._list_slices = self._default_lister()
        result = self._list_slices(self.namespace, f"kubernetes.io/service-name={self.service}")
        slices = _get(result, "items", result) if not isinstance(result, list) else result
        out: dict[str, None] = {}
        for sl in slices or []:
            if (_get(sl, "address_type") or "IPv4") not in ("IPv4", "IPv6"):
                continue
            port = self._pick_port(_get(sl, "ports") or [])
            if port is None:
                continue
            for ep in _get(sl, "endpoints") or []:
                cond = _get(ep, "conditions")
                # a nil "ready" is to be read as ready (API reference); terminating pods are not ready
                if _get(cond, "ready") is False:
                    continue
                for addr in _get(ep, "addresses") or []:
                    out[f"{self.scheme}://{_host_for_url(addr)}:{port}"] = None
        return list(out)

    def describe(self) -> str:
        suffix = f":{self.port}" if self.port is not None else ""
        return f"k8s://{self.namespace}/{self.service}{suffix}"


def parse_spec(spec: str | Sequence[str] | Discovery) -> Discovery:
    """``--evaluators`` value (or a list of URLs, or a Discovery) -> Discovery."""
    if isinstance(spec, Discovery):
        return spec
    if not isinstance(spec, str):
        return StaticDiscovery(spec)
    spec = spec.strip()
    if spec.startswith("dns://"):
        rest = spec[len("dns://") :].rstrip("/")
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise DiscoveryError(f"{spec!r}: expected dns://SERVICE:PORT")
        return DnsDiscovery(host.strip("[]"), int(port))
    if spec.startswith("k8s://"):
        rest = spec[len("k8s://") :].rstrip("/")
        namespace, sep, service = rest.partition("/")
        if not sep or not namespace or not service or "/" in service:
            raise DiscoveryError(f"{spec!r}: expected k8s://NAMESPACE/SERVICE[:PORT]")
        service, _, port_s = service.partition(":")
        port: int | str | None = None
        if port_s:
            port = int(port_s) if port_s.isdigit() else port_s
        return K8sDiscovery(namespace, service, port)
    return StaticDiscovery(part for part in spec.split(",") if part.strip())
