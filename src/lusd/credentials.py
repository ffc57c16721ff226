"""C2PA Content Credentials: sign an edited image's manifest, and validate one (c2pa-python).

The manifest records a ``c2pa.opened`` action on the source image (its ingredient) and a
``c2pa.edited`` action with the IPTC digital source type, plus lusd's settings in an
``org.lusd.edit`` assertion. Signing needs a certificate chain (signer first, then its
CA; C2PA refuses a self-signed signer) and its private key, both PEM.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lusd import __version__
from lusd.disclosure import EditDisclosure
from lusd.errors import ImageInputError, SigningError

SETTINGS_LABEL = "org.lusd.edit"
_INSTALL = "C2PA needs c2pa-python: pip install 'lusd[c2pa]'"
#: Extended key usages C2PA accepts for a claim signer.
_SIGNER_USAGES = {
    "1.3.6.1.5.5.7.3.4",  # emailProtection
    "1.3.6.1.5.5.7.3.36",  # documentSigning
    "1.3.6.1.4.1.311.76.59.1.9",  # Microsoft document signing
    "1.3.6.1.5.5.7.3.8",  # timeStamping
    "1.3.6.1.5.5.7.3.9",  # OCSPSigning
}


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError:
        raise SigningError(_INSTALL) from None
    return c2pa


@dataclass(frozen=True)
class C2PASigner:
    """A checked certificate chain and key, ready to sign manifests."""

    chain_pem: bytes
    key_pem: bytes
    alg: str
    subject: str

    @classmethod
    def from_files(cls, cert: str | os.PathLike, key: str | os.PathLike) -> C2PASigner:
        """Load and check ``cert`` (PEM chain) and ``key`` (PEM); SigningError if unusable."""
        _c2pa()
        chain_pem, key_pem = _read(cert, "--c2pa-cert"), _read(key, "--c2pa-key")
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
        except ImportError:
            raise SigningError(_INSTALL) from None

        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise SigningError(
                f"--c2pa-cert {cert}: not a PEM certificate chain (-----BEGIN CERTIFICATE----- "
                "blocks, signer first)"
            ) from None
        try:
            private = serialization.load_pem_private_key(key_pem, password=None)
        except TypeError:
            raise SigningError(
                f"--c2pa-key {key}: the key is encrypted; give an unencrypted PEM key"
            ) from None
        except Exception:  # cryptography raises ValueError and its own types
            raise SigningError(
                f"--c2pa-key {key}: not a PEM private key (-----BEGIN PRIVATE KEY-----)"
            ) from None
        leaf = chain[0]
        _check_leaf(leaf, chain, cert)
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        pem = serialization.Encoding.PEM
        if private.public_key().public_bytes(pem, public) != leaf.public_key().public_bytes(
            pem, public
        ):
            raise SigningError(
                f"--c2pa-key {key} does not belong to the first certificate in {cert}"
            )
        return cls(chain_pem, key_pem, _algorithm(private, key), leaf.subject.rfc4514_string())

    def sign(
        self, data: bytes, mime: str, disclosure: EditDisclosure, source: bytes, title: str
    ) -> bytes:
        """``data`` (an encoded image) with a signed manifest embedded; ``source`` is the input."""
        c2pa = _c2pa()
        source_mime = _sniff_mime(source)
        agent = {"name": "lusd", "version": disclosure.version}
        actions = [
            {"action": "c2pa.opened", "parameters": {"ingredientIds": ["source"]}},
            {
                "action": "c2pa.edited",
                "digitalSourceType": disclosure.digital_source_type,
                "softwareAgent": agent,
                "description": f"LUSD edit towards {disclosure.target_prompt!r}",
            },
        ]
        manifest = {
            "claim_generator_info": [{"name": "lusd", "version": __version__}],
            "title": title,
            "format": mime,
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": actions}},
                {"label": SETTINGS_LABEL, "data": disclosure.to_dict()},
            ],
        }
        ingredient = {"title": "source image", "relationship": "parentOf", "label": "source"}
        try:
            signer = c2pa.Signer.from_info(
                c2pa.C2paSignerInfo(self.alg.encode(), self.chain_pem, self.key_pem, None)
            )
            builder = c2pa.Builder(manifest)
            builder.add_ingredient(ingredient, source_mime, io.BytesIO(source))
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
        except c2pa.C2paError as error:
            reason = " ".join(str(error).split())
            raise SigningError(f"C2PA signing failed ({self.subject}): {reason}") from None
        return out.getvalue()


def load_signer(cert: str | os.PathLike | None, key: str | os.PathLike | None) -> C2PASigner | None:
    """The signer of ``--c2pa-cert``/``--c2pa-key``; None when neither is given."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SigningError("--c2pa-cert and --c2pa-key go together: give both, or neither")
    return C2PASigner.from_files(cert, key)


def _read(path: str | os.PathLike, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SigningError(f"{option} {path}: cannot read it ({error.strerror})") from None


def _check_leaf(leaf: Any, chain: list[Any], cert: str | os.PathLike) -> None:
    from cryptography import x509

    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc < now:
        raise SigningError(f"--c2pa-cert {cert}: expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    if leaf.not_valid_before_utc > now:
        raise SigningError(
            f"--c2pa-cert {cert}: not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"
        )
    if len(chain) == 1 and leaf.issuer == leaf.subject:
        raise SigningError(
            f"--c2pa-cert {cert}: a self-signed certificate cannot sign C2PA manifests; issue "
            "the signer certificate from your own CA and give the chain (signer first, then CA)"
        )
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    if not {u.dotted_string for u in usages} & _SIGNER_USAGES:
        raise SigningError(
            f"--c2pa-cert {cert}: the signer certificate needs an extended key usage C2PA "
            "accepts (emailProtection or documentSigning)"
        )


def _algorithm(private: Any, key: str | os.PathLike) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if private.curve.name in curves:
            return curves[private.curve.name]
    elif isinstance(private, rsa.RSAPrivateKey):
        return "ps256"
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise SigningError(f"--c2pa-key {key}: use an EC P-256/384/521, RSA or Ed25519 key")


def _sniff_mime(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "", "image/png")
    except Exception:  # an unreadable source was refused long before signing
        return "application/octet-stream"


@dataclass
class CredentialReport:
    """What the C2PA manifest of a file says, and whether it validates."""

    #: "absent", "unchecked" (c2pa-python missing), "Invalid", "Valid" or "Trusted"
    state: str
    failures: list[str] = field(default_factory=list)
    signer: str = ""
    issuer: str = ""
    generator: str = ""
    actions: list[str] = field(default_factory=list)
    digital_source_types: list[str] = field(default_factory=list)
    ingredients: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def present(self) -> bool:
        return self.state not in ("absent", "unchecked")

    @property
    def valid(self) -> bool:
        return self.state in ("Valid", "Trusted")

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "valid": self.valid if self.present else None,
            "failures": self.failures,
            "signer": self.signer,
            "issuer": self.issuer,
            "generator": self.generator,
            "actions": self.actions,
            "digital_source_types": self.digital_source_types,
            "ingredients": self.ingredients,
            "settings": self.settings,
            "note": self.note,
        }


def read_credentials(
    path: str | os.PathLike, trust_anchors: str | os.PathLike | None = None
) -> CredentialReport:
    """Validate the C2PA manifest of ``path``; ``trust_anchors`` (PEM) are CAs you trust."""
    try:
        import c2pa
    except ImportError:
        return CredentialReport("unchecked", note=_INSTALL)
    data = _read_image_bytes(path)
    mime = _sniff_mime(data)
    try:
        context = None
        if trust_anchors is not None:
            anchors = _read(trust_anchors, "--c2pa-trust").decode("utf-8", errors="replace")
            settings = {"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors}}
            context = c2pa.Context(c2pa.Settings.from_dict(settings))
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), context=context)
        if reader is None:
            return CredentialReport("absent")
        with reader:
            state = reader.get_validation_state() or "Invalid"
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as error:
        reason = " ".join(str(error).split())
        return CredentialReport("Invalid", failures=[reason], note="the manifest cannot be read")
    return _report(state, results, manifest)


def _read_image_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ImageInputError(f"cannot read {path}: {error.strerror}") from None


def _report(state: str, results: dict[str, Any], manifest: dict[str, Any]) -> CredentialReport:
    active = results.get("activeManifest") or {}
    failures = [f.get("code", "?") for f in active.get("failure", [])]
    signature = manifest.get("signature_info") or {}
    generators = manifest.get("claim_generator_info") or []
    report = CredentialReport(
        state=state,
        failures=failures,
        signer=str(signature.get("common_name", "")),
        issuer=str(signature.get("issuer", "")),
        generator=" ".join(
            f"{g.get('name', '')} {g.get('version', '')}".strip() for g in generators[:1]
        ),
        ingredients=[str(i.get("title", "")) for i in manifest.get("ingredients") or []],
    )
    for assertion in manifest.get("assertions") or []:
        label, data = assertion.get("label", ""), assertion.get("data") or {}
        if label.startswith("c2pa.actions"):
            for action in data.get("actions", []):
                report.actions.append(str(action.get("action", "")))
                if action.get("digitalSourceType"):
                    report.digital_source_types.append(str(action["digitalSourceType"]))
        elif label == SETTINGS_LABEL and isinstance(data, dict):
            report.settings = data
    if state == "Valid" and "signingCredential.untrusted" in failures:
        report.note = "its signer is not on your trust list (add its CA with --c2pa-trust)"
    return report
