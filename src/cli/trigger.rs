//! `flarum-ws trigger CHANNEL EVENT [DATA]`: send an event through the HTTP
//! API with the forum's credentials, as the forum would, to verify a setup
//! by hand.

use anyhow::anyhow;
use serde_json::json;

use super::load::{Loaded, load_as_the_service, run_as_the_service, runtime};
use super::{Exit, Failure, TriggerArgs};
use crate::probe::{SignedClient, Target, local_address};

/// How the server's own probes reach it: over loopback when it listens on
/// every address, with the name browsers use for TLS verification.
pub fn local_target(loaded: &Loaded) -> Target {
    let settings = &loaded.resolved.settings;
    let address = local_address(&settings.host);
    let forum_host = loaded.forum.as_ref().and_then(|f| f.config.host());
    Target {
        address,
        port: settings.port,
        tls: settings.tls.is_some(),
        server_name: settings
            .app_host
            .clone()
            .or(forum_host)
            .unwrap_or_else(|| "localhost".into()),
        insecure: settings.self_signed,
    }
}

pub fn run(args: TriggerArgs) -> Result<Exit, Failure> {
    if let Some(exit) = run_as_the_service("trigger", &args.sources) {
        return Ok(exit);
    }
    runtime()?.block_on(async {
        let loaded = load_as_the_service(&args.sources).await?;
        let settings = &loaded.resolved.settings;
        let client = SignedClient {
            target: local_target(&loaded),
            app_id: settings.app.id.clone(),
            key: settings.app.key.clone(),
            secret: settings.app.secret.expose().to_owned(),
        };
        let data = args.data.unwrap_or_else(|| "{}".into());
        let body = json!({"name": args.event, "channel": args.channel, "data": data}).to_string();
        let (status, answer) = client.post("/events", body).await?;
        if status == 200 {
            println!(
                "sent {} on {} through {}://{}:{}",
                args.event,
                args.channel,
                client.target.scheme("https", "http"),
                client.target.address,
                client.target.port
            );
            Ok(Exit::Success)
        } else {
            Err(Failure::user(anyhow!(
                "the server answered {status}: {answer}"
            )))
        }
    })
}
