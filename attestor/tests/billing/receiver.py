"""A real webhook receiver for the billing tests: every POST is verified with
the Standard Webhooks reference library (`standardwebhooks`) and logged as one
JSON line; the answer follows --behavior:

  ok               204 to everything
  fail:N           500 to the first N requests, then 204
  retry-after:S:N  503 with `Retry-After: S` to the first N requests, then 204
  gone             410 to everything

Usage: receiver.py --secret whsec_... --log FILE [--behavior B | --behavior-file F] [--port P]
With --behavior-file the behavior is read from F at every request (a test
switches it); the request counter restarts when it changes. Prints
"listening PORT" on stdout once it accepts connections.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--behavior", default="ok")
    ap.add_argument("--behavior-file")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    wh = Webhook(args.secret)
    lock = threading.Lock()
    state = {"seen": 0, "behavior": args.behavior}
    log = open(args.log, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                wh.verify(body, headers)
                verified, error = True, None
            except WebhookVerificationError as e:
                verified, error = False, str(e)
            with lock:
                b = args.behavior
                if args.behavior_file:
                    with open(args.behavior_file) as f:
                        b = f.read().strip()
                if b != state["behavior"]:
                    state["behavior"] = b
                    state["seen"] = 0
                state["seen"] += 1
                n = state["seen"]
            extra = {}
            if b == "ok":
                status = 204
            elif b == "gone":
                status = 410
            elif b.startswith("fail:"):
                status = 500 if n <= int(b.split(":")[1]) else 204
            elif b.startswith("retry-after:"):
                _, secs, count = b.split(":")
                if n <= int(count):
                    status = 503
                    extra["Retry-After"] = secs
                else:
                    status = 204
            else:
                status = 500
            if not verified:
                status = 400
            with lock:
                log.write(json.dumps({
                    "n": n,
                    "id": headers.get("webhook-id"),
                    "timestamp": headers.get("webhook-timestamp"),
                    "signature": headers.get("webhook-signature"),
                    "verified": verified,
                    "error": error,
                    "status": status,
                    "body": body.decode("utf-8", "replace"),
                }) + "\n")
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
