"""/metrics read by the official Prometheus client's strict OpenMetrics
parser, after real traffic from the PyPI `pusher` SDK and a websocket client."""

import socket
import unittest
import urllib.error
import urllib.request

import pusher
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from test_pusher_sdk import APP_ID, KEY, SECRET, Browser, Server

TOKEN = "python-metrics-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MetricsFormatTest(unittest.TestCase):
    def test_metrics_parse_as_openmetrics_with_conventional_names(self):
        private_port = free_port()
        server = Server(
            {
                "FLARUM_WS_ADMIN_TOKEN": TOKEN,
                "FLARUM_WS_METRICS_LISTEN": f"127.0.0.1:{private_port}",
            }
        )
        try:
            tab = Browser(server.port)
            tab.subscribe("news")
            sdk = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=server.port, ssl=False)
            sdk.trigger("news", "posted", {"id": 1})
            event = tab.next()
            self.assertEqual((event["event"], event["channel"]), ("posted", "news"))

            with self.assertRaises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
            self.assertEqual(refused.exception.code, 401)
            refused.exception.close()

            request = urllib.request.Request(
                f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                self.assertTrue(response.headers["Content-Type"].startswith("application/openmetrics-text"))
                text = response.read().decode()
            with urllib.request.urlopen(f"http://127.0.0.1:{private_port}/metrics", timeout=5) as response:
                self.assertIn("flarum_ws_connections 1", response.read().decode())

            families = {family.name: family for family in text_string_to_metric_families(text)}
            for name, family in families.items():
                self.assertRegex(name, r"^[a-z_][a-z0-9_]*$")
                if family.type == "counter":
                    for sample in family.samples:
                        self.assertTrue(sample.name.endswith(("_total", "_created")), sample.name)
            self.assertEqual(families["flarum_ws_connections"].type, "gauge")
            self.assertEqual(families["flarum_ws_fanout_duration_seconds"].type, "histogram")
            self.assertEqual(families["flarum_ws_fanout_duration_seconds"].unit, "seconds")
            self.assertEqual(families["flarum_ws_sent_bytes"].unit, "bytes")
            requests = {
                (s.labels["endpoint"], s.labels["status"]): s.value
                for s in families["flarum_ws_http_api_requests"].samples
            }
            self.assertEqual(requests[("events", "200")], 1)
            self.assertEqual(families["flarum_ws_connections"].samples[0].value, 1)
            tab.ws.close()
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
