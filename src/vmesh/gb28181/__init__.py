"""GB/T 28181 protocol core: SIP messages, transactions, digest, MANSCDP, GB SDP and PS media.

Everything here except :mod:`vmesh.gb28181.transport` is sans-IO: bytes and times in, bytes and
events out, so it is tested by feeding captured bytes. Modules:

- :mod:`.message` — lenient SIP parser/serialiser and TCP stream framer;
- :mod:`.transaction` — RFC 3261 §17 client/server transactions as explicit state tables;
- :mod:`.digest` — RFC 2617/7616 digest authentication, server and client;
- :mod:`.manscdp` — MANSCDP XML codec (GB18030-aware), PTZ command bytes, catalog assembly;
- :mod:`.sdp` — GB SDP (``y=`` SSRC, ``f=``) and the SSRC allocator;
- :mod:`.ps` — MPEG-PS over RTP demuxer and H.264/H.265/G.711 RTP packetisers;
- :mod:`.transport` — the asyncio UDP/TCP adapter driving the transaction layer.
"""
