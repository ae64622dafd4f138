"""Ed25519 signatures over ``manifest.json`` (detached, ``manifest.sig``).

The manifest lists every artifact's sha256, so signing its exact bytes signs the
whole bundle.  ``manifest.sig`` holds the raw 64-byte Ed25519 signature, so it can
also be checked with standard tools::

    openssl pkeyutl -verify -pubin -inkey key.pub.pem -rawin -in manifest.json -sigfile manifest.sig

Keys are standard files written and read with the ``cryptography`` package:
private keys PEM (PKCS#8; an OpenSSH private key is accepted too), public keys
OpenSSH (``ssh-ed25519 AAAA... comment``) or PEM (SubjectPublicKeyInfo).
"""
import base64
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from .._files import atomic_write_bytes
from .._lazy import require
from ..errors import BadInput, CheckFailed

PathLike = Union[str, "os.PathLike[str]"]
SIG_BYTES = 64

UNSIGNED = "unsigned"
SIGNED_UNVERIFIED = "signed-unverified"
VALID = "valid"
INVALID = "INVALID"


def _crypto() -> Any:
    require("cryptography", "bundle signatures")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519


def _read_key_file(path: "PathLike", what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise BadInput("{} file {} does not exist".format(what, p))
    data = p.read_bytes()
    if len(data) > 64 * 1024:
        raise BadInput("{} file {} is too large to be a key".format(what, p))
    return data


def fingerprint(public_key: Any) -> str:
    """OpenSSH-style fingerprint ``SHA256:...`` (what ``ssh-keygen -lf key.pub`` prints)."""
    serialization, _ = _crypto()
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def keygen(prefix: "PathLike", comment: str = "jetson-deploy", password: "Optional[bytes]" = None, overwrite: bool = False, public_format: str = "openssh") -> "Dict[str, str]":
    """Write ``PREFIX`` (PEM PKCS#8 private key, mode 0600) and ``PREFIX.pub``.

    ``public_format``: ``openssh`` (one line, ``ssh-ed25519 ...``) or ``pem``.
    """
    serialization, ed25519 = _crypto()
    priv_path = Path(prefix)
    pub_path = Path(str(prefix) + ".pub")
    for p in (priv_path, pub_path):
        if p.exists() and not overwrite:
            raise BadInput("{} already exists; pick another -o PREFIX or remove it".format(p))
    if public_format not in ("openssh", "pem"):
        raise BadInput("public key format must be openssh or pem, got {!r}".format(public_format))
    key = ed25519.Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    pub_key = key.public_key()
    if public_format == "openssh":
        pub = pub_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        if comment:
            pub += b" " + comment.encode("utf-8")
        pub += b"\n"
    else:
        pub = pub_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    priv_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(priv_path, priv)
    os.chmod(str(priv_path), 0o600)
    atomic_write_bytes(pub_path, pub)
    return {"private_key": str(priv_path), "public_key": str(pub_path), "fingerprint": fingerprint(pub_key)}


def load_private_key(path: "PathLike", password: "Optional[bytes]" = None) -> Any:
    serialization, ed25519 = _crypto()
    data = _read_key_file(path, "private key")
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            if not hasattr(serialization, "load_ssh_private_key"):
                raise BadInput("private key {} is in OpenSSH format, which needs cryptography >= 3.0; "
                               "use the PEM key from 'jetson-deploy bundle keygen' or upgrade cryptography".format(path))
            key = serialization.load_ssh_private_key(data, password=password)
        else:
            key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # password missing / given for an unencrypted key
        raise BadInput("private key {}: {} (set JETSON_DEPLOY_KEY_PASSWORD for encrypted keys)".format(path, exc))
    except ValueError as exc:
        raise BadInput("private key {} cannot be read ({}); expected an Ed25519 PEM or OpenSSH private key".format(path, exc))
    except Exception as exc:  # cryptography's UnsupportedAlgorithm: an encrypted OpenSSH key needs bcrypt
        if type(exc).__name__ != "UnsupportedAlgorithm":
            raise
        raise BadInput("private key {} is an encrypted OpenSSH key, which needs the 'bcrypt' package ({}): "
                       "pip install bcrypt, or use the PEM key from 'jetson-deploy bundle keygen'".format(path, exc))
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BadInput("private key {} is not an Ed25519 key; create one with 'jetson-deploy bundle keygen'".format(path))
    return key


def load_public_key(path: "PathLike") -> Any:
    serialization, ed25519 = _crypto()
    data = _read_key_file(path, "public key")
    try:
        if data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(b" ".join(data.split()[:2]))
        elif b"PRIVATE KEY" in data:
            raise BadInput("{} is a private key; pass the public key (.pub) to --key".format(path))
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, IndexError) as exc:
        raise BadInput("public key {} cannot be read ({}); expected an OpenSSH or PEM Ed25519 public key".format(path, exc))
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BadInput("public key {} is not an Ed25519 key".format(path))
    return key


def _password() -> "Optional[bytes]":
    pw = os.environ.get("JETSON_DEPLOY_KEY_PASSWORD")
    return pw.encode("utf-8") if pw else None


def sign_bundle(bundle: Any, key_path: "PathLike", password: "Optional[bytes]" = None) -> "Dict[str, str]":
    """Verify the bundle, then write ``manifest.sig`` (Ed25519 over manifest.json's bytes)."""
    from .reader import open_bundle

    key = load_private_key(key_path, password if password is not None else _password())
    b = open_bundle(bundle, verify=True)
    if b.packed:
        b.close()
        raise BadInput("sign needs a bundle directory: unpack {} first (then pack it again)".format(bundle))
    sig = key.sign(b.manifest_raw)
    atomic_write_bytes(b.signature_path, sig)
    return {"bundle": str(b.root), "signature": str(b.signature_path), "fingerprint": fingerprint(key.public_key()), "manifest_sha256": b.sha256}


def signature_state(bundle: Any, public_key: "Optional[PathLike]" = None) -> "Tuple[str, Optional[str]]":
    """(state, detail): unsigned | signed-unverified | valid | INVALID.

    Over the manifest bytes the bundle parsed and the signature bytes it read when it was opened,
    through the same directory handle: nothing is read from the path again."""
    return signature_state_of(bundle.manifest_raw, bundle.signature_raw, public_key)


def signature_state_of(manifest_raw: bytes, sig: "Optional[bytes]", public_key: "Optional[PathLike]" = None) -> "Tuple[str, Optional[str]]":
    """:func:`signature_state` from the manifest bytes and the signature bytes (None: unsigned)."""
    key = load_public_key(public_key) if public_key is not None else None  # a bad key file is BadInput either way
    if sig is None:
        return UNSIGNED, None
    if key is None:
        return SIGNED_UNVERIFIED, "pass --key PUBKEY to check the signature"
    fp = fingerprint(key)
    if len(sig) != SIG_BYTES:
        return INVALID, "manifest.sig is {} bytes, an Ed25519 signature is {}".format(len(sig), SIG_BYTES)
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(sig, manifest_raw)
    except InvalidSignature:
        return INVALID, "manifest.json does not match manifest.sig for key {} (edited after signing, or another key)".format(fp)
    return VALID, "signed by key {}".format(fp)


def verify_signature(bundle: Any, public_key: "PathLike") -> str:
    """Raise CheckFailed unless manifest.sig is a valid signature by ``public_key``."""
    state, detail = signature_state(bundle, public_key)
    if state == UNSIGNED:
        raise CheckFailed("{}: bundle is not signed (no manifest.sig); sign it with 'jetson-deploy bundle sign'".format(bundle.source))
    if state != VALID:
        raise CheckFailed("{}: signature INVALID: {}".format(bundle.source, detail))
    return detail or ""


REQUIRE_KEY_ENV = "JETSON_DEPLOY_REQUIRE_KEY"
TRUSTED_KEY_FILE = "/etc/jetson-deploy/trusted.pub"


def required_key(key: "Optional[PathLike]" = None) -> "Optional[str]":
    """The public key a bundle must be signed by before it runs: ``--key``, else the device-wide
    setting (``$JETSON_DEPLOY_REQUIRE_KEY``, else ``/etc/jetson-deploy/trusted.pub`` when anything
    is there), else None.

    A configured trust anchor that cannot be used is an error, never a silent "no key": the
    variable set but blank, or naming no regular file; ``trusted.pub`` a directory, a dangling
    symlink or unreadable (BadInput naming it)."""
    if key:
        return _usable_key(str(key), "--key")
    if REQUIRE_KEY_ENV in os.environ:
        env = os.environ[REQUIRE_KEY_ENV]
        if not env.strip():
            raise BadInput("{} is set but empty: set it to the Ed25519 public key every bundle must be signed by, "
                           "or unset it".format(REQUIRE_KEY_ENV))
        return _usable_key(env, REQUIRE_KEY_ENV)
    if os.path.lexists(TRUSTED_KEY_FILE):
        return _usable_key(TRUSTED_KEY_FILE, "the device-wide key")
    return None


def _usable_key(path: str, what: str) -> str:
    """PATH when it is a readable regular file (symlinks followed); BadInput naming it otherwise."""
    if not os.path.lexists(path):
        raise BadInput("signing key {} does not exist (from {}): give the Ed25519 public key file".format(path, what))
    if not os.path.exists(path):
        raise BadInput("signing key {} (from {}) is a dangling symlink: no bundle runs until it names the "
                       "Ed25519 public key file".format(path, what))
    if not os.path.isfile(path):
        raise BadInput("signing key {} (from {}) is not a regular file: no bundle runs until it is the "
                       "Ed25519 public key file".format(path, what))
    if not os.access(path, os.R_OK):
        raise BadInput("signing key {} (from {}) cannot be read: permission denied".format(path, what))
    return path


def open_trusted(bundle: Any, key: "Optional[PathLike]" = None) -> Any:
    """The opened, verified :class:`~.reader.Bundle` to run: every artifact checked once, and
    when a key is required (``key``, else the device-wide setting) a valid signature by it
    (CheckFailed, exit 1, otherwise).  The path is resolved once: the Bundle reads everything
    through the directory handle it opened, and the signature is checked over the manifest bytes
    it parsed, so a swap of the path after this call changes nothing.  Callers use this object
    from then on (a run session takes it as it is), never the path again; they close it."""
    from .reader import open_bundle

    pub = required_key(key)
    b = open_bundle(bundle, verify=True)
    try:
        if pub is not None:
            verify_signature(b, pub)
    except BaseException:
        b.close()
        raise
    return b
