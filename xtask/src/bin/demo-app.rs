//! `demo-app`: the HTTP application behind the sidecars of the docker-compose lab (compose/).
//! Every request gets 200 and `hello from <name> in <zone>`, plus a `caller:` line with the
//! `x-forwarded-client-cert` header when the sidecar passed one (so the mTLS identity of the
//! caller shows). Settings: `DEMO_APP_NAME`, `DEMO_APP_ZONE`, `DEMO_APP_LISTEN`
//! (default `0.0.0.0:8080`).
//!
//! It lives in xtask because it is a development aid like the rest of xtask, and it uses the
//! standard library only, so it adds no dependency anywhere. It must stay a toy: no routing,
//! no calls to other services, nothing the control plane or the proxies depend on.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// The longest request line or header line read; longer ones end the connection.
const MAX_LINE: u64 = 16 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let setting = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let name = setting("DEMO_APP_NAME", "demo-app");
    let zone = setting("DEMO_APP_ZONE", "no zone");
    let listen = setting("DEMO_APP_LISTEN", "0.0.0.0:8080");
    let listener = match TcpListener::bind(&listen) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("demo-app: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let greeting = format!("hello from {name} in {zone}");
    println!("demo-app: {greeting}; listening on {listen}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let greeting = greeting.clone();
                std::thread::spawn(move || {
                    if let Err(error) = serve(stream, &greeting) {
                        // Clients closing mid-request are normal; anything else is worth a line.
                        if error.kind() != io::ErrorKind::UnexpectedEof {
                            eprintln!("demo-app: connection: {error}");
                        }
                    }
                });
            }
            Err(error) => eprintln!("demo-app: accept: {error}"),
        }
    }
    ExitCode::SUCCESS
}

/// Answers the HTTP/1.x requests of one connection until the client closes it or asks to.
fn serve(stream: TcpStream, greeting: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request_line) = read_line(&mut reader)? else {
            return Ok(());
        };
        if request_line.is_empty() {
            continue; // a stray CRLF between requests is allowed
        }
        let mut close = request_line.ends_with("HTTP/1.0");
        let mut content_length: u64 = 0;
        let mut caller = None;
        loop {
            let Some(line) = read_line(&mut reader)? else {
                return Ok(());
            };
            if line.is_empty() {
                break;
            }
            let Some((header, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match header.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.parse().unwrap_or(0),
                "x-forwarded-client-cert" => caller = Some(value.to_owned()),
                "connection" if value.eq_ignore_ascii_case("close") => close = true,
                "connection" if value.eq_ignore_ascii_case("keep-alive") => close = false,
                _ => {}
            }
        }
        // A request body is read and dropped.
        io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;

        let mut body = format!("{greeting}\n");
        if let Some(caller) = caller {
            body.push_str(&format!("caller: {caller}\n"));
        }
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
            body.len()
        );
        if close {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        if !request_line.starts_with("HEAD ") {
            response.push_str(&body);
        }
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// One line without its line ending; `None` at the end of the stream. A line longer than
/// [`MAX_LINE`] is an error.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    let read = reader.take(MAX_LINE).read_line(&mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or cut off",
        ));
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}
