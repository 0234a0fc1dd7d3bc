"""Certificates and TLS-enabled PostgreSQL / MariaDB servers of the TLS tests' own.

The servers run on free loopback ports with data in a temporary folder, so the shared
test servers (scripts/databases.sh) stay as they are: those two have no TLS and serve
as the "server without TLS" cases. Needs the Debian binaries that script installs,
and root (PostgreSQL runs as the `postgres` OS user).
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "ds_tls_user"
PASSWORD = "ds_tls_pw"
CERT_USER = "ds_tls_cert"  # may log in only with a client certificate
CERT_USER_PASSWORD = "ds_tls_cert_pw"  # MariaDB asks for both; PostgreSQL's `cert` not
DATABASE = "ds_tls_db"


@dataclass
class Pem:
    cert: str
    key: str


@dataclass
class Pki:
    """A CA, a server certificate for `localhost`, one for another name, a client one,
    and a second CA that signed none of them."""

    ca: Pem
    server: Pem
    other_name_server: Pem
    client: Pem
    stranger_ca: Pem


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = Pem(cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key))
    return pem, cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    dns_names: list[str],
    usage: x509.ObjectIdentifier,
) -> Pem:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key))


def make_pki() -> Pki:
    ca, ca_cert, ca_key = _ca("ds-tls-test CA")
    stranger, _, _ = _ca("ds-tls-test stranger CA")
    server_usage = ExtendedKeyUsageOID.SERVER_AUTH
    return Pki(
        ca=ca,
        server=_leaf(ca_cert, ca_key, "localhost", ["localhost"], server_usage),
        other_name_server=_leaf(
            ca_cert, ca_key, "db.other.example", ["db.other.example"], server_usage
        ),
        client=_leaf(ca_cert, ca_key, CERT_USER, [], ExtendedKeyUsageOID.CLIENT_AUTH),
        stranger_ca=stranger,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write(path: Path, text: str, owner: str | None = None) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    if owner:
        shutil.chown(path, owner, owner)
    return path


def _wait_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no server came up on port {port}")


@dataclass
class Server:
    port: int
    folder: Path
    stop_commands: list[list[str]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    # Reloads the certificate files after `use_certificate` wrote new ones.
    reload: list[str] = field(default_factory=list)
    cert_path: Path | None = None
    key_path: Path | None = None
    owner: str | None = None

    def use_certificate(self, pem: Pem) -> None:
        """Serve `pem` from now on (the server rereads its certificate files)."""
        assert self.cert_path is not None and self.key_path is not None
        _write(self.cert_path, pem.cert, self.owner)
        _write(self.key_path, pem.key, self.owner)
        subprocess.run(self.reload, check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        for command in self.stop_commands:
            subprocess.run(command, check=False, capture_output=True, timeout=60)
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )


def start_postgres(pki: Pki, server_pem: Pem) -> Server:
    """A PostgreSQL 15 with TLS on a free port: USER/PASSWORD, CERT_USER by certificate."""
    folder = Path(tempfile.mkdtemp(prefix="ds-tls-pg-"))
    folder.chmod(0o755)
    shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    pwfile = _write(folder / "pw", PASSWORD + "\n", "postgres")
    _as_postgres(
        str(PG_BIN / "initdb"),
        "-D",
        str(data),
        "-U",
        USER,
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    )
    _write(data / "server.crt", server_pem.cert, "postgres")
    _write(data / "server.key", server_pem.key, "postgres")
    _write(data / "ca.crt", pki.ca.cert, "postgres")
    (data / "pg_hba.conf").write_text(
        f"hostssl all {CERT_USER} 127.0.0.1/32 cert\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = free_port()
    server = Server(
        port=port,
        folder=folder,
        cert_path=data / "server.crt",
        key_path=data / "server.key",
        owner="postgres",
    )
    server.reload = [
        "runuser",
        "-u",
        "postgres",
        "--",
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "reload",
    ]
    server.stop_commands.append(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]
    )
    _as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(data / "server.log"),
        "-w",
        "-t",
        "60",
        "start",
        "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
        "-c ssl=on -c ssl_ca_file=ca.crt -c fsync=off -c max_connections=20 "
        "-c shared_buffers=16MB",
    )
    import psycopg

    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=PASSWORD,
        dbname="postgres",
        autocommit=True,
        sslmode="require",
    ) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
        conn.execute(f"CREATE ROLE {CERT_USER} LOGIN")
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=PASSWORD,
        dbname=DATABASE,
        autocommit=True,
        sslmode="require",
    ) as conn:
        conn.execute("CREATE TABLE tls_rows (id int PRIMARY KEY, label text)")
        conn.execute("INSERT INTO tls_rows VALUES (1, 'one'), (2, 'two')")
        conn.execute(f"GRANT SELECT ON tls_rows TO {CERT_USER}")
    return server


def start_mariadb(pki: Pki, server_pem: Pem) -> Server:
    """A MariaDB with TLS on a free port: USER/PASSWORD, CERT_USER REQUIRE X509."""
    folder = Path(tempfile.mkdtemp(prefix="ds-tls-my-"))
    data = folder / "data"
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            "--user=root",
            f"--datadir={data}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    ca = _write(folder / "ca.pem", pki.ca.cert)
    cert = _write(folder / "server.pem", server_pem.cert)
    key = _write(folder / "server-key.pem", server_pem.key)
    sock = folder / "mysqld.sock"
    port = free_port()
    process = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={sock}",
            f"--log-error={folder / 'error.log'}",
            "--skip-name-resolve",
            f"--ssl-ca={ca}",
            f"--ssl-cert={cert}",
            f"--ssl-key={key}",
            "--innodb-buffer-pool-size=16M",
            "--max-connections=30",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(
        port=port,
        folder=folder,
        process=process,
        cert_path=cert,
        key_path=key,
        reload=["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", "FLUSH SSL"],
    )
    try:
        _wait_port(port, 90)
        script = f"""
CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%';
CREATE USER '{CERT_USER}'@'%' IDENTIFIED BY '{CERT_USER_PASSWORD}' REQUIRE X509;
CREATE DATABASE {DATABASE};
CREATE TABLE {DATABASE}.tls_rows (id INT PRIMARY KEY, label VARCHAR(10));
INSERT INTO {DATABASE}.tls_rows VALUES (1, 'one'), (2, 'two');
GRANT SELECT ON {DATABASE}.* TO '{CERT_USER}'@'%';
"""
        subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root"],
            input=script,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except Exception:
        server.stop()
        raise
    return server
