"""Webhooks from the real binary, validated by the PyPI `pusher` SDK's own
`validate_webhook`, as a Python forum extension would receive them."""

import http.server
import json
import threading
import time
import unittest

import pusher

from test_pusher_sdk import APP_ID, KEY, SECRET, Browser, Server


class Receiver:
    """An HTTP server on loopback that validates each webhook with the SDK."""

    def __init__(self):
        sdk = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET)
        self.events = []
        self.rejected = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8")
                webhook = sdk.validate_webhook(
                    key=self.headers["X-Pusher-Key"],
                    signature=self.headers["X-Pusher-Signature"],
                    body=body,
                )
                if webhook is None:
                    receiver.rejected += 1
                    self.send_response(401)
                else:
                    receiver.events.extend(webhook["events"])
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names(self, channel):
        return [event["name"] for event in self.events if event.get("channel") == channel]

    def wait_for(self, channel, names, seconds=8):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.names(channel) == names:
                return
            time.sleep(0.1)
        raise AssertionError(f"{channel}: expected {names}, got {self.names(channel)}")


class WebhookTest(unittest.TestCase):
    def test_the_python_sdk_validates_occupied_and_vacated(self):
        receiver = Receiver()
        server = Server({"FLARUM_WS_WEBHOOK_URL": receiver.url})
        try:
            browser = Browser(server.port)
            self.assertEqual(browser.subscribe("py-hooked")["event"], "pusher_internal:subscription_succeeded")
            receiver.wait_for("py-hooked", ["channel_occupied", "subscription_count"])
            browser.ws.close()
            receiver.wait_for("py-hooked", ["channel_occupied", "subscription_count", "channel_vacated"])
            self.assertEqual(receiver.rejected, 0)
        finally:
            self.assertEqual(server.stop(), 0)
            receiver.server.shutdown()


if __name__ == "__main__":
    unittest.main()
