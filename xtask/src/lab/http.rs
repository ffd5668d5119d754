//! The little HTTP the lab needs, on std threads and sockets only (xtask stays quick to build):
//! a GET client for readiness checks and the REST API, and the demo applications, servers that
//! answer every request with one line of text.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long one request may take (connect, write, each read).
const TIMEOUT: Duration = Duration::from_secs(5);

/// An answer: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET http://127.0.0.1:{port}{path}` over HTTP/1.1 with `connection: close`.
pub fn get(port: u16, path: &str) -> Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: */*\r\nuser-agent: kuma-rs-lab\r\nconnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending GET {path} to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to GET {path} from {addr}"))?;
    parse_response(&raw).with_context(|| format!("the answer to GET {path} from {addr}"))
}

/// `GET` whose answer must be 200 with a JSON body.
pub fn get_json(port: u16, path: &str) -> Result<serde_json::Value> {
    let response = get(port, path)?;
    if response.status != 200 {
        bail!(
            "GET {path} on port {port}: {} {}",
            response.status,
            response.body.trim()
        );
    }
    serde_json::from_str(&response.body)
        .with_context(|| format!("GET {path} on port {port}: not JSON"))
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The payload of a `transfer-encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// Binds `127.0.0.1:{port}` and answers every request with 200 and `text` (plus a newline),
/// on background threads that live as long as the process.
pub fn serve_text(port: u16, text: String) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding the demo application to 127.0.0.1:{port}"))?;
    let body = format!("{text}\n");
    thread::Builder::new()
        .name(format!("app-{port}"))
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let body = body.clone();
                // One thread per connection: Envoy keeps few connections open.
                let _ = thread::Builder::new().spawn(move || answer(stream, &body));
            }
        })
        .context("starting the demo application thread")?;
    Ok(())
}

/// Answers the requests of one connection until the client closes it.
fn answer(stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
    loop {
        // Request line and headers; a body (none expected) is skipped by content-length.
        let mut content_length = 0usize;
        let mut close = false;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            if first {
                close = line.ends_with("HTTP/1.0");
                first = false;
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim(), value.trim());
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        if content_length > 0 {
            let mut skip = vec![0u8; content_length.min(1 << 20)];
            if reader.read_exact(&mut skip).is_err() {
                return;
            }
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_and_a_chunked_answer_are_read() {
        let plain =
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").expect("plain");
        assert_eq!((plain.status, plain.body.as_str()), (200, "hello"));
        let chunked = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(
            (chunked.status, chunked.body.as_str()),
            (503, "hello world")
        );
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn the_demo_application_answers_its_text_also_on_a_kept_alive_connection() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        serve_text(port, "hello from test".to_owned()).expect("serve");
        let response = get(port, "/").expect("GET");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "hello from test\n");

        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        for _ in 0..2 {
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .expect("write");
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).expect("read");
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.ends_with("hello from test\n"), "{text}");
        }
    }
}
