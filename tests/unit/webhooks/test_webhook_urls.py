"""Where webhooks may go (SSRF): https only, never to private, loopback or link-local addresses, checked
after DNS with the request sent to the address that was checked. No network: the resolver is injected."""
from __future__ import annotations

import pytest

from batchgate.adapters.webhook_sender import WebhookSender
from batchgate.domain.webhooks import WebhookUrlError, check_url, resolve_target


def resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return table[host]
    resolve.calls = calls
    return resolve


PUBLIC = resolver({"hooks.example.com": ["93.184.215.14"]})


def test_a_public_https_url_goes_to_the_address_that_was_checked_with_the_name_as_host():
    target = resolve_target("https://hooks.example.com/batch?x=1", PUBLIC, allow_loopback=False)
    assert target.address == "93.184.215.14"
    assert target.connect_url == "https://93.184.215.14:443/batch?x=1"
    assert target.host_header == "hooks.example.com" and target.host == "hooks.example.com"
    v6 = resolve_target("https://h6.example/", resolver({"h6.example": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"]}),
                        allow_loopback=False)
    assert v6.connect_url == "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443/"
    assert resolve_target("https://hooks.example.com:8443", PUBLIC, allow_loopback=False).host_header \
        == "hooks.example.com:8443"


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254",  # IMDS
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "::",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "fd00:ec2::254",
])
def test_names_that_resolve_to_a_non_public_address_are_refused(address):
    with pytest.raises(WebhookUrlError):
        resolve_target("https://evil.example/", resolver({"evil.example": [address]}), allow_loopback=False)


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/", "https://[::1]/", "https://169.254.169.254/latest/meta-data/", "https://10.1.2.3:8443/",
    "https://[::ffff:10.0.0.1]/", "http://hooks.example.com/", "ftp://hooks.example.com/", "file:///etc/passwd",
    "https://user:pw@hooks.example.com/", "https:///nohost", "https://hooks.example.com/#frag", "",
    "https://hooks.example.com/" + "a" * 3000, "https://hooks.example.com/a b", "https://hooks.example.com:99999/",
    "javascript:alert(1)", "http://127.0.0.1:8080/hook",
    "https://localhost/hook", "https://LocalHost./hook", "https://api.localhost:8443/", "http://localhost:8080/",
])
def test_bad_urls_are_refused_before_any_dns(url):
    resolve = resolver({})
    with pytest.raises(WebhookUrlError):
        resolve_target(url, resolve, allow_loopback=False)
    assert resolve.calls == []


def test_one_private_address_among_public_ones_refuses_the_name():
    # Picking the public one would leave the choice to whoever answers DNS; refuse instead.
    mixed = resolver({"split.example": ["93.184.215.14", "10.0.0.7"]})
    with pytest.raises(WebhookUrlError, match="10.0.0.7"):
        resolve_target("https://split.example/", mixed, allow_loopback=False)
    with pytest.raises(WebhookUrlError, match="does not resolve"):
        resolve_target("https://none.example/", resolver({"none.example": []}), allow_loopback=False)


def test_local_mode_allows_http_to_loopback_only():
    local = resolver({"localhost": ["127.0.0.1"], "hooks.example.com": ["93.184.215.14"],
                      "inside.example": ["192.168.0.2"]})
    assert resolve_target("http://127.0.0.1:9999/h", local, allow_loopback=True).connect_url \
        == "http://127.0.0.1:9999/h"
    assert resolve_target("http://localhost:9999/h", local, allow_loopback=True).address == "127.0.0.1"
    for url in ("http://hooks.example.com/", "https://inside.example/", "https://169.254.169.254/"):
        with pytest.raises(WebhookUrlError):
            resolve_target(url, local, allow_loopback=True)
    assert check_url("https://hooks.example.com/h", allow_loopback=True)[0] == "https"


def test_the_sender_never_connects_to_a_blocked_address():
    rebinding = resolver({"rebind.example": ["127.0.0.1"]})
    sender = WebhookSender(timeout_seconds=1, allow_loopback=False, resolver=rebinding)
    result = sender.post("https://rebind.example/hook", {"webhook-id": "wh_1"}, "{}")
    assert not result.ok and result.detail.startswith("blocked:") and rebinding.calls == ["rebind.example"]


class _Server:
    """A raw TCP server on 127.0.0.1 that answers each connection with `respond(conn, request_bytes)`."""

    def __init__(self, respond):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.stop = threading.Event()

        def serve():
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(4096)
                    self.requests.append(data)
                    try:
                        respond(conn, self)
                    except OSError:
                        pass
        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.sock.close()


def test_an_endpoint_that_trickles_its_answer_is_cut_off_at_the_attempt_deadline():
    def trickle(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not server.stop.wait(0.1):   # a header byte every 0.1 s: each read is quick, the whole is not
            conn.sendall(b"X")
    server = _Server(trickle)
    try:
        sender = WebhookSender(timeout_seconds=1, allow_loopback=True, resolver=resolver({}))
        result = sender.post(f"http://127.0.0.1:{server.port}/hook", {"webhook-id": "wh_1"}, "{}")
    finally:
        server.close()
    assert (result.ok, result.detail) == (False, "timeout")


@pytest.mark.parametrize(("status_line", "ok"), [(b"204 No Content", True), (b"302 Found", False),
                                                 (b"500 Internal Server Error", False)])
def test_only_a_2xx_answer_counts_and_redirects_are_not_followed(status_line, ok):
    def answer(conn, server):
        conn.sendall(b"HTTP/1.1 " + status_line + b"\r\nLocation: http://169.254.169.254/\r\n"
                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    server = _Server(answer)
    try:
        sender = WebhookSender(timeout_seconds=5, allow_loopback=True,
                               resolver=resolver({"localhost": ["127.0.0.1"]}))
        result = sender.post(f"http://localhost:{server.port}/hook", {"webhook-id": "wh_1"}, '{"a":1}')
    finally:
        server.close()
    assert result.ok is ok and len(server.requests) == 1
    head = server.requests[0].decode().lower()
    assert head.startswith("post /hook http/1.1") and f"host: localhost:{server.port}" in head
    assert "webhook-id: wh_1" in head


def _certificates(directory, name: str):
    """A CA and a server certificate for `name` it signed (cryptography, a dependency of moto)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key, issuer: str, signer, *, ca: bool):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
                critical=True)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = cert(name, key, "test CA", ca_key, ca=False)
    paths = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


class _TlsServer:
    """HTTPS on 127.0.0.1 with a certificate for one name; notes each connection's SNI and request head."""

    def __init__(self, paths):
        import socket
        import ssl
        import threading
        self.names: list[str | None] = []
        self.requests: list[bytes] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(paths["cert"], paths["key"])
        context.sni_callback = lambda sock, name, ctx: self.names.append(name)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]

        def serve():
            while True:
                try:
                    raw, _ = self.sock.accept()
                except OSError:
                    return
                try:
                    with context.wrap_socket(raw, server_side=True) as conn:
                        data = b""
                        while b"\r\n\r\n" not in data:
                            data += conn.recv(4096)
                        self.requests.append(data)
                        conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                except (OSError, ssl.SSLError):
                    raw.close()
        threading.Thread(target=serve, daemon=True).start()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize(("certified", "ok"), [("hooks.test", True), ("other.test", False)])
def test_https_goes_to_the_checked_address_and_verifies_the_certificate_against_the_name(
        tmp_path, monkeypatch, certified, ok):
    """The sender connects to the IP address it checked, yet TLS sends the URL's name (SNI) and verifies the
    certificate against that name: a real endpoint's certificate passes, one for another name does not."""
    import certifi
    paths = _certificates(tmp_path, certified)
    monkeypatch.setattr(certifi, "where", lambda: str(paths["ca"]))   # trust the test CA only
    server = _TlsServer(paths)
    try:
        sender = WebhookSender(timeout_seconds=5, allow_loopback=True,
                               resolver=resolver({"hooks.test": ["127.0.0.1"]}))
        result = sender.post(f"https://hooks.test:{server.port}/hook", {"webhook-id": "wh_1"}, "{}")
    finally:
        server.close()
    assert result.ok is ok, result
    assert server.names[:1] == ["hooks.test"]
    if ok:
        head = server.requests[0].decode().lower()
        assert head.startswith("post /hook http/1.1") and f"host: hooks.test:{server.port}" in head
    else:
        assert "certificate" in result.detail.lower() and server.requests == []
