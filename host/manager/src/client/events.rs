//! The event stream: NDJSON lines, and a follower that reopens a broken stream.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Method;

use super::{ClientError, EventStream, ManagerClient, Reply, Result, decode, seg};
use crate::outcome::TurnEvent;

impl ManagerClient {
    /// The events stored after sequence `after`, now.
    pub async fn events(&self, run: &str, after: u64) -> Result<Vec<TurnEvent>> {
        let mut stream = self.event_stream(run, after, false).await?;
        let mut out = Vec::new();
        while let Some(e) = stream.next().await {
            out.push(e?);
        }
        Ok(out)
    }

    /// Follows the run's events after `after`: the stream ends once the run is terminal and every
    /// event was delivered. A broken connection (a manager restart, say) is reopened from the last
    /// delivered sequence number, with the retry policy, so no event is lost or repeated.
    pub async fn follow_events(&self, run: &str, after: u64) -> Result<EventStream> {
        let first = self.event_stream(run, after, true).await?;
        struct Resume {
            client: ManagerClient,
            run: String,
            after: u64,
            inner: Option<EventStream>,
            quiet_reconnects: u32,
            done: bool,
        }
        let state = Resume {
            client: self.clone(),
            run: run.to_owned(),
            after,
            inner: Some(first),
            quiet_reconnects: 0,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut s| async move {
            loop {
                if s.done {
                    return None;
                }
                let inner = match &mut s.inner {
                    Some(inner) => inner,
                    None => {
                        if s.quiet_reconnects > 0 {
                            tokio::time::sleep(s.client.retry.backoff(s.quiet_reconnects)).await;
                        }
                        s.quiet_reconnects += 1;
                        match s.client.event_stream(&s.run, s.after, true).await {
                            Ok(inner) => s.inner.insert(inner),
                            Err(e) => {
                                s.done = true;
                                return Some((Err(e), s));
                            }
                        }
                    }
                };
                match inner.next().await {
                    Some(Ok(e)) if e.seq <= s.after => continue,
                    Some(Ok(e)) => {
                        s.after = e.seq;
                        s.quiet_reconnects = 0;
                        return Some((Ok(e), s));
                    }
                    Some(Err(e @ ClientError::SchemaInvalid { .. })) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                    Some(Err(_)) | None => {
                        s.inner = None;
                        match s.client.get_run(&s.run).await {
                            Ok(run)
                                if run.status.is_terminal() && run.last_event_seq <= s.after =>
                            {
                                return None;
                            }
                            Ok(_) => continue,
                            Err(e) => {
                                s.done = true;
                                return Some((Err(e), s));
                            }
                        }
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn event_stream(&self, run: &str, after: u64, follow: bool) -> Result<EventStream> {
        seg("events", run)?;
        let path = format!("/runs/{run}/events?after={after}&follow={follow}");
        let timeout = (!follow).then_some(self.request_timeout);
        let (endpoint, reply) = self
            .send(Method::GET, &path, None, None, timeout, false)
            .await?;
        let Reply::Streaming(resp) = reply else {
            return Err(ClientError::Request {
                endpoint,
                message: "internal: expected a streaming reply".into(),
            });
        };
        struct S {
            body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
            buf: Vec<u8>,
            endpoint: String,
            done: bool,
        }
        let state = S {
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
            endpoint,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut s| async move {
            loop {
                if s.done {
                    return None;
                }
                if let Some(pos) = s.buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = s.buf.drain(..=pos).collect();
                    let line = &line[..line.len() - 1];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let item = decode::<TurnEvent>(&s.endpoint, line);
                    s.done = item.is_err();
                    return Some((item, s));
                }
                match s.body.next().await {
                    Some(Ok(chunk)) => s.buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        s.done = true;
                        let err = ClientError::Unavailable {
                            endpoint: s.endpoint.clone(),
                            attempts: 1,
                            status: None,
                            last: format!("event stream broke: {e}"),
                        };
                        return Some((Err(err), s));
                    }
                    None => {
                        s.done = true;
                        if s.buf.iter().all(u8::is_ascii_whitespace) {
                            return None;
                        }
                        let item = decode::<TurnEvent>(&s.endpoint, &s.buf);
                        return Some((item, s));
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}
