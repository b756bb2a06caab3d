"""What a Python WSGI application behind the gateway binds: the environ's HTTP_* keys, the
query and a URL-encoded form as urllib.parse.parse_qs reads them, a JSON body as json.loads
reads it. Each request is also appended, as one JSON line, to the file named by STACK_LOG.

Served by waitress or gunicorn (`bind:app`), or by the standard library's wsgiref when run
as a script: `python3 bind.py PORT`.
"""
import json
import os
import sys
from urllib.parse import parse_qs


def app(environ, start_response):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    ctype = environ.get("CONTENT_TYPE", "")
    form = {}
    if "x-www-form-urlencoded" in ctype:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    document = None
    if "json" in ctype and body:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
    # PEP 3333: QUERY_STRING holds the raw bytes as latin-1.
    query_string = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "replace")
    bound = {
        "stack": environ.get("SERVER_SOFTWARE", "wsgi"),
        "get": parse_qs(query_string, keep_blank_values=True),
        "post": form,
        "json": document,
        "server": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
    }
    out = json.dumps(bound, ensure_ascii=False)
    log = os.environ.get("STACK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(out + "\n")
    data = out.encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


if __name__ == "__main__":
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
