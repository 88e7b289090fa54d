#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (seed-*): real
inputs (the frames Firefox sends, the RFC 8188/8291 test vectors, JSON bodies from the tests),
in each target's input layout (see crates/tidings-fuzz). scripts/fuzz starts from them."""
import base64, hashlib, hmac, json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def b64d(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
def b64e(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

CHID = "28e6a170-10c3-4bfb-9cac-991e204ffc85"
KEY = "BBm6" + "A" * 80 + "172E="  # the shape of Firefox's padded applicationServerKey
FIREFOX = [
    '{"messageType":"hello","broadcasts":{},"use_webpush":true}',
    '{"channelID":"%s","messageType":"register","key":"%s"}' % (CHID, KEY),
    '{"channelID":"%s","messageType":"register"}' % CHID,
    '{"messageType":"ack","updates":[{"channelID":"%s","version":"1a","code":100}]}' % CHID,
    '{"channelID":"%s","messageType":"unregister","code":200}' % CHID,
    '{}',
    '{"messageType":"hello","broadcasts":{},"use_webpush":true,"uaid":"00112233445566778899aabbccddeeff"}',
    '{"messageType":"broadcast_subscribe","broadcasts":{"remote-settings/monitor_changes":"\\"0\\""}}',
    '{"messageType":"nack","version":"1a","code":301}',
]

def frame(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    head = bytes([(0x80 if fin else 0) | opcode])
    m = 0x80 if mask else 0
    n = len(payload)
    head += bytes([m | n]) if n < 126 else bytes([m | 126]) + struct.pack(">H", n) if n < 65536 else bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload

# websocket_frames: byte 0 bit 0 = role (0 server: masked frames from Firefox; 1 client).
write("websocket_frames", "firefox", b"\x10" + b"".join(frame(1, m.encode()) for m in FIREFOX[:3]))
write("websocket_frames", "ping-close", b"\x22" + frame(9, b"p") + frame(8, b"\x03\xe8bye"))
write("websocket_frames", "fragments", b"\x31" + frame(1, b"ab", False, None) + frame(10, b"", True, None)
      + frame(0, b"cd", False, None) + frame(0, b"e", True, None))
write("websocket_frames", "notification", b"\x41" + frame(1, json.dumps({"messageType": "notification",
      "channelID": CHID, "version": "1a", "data": "AAAA", "headers": {"encoding": "aes128gcm"}}).encode(), True, None))
write("websocket_frames", "long", b"\x08" + frame(2, b"x" * 300))

# push_session: lines; '#' lines are the node acting.
write("push_session", "firefox", "\n".join(FIREFOX[:2] + ["#d1a", FIREFOX[3], "#t20", FIREFOX[4], FIREFOX[5]]))
write("push_session", "resume", "\n".join([FIREFOX[6], "#bremote-settings/monitor_changes=\"1\"", FIREFOX[7],
      "#bremote-settings/monitor_changes=\"2\"", FIREFOX[8], "{}", "{}", "{}", "{}", "{}", "#t31", "{}"]))
write("push_session", "early", FIREFOX[1] + "\n" + FIREFOX[0])

# ece_aes128gcm: IKM(16) | salt(16) | rs selector | record plaintexts; and real bodies.
write("ece_aes128gcm", "rfc8188-3.1", b64d("I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg"))
write("ece_aes128gcm", "rfc8188-3.2", b64d("uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA"))
write("ece_aes128gcm", "rfc8291", b64d("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"))
write("ece_aes128gcm", "records", b64d("yqdlZ-tYemfogSmv7Ws5PQ") + b64d("DGv6ra1nlYgDCS1FRnbzlw") + bytes([7])
      + b"I am the\x01\x00" + b"walrus\x02\x00\x00\x00")

# ece_aesgcm: rs selector | Encryption line | Crypto-Key line | record plaintexts.
dh = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
write("ece_aesgcm", "headers", b"\x05salt=\"DGv6ra1nlYgDCS1FRnbzlw==\"; rs=4096\ndh=" + dh.encode() + b";p256ecdsa=" + dh.encode()
      + b"\n\x00\x00When I grow up\x00\x02\x00\x00watermelon")
write("ece_aesgcm", "one-record", b"\x27salt=DGv6ra1nlYgDCS1FRnbzlw\nkeyid=p256dh;dh=" + dh.encode() + b"\n\x00\x01\x00hello")

# vapid_auth: byte 0 even: Authorization and Crypto-Key lines; odd: JWT header and claims.
header = '{"typ":"JWT","alg":"ES256"}'
claims = '{"aud":"https://push.example","exp":1750003600,"sub":"mailto:ops@app.example"}'
write("vapid_auth", "signed", "\x01" + header + "\n" + claims)
write("vapid_auth", "signed-later", "\x05" + header + "\n" + '{"aud":"https://push.example/","exp":1750050000.5}')
token = b64e(header.encode()) + "." + b64e(claims.encode()) + "." + b64e(b"\x00" * 64)
write("vapid_auth", "vapid", "\x00vapid t=" + token + ", k=" + dh + "\n")
write("vapid_auth", "webpush", "\x00WebPush " + token + "\ndh=abc; p256ecdsa=" + dh)

# push_headers: byte 0 = body length (top bit: restricted); then header lines.
write("push_headers", "aes128gcm", "\x40TTL: 60\nUrgency: high\nTopic: news_1\nContent-Encoding: aes128gcm\n")
write("push_headers", "aesgcm", "\x40TTL: 2419200\nContent-Encoding: aesgcm\nEncryption: salt=\"DGv6ra1nlYgDCS1FRnbzlw==\"\nCrypto-Key: dh=" + dh + "=\n")
write("push_headers", "vapid", "\x80ttl: 0\nauthorization: vapid t=" + token + ", k=" + dh + "\n")
write("push_headers", "empty", "\x00TTL: 99999999999999999999\nurgency: very-low\n")

# hub_json: bodies from the hub's tests and the PWA kit.
sub = {"endpoint": "https://updates.push.services.mozilla.com/wpush/v2/gAAAA", "expirationTime": None,
       "keys": {"p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
                "auth": "BTBZMqHH6r4Tts7J_aSIgg"}}
for name, body in {
    "send-text": {"to": "everyone", "text": "hi"},
    "send-notification": {"to": {"topic": "news"}, "notification": {"title": "T", "body": "B", "navigate": "/x",
        "actions": [{"action": "a", "title": "A", "navigate": "/a"}]}, "app_badge": 2, "mutable": True,
        "ttl": 60, "urgency": "high", "topic": "t1", "send_at": "2026-11-21T12:00:00Z"},
    "send-payload": {"to": {"user": "alice"}, "payload": "AAEC", "send_at": 1750000100},
    "send-subscription": {"to": {"subscription": "00112233445566778899aabbccddeeff"}, "text": "x"},
    "subscribe": {"subscription": sub, "topics": ["news", "sport:fr"], "user_token": None},
    "target": "everyone",
}.items():
    write("hub_json", name, json.dumps(body))

# hub_user_token: byte 0 even: a token; odd: JWT header and claims lines, signed by the target.
uh, uc = '{"alg":"HS256","typ":"JWT"}', '{"sub":"alice","exp":1750003600,"jti":"j1"}'
write("hub_user_token", "signed", "\x01" + uh + "\n" + uc)
signed = b64e(uh.encode()) + "." + b64e(uc.encode())
sig = hmac.new(b"fuzz user-token secret", signed.encode(), hashlib.sha256).digest()
write("hub_user_token", "token", "\x00" + signed + "." + b64e(sig))

# agent_state: a state file as the agent writes it.
write("agent_state", "state", json.dumps({"format": "tidings-agent-state/1", "server": "ws://127.0.0.1:8080/",
    "uaid": "00112233445566778899aabbccddeeff", "subscriptions": [{"channel_id": CHID,
    "endpoint": "http://127.0.0.1:8080/wpush/v2/abc", "private_key": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "auth": "BTBZMqHH6r4Tts7J_aSIgg", "application_server_key": dh, "recent": ["1a", "1b"]}]}, indent=2))

# store_records: byte 0 picks the decoder (0 message, 1 channel, 2 node event, 3 key hash).
def text(t): return b"\xff\xff" if t is None else struct.pack(">H", len(t)) + t.encode()
msg = bytes(range(16)) + struct.pack(">Q", 1750003600) + text("t") + text("aesgcm") + text("salt=abc") + text(None) + b"\x00\x01\xff"
write("store_records", "message", b"\x00" + msg)
write("store_records", "channel", b"\x01\x01" + bytes(16) + struct.pack(">I", 7))
write("store_records", "deliver", b"\x02\x01" + bytes(range(16)) + struct.pack(">Q", 26) + msg)
write("store_records", "disconnect", b"\x02\x02" + bytes(range(16)))
write("store_records", "key-hash", b"\x03" + b"0f" * 16)
