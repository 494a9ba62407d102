"""The PyPI `pusher` server SDK against the real flarum-ws binary.

The Python SDK differs from the others in two ways a server must accept: it
sends body_md5 on GET requests too, and it posts terminate_connections to
/users/{id}/terminate_connections without the /apps/{id} prefix.
"""

import json
import os
import pathlib
import re
import subprocess
import tempfile
import threading
import unittest

import pusher
import websocket

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("TEST_FLARUM_WS_BIN", str(ROOT / "target" / "debug" / "flarum-ws"))
APP_ID, KEY, SECRET = "4242", "python-key", "python-secret"


class Server:
    """A `flarum-ws serve` process on a free loopback port."""

    def __init__(self, extra_env=None):
        env = {
            "PATH": os.environ["PATH"],
            "FLARUM_WS_APP_ID": APP_ID,
            "FLARUM_WS_APP_KEY": KEY,
            "FLARUM_WS_APP_SECRET": SECRET,
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [BIN, "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=tempfile.gettempdir(),
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = None
        self.log = []
        ready = threading.Event()

        def read_log():
            for line in self.process.stderr:
                self.log.append(line)
                match = re.search(r"Listening on 127\.0\.0\.1:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
                    ready.set()

        self.reader = threading.Thread(target=read_log, daemon=True)
        self.reader.start()
        if not ready.wait(10):
            self.process.kill()
            raise RuntimeError("flarum-ws did not start: " + "".join(self.log))

    def stop(self):
        self.process.terminate()
        code = self.process.wait(10)
        # The log reader ends at the pipe's end of file; then the pipe can close.
        self.reader.join(5)
        self.process.stderr.close()
        return code


class Browser:
    """A raw websocket client speaking the Pusher protocol."""

    def __init__(self, port):
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/app/{KEY}?protocol=7", timeout=5)
        established = self.next()
        assert established["event"] == "pusher:connection_established", established
        self.socket_id = json.loads(established["data"])["socket_id"]

    def send(self, event, data):
        self.ws.send(json.dumps({"event": event, "data": data}))

    def next(self):
        return json.loads(self.ws.recv())

    def subscribe(self, channel, auth=None):
        data = {"channel": channel}
        if auth:
            data.update(auth)
        self.send("pusher:subscribe", data)
        return self.next()


class PythonSdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.sdk = pusher.Pusher(
            app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=cls.server.port, ssl=False
        )

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def test_trigger_single_and_many_channels(self):
        browser = Browser(self.server.port)
        self.assertEqual(browser.subscribe("py-news")["event"], "pusher_internal:subscription_succeeded")
        self.assertEqual(browser.subscribe("py-other")["event"], "pusher_internal:subscription_succeeded")
        self.sdk.trigger("py-news", "newPost", {"postId": 1})
        self.assertEqual(
            browser.next(), {"event": "newPost", "channel": "py-news", "data": json.dumps({"postId": 1})}
        )
        self.sdk.trigger(["py-news", "py-other"], "both", "plain")
        channels = sorted(browser.next()["channel"] for _ in range(2))
        self.assertEqual(channels, ["py-news", "py-other"])

    def test_private_and_presence_auth_from_the_sdk(self):
        browser = Browser(self.server.port)
        auth = self.sdk.authenticate("private-py", browser.socket_id)
        self.assertEqual(browser.subscribe("private-py", auth)["event"], "pusher_internal:subscription_succeeded")
        presence = self.sdk.authenticate(
            "presence-py", browser.socket_id, {"user_id": "7", "user_info": {"name": "Py"}}
        )
        ok = browser.subscribe("presence-py", presence)
        self.assertEqual(json.loads(ok["data"])["presence"]["hash"], {"7": {"name": "Py"}})

        info = self.sdk.channels_info(prefix_filter="presence-", attributes=["user_count"])
        self.assertEqual(info, {"channels": {"presence-py": {"user_count": 1}}})
        self.assertEqual(self.sdk.users_info("presence-py"), {"users": [{"id": "7"}]})
        self.assertEqual(
            self.sdk.channel_info("private-py", ["subscription_count"]),
            {"occupied": True, "subscription_count": 1},
        )

    def test_batch(self):
        browser = Browser(self.server.port)
        browser.subscribe("py-batch")
        self.sdk.trigger_batch([{"channel": "py-batch", "name": "n", "data": str(i)} for i in range(5)])
        self.assertEqual([browser.next()["data"] for _ in range(5)], ["0", "1", "2", "3", "4"])

    def test_signin_send_to_user_and_terminate(self):
        browser = Browser(self.server.port)
        user_data = {"id": "py-user"}
        signed = self.sdk.authenticate_user(browser.socket_id, user_data)
        browser.send("pusher:signin", signed)
        self.assertEqual(browser.next()["event"], "pusher:signin_success")
        ok = browser.subscribe("#server-to-user-py-user")
        self.assertEqual(ok["event"], "pusher_internal:subscription_succeeded")
        self.sdk.send_to_user("py-user", "hello", {"a": 1})
        self.assertEqual(browser.next()["event"], "hello")

        self.sdk.terminate_user_connections("py-user")
        error = browser.next()
        self.assertEqual(json.loads(error["data"])["code"], 4009)
        opcode, payload = browser.ws.recv_data(control_frame=True)
        self.assertEqual(opcode, websocket.ABNF.OPCODE_CLOSE)
        self.assertEqual(int.from_bytes(payload[:2], "big"), 4009)

    def test_wrong_secret_is_refused(self):
        forged = pusher.Pusher(
            app_id=APP_ID, key=KEY, secret="wrong", host="127.0.0.1", port=self.server.port, ssl=False
        )
        with self.assertRaises(pusher.errors.PusherBadAuth):
            forged.trigger("py-news", "e", "d")
        with self.assertRaises(pusher.errors.PusherBadAuth):
            forged.channels_info()


if __name__ == "__main__":
    unittest.main()
