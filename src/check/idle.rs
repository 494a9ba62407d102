//! `check --live --idle`: whether something on the way cuts idle websockets.
//!
//! A forum page's pusher-js is idle most of its life: it sends nothing but a
//! `pusher:ping` after `activity_timeout` seconds of silence from the server
//! (the value flarum-ws announces), and flarum-ws pings it after as long a
//! silence from the client. A proxy that closes connections idle for less
//! than that (nginx's `proxy_read_timeout`, Cloudflare's 100 s) cuts every
//! idle tab, which then reconnects and misses the events of the gap. This
//! holds one connection that behaves exactly as pusher-js does; an end
//! without flarum-ws's close frame is a cut made on the way.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::Finding;
use crate::config::proxy_read_timeout_secs;
use crate::protocol::messages::outgoing;

/// Holds `ws` (just connected to `url`) as an idle pusher-js tab for
/// `idle`, pinging after `activity_timeout` of silence and answering the
/// server's pings.
pub async fn hold_idle<S>(
    ws: &mut WebSocketStream<S>,
    url: &str,
    activity_timeout: Duration,
    pong_timeout: Duration,
    idle: Duration,
) -> Finding
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let started = Instant::now();
    let deadline = started + idle;
    let mut last_heard = started;
    loop {
        let ping_at = last_heard + activity_timeout;
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    if text.contains("\"pusher:ping\"")
                        && !sent(ws, outgoing::pong(), pong_timeout).await
                    {
                        return cut(url, started.elapsed(), activity_timeout, pong_timeout);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    return Finding::fail(
                        "idle",
                        format!(
                            "{url}: flarum-ws closed the idle connection after {} s with code {code}",
                            started.elapsed().as_secs()
                        ),
                        "see the server's log (journalctl -u flarum-ws) for why it closed the connection",
                    );
                }
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(_)) | None => {
                    return cut(url, started.elapsed(), activity_timeout, pong_timeout);
                }
            },
            () = sleep_until(ping_at.min(deadline)) => {
                if Instant::now() >= deadline {
                    return Finding::pass(
                        "idle",
                        format!(
                            "{url}: an idle connection stayed open for {} s (traffic every {} s, activity_timeout)",
                            idle.as_secs(),
                            activity_timeout.as_secs()
                        ),
                    );
                }
                // What pusher-js does after activity_timeout of silence.
                if !sent(ws, outgoing::ping(), pong_timeout).await {
                    return cut(url, started.elapsed(), activity_timeout, pong_timeout);
                }
                last_heard = Instant::now();
            }
        }
    }
}

/// Sends `text`, giving up after `limit`: a server that stops reading must
/// not hold `check` (false: not sent).
async fn sent<S>(ws: &mut WebSocketStream<S>, text: String, limit: Duration) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    matches!(
        tokio::time::timeout(limit, ws.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}

fn cut(url: &str, after: Duration, activity_timeout: Duration, pong_timeout: Duration) -> Finding {
    let activity = activity_timeout.as_secs();
    Finding::fail(
        "idle",
        format!(
            "{url}: an idle connection was cut after {} s without a close from flarum-ws: a proxy on the way closes websockets idle for less than the {activity} s keepalive",
            after.as_secs_f64().round()
        ),
        format!(
            "raise the proxy's idle timeout: nginx: proxy_read_timeout {}s; in the location that proxies to flarum-ws, then nginx -t && systemctl reload nginx; or lower activity_timeout (FLARUM_WS_ACTIVITY_TIMEOUT, now {activity} s) below the proxy's limit (Cloudflare cuts idle websockets after 100 s)",
            proxy_read_timeout_secs(activity_timeout, pong_timeout)
        ),
    )
}
