#!/usr/bin/env python3
"""Sends signed Pusher triggers at a steady rate, as a busy forum's PHP side
does (a new connection per call, as pusher-php-server's curl makes), and
prints one JSON line: how many were sent, answered 200, and failed (with the
first few reasons). packaging/verify.sh runs it through restarts and
upgrades of the service.

    trigger-loop.py PORT APP_ID KEY SECRET PER_SECOND SECONDS
"""
import hashlib
import hmac
import http.client
import json
import sys
import time


def trigger(port, app_id, key, secret, n):
    body = json.dumps({"name": "loop", "channel": "loop", "data": str(n)})
    path = f"/apps/{app_id}/events"
    query = "&".join(
        [
            f"auth_key={key}",
            f"auth_timestamp={int(time.time())}",
            "auth_version=1.0",
            f"body_md5={hashlib.md5(body.encode()).hexdigest()}",
        ]
    )
    signature = hmac.new(
        secret.encode(), f"POST\n{path}\n{query}".encode(), hashlib.sha256
    ).hexdigest()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            f"{path}?{query}&auth_signature={signature}",
            body,
            {"Content-Type": "application/json"},
        )
        status = connection.getresponse().status
        return None if status == 200 else f"HTTP {status}"
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def main():
    port, app_id, key, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    per_second, seconds = float(sys.argv[5]), float(sys.argv[6])
    start = time.monotonic()
    sent = failed = 0
    reasons = []
    slowest = 0.0
    while time.monotonic() - start < seconds:
        due = start + sent / per_second
        time.sleep(max(0.0, due - time.monotonic()))
        began = time.monotonic()
        problem = trigger(port, app_id, key, secret, sent)
        slowest = max(slowest, time.monotonic() - began)
        sent += 1
        if problem:
            failed += 1
            if len(reasons) < 5:
                reasons.append(problem)
    print(
        json.dumps(
            {
                "sent": sent,
                "failed": failed,
                "reasons": reasons,
                "slowest_seconds": round(slowest, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
