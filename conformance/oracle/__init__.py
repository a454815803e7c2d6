"""An executable reference model of TCP connection management (RFC 9293 section 3.10, with RFC 793, RFC 5961
and RFC 1337 where the profiles differ): what a conforming endpoint may answer, given its state and an event.
Sans-IO and deterministic; see conformance/oracle/machine.py and docs/reference-model.md.
"""
