"""A ``url:`` server's own TLS settings (the ``tls:`` block): whom to trust, and the
gateway's client certificate.

* ``ca_file``: a PEM file of CA certificates trusted for this server *instead of* the
  system's CAs (and of ``SSL_CERT_FILE``/``SSL_CERT_DIR``), as requests' ``verify=path``,
  httpx's ``verify=ssl.create_default_context(cafile=path)`` and curl's ``--cacert``
  do: a private CA's certificate vouches for this server only, and nothing else vouches
  for it.  To trust both, give a file holding both.  Without it the server is verified
  as every other one is (the environment's CAs, else the system's).
* ``client_cert`` + ``client_key``: PEM; the certificate the gateway presents (mutual
  TLS).  ``client_key`` may be left out when ``client_cert``'s file holds the key too.
  An encrypted key takes ``client_key_password`` (written as ``${VAR}``; masked in every
  listing, registered with the redaction registry, never in an error text).
* ``server_name``: the name sent as SNI and the server's certificate is checked against,
  instead of the url's host (a server reached by IP address, or by an internal name its
  certificate does not carry).  Set on the SSL context (``_named``), so the SDK's client
  and the side door, which share it, both use it.

Paths: ``~`` is expanded; a relative one is read from the folder of the config file
that names it (``placed``, as nginx and compose read theirs); a server added at run time
(the admin tool, REST: no file) gives absolute ones.

There is no ``verify: false``: the gateway sends its hosts' calls and the configured
credentials (``headers``, ``${caller.token}``) to that server, and without verification
anyone on the path could take them.  A self-signed server certificate is trusted by
giving it as ``ca_file``.

The files are read when the config is loaded (each problem refused there, naming the
file and the fix; a reload keeps the running server) and again each time a session is
opened (``context``: the one SSL context both the SDK's client and the HTTP side door
use, ``upstream/http_transports.py``).  A file's content is part of the config's
equality (``UpstreamTls`` compares the digest of the files as read): a reload after the
files changed restarts that server's sessions with them; without a reload a session
opened later (a reconnect) reads them anew.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from fast_mcp_gateway.telemetry.redaction import MASK, register_config_secrets

if TYPE_CHECKING:
    import ssl

MAX_PEM_BYTES = 10 * 1024 * 1024  # a CA bundle is a few hundred KB
_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_CERTIFICATE = frozenset({b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"X509 CERTIFICATE"})
# What users write for "do not verify" (httpx, requests, Go, curl): refused, saying why.
_VERIFY_OFF = ("verify", "insecure", "insecure_skip_verify", "skip_verify", "verify_ssl",
               "ssl_verify", "check_hostname")
_NO_VERIFY = (
    "is not supported: without verifying the server's certificate anyone on the path "
    "could pose as the server and take the calls and credentials (headers, tokens) the "
    "gateway sends it; trust the server's CA instead: ca_file: /path/to/ca.pem (for a "
    "self-signed certificate, the certificate itself)")


class TlsFileProblem(ValueError):
    """A ``tls:`` file that cannot be used: the words name the setting, the file and the
    fix (never a key's bytes or the password)."""


class _NoPassword(Exception):
    """OpenSSL asked for a key's password none was given for (never prompt on a tty)."""


class UpstreamTls(BaseModel):
    """A server's ``tls:`` block (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="PEM file of the CA certificates trusted for this server, instead of "
                    "the system's")
    client_cert: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="PEM file of the client certificate the gateway presents (mutual TLS)")
    client_key: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="PEM file of client_cert's private key (if not in client_cert's file)")
    client_key_password: Annotated[SecretStr, PlainSerializer(
        lambda _: MASK, when_used="json")] | None = Field(
        default=None, min_length=1, max_length=4096,
        description="the password of an encrypted client_key; write it as ${VAR}")
    server_name: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="the host name the server's certificate is checked against (and sent "
                    "as SNI), instead of the url's host")
    _read: str = PrivateAttr(default="")  # the files' digest, as read at validation

    @model_validator(mode="before")
    @classmethod
    def _verification_stays_on(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _VERIFY_OFF:
                if key in data:
                    raise ValueError(f"turning verification off ({key}) {_NO_VERIFY}")
        return data

    @model_validator(mode="after")
    def _usable(self) -> UpstreamTls:
        if self.client_cert is None and (self.client_key or self.client_key_password):
            raise ValueError("client_key and client_key_password go with client_cert (the "
                             "certificate of that key); give client_cert")
        if self.ca_file is None and self.client_cert is None and self.server_name is None:
            raise ValueError("give ca_file (the CA to trust for this server), client_cert "
                             "(the gateway's client certificate), server_name (the name its "
                             "certificate is for), or some of them; or remove tls:")
        if self.server_name is not None and not _host_name(self.server_name):
            raise ValueError(f"server_name {self.server_name!r} is not a host name: give the "
                             "name the server's certificate is for (e.g. billing.internal, "
                             "or an IP address), without scheme, port or path")
        password = self.password()
        if password == MASK:  # an edit that sent back what a listing shows
            raise ValueError("client_key_password: '***' is how a listing shows the "
                             "password, not the password; give it again (as ${VAR})")
        if password:
            register_config_secrets((password,), {}, {}, ())
        return self

    def checked(self) -> UpstreamTls:
        """This block, its files read and loaded once as ``context`` does (each problem
        raised as a ``TlsFileProblem``), their digest kept for the config's equality."""
        digest = hashlib.sha256()
        self.context(_bare, digest.update)
        self._read = digest.hexdigest()
        return self

    def password(self) -> str | None:
        """``client_key_password`` as given (for OpenSSL only)."""
        return None if self.client_key_password is None else (
            self.client_key_password.get_secret_value())

    def context(self, base: Callable[[], ssl.SSLContext],
                seen: Callable[[bytes], object] | None = None) -> ssl.SSLContext:
        """A new SSL context from the files as they are now: trusting ``ca_file`` alone,
        else what ``base()`` trusts (httpx's default for the SDK's client:
        ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else the system's CAs), with the client
        certificate loaded.  ``seen`` is given each file's bytes.  Raises
        ``TlsFileProblem``."""
        import ssl

        ca = _pem("ca_file", self.ca_file, seen) if self.ca_file else None
        cert = _pem("client_cert", self.client_cert, seen) if self.client_cert else None
        key = _pem("client_key", self.client_key, seen) if self.client_key else cert
        if ca is not None and self.ca_file is not None:
            _holds("ca_file", self.ca_file, ca, certificate=True)
            try:
                context = ssl.create_default_context(cafile=_path(self.ca_file))
            except (ssl.SSLError, OSError) as exc:
                raise TlsFileProblem(
                    f"ca_file {self.ca_file}: OpenSSL cannot read its certificates "
                    f"({_reason(exc)}); give a PEM file of CA certificates") from None
        else:
            context = base()
        if self.server_name is not None:
            context.sslobject_class = _named(self.server_name)
        if cert is None or key is None:
            return context
        _holds("client_cert", self.client_cert, cert, certificate=True)
        if (ended := _expired(cert)) is not None:  # (said by the server as a hang-up)
            raise TlsFileProblem(
                f"client_cert {self.client_cert} expired on {ended:%Y-%m-%d %H:%M} UTC, "
                "and servers refuse an expired certificate: put a renewed one (and its "
                "key) at that path")
        _holds("client_key" if self.client_key else "client_cert",
               self.client_key or self.client_cert, key, certificate=False)
        encrypted = b"ENCRYPTED PRIVATE KEY" in _blocks(key) or b"4,ENCRYPTED" in key
        password = self.password()
        if encrypted and not password:
            raise TlsFileProblem(
                f"client_key {self.client_key or self.client_cert}: the key is encrypted; "
                "give its password as client_key_password: ${VAR}")
        if password and not encrypted:  # (OpenSSL would not look at it: another key?)
            raise TlsFileProblem(
                f"client_key_password is given, but client_key "
                f"{self.client_key or self.client_cert} is not encrypted: remove "
                "client_key_password, or give the encrypted key it is the password of")
        self._load_chain(context, encrypted, password)
        return context

    def _load_chain(self, context: ssl.SSLContext, encrypted: bool,
                    password: str | None) -> None:
        import ssl

        assert self.client_cert is not None
        key_file = self.client_key or self.client_cert

        def asked() -> str:
            raise _NoPassword

        try:
            context.load_cert_chain(_path(self.client_cert),
                                    _path(self.client_key) if self.client_key else None,
                                    password=password or asked)
        except _NoPassword:
            raise TlsFileProblem(
                f"client_key {key_file}: the key is encrypted; give its password as "
                "client_key_password: ${VAR}") from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TlsFileProblem(
                    f"client_key {key_file} is not the key of client_cert "
                    f"{self.client_cert} (another certificate's?): give the key that goes "
                    "with that certificate") from None
            if encrypted:  # (OpenSSL says only "PEM lib")
                raise TlsFileProblem(
                    f"client_key_password does not decrypt client_key {key_file}: check "
                    "the password (the value of its ${VAR})") from None
            raise TlsFileProblem(
                f"client_cert {self.client_cert} / client_key {key_file}: OpenSSL cannot "
                f"read them ({_reason(exc)}); give PEM files of the certificate and its "
                "private key") from None
        except OSError as exc:  # (changed on disk since it was read)
            raise TlsFileProblem(f"client_cert {self.client_cert}: cannot be read "
                                 f"({exc.strerror or exc})") from None


_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


def _host_name(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return bool(_HOST.fullmatch(name)) and ".." not in name
    return True


@functools.cache
def _named(name: str) -> type[ssl.SSLObject]:
    """An ``SSLObject`` class whose client connections send ``name`` as SNI and check
    the certificate against it, whatever host the caller names: asyncio (the side door)
    and anyio (httpx) both make theirs by ``SSLContext.wrap_bio``, which makes an
    ``sslobject_class``."""
    import ssl

    class Named(ssl.SSLObject):
        @classmethod
        def _create(cls, incoming: Any, outgoing: Any, server_side: bool = False,
                    server_hostname: str | None = None, session: Any = None,
                    context: Any = None) -> Any:
            return super()._create(  # type: ignore[misc]
                incoming, outgoing, server_side=server_side,
                server_hostname=server_hostname if server_side else name,
                session=session, context=context)

    return Named


def placed(raw: Any, folder: Path | None, runtime: bool,
           fail: Callable[[str, str], object]) -> Any:
    """A server's ``tls:`` as written (``${VAR}`` expanded) with its files' paths as the
    gateway reads them: ``~`` expanded, a relative one joined to ``folder`` (the config
    file's; None: kept, read from the working directory: a mapping given in code).  A
    server added at run time (``runtime``: no file) must give absolute ones: a relative
    one is told to ``fail(field, message)``."""
    if not isinstance(raw, dict):
        return raw  # (said by the model's own check)
    out = dict(raw)
    for key in ("ca_file", "client_cert", "client_key"):
        written = raw.get(key)
        if not isinstance(written, str) or not written:
            continue
        path = os.path.expanduser(written)
        if os.path.isabs(path):
            out[key] = path
        elif runtime:
            fail(f"tls.{key}", f"{written} is a relative path, and a server added at run "
                 "time has no config file to read it from: give the file's absolute path "
                 f"(e.g. /etc/gateway/tls/{os.path.basename(path) or 'ca.pem'})")
        elif folder is not None:
            out[key] = os.path.join(folder, path)
    return out


def _bare() -> ssl.SSLContext:
    """The context validation loads the files into (no CAs of the system: a check)."""
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _path(written: str) -> str:
    return os.path.expanduser(written)


def _pem(setting: str, written: str, seen: Callable[[bytes], object] | None) -> bytes:
    """The bytes of ``written``, or a ``TlsFileProblem`` saying why not."""
    path = _path(written)
    where = ("" if os.path.isabs(path) else
             f" (a relative path is read from the gateway's working directory, {os.getcwd()})")
    try:
        # A device, pipe or socket is not opened at all (sec29: a FIFO or a terminal
        # blocked the event loop in open() or read(): an admin adding a server over the
        # network hung the gateway); the open itself does not wait (O_NONBLOCK).
        _regular(setting, written, os.stat(path).st_mode)
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            _regular(setting, written, os.fstat(file.fileno()).st_mode)
            data = file.read(MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        raise TlsFileProblem(f"{setting} {written}: no such file; check the path"
                             f"{where}") from None
    except IsADirectoryError:
        folder = (" (a folder of hashed CA certificates is SSL_CERT_DIR, for every server)"
                  if setting == "ca_file" else "")
        raise TlsFileProblem(f"{setting} {written}: is a directory; give the path of a PEM "
                             f"file{folder}") from None
    except PermissionError:
        raise TlsFileProblem(f"{setting} {written}: permission denied; make it readable by "
                             "the user the gateway runs as") from None
    except OSError as exc:
        raise TlsFileProblem(f"{setting} {written}: cannot be read "
                             f"({exc.strerror or exc})") from None
    if len(data) > MAX_PEM_BYTES:
        raise TlsFileProblem(f"{setting} {written}: is larger than "
                             f"{MAX_PEM_BYTES // (1024 * 1024)} MiB; give a PEM file")
    if seen is not None:
        seen(data)
    return data


_FIRST_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def _expired(data: bytes) -> datetime.datetime | None:
    """When the first certificate of ``data`` (the leaf) expired, if it has; None when
    it has not, or cannot be read here (OpenSSL reads it then: no refusal on a guess).
    Its DER walked to ``tbsCertificate.validity.notAfter`` (RFC 5280)."""
    import base64
    import binascii

    found = _FIRST_CERT.search(data)
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True) \
            if found else b""
        _, start, _ = _tlv(der, 0)  # Certificate
        _, at, _ = _tlv(der, start)  # tbsCertificate
        for _skipped in range(4 if der[at] == 0xA0 else 3):  # version, serial, alg, issuer
            at = _tlv(der, at)[2]
        _, validity, _ = _tlv(der, at)
        tag, begin, end = _tlv(der, _tlv(der, validity)[2])  # notAfter, after notBefore
        text = der[begin:end].decode("ascii")
        ended = datetime.datetime.strptime(
            text, "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ").replace(
            tzinfo=datetime.UTC)
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return ended if ended < datetime.datetime.now(datetime.UTC) else None


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: its tag, where its content starts and ends."""
    tag, size, at = der[at], der[at + 1], at + 2
    if size & 0x80:
        count = size & 0x7F
        size, at = int.from_bytes(der[at:at + count], "big"), at + count
    if at + size > len(der):
        raise ValueError("truncated")
    return tag, at, at + size


def _regular(setting: str, written: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError
    if not stat.S_ISREG(mode):
        raise TlsFileProblem(f"{setting} {written}: is not a regular file (a device, pipe "
                             "or socket); give the path of a PEM file")


def _blocks(data: bytes) -> set[bytes]:
    return set(_BLOCK.findall(data))


def _holds(setting: str, written: str | None, data: bytes, *, certificate: bool) -> None:
    """A ``TlsFileProblem`` unless ``data`` holds a PEM certificate (``certificate``) or
    a PEM private key."""
    blocks = _blocks(data)
    certs = bool(blocks & _CERTIFICATE)
    keys = any(b.endswith(b"PRIVATE KEY") for b in blocks)
    if (certs if certificate else keys):
        return
    what = "certificate (-----BEGIN CERTIFICATE-----)" if certificate else (
        "private key (-----BEGIN PRIVATE KEY-----)")
    if not blocks:
        tool = "x509" if certificate else "pkey"
        found = (f"is DER (binary), not PEM: convert it (openssl {tool} -inform der -in "
                 f"{written} -out {written}.pem)" if data[:1] == b"\x30"
                 else "is not a PEM file")
        raise TlsFileProblem(f"{setting} {written}: {found}; give a PEM file holding a "
                             f"{what}")
    if setting == "client_cert" and not certificate:
        raise TlsFileProblem(f"client_cert {written} holds no private key: give client_key "
                             "(the file of the certificate's key)")
    other = (" (it holds a private key: give the certificate's file)" if certificate and keys
             else " (it holds a certificate: is it client_cert?)" if certs else "")
    raise TlsFileProblem(f"{setting} {written}: holds no {what}{other}")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or getattr(exc, "strerror", None) or exc)


def _https_only(tls: UpstreamTls | None, info: ValidationInfo) -> UpstreamTls | None:
    """``tls:`` is for servers reached over ``https://`` (every replica of it); then its
    files are read (``UpstreamTls.checked``)."""
    if tls is None:
        return None
    data = info.data
    targets = [(f"instances[{i}].", t.command, t.url)
               for i, t in enumerate(data.get("instances") or ())]
    for where, command, url in targets or [("", data.get("command"), data.get("url"))]:
        if command is None and url is None:
            return tls  # neither: said by the server's own check (check_server)
        if command is not None or data.get("transport") == "stdio":
            raise ValueError(
                f"applies to servers reached by an https:// url; {where or 'this '}"
                f"{'' if where else 'server '}runs a command (stdio): give its program "
                "its own TLS settings in env (e.g. SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)")
        scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
        if scheme != "https":
            raise ValueError(
                f"applies to https:// servers only; {where}url is {scheme or 'no'}:// (no "
                "TLS): write the server's https:// URL, or remove tls:")
    return tls.checked()


TlsSetting = Annotated[UpstreamTls | None, AfterValidator(_https_only), Field(
    description="a url: server's TLS: ca_file, client_cert, client_key, "
                "client_key_password, server_name (config/upstream_tls.py)")]
"""``ServerConfig.tls``: checked against the server's url (the fields before it)."""
