"""Write the seed inputs of the fuzz harnesses (fuzz/seeds/<parser>/) with the project's own
encoders: typical GB/T 28181 messages, SDP offers and answers, PS frames and RTP over TCP.
Run once (the seeds are committed): ``python fuzz/make_seeds.py``."""

from __future__ import annotations

from pathlib import Path

from vmesh.gb28181.manscdp import (
    CatalogItem,
    CatalogNotify,
    CatalogResponse,
    DeviceInfoResponse,
    Keepalive,
    PtzControl,
    RecordInfoResponse,
    RecordItem,
    encode_manscdp,
    ptz_move,
)
from vmesh.gb28181.ps import AccessUnit, PsCodec, PsMuxer, RtpPsPacketizer, frame_rfc4571
from vmesh.gb28181.sdp import GbSdp

OUT = Path(__file__).parent / "seeds"
DEV, CH, SRV = "34020000001320000001", "34020000001310000001", "34020000002000000001"


def write(kind: str, name: str, data: bytes) -> None:
    d = OUT / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def manscdp() -> dict[str, bytes]:
    items = [CatalogItem(CH, name="大门", parent_id=DEV, status="ON", ptz_type=1)]
    return {
        "keepalive": encode_manscdp(Keepalive(DEV, 1)),
        "catalog": encode_manscdp(CatalogResponse(DEV, 2, 3, items), "GB2312"),
        "catalog_utf8": encode_manscdp(CatalogResponse(DEV, 2, 1, items), "UTF-8"),
        "notify": encode_manscdp(CatalogNotify(DEV, 3, 1, [CatalogItem(CH, event="OFF")])),
        "info": encode_manscdp(DeviceInfoResponse(DEV, 4, device_name="摄像机", result="OK")),
        "ptz": encode_manscdp(PtzControl(CH, 5, ptz_move(pan=1, tilt=0, zoom=0, speed=128))),
        "record": encode_manscdp(
            RecordInfoResponse(DEV, 6, 1, items=[RecordItem(CH, start_time="2024-01-01T00:00:00")])
        ),
    }


def sip(body: bytes, method: str, extra: str = "", ctype: str = "Application/MANSCDP+xml") -> bytes:
    head = (
        f"{method} sip:{SRV}@3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1234\r\n"
        f"From: <sip:{DEV}@3402000000>;tag=abc\r\n"
        f"To: <sip:{SRV}@3402000000>\r\n"
        "Call-ID: 1234@192.168.1.64\r\n"
        f"CSeq: 20 {method}\r\n"
        f"Contact: <sip:{DEV}@192.168.1.64:5060>\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def main() -> None:
    m = manscdp()
    for k, v in m.items():
        write("manscdp", k, v)
    auth = (
        f'Authorization: Digest username="{DEV}", realm="3402000000", nonce="abcdef", '
        f'uri="sip:{SRV}@3402000000", response="0123456789abcdef0123456789abcdef", '
        'algorithm=MD5, qop=auth, nc=00000001, cnonce="xyz"\r\nExpires: 3600\r\n'
    )
    write("sip", "register", sip(b"", "REGISTER", auth))
    write("sip", "message", sip(m["catalog"], "MESSAGE"))
    offer = GbSdp(origin_user=SRV, connection_address="10.0.0.1", port=30000, ssrc="0100000001")
    tcp = GbSdp(tcp=True, setup="passive", connection_new=True, port=30002, ssrc="0100000002")
    answer = GbSdp(session_name="Playback", direction="sendonly", uri=f"{CH}:0", start=1, stop=2)
    write(
        "sip",
        "invite",
        sip(offer.encode().encode(), "INVITE", "Subject: a:b,c:0\r\n", "APPLICATION/SDP"),
    )
    write("sip", "response", b"SIP/2.0 200 OK\r\n" + sip(b"", "BYE").split(b"\r\n", 1)[1])
    for name, s in (("offer", offer), ("tcp", tcp), ("playback", answer)):
        write("sdp", name, s.encode().encode())
    sps = b"\x00\x00\x00\x01\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\x84"
    pps, idr = b"\x00\x00\x00\x01\x68\xce\x3c\x80", b"\x00\x00\x00\x01\x65\x88" + bytes(300)
    mux = PsMuxer(PsCodec.h264, PsCodec.pcma)
    key = mux.mux(AccessUnit(PsCodec.h264, 0xE0, 0, sps + pps + idr, True))
    p = mux.mux(
        AccessUnit(PsCodec.h264, 0xE0, 3600, b"\x00\x00\x00\x01\x41\x9a" + bytes(200), False)
    )
    audio = mux.mux(AccessUnit(PsCodec.pcma, 0xC0, 3600, bytes(160), False))
    h265 = PsMuxer(PsCodec.h265).mux(
        AccessUnit(PsCodec.h265, 0xE0, 0, b"\x00\x00\x00\x01\x40\x01\x0c" + bytes(40), True)
    )
    write("ps", "key", key)
    write("ps", "two", key + p + audio)
    write("ps", "h265", h265)
    rtp = RtpPsPacketizer(ssrc=100000001)
    packets = rtp.packetize(key, 0) + rtp.packetize(p + audio, 3600)
    write("rtp", "stream", b"".join(frame_rfc4571(x.serialize()) for x in packets))
    write("rtp", "one", frame_rfc4571(packets[0].serialize()))


if __name__ == "__main__":
    main()
