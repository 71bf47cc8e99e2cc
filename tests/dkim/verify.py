#!/usr/bin/python3
"""Verifies the DKIM signature of a message with dkimpy, independently of OpenDKIM.

Usage: verify.py MESSAGE KEY_TXT
KEY_TXT is the DNS record file written by opendkim-genkey; it stands in for DNS.
Prints the signature's h= list and exits 0 when the signature verifies, 1 when not.
"""
import re
import sys

import dkim


def main():
    message = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    record = "".join(re.findall(r'"([^"]*)"', open(sys.argv[2]).read())).encode()

    def dnsfunc(name, timeout=5):
        return record

    verifier = dkim.DKIM(message)
    ok = verifier.verify(dnsfunc=dnsfunc)
    signature = re.search(rb"DKIM-Signature:(.*?)\r\n(?! |\t)", message, re.S | re.I)
    tags = re.sub(rb"\s+", b"", signature.group(1)) if signature else b""
    fields = dict(t.split(b"=", 1) for t in tags.split(b";") if b"=" in t)
    print("h=" + fields.get(b"h", b"").decode())
    print("verified" if ok else "not verified")
    sys.exit(0 if ok else 1)


main()
