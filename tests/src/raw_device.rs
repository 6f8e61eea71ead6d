//! A device speaking the wire protocol by hand over a raw QUIC connection, for tests that
//! play a misbehaving or hostile device against the real coordinator: it says exactly the
//! hello it is given and asks for whatever it likes.

use anyhow::{Context, Result, bail};
use ferry_shared::wire::io::{read_frame, read_preamble, write_frame};
use ferry_shared::wire::{
    ChunkReply, ChunkWant, DEVICE_AUTH_EXPORTER_LABEL, DeviceReport, FetchRequest, FetchResponse,
    Follow, Hello, PROTOCOL_VERSION, Preamble, ToAgent, ToCoordinator,
};
use ferry_shared::{Digest, SecretKey};

use crate::Fleet;

/// A raw QUIC connection to the fleet's coordinator with `identity`'s client certificate.
pub async fn connect_as(
    fleet: &Fleet,
    identity: &SecretKey,
) -> Result<(quinn::Endpoint, quinn::Connection)> {
    let (client, _pin) = ferry_agent::tls::client_config(&fleet.coordinator.fingerprint, identity)?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = endpoint
        .connect_with(client, fleet.coordinator.quic, "localhost")?
        .await
        .context("handshake")?;
    Ok((endpoint, conn))
}

/// Opens the control stream on `conn` and says hello as `key` (proving it over this
/// session's keying material) with the fleet's enrollment token, following `follows` and
/// reporting `report`, in a preamble naming protocol version `protocol`; returns the stream.
pub async fn hello_as(
    fleet: &Fleet,
    conn: &quinn::Connection,
    key: &SecretKey,
    agent_version: &str,
    follows: Vec<Follow>,
    report: DeviceReport,
    protocol: u16,
) -> Result<(quinn::SendStream, quinn::RecvStream)> {
    use ferry_shared::sign::DEVICE_AUTH_CONTEXT;

    let token = std::fs::read_to_string(fleet.coordinator.data_dir.join("enrollment.token"))?;
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(&Preamble { version: protocol }.to_bytes())
        .await?;
    let mut material = [0u8; 32];
    conn.export_keying_material(&mut material, DEVICE_AUTH_EXPORTER_LABEL, b"")
        .map_err(|_| anyhow::anyhow!("no keying material"))?;
    let hello = Hello {
        device_key: key.public(),
        proof: key.sign(DEVICE_AUTH_CONTEXT, &material).to_vec(),
        enrollment_token: Some(token.trim().to_owned()),
        agent_version: agent_version.into(),
        labels: Default::default(),
        follows,
        report,
    };
    write_frame(&mut send, &ToCoordinator::Hello(Box::new(hello))).await?;
    Ok((send, recv))
}

/// An admitted raw device.
pub struct RawDevice {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    protocol: u16,
    _control: (quinn::SendStream, quinn::RecvStream),
}

/// What a fetch got back: the payload, or the coordinator's refusal.
pub type Fetched<T> = std::result::Result<T, (bool, String)>;

impl RawDevice {
    /// Enrolls and connects as `key`, following `follows` and reporting `report`; returns
    /// once welcomed.
    pub async fn admit(
        fleet: &Fleet,
        key: &SecretKey,
        follows: Vec<Follow>,
        report: DeviceReport,
    ) -> Result<Self> {
        Self::admit_speaking(fleet, key, follows, report, PROTOCOL_VERSION).await
    }

    /// Like [`RawDevice::admit`], speaking protocol version `protocol` on every stream.
    pub async fn admit_speaking(
        fleet: &Fleet,
        key: &SecretKey,
        follows: Vec<Follow>,
        report: DeviceReport,
        protocol: u16,
    ) -> Result<Self> {
        let (endpoint, conn) = connect_as(fleet, key).await?;
        let (send, mut recv) =
            hello_as(fleet, &conn, key, "raw", follows, report, protocol).await?;
        read_preamble(&mut recv).await?;
        match read_frame::<_, ToAgent>(&mut recv, "welcome").await? {
            Some(ToAgent::Welcome(_)) => {}
            other => bail!("not welcomed: {other:?}"),
        }
        Ok(Self {
            _endpoint: endpoint,
            conn,
            protocol,
            _control: (send, recv),
        })
    }

    async fn ask(&self, request: &FetchRequest) -> Result<(quinn::RecvStream, FetchResponse)> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_all(
            &Preamble {
                version: self.protocol,
            }
            .to_bytes(),
        )
        .await?;
        write_frame(&mut send, request).await?;
        send.finish()?;
        read_preamble(&mut recv).await?;
        let response = read_frame::<_, FetchResponse>(&mut recv, "fetch response")
            .await?
            .context("no fetch response")?;
        Ok((recv, response))
    }

    /// Asks for the chunk index of `file`: its canonical bytes, or the refusal.
    pub async fn index(&self, file: Digest) -> Result<Fetched<Vec<u8>>> {
        let (mut recv, response) = self.ask(&FetchRequest::Index { file }).await?;
        match response {
            FetchResponse::Index { len } => {
                let mut bytes = vec![0; usize::try_from(len)?];
                recv.read_exact(&mut bytes).await?;
                Ok(Ok(bytes))
            }
            FetchResponse::Error { permanent, message } => Ok(Err((permanent, message))),
            other => bail!("unexpected answer {other:?}"),
        }
    }

    /// Asks for `wants` of `file`: each reply with its payload, or the refusal.
    pub async fn chunks(
        &self,
        file: Digest,
        wants: Vec<ChunkWant>,
    ) -> Result<Fetched<Vec<(ChunkReply, Vec<u8>)>>> {
        let count = wants.len();
        let (mut recv, response) = self.ask(&FetchRequest::Chunks { file, wants }).await?;
        match response {
            FetchResponse::Chunks => {}
            FetchResponse::Error { permanent, message } => return Ok(Err((permanent, message))),
            other => bail!("unexpected answer {other:?}"),
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let reply = read_frame::<_, ChunkReply>(&mut recv, "chunk reply")
                .await?
                .context("the chunk replies ended early")?;
            let mut payload = Vec::new();
            if let ChunkReply::Chunk { len, .. } = &reply {
                payload = vec![0; *len as usize];
                recv.read_exact(&mut payload).await?;
            }
            out.push((reply, payload));
        }
        Ok(Ok(out))
    }
}
