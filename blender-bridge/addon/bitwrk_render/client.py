# Buying one tile through the local BitWrk host's proxy: POST /buy/{article_id} with a
# multipart form (fields named after the article's inputs, plus the max price); the host
# answers 303 to /file/{sha256} with the tile. Errors are JSON {"error", "message"}.

import json
import urllib.error
import urllib.request
import uuid

# One tile may wait this long: the host looks for a seller, transfers, the seller renders.
TIMEOUT_S = 900
# Error codes that another attempt cannot fix (the scene or request itself is wrong).
FINAL_ERRORS = {"bad_request", "forbidden", "unknown_article", "bad_input", "unsupported", "fuel_exhausted", "output_too_large"}


class BuyError(Exception):
    def __init__(self, code, message, final):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.final = final


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


def buy_tile(proxy_url, article_id, scene_bytes, job, max_price_sat):
    """Buy one tile; returns the EXR bytes or raises BuyError."""
    fields = [
        ("scene", "scene.blend", "application/x-blender", scene_bytes),
        ("job", "job.json", "application/json", json.dumps(job, sort_keys=True).encode("utf-8")),
    ]
    if max_price_sat > 0:
        fields.append(("price", None, "text/plain", str(int(max_price_sat)).encode("ascii")))
    ctype, body = multipart(fields)
    url = "%s/buy/%s" % (proxy_url.rstrip("/"), article_id)
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        # urllib follows the 303 to /file/{sha256} with a GET.
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            err = json.loads(raw)
            code, message = str(err.get("error", e.code)), str(err.get("message", ""))
        except ValueError:
            code, message = "http_%d" % e.code, raw[:300].decode("utf-8", "replace")
        raise BuyError(code, message, code in FINAL_ERRORS)
    except (urllib.error.URLError, OSError) as e:
        raise BuyError("unreachable", "cannot reach the BitWrk host at %s: %s" % (proxy_url, e), False)
    if data[:4] != b"\x76\x2f\x31\x01":
        raise BuyError("bad_output", "the tile is not an OpenEXR file", False)
    return data
