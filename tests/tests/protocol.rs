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
        PROTOCOL_VERSION,
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
        PROTOCOL_VERSION,
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

#[test]
fn a_device_on_the_previous_protocol_gets_no_encoding_it_cannot_decode() -> Result<()> {
    use ferry_shared::chunk::{ChunkIndex, ChunkParams};
    use ferry_shared::delta::{Encoding, Limits, decode_in_window};
    use ferry_shared::wire::{
        ChunkReply, ChunkWant, DeviceReport, MAX_WINDOW, ModelReport, OLDEST_PROTOCOL_VERSION,
        UpdatePhase, WindowRef,
    };
    use ferry_tests::raw_device::RawDevice;
    use ferry_tests::{MODEL, model_bytes};

    let fleet = Fleet::start(0, None)?;
    let old = model_bytes(1, 1 << 20, true);
    let inserted: Vec<u8> = old[..300].iter().map(|b| b ^ 0x3c).collect();
    let new = ferry_shared::testutil::rebuilt(&old, 4096, &inserted);
    fleet.publish("1.0.0", &old)?;
    fleet.publish("1.1.0", &new)?;
    fleet.set_prod("1.1.0", "a rebuilt library")?;
    let old_file = ChunkIndex::build(old.as_slice(), ChunkParams::DEFAULT)?;
    let new_file = ChunkIndex::build(new.as_slice(), ChunkParams::DEFAULT)?;
    let window_len = old_file.size.min(MAX_WINDOW);
    let wants: Vec<ChunkWant> = new_file
        .index
        .spans()
        .enumerate()
        .map(|(ordinal, (offset, _))| ChunkWant {
            ordinal: ordinal as u32,
            reference: Some(WindowRef {
                file: old_file.hash,
                offset: 0,
                len: window_len,
                at: offset.min(window_len),
            }),
        })
        .collect();
    let report = DeviceReport {
        models: vec![ModelReport {
            model: MODEL.parse()?,
            active: Some("1.0.0".parse()?),
            previous: None,
            candidate: None,
            phase: UpdatePhase::Idle,
            last_error: None,
        }],
        ..Default::default()
    };
    let follows = vec![ferry_shared::wire::Follow {
        model: MODEL.parse()?,
        alias: "prod".parse()?,
    }];
    let runtime = tokio::runtime::Runtime::new()?;
    // The older device asks first, so the newer one is served from the delta cache.
    for (protocol, seed) in [(OLDEST_PROTOCOL_VERSION, 50u8), (PROTOCOL_VERSION, 51)] {
        let device = runtime.block_on(RawDevice::admit_speaking(
            &fleet,
            &ferry_shared::SecretKey::from_seed(&[seed; 32]),
            follows.clone(),
            report.clone(),
            protocol,
        ))?;
        let replies = runtime
            .block_on(device.chunks(new_file.hash, wants.clone()))?
            .map_err(|(_, m)| anyhow::anyhow!("refused: {m}"))?;
        let mut encodings = Vec::new();
        for (((reply, payload), (offset, chunk)), want) in
            replies.iter().zip(new_file.index.spans()).zip(&wants)
        {
            let ChunkReply::Chunk { encoding, .. } = reply else {
                bail!("not served: {reply:?}");
            };
            let window = want
                .reference
                .map(|w| (&old[..window_len as usize], w.at as usize));
            let bytes = decode_in_window(
                *encoding,
                payload,
                window.filter(|_| encoding.needs_reference()),
                chunk.len as usize,
                &Limits::DEFAULT,
            )?;
            let start = offset as usize;
            anyhow::ensure!(
                bytes == new[start..start + chunk.len as usize],
                "protocol {protocol}: chunk at {offset} decodes to other bytes"
            );
            encodings.push(*encoding);
        }
        if protocol < 4 {
            anyhow::ensure!(
                !encodings.contains(&Encoding::Covers),
                "protocol {protocol} was sent covers: {encodings:?}"
            );
        } else {
            anyhow::ensure!(
                encodings.contains(&Encoding::Covers),
                "protocol {protocol} got no covers for a rebuilt library: {encodings:?}"
            );
        }
    }
    Ok(())
}
