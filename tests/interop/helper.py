"""Runs one operation of pywebpush / http_ece / py_vapid for Tidings' interop tests.

Usage: python helper.py <command>   (input: one JSON object on stdin; output: JSON on stdout)
"""
import base64
import json
import sys
import time

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid01, Vapid02
from py_vapid import jwt as vapid_jwt
from pywebpush import webpush


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private_key(raw):
    return ec.derive_private_key(int.from_bytes(unb64(raw), "big"), ec.SECP256R1())


def decrypt(inp):
    """Decrypt as a user agent: {encoding, body, privateKey, auth, salt?, dh?}."""
    extra = {}
    if inp["encoding"] == "aesgcm":
        extra = {"salt": unb64(inp["salt"]), "dh": unb64(inp["dh"])}
    plaintext = http_ece.decrypt(
        unb64(inp["body"]),
        private_key=private_key(inp["privateKey"]),
        auth_secret=unb64(inp["auth"]),
        version=inp["encoding"],
        **extra,
    )
    return {"plaintext": b64(plaintext)}


class _Capture:
    """Stands in for a requests session so pywebpush builds the request without sending."""

    class _Response:
        status_code = 201
        text = ""
        headers = {}
        reason = "Created"

    def post(self, url, data=None, headers=None, timeout=None):
        self.url, self.data, self.headers = url, data, dict(headers)
        return self._Response()


def request(inp):
    """The request pywebpush would send: {subscription, payload, encoding, ttl, privateKey, subject, draft?}."""
    capture = _Capture()
    key = inp["privateKey"]
    if inp.get("draft"):
        key = Vapid01.from_string(key)  # "Authorization: WebPush <jwt>" + "Crypto-Key: p256ecdsa="
    webpush(
        inp["subscription"],
        data=inp["payload"],
        vapid_private_key=key,
        vapid_claims={"sub": inp["subject"]},
        content_encoding=inp["encoding"],
        ttl=inp["ttl"],
        requests_session=capture,
    )
    headers = {name.lower(): str(value) for name, value in capture.headers.items()}
    return {"endpoint": capture.url, "headers": headers, "body": b64(capture.data or b"")}


def send(inp):
    """Send for real with pywebpush: {subscription, payload, encoding, ttl, privateKey, subject}."""
    response = webpush(
        inp["subscription"],
        data=inp["payload"],
        vapid_private_key=inp["privateKey"],
        vapid_claims={"sub": inp["subject"]},
        content_encoding=inp["encoding"],
        ttl=inp["ttl"],
    )
    return {"status": response.status_code}


def vapid_sign(inp):
    """py_vapid's headers for {privateKey, audience, subject, draft?}."""
    cls = Vapid01 if inp.get("draft") else Vapid02
    return cls.from_string(inp["privateKey"]).sign({"aud": inp["audience"], "sub": inp["subject"]})


def vapid_verify(inp):
    """Check a Tidings `vapid t=,k=` header with py_vapid: {authorization, publicKey, audience}."""
    if not Vapid02.verify(inp["authorization"]):
        raise ValueError("Vapid02.verify refused the header")
    params = dict(p.strip().split("=", 1) for p in inp["authorization"].split(" ", 1)[1].split(","))
    claims = vapid_jwt.decode(params["t"], inp["publicKey"])
    if claims["aud"] != inp["audience"]:
        raise ValueError("aud %r is not %r" % (claims["aud"], inp["audience"]))
    if not time.time() < claims["exp"] <= time.time() + 86400:
        raise ValueError("exp %r out of range" % claims["exp"])
    return {"claims": claims}


def vapid_pem(_inp):
    """A py_vapid key as PEM, with its public key, to test Tidings' PEM import."""
    vapid = Vapid02()
    vapid.generate_keys()
    public = vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return {"pem": vapid.private_pem().decode(), "publicKey": b64(public)}


COMMANDS = {
    "decrypt": decrypt,
    "request": request,
    "send": send,
    "vapid-sign": vapid_sign,
    "vapid-verify": vapid_verify,
    "vapid-pem": vapid_pem,
}

if __name__ == "__main__":
    command = COMMANDS.get(sys.argv[1] if len(sys.argv) > 1 else "")
    if command is None:
        sys.exit("unknown command; known: " + ", ".join(COMMANDS))
    try:
        print(json.dumps(command(json.loads(sys.stdin.read() or "{}"))))
    except Exception as error:  # reported to the Rust test as the failure reason
        sys.exit("%s: %s" % (type(error).__name__, error))
