"""Wire codecs for every protocol in PROTOCOLS.md, plus pcap read and write.

One module per layer: `net` (Ethernet II, IPv4, UDP, TCP, FCS; also home of
`CodecError`, the base of the codec errors), `moldudp64`, `itch`,
`binaryfile`, `soupbintcp`, `ouch` and `pcap`.
"""
