//! The wire protocol against the real coordinator, from a raw QUIC client.

use anyhow::{Context, Result, bail};
use ferry_shared::wire::io::{read_frame, read_preamble};
use ferry_shared::wire::{PROTOCOL_VERSION, Preamble, RefusalKind, ToAgent};
use ferry_tests::Fleet;
use ferry_tests::raw_device::{connect_as, hello_as};

#[tokio::test]
async fn a_peer_speaking_an_unknown_protocol_version_is_refused_clearly() -> Result<()> {
    let fleet = tokio::task::spawn_blocking(|| Fleet::start(0, None)).await??;
    let identity = ferry_shared::SecretKey::from_seed(&[7; 32]);
    let (client, _pin) =
        ferry_agent::tls::client_config(&fleet.coordinator.fingerprint, &identity)?;
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

#[tokio::test]
async fn a_device_cannot_speak_for_another_than_its_certificate_names() -> Result<()> {
    let fleet = tokio::task::spawn_blocking(|| Fleet::start(0, None)).await??;
    // TLS as device A; the hello claims device B, with a valid proof by B's key.
    let (a, b) = (
        ferry_shared::SecretKey::from_seed(&[1; 32]),
        ferry_shared::SecretKey::from_seed(&[2; 32]),
    );
    let (_endpoint, conn) = connect_as(&fleet, &a).await?;
    let (_send, mut recv) = hello_as(
        &fleet,
        &conn,
        &b,
        "impostor",
        Vec::new(),
        Default::default(),
    )
    .await?;
    read_preamble(&mut recv).await?;
    match read_frame::<_, ToAgent>(&mut recv, "reply").await? {
        Some(ToAgent::Refused(refusal)) => {
            assert_eq!(refusal.kind, RefusalKind::Identity);
            assert!(
                refusal.message.contains("certificate"),
                "{}",
                refusal.message
            );
        }
        other => bail!("expected a refusal, got {other:?}"),
    }
    assert!(fleet.coordinator.devices()?.is_empty(), "nobody enrolled");
    Ok(())
}

#[tokio::test]
async fn a_fetch_stream_that_never_asks_is_closed() -> Result<()> {
    let fleet = tokio::task::spawn_blocking(|| Fleet::start(0, None)).await??;
    let key = ferry_shared::SecretKey::from_seed(&[3; 32]);
    let (_endpoint, conn) = connect_as(&fleet, &key).await?;
    let (_send, mut recv) = hello_as(
        &fleet,
        &conn,
        &key,
        "silent",
        Vec::new(),
        Default::default(),
    )
    .await?;
    read_preamble(&mut recv).await?;
    match read_frame::<_, ToAgent>(&mut recv, "welcome").await? {
        Some(ToAgent::Welcome(_)) => {}
        other => bail!("no welcome: {other:?}"),
    }
    // A fetch stream that starts its preamble and stops: the coordinator gives up on it
    // (after 10 s) while the session itself stays up.
    let (mut fetch_send, mut fetch_recv) = conn.open_bi().await?;
    fetch_send.write_all(b"FR").await?;
    let mut buf = [0u8; 16];
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match fetch_recv.read(&mut buf).await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the silent fetch stream was still open after 30 s"
    );
    assert!(conn.close_reason().is_none(), "the session survived");
    Ok(())
}
