"""A small WSGI app: / greets, /health answers ok."""
import os


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        body = b"ok\n"
    else:
        version = os.environ.get("APP_VERSION", "unknown")
        body = f"hello from python-web {version}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
