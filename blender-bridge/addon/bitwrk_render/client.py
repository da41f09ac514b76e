# Buying one tile through the local BitWrk host's proxy: POST /buy/{article_id} with a
# multipart form (fields named after the article's inputs, plus the max price); the host
# answers 303 to /file/{sha256} with the tile. Errors are JSON {"error", "message"}.
# Plain http.client (not urllib) so a cancelled render can close the connections of the
# buys in flight. No bpy here: the tests import this module with a plain python3.

import http.client
import json
import socket
import threading
import urllib.parse
import uuid

# One tile may wait this long: the host looks for a seller, transfers, the seller renders.
TIMEOUT_S = 900
# Error codes that another attempt cannot fix (the scene or request itself is wrong).
FINAL_ERRORS = {"bad_request", "forbidden", "unknown_article", "bad_input", "unsupported", "fuel_exhausted", "output_too_large", "cancelled"}


class BuyError(Exception):
    def __init__(self, code, message, final):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.final = final


class Cancel:
    """Aborts every buy in flight, from any thread (the render was cancelled).

    Closing a buy's connection is what tells the host to give up: it withdraws a bid that
    has not matched yet (its escrow comes back), so a cancelled render does not go on
    buying tiles nobody will see."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conns = set()
        self.cancelled = False

    def _register(self, conn):
        with self._lock:
            if self.cancelled:
                return False
            self._conns.add(conn)
            return True

    def _unregister(self, conn):
        with self._lock:
            self._conns.discard(conn)

    def cancel(self):
        with self._lock:
            self.cancelled = True
            conns = list(self._conns)
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def multipart(fields):
    """fields: [(name, filename or None, content_type, bytes)] -> (content type, body)."""
    boundary = "bitwrk-" + uuid.uuid4().hex
    parts = []
    for name, filename, ctype, data in fields:
        disp = 'form-data; name="%s"' % name
        if filename:
            disp += '; filename="%s"' % filename
        head = "--%s\r\nContent-Disposition: %s\r\nContent-Type: %s\r\n\r\n" % (boundary, disp, ctype)
        parts += [head.encode("utf-8"), data, b"\r\n"]
    parts.append(("--%s--\r\n" % boundary).encode("utf-8"))
    return "multipart/form-data; boundary=" + boundary, b"".join(parts)


def _error(status, raw):
    try:
        err = json.loads(raw)
        code, message = str(err.get("error", status)), str(err.get("message", ""))
    except ValueError:
        code, message = "http_%d" % status, raw[:300].decode("utf-8", "replace")
    return BuyError(code, message, code in FINAL_ERRORS)


def buy(proxy_url, article_id, fields, max_price_sat, cancel=None):
    """POST /buy/{article_id} with multipart `fields` and follow the 303 to the output;
    returns its bytes or raises BuyError. `cancel` (a Cancel) aborts it from elsewhere."""
    if max_price_sat > 0:
        fields = fields + [("price", None, "text/plain", str(int(max_price_sat)).encode("ascii"))]
    ctype, body = multipart(fields)
    u = urllib.parse.urlsplit(proxy_url)
    if u.scheme != "http" or not u.hostname:
        raise BuyError("bad_request", "the proxy URL must look like http://localhost:8081, not %r" % proxy_url, True)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=TIMEOUT_S)
    if cancel is not None and not cancel._register(conn):
        raise BuyError("cancelled", "the render was cancelled", True)
    try:
        conn.request("POST", "%s/buy/%s" % (u.path.rstrip("/"), article_id), body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location", "")
            conn.request("GET", location)
            resp = conn.getresponse()
            raw = resp.read()
        if resp.status != 200:
            raise _error(resp.status, raw)
        return raw
    except (OSError, http.client.HTTPException) as e:
        if cancel is not None and cancel.cancelled:
            raise BuyError("cancelled", "the render was cancelled", True)
        raise BuyError("unreachable", "cannot reach the BitWrk host at %s: %s" % (proxy_url, e), False)
    finally:
        if cancel is not None:
            cancel._unregister(conn)
        conn.close()


def buy_tile(proxy_url, article_id, scene_bytes, job, max_price_sat, cancel=None):
    """Buy one tile; returns the EXR bytes or raises BuyError."""
    fields = [
        ("scene", "scene.blend", "application/x-blender", scene_bytes),
        ("job", "job.json", "application/json", json.dumps(job, sort_keys=True).encode("utf-8")),
    ]
    data = buy(proxy_url, article_id, fields, max_price_sat, cancel)
    if data[:4] != b"\x76\x2f\x31\x01":
        raise BuyError("bad_output", "the tile is not an OpenEXR file", False)
    return data
