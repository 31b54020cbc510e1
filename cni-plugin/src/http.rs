//! A minimal blocking HTTP/1.1 client for the controller's REST API (plain
//! `http://`). Small and dependency-free so the plugin starts fast.
//!
//! A one-shot plugin run sends `Connection: close` and opens a connection
//! per request. The per-node daemon ([`crate::daemon`]) gives its clients a
//! shared [`Pool`] of idle keep-alive connections instead; a request that
//! finds its pooled connection closed by the server before any byte of the
//! response arrived is sent once more on a fresh connection (the server
//! closes idle connections only between requests, so it never saw it).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Idle keep-alive connections to one controller, shared by a daemon's calls.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Vec<TcpStream>>,
}

/// At most this many idle connections are kept per pool.
const POOL_MAX_IDLE: usize = 64;

impl Pool {
    fn take(&self) -> Option<TcpStream> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, s: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL_MAX_IDLE {
            idle.push(s);
        }
    }
}

/// A parsed `http://host:port/prefix` endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    authority: String,
    prefix: String,
    token: Option<String>,
    timeout: Duration,
    pool: Option<Arc<Pool>>,
}

/// Status and body of a response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("controller url {url:?}: only http:// is supported"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("controller url {url:?}: no host"));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            prefix: prefix.to_owned(),
            token,
            timeout,
            pool: None,
        })
    }

    /// The same endpoint with keep-alive connections drawn from `pool`.
    pub fn pooled(mut self, pool: Arc<Pool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The bearer token sent with each request.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `host:port`, the key a daemon pools connections by.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let addr = self
            .authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{}: no address", self.authority)))?;
        let s = TcpStream::connect_timeout(&addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Sends one request; `Err` only for transport failures.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Response> {
        self.send(method, path, body)?.finish()
    }

    /// Writes one request and returns without reading the response, so the
    /// caller can do other work while the server handles it (the daemon
    /// creates a pod's veth while the controller allocates its port).
    /// `Err` only for transport failures.
    pub fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<InFlight<'_>> {
        let keep_alive = self.pool.is_some();
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: {}\r\nAccept: application/json\r\n",
            self.prefix,
            self.authority,
            if keep_alive { "keep-alive" } else { "close" }
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method == "POST" || method == "PUT" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        let Some(pool) = &self.pool else {
            let mut s = self.connect()?;
            s.write_all(&req)?;
            return Ok(InFlight {
                client: self,
                req,
                conn: Conn::OneShot(s),
            });
        };
        if let Some(mut s) = pool.take() {
            match s.write_all(&req) {
                Ok(()) => {
                    return Ok(InFlight {
                        client: self,
                        req,
                        conn: Conn::Pooled(s),
                    });
                }
                // Closed while idle: the server never saw this request.
                Err(e) if stale(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut s = self.connect()?;
        s.write_all(&req)
            .map_err(|e| closed_early(&e).unwrap_or(e))?;
        Ok(InFlight {
            client: self,
            req,
            conn: Conn::Fresh(s),
        })
    }
}

/// A request written by [`Client::send`] whose response is still to be read.
#[derive(Debug)]
pub struct InFlight<'a> {
    client: &'a Client,
    /// Kept to re-send it once if a pooled connection turns out dead.
    req: Vec<u8>,
    conn: Conn,
}

#[derive(Debug)]
enum Conn {
    /// `Connection: close`: the response ends with the stream.
    OneShot(TcpStream),
    /// Taken from the pool: may have been closed by the server while idle.
    Pooled(TcpStream),
    /// Connected for this request.
    Fresh(TcpStream),
}

impl InFlight<'_> {
    /// Reads the response; a pooled connection that had been closed while
    /// idle (nothing of a response arrived) is replaced once by a new
    /// connection that carries the request again.
    pub fn finish(self) -> io::Result<Response> {
        let pool = self.client.pool.as_deref();
        let done = |s: TcpStream, (r, reuse): (Response, bool)| {
            if let (true, Some(p)) = (reuse, pool) {
                p.put(s);
            }
            r
        };
        match self.conn {
            Conn::OneShot(mut s) => {
                let mut raw = Vec::with_capacity(4096);
                s.read_to_end(&mut raw)?;
                parse_response(&raw)
            }
            Conn::Pooled(mut s) => match read_response(&mut s) {
                Ok(r) => Ok(done(s, r)),
                Err(Exchange::Stale) => {
                    let mut s = self.client.connect()?;
                    s.write_all(&self.req)
                        .map_err(|e| closed_early(&e).unwrap_or(e))?;
                    match read_response(&mut s) {
                        Ok(r) => Ok(done(s, r)),
                        Err(e) => Err(e.into()),
                    }
                }
                Err(Exchange::Failed(e)) => Err(e),
            },
            Conn::Fresh(mut s) => match read_response(&mut s) {
                Ok(r) => Ok(done(s, r)),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// Errors that mean the peer had closed the connection.
fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// A closed connection on a request's own new connection, as an error.
fn closed_early(e: &io::Error) -> Option<io::Error> {
    stale(e).then(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before the response",
        )
    })
}

enum Exchange {
    /// Nothing of a response arrived: the connection was dead before the request.
    Stale,
    Failed(io::Error),
}

impl From<Exchange> for io::Error {
    fn from(e: Exchange) -> Self {
        match e {
            Exchange::Stale => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ),
            Exchange::Failed(e) => e,
        }
    }
}

/// Reads one response on a keep-alive connection: the response and whether
/// the connection can carry another request.
fn read_response(s: &mut TcpStream) -> Result<(Response, bool), Exchange> {
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) if raw.is_empty() => return Err(Exchange::Stale),
            Ok(0) => {
                return parse_response(&raw)
                    .map(|r| (r, false))
                    .map_err(Exchange::Failed);
            }
            Ok(n) => n,
            Err(e) if raw.is_empty() && stale(&e) => return Err(Exchange::Stale),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Exchange::Failed(e)),
        };
        raw.extend_from_slice(&chunk[..n]);
        if let Some(done) = complete_response(&raw) {
            return done.map_err(Exchange::Failed);
        }
    }
}

/// `Some` once `raw` holds a whole response framed by Content-Length or
/// chunked encoding: the response and whether the connection stays open.
fn complete_response(raw: &[u8]) -> Option<io::Result<(Response, bool)>> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let mut len = None;
    let mut chunked = false;
    let mut close = head.starts_with("http/1.0");
    for l in head.split("\r\n").skip(1) {
        if let Some((k, v)) = l.split_once(':') {
            match (k.trim(), v.trim()) {
                ("content-length", v) => len = v.parse::<usize>().ok(),
                ("transfer-encoding", "chunked") => chunked = true,
                ("connection", "close") => close = true,
                _ => {}
            }
        }
    }
    let rest = &raw[end + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status == "204" || status == "304" || status.starts_with('1') {
        // No body by definition (RFC 9112 §6.3).
        return Some(parse_response(&raw[..end + 4]).map(|r| (r, !close)));
    }
    if chunked {
        // Complete when the terminating chunk has arrived.
        dechunk(rest)?;
    } else if let Some(n) = len {
        if rest.len() < n {
            return None;
        }
    } else {
        // Framed by the end of the connection: read on to EOF.
        return None;
    }
    Some(parse_response(raw).map(|r| (r, !close)))
}

pub(crate) fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("truncated HTTP response header"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("non-UTF-8 header"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let mut chunked = false;
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                len = v.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(n) = len {
        rest.get(..n).ok_or_else(|| bad("truncated body"))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..i]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[i + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(complete_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab").is_none());
        let (r, reuse) = complete_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nab")
            .unwrap()
            .unwrap();
        assert!(reuse && r.body == b"ab");
        let (_, reuse) =
            complete_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(!reuse);
        assert!(
            complete_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
                .is_none()
        );
        let c = Client::new("http://127.0.0.1:8480/", None, Duration::from_secs(1)).unwrap();
        assert_eq!(c.authority, "127.0.0.1:8480");
        assert!(Client::new("https://x", None, Duration::from_secs(1)).is_err());
    }

    /// A pooled connection the server closed while it was idle: the request
    /// sent on it is carried again, once, by a new connection.
    #[test]
    fn a_request_sent_on_a_connection_closed_while_idle_is_sent_again() {
        use std::io::BufRead;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            // Each connection: read one request (headers + body), answer it
            // with keep-alive, then close; returns the request lines seen.
            let mut seen = Vec::new();
            for n in 0..2 {
                let (s, _) = l.accept().unwrap();
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                seen.push(line.trim_end().to_owned());
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let answer = format!("{n}");
                (&s).write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    )
                    .as_bytes(),
                )
                .unwrap();
                drop(r);
                drop(s);
            }
            seen
        });
        let pool = Arc::new(Pool::default());
        let c = Client::new(&url, None, Duration::from_secs(5))
            .unwrap()
            .pooled(pool.clone());
        assert_eq!(c.request("GET", "/a", None).unwrap().body, b"0");
        // Pooled, but the server has closed it by now.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
        let sent = c.send("POST", "/b", Some(b"{}")).unwrap();
        let r = sent.finish().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"1"[..]));
        assert_eq!(
            server.join().unwrap(),
            ["GET /a HTTP/1.1", "POST /b HTTP/1.1"]
        );
    }
}
