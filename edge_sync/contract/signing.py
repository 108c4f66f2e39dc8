"""ed25519 signatures over a manifest's canonical JSON: the platform signs, a device verifies.

The platform keeps the private key; a device holds only the public key and refuses any manifest
whose signature or schema version it does not know, before downloading anything.
"""

import base64
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from edge_sync.contract.hold import HoldOrder, is_hold_payload
from edge_sync.contract.manifest import (
    SUPPORTED_SCHEMA_VERSIONS,
    ContractError,
    DeploymentManifest,
    SignatureInvalid,
    SignedManifest,
    UnknownSchemaVersion,
)

__all__ = [
    "canonical_json",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "sign_hold",
    "sign_manifest",
    "verify_hold",
    "verify_manifest",
]


def canonical_json(manifest: BaseModel) -> str:
    """Sorted keys, no whitespace: the exact bytes that are signed."""
    return json.dumps(manifest.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Write a new ed25519 key pair as PEM files (the private one readable by its owner only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def load_private_key(path: Path):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ContractError(f"{path}: not an unencrypted PEM ed25519 private key ({exc})") from exc


def load_public_key(path: Path):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise ContractError(f"{path}: not a PEM public key ({exc}); copy the platform's public key file") from exc


def _key_id(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_hold(order: HoldOrder, private_key) -> SignedManifest:
    """A hold order in the manifest's envelope (served where a manifest would be)."""
    return sign_manifest(order, private_key)


def verify_hold(signed: SignedManifest, public_key) -> HoldOrder:
    """The hold order, if and only if its signature verifies and it is one."""
    payload = _verified_payload(signed, public_key)
    if not is_hold_payload(payload):
        raise ContractError("the signed document is a deployment manifest, not a hold order")
    try:
        return HoldOrder.model_validate(payload)
    except ValidationError as exc:
        raise ContractError(f"signed hold order does not match the schema: {exc}") from exc


def sign_manifest(manifest: BaseModel, private_key) -> SignedManifest:
    text = canonical_json(manifest)
    signature = private_key.sign(text.encode())
    return SignedManifest(
        manifest_json=text, signature=base64.b64encode(signature).decode(), key_id=_key_id(private_key.public_key())
    )


def verify_manifest(signed: SignedManifest, public_key) -> DeploymentManifest:
    """The manifest, if and only if its signature verifies and its schema is known."""
    payload = _verified_payload(signed, public_key)
    if is_hold_payload(payload):
        raise ContractError("the signed document is a hold order, not a deployment manifest (see verify_hold)")
    try:
        return DeploymentManifest.model_validate(payload)
    except ValidationError as exc:
        raise ContractError(f"signed manifest does not match the schema: {exc}") from exc


def _verified_payload(signed: SignedManifest, public_key) -> dict:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(signed.signature, validate=True), signed.manifest_json.encode())
    except (InvalidSignature, ValueError) as exc:
        raise SignatureInvalid(
            f"manifest signature does not verify with key {_key_id(public_key)} (signed with {signed.key_id}); "
            "the manifest was altered or signed by another key — keep running the current model"
        ) from exc
    try:
        payload = json.loads(signed.manifest_json)
    except json.JSONDecodeError as exc:
        raise ContractError(f"signed document is not JSON ({exc}); rebuild it on the platform") from exc
    if not isinstance(payload, dict):
        raise ContractError("signed document is not a JSON object; rebuild it on the platform")
    version = payload.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnknownSchemaVersion(
            f"manifest schema version {version!r} is not supported (supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)}); "
            "update the edge agent before deploying this model"
        )
    return payload
