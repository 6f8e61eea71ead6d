//! The wire protocol against the real coordinator, from a raw QUIC client.

use anyhow::{Context, Result, bail};
use ferry_shared::wire::io::{read_frame, read_preamble};
use ferry_shared::wire::{PROTOCOL_VERSION, Preamble, RefusalKind, ToAgent};
use ferry_tests::Fleet;

#[tokio::test]
async fn a_peer_speaking_an_unknown_protocol_version_is_refused_clearly() -> Result<()> {
    let fleet = tokio::task::spawn_blocking(|| Fleet::start(0, None)).await??;
    let (client, _pin) = ferry_agent::tls::client_config(&fleet.coordinator.fingerprint)?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = endpoint
        .connect_with(client, fleet.coordinator.quic, "localhost")?
        .await
        .context("handshake")?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&Preamble { version: 99 }.to_bytes()).await?;
    // Whatever a version-99 hello would look like, the coordinator must not need to read it.
    send.write_all(b"\x00\x00\x00\x03abc").await?;

    let theirs = read_preamble(&mut recv).await?;
    assert_eq!(theirs, Preamble::CURRENT);
    match read_frame::<_, ToAgent>(&mut recv, "reply").await? {
        Some(ToAgent::Refused(refusal)) => {
            assert_eq!(refusal.kind, RefusalKind::ProtocolVersion);
            assert!(
                refusal.message.contains("99")
                    && refusal.message.contains(&PROTOCOL_VERSION.to_string()),
                "the refusal names both versions: {}",
                refusal.message
            );
        }
        other => bail!("expected a refusal, got {other:?}"),
    }
    assert!(fleet.coordinator.devices()?.is_empty());
    Ok(())
}
