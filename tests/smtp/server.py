#!/usr/bin/python3
"""A real SMTP server on loopback for the notification tests (Debian's python3-aiosmtpd).

usage: server.py PORT DIR [CERT KEY]

Writes each message it accepts to DIR as one .eml file (whole, as received) and one .json
file the tests read: envelope, decoded headers, both bodies, and whether STARTTLS was used. With CERT and
KEY (PEM), STARTTLS is offered and required before MAIL. Prints "ready" once listening and
runs until its standard input closes or it is killed.
"""

import email
import email.policy
import itertools
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller


class SaveToDir:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count()

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        name = f"{os.getpid()}-{n:05d}"
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        seen = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "message_id": str(message["message-id"]),
            "date": str(message["date"]),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "starttls": session.ssl is not None,
        }
        self.write(f"{name}.eml", raw)
        self.write(f"{name}.json", json.dumps(seen, ensure_ascii=False).encode())
        return "250 Message accepted"

    def write(self, name, data):
        tmp = os.path.join(self.directory, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.directory, name))


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    options = {}
    if len(sys.argv) == 5:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        options = {"tls_context": context, "require_starttls": True}
    controller = Controller(SaveToDir(directory), hostname="127.0.0.1", port=port, **options)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
