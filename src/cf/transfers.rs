//! Streamed transfers: multipart uploads from a file on disk (exact `Content-Length`, progress lines, a stall
//! watch, and a look at the object before sending again after a lost answer) and downloads to a file
//! (following a blobstore redirect without the token).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::LOCATION;
use tokio::io::AsyncWriteExt;

use crate::cf::client::{Answer, CfClient, FormFactory, Req, ReqBody, Target, describe, display_url};
use crate::cf::error::{Error, Result};
use crate::log;

/// A file sent as a streamed multipart part.
pub(crate) struct FilePart<'a> {
    pub field: &'static str,
    pub(crate) filename: &'static str,
    pub(crate) mime: &'static str,
    pub path: &'a Path,
}

/// A token younger than this is not refreshed before an upload.
const FRESH_TOKEN: Duration = Duration::from_secs(60);

impl CfClient {
    /// Uploads a multipart form whose file part is streamed from disk with an exact `Content-Length`, printing
    /// progress lines and failing if no byte moves for `timeouts.idle`. The token is refreshed first, unless it
    /// was obtained within the last minute, so a long upload starts with all of the token's life ahead.
    pub(crate) async fn upload_multipart(
        &self,
        path: &str,
        fields: Vec<(&'static str, String)>,
        file: Option<FilePart<'_>>,
        label: &str,
    ) -> Result<Answer> {
        self.refresh_if_older_than(FRESH_TOKEN).await?;
        let sent = Arc::new(AtomicU64::new(0));
        let (factory, total) = multipart_factory(fields, file, sent.clone())?;
        let mut req = Req::path(Method::POST, path);
        req.body = ReqBody::Multipart(factory);
        req.stream = true;
        let request = self.answer(&req);
        tokio::pin!(request);
        let idle = self.core().timeouts.idle;
        let mut progress = (total > 0).then(|| log::Progress::new(label.to_owned(), total));
        let mut last = 0u64;
        let mut last_move = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                answer = &mut request => {
                    // The 100% line, unless a tick already printed it.
                    if let Some(p) = progress.as_mut()
                        && last < total
                        && sent.load(Ordering::Relaxed) >= total
                    {
                        p.update(total);
                    }
                    return answer;
                }
                _ = tick.tick() => {
                    let now_sent = sent.load(Ordering::Relaxed);
                    if now_sent != last {
                        last = now_sent;
                        last_move = Instant::now();
                        if let Some(p) = progress.as_mut() { p.update(now_sent.min(total)); }
                    } else if last_move.elapsed() > idle {
                        let what = if now_sent >= total { "waiting for the answer" } else { "no data moved" };
                        return Err(Error::Transport {
                            method: "POST".into(),
                            url: display_url(&self.core().url(&Target::Path(path.to_owned()))?),
                            message: format!("upload stalled: {what} for {}", log::human_duration(idle)),
                            ambiguous: true,
                        });
                    }
                }
            }
        }
    }

    /// Downloads `path` to the file `dest`, streaming. A redirect (CC sends the blobstore's URL) is followed
    /// **without** the Authorization header. Returns the number of bytes written.
    pub(crate) async fn download_to_file(&self, path: &str, dest: &Path, label: &str) -> Result<u64> {
        let mut req = Req::path(Method::GET, path);
        req.accept = "*/*";
        req.stream = true;
        let headers_within = self.core().timeouts.request;
        let no_answer = |url: String| Error::Transport {
            method: "GET".into(),
            url,
            message: format!("no answer within {}", log::human_duration(headers_within)),
            ambiguous: false,
        };
        let first = self.core().url(&req.target)?;
        let mut resp = tokio::time::timeout(headers_within, self.send(&req))
            .await
            .map_err(|_| no_answer(display_url(&first)))??;
        let mut hops = 0;
        while resp.status().is_redirection() {
            hops += 1;
            let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let Some(location) = location.filter(|_| hops <= 5) else {
                return Err(Error::Decode {
                    method: "GET".into(),
                    path: path.to_owned(),
                    message: format!("{} without a usable Location header", resp.status()),
                });
            };
            let next = resp.url().join(&location).map_err(|e| Error::Decode {
                method: "GET".into(),
                path: path.to_owned(),
                message: format!("bad redirect Location ({e})"),
            })?;
            let mut hop = Req::new(Method::GET, Target::Url(next.clone()));
            hop.accept = "*/*";
            hop.stream = true;
            hop.authenticated = false;
            resp = tokio::time::timeout(headers_within, self.core().execute(&hop, None))
                .await
                .map_err(|_| no_answer(display_url(&next)))??;
        }
        let url = resp.url().clone();
        let total = resp.content_length();
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Error::io(format!("cannot create {}", dest.display()), e))?;
        let mut progress = total.filter(|t| *t > 0).map(|t| log::Progress::new(label.to_owned(), t));
        let mut stream = resp.bytes_stream();
        let idle = self.core().timeouts.idle;
        let mut written = 0u64;
        loop {
            let chunk = match tokio::time::timeout(idle, stream.next()).await {
                Err(_) => {
                    return Err(Error::Transport {
                        method: "GET".into(),
                        url: display_url(&url),
                        message: format!("download stalled: no data for {}", log::human_duration(idle)),
                        ambiguous: true,
                    });
                }
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(|e| Error::Transport {
                    method: "GET".into(),
                    url: display_url(&url),
                    message: format!("download broke off: {}", describe(&e)),
                    ambiguous: true,
                })?,
            };
            file.write_all(&chunk).await.map_err(|e| Error::io(format!("cannot write {}", dest.display()), e))?;
            written += chunk.len() as u64;
            if let Some(p) = progress.as_mut() {
                p.update(written);
            }
        }
        file.flush().await.map_err(|e| Error::io(format!("cannot write {}", dest.display()), e))?;
        if let Some(expected) = total
            && expected != written
        {
            return Err(Error::Transport {
                method: "GET".into(),
                url: display_url(&url),
                message: format!("download ended after {written} of {expected} bytes"),
                ambiguous: true,
            });
        }
        Ok(written)
    }
}

/// A form factory plus the file's size: each call opens the file anew and streams it, counting bytes read into
/// `sent`.
fn multipart_factory(
    fields: Vec<(&'static str, String)>,
    file: Option<FilePart<'_>>,
    sent: Arc<AtomicU64>,
) -> Result<(FormFactory, u64)> {
    let file = match file {
        Some(f) => {
            let size =
                std::fs::metadata(f.path).map_err(|e| Error::io(format!("cannot read {}", f.path.display()), e))?.len();
            Some((f.field, f.filename, f.mime, f.path.to_owned(), size))
        }
        None => None,
    };
    let total = file.as_ref().map_or(0, |f| f.4);
    let factory: FormFactory = Arc::new(move || {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in &fields {
            form = form.text(*name, value.clone());
        }
        if let Some((field, filename, mime, path, size)) = &file {
            let std_file =
                std::fs::File::open(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            sent.store(0, Ordering::Relaxed);
            let counter = sent.clone();
            let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(std_file), 256 * 1024)
                .inspect_ok(move |chunk| {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                });
            let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), *size)
                .file_name(*filename)
                .mime_str(mime)
                .map_err(|e| Error::Config(format!("bad MIME type {mime}: {e}")))?;
            form = form.part(*field, part);
        }
        Ok(form)
    });
    Ok((factory, total))
}
