//! The HTTP/1.1 listener of a gridtap process (`gridtap.serve`): `GET /metrics` is answered
//! here, from bytes rendered once per collection, without the GIL; every other request is
//! handed to a Python callable (`/status`, `/ready`, plugin routes and their webhooks).
//!
//! Why in Rust: a scrape then never waits for the interpreter (a busy proxy thread holds the
//! GIL for up to the 5 ms switch interval), costs microseconds, and the process imports no
//! `http.server` (which pulls in `http.client`, `email` and `ssl`: about 9 MB of RSS).
//!
//! The exposition comes in four forms (text, OpenMetrics, and their gzip), published
//! together by Python after each collection (`publish`). A form never asked for is not
//! rendered: the first request for one calls Python's `render(form)` once and marks it
//! wanted, and from then on `wanted()` tells the publisher to render it with the others.
//!
//! Limits: request head 16 KiB (431), body `max_body` (413, not read), no chunked bodies
//! (411), `max_connections` open at once (503), an idle connection closes after
//! `idle_timeout`. Keep-alive as HTTP/1.1 says; HTTP/1.0 closes unless asked to keep alive.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAX_HEAD: usize = 16 * 1024;
pub const FORMS: usize = 4;
const CONTENT_TYPES: [&str; 2] = [
    "text/plain; version=0.0.4; charset=utf-8",
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
];

/// The form index of a scrape: OpenMetrics when the `Accept` header names it (+1), gzip when
/// `Accept-Encoding` names it (+2); the same plain substring tests prometheus_client makes.
pub fn form_for(accept: &str, accept_encoding: &str) -> usize {
    usize::from(accept.contains("application/openmetrics-text")) + 2 * usize::from(accept_encoding.contains("gzip"))
}

// --- parsing ----------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.http11 {
            !connection.split(',').any(|t| t.trim() == "close")
        } else {
            connection.split(',').any(|t| t.trim() == "keep-alive")
        }
    }

    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }
}

/// Position just past the blank line ending a request head, if `buf` holds one.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parse a request head (including its final blank line); `Err` is the reason for a 400.
pub fn parse_head(raw: &[u8]) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let request = lines.next().ok_or("empty request")?;
    let mut parts = request.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err("malformed request line"),
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("malformed method");
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err("folded header lines are not accepted");
        }
        let (name, value) = line.split_once(':').ok_or("header line without a colon")?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("malformed header name");
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Head { method: method.to_owned(), target: target.to_owned(), http11, headers })
}

// --- responses ---------------------------------------------------------------------------------

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for the Date header.
pub fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A whole response in one buffer, so it leaves in one write (a head and a body written
/// apart meet Nagle's algorithm and the peer's delayed ACK: 40 ms per keep-alive request).
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8], head_only: bool, close: bool, server: &str) -> Vec<u8> {
    let date = http_date(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\nServer: {server}\r\nDate: {date}\r\n", reason(status)).as_bytes());
    for (k, v) in headers {
        // A header from Python must not be able to split the response.
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

fn json_error(status: u16, message: &str, server: &str) -> Vec<u8> {
    let body = format!("{{\"error\":\"{}\"}}\n", message.replace('\\', "\\\\").replace('"', "\\\""));
    response(status, &[("Content-Type", "application/json")], body.as_bytes(), false, true, server)
}

// --- the listener ------------------------------------------------------------------------------

/// What the Python handler answers: status, headers, body, and whether to close.
type PythonAnswer = (u16, Vec<(String, String)>, Vec<u8>, bool);

struct Bodies {
    forms: [Option<Arc<Vec<u8>>>; FORMS],
    generation: u64,
}

struct Shared {
    stop: AtomicBool,
    bodies: RwLock<Bodies>,
    wanted: [AtomicBool; FORMS],
    handler: Py<PyAny>,
    render: Py<PyAny>,
    server: String,
    idle_timeout: Duration,
    max_body: AtomicUsize,
    max_connections: usize,
    /// Paths that serve the exposition (`/metrics` and the replaced exporter's, say).
    paths: Vec<String>,
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    scrapes: AtomicU64,
}

impl Shared {
    fn body(&self, form: usize) -> Option<Arc<Vec<u8>>> {
        self.bodies.read().unwrap_or_else(|e| e.into_inner()).forms[form].clone()
    }

    /// A form nobody asked for before: rendered by Python, kept until the next publish.
    fn render_now(&self, form: usize) -> Option<Arc<Vec<u8>>> {
        let generation = self.bodies.read().unwrap_or_else(|e| e.into_inner()).generation;
        let rendered = Python::try_attach(|py| -> PyResult<Vec<u8>> {
            let out = self.render.call1(py, (form,))?;
            Ok(out.bind(py).cast::<PyBytes>()?.as_bytes().to_vec())
        })?;
        let body = match rendered {
            Ok(b) => Arc::new(b),
            Err(e) => {
                Python::try_attach(|py| e.write_unraisable(py, None));
                return None;
            }
        };
        let mut bodies = self.bodies.write().unwrap_or_else(|e| e.into_inner());
        if bodies.generation == generation && bodies.forms[form].is_none() {
            bodies.forms[form] = Some(body.clone());
        }
        Some(body)
    }

    fn metrics(&self, head: &Head, close: bool) -> (Vec<u8>, bool) {
        let form = form_for(head.header("accept").unwrap_or(""), head.header("accept-encoding").unwrap_or(""));
        self.wanted[form].store(true, Ordering::Relaxed);
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        let Some(body) = self.body(form).or_else(|| self.render_now(form)) else {
            return (json_error(503, "the exposition could not be rendered", &self.server), true);
        };
        let mut headers = vec![("Content-Type", CONTENT_TYPES[form & 1])];
        if form >= 2 {
            headers.push(("Content-Encoding", "gzip"));
        }
        (response(200, &headers, &body, head.method == "HEAD", close, &self.server), close)
    }

    /// Hand a request to Python; its answer is (status, [(name, value)], body, close).
    fn python(&self, head: &Head, body: Vec<u8>, client: &str, close: bool) -> (Vec<u8>, bool) {
        let answer = Python::try_attach(|py| -> PyResult<PythonAnswer> {
            let headers = PyList::empty(py);
            for (k, v) in &head.headers {
                headers.append((k.as_str(), v.as_str()))?;
            }
            let out = self.handler.call1(
                py,
                (head.method.as_str(), head.target.as_str(), headers, PyBytes::new(py, &body), client),
            )?;
            let out = out.bind(py).cast::<PyTuple>()?.clone();
            let status: u16 = out.get_item(0)?.extract()?;
            let headers: Vec<(String, String)> = out.get_item(1)?.extract()?;
            let body = out.get_item(2)?.cast::<PyBytes>()?.as_bytes().to_vec();
            let close: bool = out.get_item(3)?.extract()?;
            Ok((status, headers, body, close))
        });
        match answer {
            None => (json_error(503, "shutting down", &self.server), true),
            Some(Err(e)) => {
                Python::try_attach(|py| e.write_unraisable(py, None));
                (json_error(500, "internal error", &self.server), true)
            }
            Some(Ok((status, headers, out, py_close))) => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let close = close || py_close;
                (response(status, &headers, &out, head.method == "HEAD", close, &self.server), close)
            }
        }
    }
}

/// Answer `reply` and close without losing it: after our last byte, what the client still
/// sends (an unread body, the rest of a huge head) is read and dropped for a moment, since
/// closing a socket with unread input resets the connection, and the reset can destroy the
/// response before the client reads it.
fn reply_and_close(stream: &mut TcpStream, reply: &[u8], linger: Duration) {
    if stream.write_all(reply).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(linger));
    let deadline = Instant::now() + linger;
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    while Instant::now() < deadline && drained < (1 << 20) {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

const LINGER: Duration = Duration::from_millis(500);

/// One connection: requests in a row until the peer closes, asks to, or idles out.
fn serve_connection(shared: &Shared, mut stream: TcpStream, client: &str) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        // Read until a whole head is buffered (leftovers of the previous request count).
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                reply_and_close(&mut stream, &json_error(431, "request head over 16 KiB", &shared.server), LINGER);
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return, // closed, reset, or idle past the timeout
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
        };
        if end > MAX_HEAD {
            reply_and_close(&mut stream, &json_error(431, "request head over 16 KiB", &shared.server), LINGER);
            return;
        }
        let head = match parse_head(&buf[..end]) {
            Ok(h) => h,
            Err(why) => {
                reply_and_close(&mut stream, &json_error(400, why, &shared.server), LINGER);
                return;
            }
        };
        buf.drain(..end);
        let close = !head.keep_alive() || shared.stop.load(Ordering::Relaxed);
        let scrape = (head.method == "GET" || head.method == "HEAD") && shared.paths.iter().any(|p| p == head.path());
        let (out, closes) = if scrape {
            shared.metrics(&head, close)
        } else {
            if head.header("transfer-encoding").is_some() {
                let reply = json_error(411, "chunked bodies are not accepted; send Content-Length", &shared.server);
                reply_and_close(&mut stream, &reply, LINGER);
                return;
            }
            let length = match head.header("content-length").map(|v| v.parse::<usize>()) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    reply_and_close(&mut stream, &json_error(400, "bad Content-Length", &shared.server), LINGER);
                    return;
                }
            };
            let max_body = shared.max_body.load(Ordering::Relaxed);
            if length > max_body {
                // The body is not read, so the connection cannot be reused.
                let reply = json_error(413, &format!("body over {max_body} bytes"), &shared.server);
                reply_and_close(&mut stream, &reply, LINGER);
                return;
            }
            while buf.len() < length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..length).collect();
            shared.python(&head, body, client, close)
        };
        if closes {
            reply_and_close(&mut stream, &out, LINGER);
            return;
        }
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.stop.load(Ordering::Relaxed) {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors, say: back off a little instead of spinning.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(shared.idle_timeout));
        let _ = stream.set_write_timeout(Some(shared.idle_timeout));
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let registered = {
            let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
            if open.len() >= shared.max_connections {
                None
            } else {
                stream.try_clone().ok().map(|clone| open.insert(id, clone)).map(|_| ())
            }
        };
        if registered.is_none() {
            // Brief, on the accept thread: the cap exists so that a flood gets no threads.
            let mut stream = stream;
            reply_and_close(&mut stream, &json_error(503, "too many connections", &shared.server),
                            Duration::from_millis(20));
            continue;
        }
        let worker = shared.clone();
        let spawned = std::thread::Builder::new().name("metrics-conn".into()).spawn(move || {
            serve_connection(&worker, stream, &peer.ip().to_string());
            worker.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
        if spawned.is_err() {
            shared.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }
}

/// `MetricsListener(host, port, handler, render, server, idle_timeout=30.0, max_body=65536,
/// max_connections=256, metrics_paths=["/metrics"])`: bound at once (OSError when the address is unusable); serving after
/// `start()`. `handler(method, target, headers, body, client) -> (status, headers, body,
/// close)` answers everything but `GET`/`HEAD /metrics`; `render(form) -> bytes` renders a
/// form of the exposition not published yet (0 text, 1 OpenMetrics, +2 gzip).
#[pyclass(module = "gridtap._native", frozen)]
pub struct MetricsListener {
    shared: Arc<Shared>,
    local: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn os_error(e: &io::Error) -> PyErr {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
    match e.raw_os_error() {
        Some(code) => PyOSError::new_err((code, text)),
        None => PyOSError::new_err(text),
    }
}

#[pymethods]
impl MetricsListener {
    #[new]
    #[pyo3(signature = (host, port, handler, render, server, idle_timeout=30.0, max_body=65536, max_connections=256,
                        metrics_paths=vec!["/metrics".to_owned()]))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: &str,
        port: u16,
        handler: Py<PyAny>,
        render: Py<PyAny>,
        server: String,
        idle_timeout: f64,
        max_body: usize,
        max_connections: usize,
        metrics_paths: Vec<String>,
    ) -> PyResult<Self> {
        let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().map_err(|e| os_error(&e))?.collect();
        // A name such as `localhost` binds its IPv4 address first, as Python's listener did:
        // scrape configs say 127.0.0.1 far more often than [::1].
        addrs.sort_by_key(|a| a.is_ipv6());
        let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to listen on");
        let mut bound = None;
        for addr in addrs {
            match TcpListener::bind(addr) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let listener = bound.ok_or_else(|| os_error(&last))?;
        let local = listener.local_addr().map_err(|e| os_error(&e))?;
        let idle = if idle_timeout.is_finite() && idle_timeout > 0.0 { idle_timeout } else { 30.0 };
        Ok(MetricsListener {
            shared: Arc::new(Shared {
                stop: AtomicBool::new(false),
                bodies: RwLock::new(Bodies { forms: Default::default(), generation: 0 }),
                wanted: Default::default(),
                handler,
                render,
                server,
                idle_timeout: Duration::from_secs_f64(idle),
                max_body: AtomicUsize::new(max_body),
                max_connections: max_connections.max(1),
                paths: metrics_paths,
                open: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                scrapes: AtomicU64::new(0),
            }),
            local,
            listener: Mutex::new(Some(listener)),
            thread: Mutex::new(None),
        })
    }

    /// (host, port) actually bound.
    #[getter]
    fn address(&self) -> (String, u16) {
        (self.local.ip().to_string(), self.local.port())
    }

    /// `/metrics` requests answered so far.
    #[getter]
    fn scrapes(&self) -> u64 {
        self.shared.scrapes.load(Ordering::Relaxed)
    }

    #[getter]
    fn get_max_body(&self) -> usize {
        self.shared.max_body.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_max_body(&self, value: usize) {
        self.shared.max_body.store(value, Ordering::Relaxed);
    }

    fn start(&self) -> PyResult<()> {
        let Some(listener) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(()); // started already
        };
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("metrics-listener".into())
            .spawn(move || accept_loop(shared, listener))
            .map_err(|e| os_error(&e))?;
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(())
    }

    /// Replace the exposition: the text form and whichever other forms were rendered (None:
    /// rendered on demand, see the module docs). The bytes are copied; scrapes see all the new
    /// forms from the same moment on.
    #[pyo3(signature = (text, openmetrics=None, text_gzip=None, openmetrics_gzip=None))]
    fn publish(
        &self,
        text: &Bound<'_, PyBytes>,
        openmetrics: Option<&Bound<'_, PyBytes>>,
        text_gzip: Option<&Bound<'_, PyBytes>>,
        openmetrics_gzip: Option<&Bound<'_, PyBytes>>,
    ) {
        let copy = |b: Option<&Bound<'_, PyBytes>>| b.map(|b| Arc::new(b.as_bytes().to_vec()));
        let forms = [copy(Some(text)), copy(openmetrics), copy(text_gzip), copy(openmetrics_gzip)];
        let mut bodies = self.shared.bodies.write().unwrap_or_else(|e| e.into_inner());
        bodies.forms = forms;
        bodies.generation += 1;
    }

    /// Which forms scrapes asked for so far (text, OpenMetrics, text gzip, OpenMetrics gzip).
    fn wanted(&self) -> (bool, bool, bool, bool) {
        let w = |i: usize| self.shared.wanted[i].load(Ordering::Relaxed);
        (w(0), w(1), w(2), w(3))
    }

    /// Stop accepting, close open connections, wait (at most `timeout` s) for their threads.
    #[pyo3(signature = (timeout=2.0))]
    fn close(&self, py: Python<'_>, timeout: f64) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.listener.lock().unwrap_or_else(|e| e.into_inner()).take(); // never started: just drop it
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        let shared = self.shared.clone();
        let local = self.local;
        py.detach(move || {
            if let Some(thread) = thread {
                // Wake the blocking accept() with a connection of our own.
                let wake = match local.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port()),
                    IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), local.port()),
                    _ => local,
                };
                let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
                let _ = thread.join();
            }
            for stream in shared.open.lock().unwrap_or_else(|e| e.into_inner()).values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            let deadline = Instant::now() + Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
            while !shared.open.lock().unwrap_or_else(|e| e.into_inner()).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<MetricsListener>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_head() {
        let raw = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n";
        assert_eq!(head_end(raw), Some(raw.len()));
        let head = parse_head(raw).unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path(), "/metrics");
        assert_eq!(head.header("accept-encoding"), Some("gzip"));
        assert!(head.keep_alive());
        let old = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!old.keep_alive());
        assert!(parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().keep_alive());
        assert!(!parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().keep_alive());
    }

    #[test]
    fn refuses_malformed_heads() {
        for raw in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"\xff / HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_head(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn picks_the_form_like_prometheus_client() {
        assert_eq!(form_for("", ""), 0);
        assert_eq!(form_for("application/openmetrics-text;version=1.0.0,text/plain;q=0.5", "gzip"), 3);
        assert_eq!(form_for("text/plain", "gzip, deflate"), 2);
    }

    #[test]
    fn dates_and_responses() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_709_251_200), "Fri, 01 Mar 2024 00:00:00 GMT");
        let out = response(200, &[("Content-Type", "text/plain"), ("X-Bad", "a\r\nSet-Cookie: x")], b"hi", false, true, "gridtap/1");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: gridtap/1\r\nDate: "));
        assert!(text.ends_with("Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"));
        assert!(!text.contains("Set-Cookie"));
        let head = response(404, &[], b"gone", true, false, "g");
        assert!(String::from_utf8(head).unwrap().ends_with("Content-Length: 4\r\n\r\n"));
    }
}
